// Package sandbox runs a command in a rootless container (user, mount, pid,
// ipc and uts namespaces) built with libcontainer over a cached rootfs.
package sandbox
