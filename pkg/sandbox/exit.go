package sandbox

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
)

// The exit status of xrun, decided here and nowhere else (README "Exit
// status"; the CLI only prints xrun's own errors):
//
//	0..255  the command's own status (*ExitError), 128+N when a signal N
//	        killed it
//	126     the command exists but cannot be executed (*CommandError)
//	127     the command is not in the image (*CommandError)
//	125     xrun itself failed (any other error)

// ExitStatusFailed is xrun's status for its own failures.
const ExitStatusFailed = 125

// ExitStatus maps an error from a run to xrun's exit status: the command's
// own code, 126/127 when it could not be started, ExitStatusFailed for
// xrun's own failures, 0 for nil.
func ExitStatus(err error) int {
	var ee *ExitError
	var ce *CommandError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ee):
		return ee.Code
	case errors.As(err, &ce):
		return ce.Code
	}
	return ExitStatusFailed
}

// ExitError carries the exit status of the command: its own code, or 128+N
// when it was killed by signal N.
type ExitError struct{ Code int }

func (e *ExitError) Error() string { return fmt.Sprintf("command exited with status %d", e.Code) }

// startError turns a libcontainer start failure into the codes a shell uses:
// 127 when the command does not exist, 126 when it cannot be executed. The
// failure crosses libcontainer's init pipe as text, so only libcontainer's
// own words about the process it starts (name, proc.Args[0]: the command,
// or the reaper that then reports its command's failure with the same
// codes) count: exec.LookPath's `exec: "NAME": ...` and its exec's
// `exec NAME: ...`. Any other failure, even one mentioning a missing file
// (a mount source, the working directory), is xrun's set-up failing.
func startError(err error, name, cmd string) error {
	if errors.Is(err, exec.ErrNotFound) {
		return commandNotFound(cmd)
	}
	msg := err.Error()
	var detail string
	if _, rest, ok := strings.Cut(msg, `exec: "`+name+`": `); ok {
		detail = rest // exec.LookPath's *exec.Error
	} else if _, rest, ok := strings.Cut(msg, "exec "+name+": "); ok {
		detail = rest // the execve's *os.PathError
	}
	switch {
	case detail == "":
	case strings.HasPrefix(detail, exec.ErrNotFound.Error()) || strings.HasSuffix(detail, syscall.ENOENT.Error()):
		return commandNotFound(cmd)
	case strings.HasSuffix(detail, syscall.EACCES.Error()) || strings.HasSuffix(detail, syscall.ENOEXEC.Error()):
		return &CommandError{Code: 126, Err: fmt.Errorf("%s: cannot execute: %w", cmd, err)}
	}
	return fmt.Errorf("start container: %w", err)
}

func commandNotFound(cmd string) error {
	return &CommandError{Code: 127, Err: fmt.Errorf("%s: command not found in the image: check the name and the image's PATH", cmd)}
}

// CommandError is a failure to start the command itself (not xrun's set-up):
// Code is 127 (not found) or 126 (not executable), as in a shell.
type CommandError struct {
	Code int
	Err  error
}

func (e *CommandError) Error() string { return e.Err.Error() }
func (e *CommandError) Unwrap() error { return e.Err }

func exitCode(st *os.ProcessState) int {
	if ws, ok := st.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return 128 + int(ws.Signal())
	}
	return st.ExitCode()
}
