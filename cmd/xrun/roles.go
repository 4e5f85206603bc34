package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	// nsenter's C constructor enters the container's namespaces when this
	// binary is re-executed as libcontainer's init, before the Go runtime
	// starts. It does nothing for any other invocation.
	_ "github.com/opencontainers/runc/libcontainer/nsenter"

	"github.com/xrun-dev/xrun/pkg/doctor"
	"github.com/xrun-dev/xrun/pkg/rootfs"
	"github.com/xrun-dev/xrun/pkg/sandbox"
	"github.com/xrun-dev/xrun/pkg/userns"
)

// role is one thing this binary does when it is re-executed as a helper
// rather than typed by a user.
type role struct {
	name  string
	match func(args []string) bool
	run   func(args []string) int // the exit status
}

// roles are every helper role of the xrun binary, consulted (by init,
// below) before the CLI parses anything; the CLI never sees them. One more
// role is not in this table because it runs before Go does: the
// container's native PID 1 (argv[0] "/dev/.xrun-init", sandbox.ReaperPath),
// an ELF constructor in pkg/sandbox/reaper.c, which must start before the
// Go runtime so that no Go thread exists to steal its signals.
var roles = []role{
	// libcontainer's init (`/proc/self/exe init`): prepares the overlay and
	// binfmt_misc, then becomes the container's process. Never returns.
	{"init", sandbox.IsInit, func([]string) int { sandbox.Init(); return 125 }},
	// The doctor's probe of what the kernel allows in a user namespace.
	{"doctor probe", doctor.IsProbe, doctor.ProbeMain},
	// The user namespace helpers that userns.Run re-executes this binary as.
	{rootfs.UnpackHelperCommand, isHelper(rootfs.UnpackHelperCommand), func(args []string) int {
		ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
		defer stop()
		return helperExit(rootfs.UnpackHelper(ctx, args[2:]))
	}},
	{userns.RemoveHelperCommand, isHelper(userns.RemoveHelperCommand), func(args []string) int {
		return helperExit(userns.RemoveHelper(args[2:]))
	}},
}

func init() {
	// This binary runs the helpers userns.Run re-executes it as.
	userns.ServeHelpers()
	if code, ok := runRole(os.Args); ok {
		os.Exit(code)
	}
}

// runRole runs the role args ask for, if any, and returns its exit status.
func runRole(args []string) (code int, ok bool) {
	for _, r := range roles {
		if r.match(args) {
			return r.run(args), true
		}
	}
	return 0, false
}

// isHelper matches `xrun NAME ...`.
func isHelper(name string) func([]string) bool {
	return func(args []string) bool { return len(args) > 1 && args[1] == name }
}

// helperExit prints a helper's error as Main prints xrun's own (the
// process that started the helper reads it back) and returns its status.
func helperExit(err error) int {
	if err == nil {
		return 0
	}
	return reportError(os.Stderr, err)
}
