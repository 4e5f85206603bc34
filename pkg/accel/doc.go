// Package accel makes an emulated image's GNU toolchain run natively: from
// the image's dpkg database and the Debian cross packages of the same
// upstream versions it assembles a tree of host-architecture files (the
// cross cc1/cc1plus with the image's include directories, collect2, the LTO
// plugin, binutils, their loader and libraries) that the sandbox lays over
// the image as one more read-only overlay layer, and it is the wrapper that
// runs in place of the image's cc1 and cc1plus and decides, per call,
// whether the native compiler may run (byte-identical output) or the
// image's own, emulated, must. It runs no container itself: the engine
// downloads the packages in a native container and runs the self-check.
package accel
