// Package binfmt decides how binaries of an image's architecture run on this
// host (natively, through a host handler, or through qemu registered inside
// the container's own user namespace) and performs that registration.
package binfmt
