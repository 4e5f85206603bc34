package main

import (
	"os"

	// nsenter's C constructor enters the container's namespaces when this
	// binary is re-executed as libcontainer's init, before the Go runtime
	// starts. It does nothing for any other invocation.
	_ "github.com/opencontainers/runc/libcontainer/nsenter"

	"github.com/xrun-dev/xrun/pkg/sandbox"
)

// init dispatches the two roles this binary plays inside a container before
// any CLI code runs: libcontainer's init (`/proc/self/exe init`), and the
// container's native PID 1 (bound at sandbox.ReaperPath).
func init() {
	switch {
	case sandbox.IsInit(os.Args):
		sandbox.Init() // never returns
	case sandbox.IsReaper(os.Args):
		os.Exit(sandbox.Reap(os.Args))
	}
}
