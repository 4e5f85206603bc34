package main

import (
	"os"

	// nsenter's C constructor enters the container's namespaces when this
	// binary is re-executed as libcontainer's init, before the Go runtime
	// starts. It does nothing for any other invocation.
	_ "github.com/opencontainers/runc/libcontainer/nsenter"

	"github.com/xrun-dev/xrun/pkg/sandbox"
)

// init dispatches libcontainer's init (`/proc/self/exe init`) before any CLI
// code runs. (The other role this binary plays inside a container, its
// native PID 1, is C code in pkg/sandbox that runs before Go starts.)
func init() {
	if sandbox.IsInit(os.Args) {
		sandbox.Init() // never returns
	}
}
