package sandbox

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"syscall"

	"golang.org/x/sys/unix"
)

// IsReaper reports whether this process was started as the container's
// native PID 1 (the xrun binary bound at ReaperPath).
func IsReaper(args []string) bool {
	return len(args) > 1 && args[0] == ReaperPath && args[1] == "--"
}

// Reap is the container's PID 1: it starts args[2:] as its child, forwards
// every catchable signal to it, reaps all zombies, and returns the child's
// exit code (128+N when it died of signal N).
//
// Why a native init: the kernel drops signals to a pid namespace's init that
// has no handler installed. An emulated PID 1 is qemu, which installs
// handlers, then on delivery resets them and re-raises the signal to itself
// to die "of" it; that re-raise is dropped, so it never exits on Ctrl-C or
// SIGTERM. A native PID 1 that forwards signals keeps qemu out of that role.
func Reap(args []string) int {
	cmd := args[2:]
	path, err := exec.LookPath(cmd[0])
	if errors.Is(err, exec.ErrNotFound) || errors.Is(err, os.ErrNotExist) {
		fmt.Fprintf(os.Stderr, "xrun: %s: command not found in the image: check the name and the image's PATH\n", cmd[0])
		return 127
	} else if err != nil {
		fmt.Fprintf(os.Stderr, "xrun: %s: cannot execute: %v\n", cmd[0], errors.Unwrap(err))
		return 126
	}
	sigc := make(chan os.Signal, 32)
	signal.Notify(sigc)
	attr := &os.ProcAttr{
		Env:   os.Environ(),
		Files: []*os.File{os.Stdin, os.Stdout, os.Stderr},
	}
	if IsTerminal(os.Stdin) {
		// Give the command its own process group in the terminal's
		// foreground: Ctrl-C and Ctrl-Z from the pty reach it (and its
		// children), not this init.
		attr.Sys = &syscall.SysProcAttr{Setpgid: true, Foreground: true, Ctty: 0}
	}
	child, err := os.StartProcess(path, cmd, attr)
	if err != nil {
		fmt.Fprintf(os.Stderr, "xrun: cannot execute %s: %v\n", cmd[0], err)
		if errors.Is(err, os.ErrNotExist) {
			return 127
		}
		return 126
	}
	pid := child.Pid
	for s := range sigc {
		sig := s.(syscall.Signal)
		if sig != unix.SIGCHLD {
			if sig != unix.SIGURG { // the Go runtime's own preemption signal
				_ = unix.Kill(pid, sig)
			}
			continue
		}
		for {
			var ws unix.WaitStatus
			p, err := unix.Wait4(-1, &ws, unix.WNOHANG, nil)
			if err != nil || p <= 0 {
				break
			}
			if p == pid {
				if ws.Signaled() {
					return 128 + int(ws.Signal())
				}
				return ws.ExitStatus()
			}
		}
	}
	return 125
}
