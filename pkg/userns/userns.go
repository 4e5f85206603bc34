package userns

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/xrun-dev/xrun/pkg/fsutil"
)

// RemoveHelperCommand is the helper role under which the xrun binary
// removes a tree from inside a user namespace (see Remove). The binary's
// role table dispatches it; it is not meant to be typed.
const RemoveHelperCommand = "__userns-rm"

// Stages of a helper started by Run: `xrun COMMAND wait ARGS...`
// blocks until its id maps are written, then re-executes itself as
// `xrun COMMAND run ARGS...`, which does the work.
const (
	stageWait = "wait"
	stageRun  = "run"
)

// helpersServed is set by ServeHelpers.
var helpersServed atomic.Bool

// ServeHelpers declares that this program dispatches the helper roles
// that Run re-executes /proc/self/exe as (RemoveHelperCommand, and
// rootfs.UnpackHelperCommand) before anything else. Without it (another
// program linking this package, such as a test binary), Run refuses to
// start a helper, with ErrNotServed.
func ServeHelpers() { helpersServed.Store(true) }

// Served reports whether ServeHelpers was called.
func Served() bool { return helpersServed.Load() }

// ErrNoMapping is returned by Run when the invoking user has no
// subordinate id range to map (or no newuidmap/newgidmap to map it).
var ErrNoMapping = errors.New("some files are owned by ids outside your own and no subordinate id range is configured " +
	"(/etc/subuid, /etc/subgid) to reach them")

// ErrNotServed is returned by Run in a program that did not call
// ServeHelpers.
var ErrNotServed = errors.New("[internal error] this program does not serve the user namespace helpers (userns.ServeHelpers)")

// SetupError is a failure to set up the helper's user namespace (start,
// newuidmap, newgidmap), before the helper did anything.
type SetupError struct{ err error }

func (e *SetupError) Error() string { return e.err.Error() }
func (e *SetupError) Unwrap() error { return e.err }

// Run runs the xrun binary as the hidden command args[0] with
// args[1:] in a new user namespace with a run's id mappings: the invoking
// user is root there and its subordinate ranges are ids 1..65536 (as root,
// ids 0..65536 map to themselves). There, files owned by those ids belong
// to mapped ids, over which the namespace's root has CAP_CHOWN,
// CAP_DAC_OVERRIDE and CAP_FOWNER.
//
// Only setuid newuidmap/newgidmap may write such maps, and they can only do
// so for a process that already exists, so this is done in two stages: the
// binary is started in a new user namespace (stage "wait", see Stage)
// and blocks on its stdin; the maps are written; it is released and
// re-executes itself (stage "run"), because capabilities in the namespace
// are granted at execve only to a process whose uid is mapped to 0 there.
//
// stdin, when not nil, then writes the helper's standard input (it is
// closed when stdin returns); the helper's standard output goes to stdout
// (nil: discarded). The error is the helper's message on standard error
// when it fails, a failure of stdin when it fails first, or ctx's error.
// Without a subordinate range it fails at once with ErrNoMapping, in a
// program that did not call ServeHelpers with ErrNotServed; a failure to
// set up the namespace is a *SetupError.
func Run(ctx context.Context, args []string, stdin func(io.Writer) error, stdout io.Writer) error {
	if !helpersServed.Load() {
		return ErrNotServed
	}
	uids, gids, full := IDMappings(slog.New(slog.DiscardHandler))
	if !full {
		return ErrNoMapping
	}
	return runInUserNS(ctx, uids, gids, args, stdin, stdout)
}

func runInUserNS(ctx context.Context, uids, gids []specs.LinuxIDMapping, args []string, stdin func(io.Writer) error, stdout io.Writer) error {
	if len(args) == 0 {
		return errors.New("[internal error] userns.Run: no command")
	}
	r, w, err := os.Pipe()
	if err != nil {
		return &SetupError{err}
	}
	defer r.Close()
	defer w.Close()
	if stdout == nil {
		stdout = io.Discard
	}
	stderr := &tailBuffer{max: 16 << 10}
	argv := append([]string{args[0], stageWait}, args[1:]...)
	cmd := exec.CommandContext(ctx, "/proc/self/exe", argv...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = r, stdout, stderr
	cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin"}
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWUSER, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return &SetupError{fmt.Errorf("start the user namespace helper: %w", err)}
	}
	r.Close()
	pid := cmd.Process.Pid
	mapErr := writeMap("newuidmap", "uid_map", pid, uids)
	if mapErr == nil {
		mapErr = writeMap("newgidmap", "gid_map", pid, gids)
	}
	if mapErr == nil {
		_, mapErr = w.Write([]byte{1})
	}
	if mapErr != nil {
		cmd.Process.Kill()
		w.Close()
		cmd.Wait()
		return &SetupError{mapErr}
	}
	var inErr error
	if stdin != nil {
		inErr = stdin(w)
		if inErr != nil && !errors.Is(inErr, syscall.EPIPE) {
			// The source failed (not the helper): stop the helper, which
			// would otherwise wait for more input or fail on a short one.
			cmd.Process.Kill()
		}
	}
	w.Close()
	werr := cmd.Wait()
	switch {
	case ctx.Err() != nil:
		return ctx.Err()
	case inErr != nil && !errors.Is(inErr, syscall.EPIPE):
		return inErr
	case werr != nil:
		msg := strings.TrimSpace(stderr.String())
		msg = strings.TrimPrefix(msg, "xrun: ")
		if msg == "" {
			msg = werr.Error()
		}
		return errors.New(msg)
	case inErr != nil:
		return inErr // the helper stopped reading and succeeded: cannot be
	}
	return nil
}

// writeMap writes the uid or gid map of pid: with newuidmap or newgidmap,
// or, as root, directly (root needs no helper, and may lack them).
func writeMap(tool, file string, pid int, m []specs.LinuxIDMapping) error {
	if os.Geteuid() == 0 {
		var b strings.Builder
		for _, e := range m {
			fmt.Fprintf(&b, "%d %d %d\n", e.ContainerID, e.HostID, e.Size)
		}
		if err := os.WriteFile("/proc/"+strconv.Itoa(pid)+"/"+file, []byte(b.String()), 0); err != nil {
			return fmt.Errorf("write %s: %w", file, err)
		}
		return nil
	}
	args := []string{strconv.Itoa(pid)}
	for _, e := range m {
		args = append(args, strconv.FormatUint(uint64(e.ContainerID), 10),
			strconv.FormatUint(uint64(e.HostID), 10), strconv.FormatUint(uint64(e.Size), 10))
	}
	out, err := exec.Command(tool, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s: %v: %s", tool, err, bytes.TrimSpace(out))
	}
	return nil
}

// Stage does the stage part of a helper command started by Run, whose arguments (after the command name) are args. In stage
// "wait" it blocks until the id maps are written, then re-executes the
// binary in stage "run" (it returns only on failure). In stage "run" it
// returns the remaining arguments, for the command's body.
func Stage(command string, args []string) ([]string, error) {
	if len(args) == 0 {
		return nil, fmt.Errorf("[internal error] usage: xrun %s wait|run ARGS...", command)
	}
	switch args[0] {
	case stageWait:
		b := make([]byte, 1)
		if n, _ := os.Stdin.Read(b); n != 1 {
			return nil, errors.New("the id maps were not written")
		}
		argv := append([]string{"xrun", command, stageRun}, args[1:]...)
		return nil, syscall.Exec("/proc/self/exe", argv, os.Environ())
	case stageRun:
		// The parent death signal does not survive the execve that
		// granted capabilities: set it again.
		if err := unix.Prctl(unix.PR_SET_PDEATHSIG, uintptr(unix.SIGKILL), 0, 0, 0); err != nil {
			return nil, err
		}
		return args[1:], nil
	}
	return nil, fmt.Errorf("[internal error] unknown stage %q", args[0])
}

// Remove removes dir from a new user namespace with a run's id mappings
// (see Run): files that a run created as another user (owned by
// subordinate ids on the host), or an image unpacked with its owners, can
// be removed there.
func Remove(dir string) error {
	if os.Geteuid() == 0 {
		return ErrNoMapping // root gains nothing in a user namespace
	}
	return Run(context.Background(), []string{RemoveHelperCommand, dir}, nil, nil)
}

// RemoveHelper is the body of the helper role RemoveHelperCommand: args
// are STAGE DIR.
func RemoveHelper(args []string) error {
	rest, err := Stage(RemoveHelperCommand, args)
	if err != nil {
		return err
	}
	if len(rest) != 1 || !strings.HasPrefix(rest[0], "/") {
		return errors.New("[internal error] usage: xrun " + RemoveHelperCommand + " wait|run /DIR")
	}
	return fsutil.RemoveAll(rest[0])
}

// RemoveTree removes dir like fsutil.RemoveAll, and, what that cannot
// remove for lack of permission (files and directories owned by
// subordinate ids: an image unpacked with its owners, or what a run wrote
// as another user), from a user namespace with the subordinate ranges
// mapped (see Remove).
func RemoveTree(dir string) error {
	err := fsutil.RemoveAll(dir)
	if err == nil || !(errors.Is(err, fs.ErrPermission) || errors.Is(err, syscall.EPERM)) {
		return err
	}
	if uerr := Remove(dir); uerr != nil {
		return fmt.Errorf("%w; in a user namespace with the subordinate ids: %v", err, uerr)
	}
	return nil
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	b   []byte
	max int
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.b = append(t.b, p...)
	if len(t.b) > t.max {
		t.b = t.b[len(t.b)-t.max:]
	}
	return len(p), nil
}

func (t *tailBuffer) String() string { return string(t.b) }
