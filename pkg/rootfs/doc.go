// Package rootfs unpacks image layers into a cached root filesystem, keeping
// every path inside the root and publishing each rootfs atomically.
package rootfs
