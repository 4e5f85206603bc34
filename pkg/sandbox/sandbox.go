package sandbox

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"

	"github.com/opencontainers/runc/libcontainer"
	"github.com/opencontainers/runc/libcontainer/configs"
	"github.com/opencontainers/runc/libcontainer/specconv"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/sirupsen/logrus"
	"golang.org/x/sys/unix"

	"github.com/xrun-dev/xrun/pkg/binfmt"
)

// ReaperPath is where the xrun binary is bound inside the container to serve
// as its native PID 1 (see reaper.go). /dev is a fresh tmpfs, so nothing of
// the image is shadowed and nothing is left behind.
const ReaperPath = "/dev/.xrun-init"

// Options describes one run. Zero values have the documented defaults.
type Options struct {
	// Lower is the cached, read-only image rootfs. A run never writes to
	// it: it sees it through an overlay whose upper layer lives on a tmpfs.
	Lower string
	// RunRoot holds per-run directories and libcontainer state
	// (default: $XDG_RUNTIME_DIR/xrun, else the OS temp dir).
	RunRoot string
	// Args is the command to run; it must not be empty.
	Args []string
	// Env is the environment of the command (image Env plus overrides).
	Env []string
	// Cwd is the working directory inside the container (default "/").
	Cwd string
	// Binds are host paths bound into the container.
	Binds []Bind
	// Emulation, when set, registers a qemu handler inside the container's
	// user namespace before pivot_root (Strategy binfmt.Namespaced), or
	// binds a host handler's interpreter (binfmt.HostHandler).
	Emulation *binfmt.Plan
	// TTY gives the command a pseudo-terminal; Stdin must then be a
	// terminal (*os.File), and Stdout receives everything the pty prints.
	TTY bool
	// Hostname inside the UTS namespace ("" keeps the host's).
	Hostname string
	// Stdin, Stdout, Stderr default to the process's own.
	Stdin  io.Reader
	Stdout io.Writer
	Stderr io.Writer
	// Logger defaults to discarding everything.
	Logger *slog.Logger
}

// Bind is a host path bound into the container.
type Bind struct {
	Source, Destination string
	ReadOnly            bool
}

func (o *Options) fill() error {
	if len(o.Args) == 0 {
		return errors.New("[internal error] sandbox: no command")
	}
	if o.Lower == "" {
		return errors.New("[internal error] sandbox: no rootfs")
	}
	if o.RunRoot == "" {
		o.RunRoot = DefaultRunRoot()
	}
	if o.Cwd == "" {
		o.Cwd = "/"
	}
	if o.Stdin == nil {
		o.Stdin = os.Stdin
	}
	if o.Stdout == nil {
		o.Stdout = os.Stdout
	}
	if o.Stderr == nil {
		o.Stderr = os.Stderr
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return nil
}

// DefaultRunRoot is $XDG_RUNTIME_DIR/xrun when that is set, else
// $TMPDIR/xrun-<uid>.
func DefaultRunRoot() string {
	if d := os.Getenv("XDG_RUNTIME_DIR"); d != "" {
		return filepath.Join(d, "xrun")
	}
	return filepath.Join(os.TempDir(), fmt.Sprintf("xrun-%d", os.Getuid()))
}

// ExitError carries the exit status of the command: its own code, or 128+N
// when it was killed by signal N.
type ExitError struct{ Code int }

func (e *ExitError) Error() string { return fmt.Sprintf("command exited with status %d", e.Code) }

// initParams is what the parent hands to the re-executed `xrun init` (which
// gets no environment and no arguments from libcontainer): it reads them from
// the run directory, the parent of its working directory (libcontainer starts
// init in Config.Rootfs).
type initParams struct {
	Lower       string       `json:"lower"`
	Emulation   *binfmt.Plan `json:"emulation,omitempty"`
	BinfmtFlags string       `json:"binfmt_flags,omitempty"`
}

const (
	initParamsFile = "init.json"
	rootfsDir      = "rootfs"
	scratchDir     = "scratch"
	stateDir       = "state"
)

// forwarded are the signals passed on to the container instead of acting on
// xrun: everything a user or a job control system sends to stop a job.
var forwarded = []os.Signal{
	unix.SIGINT, unix.SIGTERM, unix.SIGHUP, unix.SIGQUIT,
	unix.SIGUSR1, unix.SIGUSR2, unix.SIGWINCH, unix.SIGCONT, unix.SIGTSTP,
}

// Run runs the command described by opts and waits for it. While it runs,
// signals are forwarded to the command rather than cancelling ctx's work:
// the command decides how to die, and its status becomes xrun's. It returns
// *ExitError when the command exits non-zero or dies of a signal; any other
// error is xrun's own failure.
func Run(ctx context.Context, opts Options) error {
	if err := opts.fill(); err != nil {
		return err
	}
	log := opts.Logger
	quietLibcontainer(log)

	// libcontainer's init process is started with PDEATHSIG, and the kernel
	// sends it when the *thread* that forked it exits. Keep this goroutine on
	// one thread so that thread lives as long as the container.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()

	id, err := newID()
	if err != nil {
		return err
	}
	if err := os.MkdirAll(opts.RunRoot, 0o700); err != nil {
		return fmt.Errorf("create run directory: %w", err)
	}
	collectStale(opts.RunRoot, log)
	runDir := filepath.Join(opts.RunRoot, id)
	for _, d := range []string{rootfsDir, scratchDir} {
		if err := os.MkdirAll(filepath.Join(runDir, d), 0o700); err != nil {
			return fmt.Errorf("create run directory: %w", err)
		}
	}
	defer os.RemoveAll(runDir)

	uids, gids, fullIDs := idMappings(log)
	params := initParams{Lower: opts.Lower}
	if opts.Emulation != nil && opts.Emulation.Strategy == binfmt.Namespaced {
		params.Emulation = opts.Emulation
		params.BinfmtFlags = binfmtFlags(fullIDs)
	}
	pb, err := json.Marshal(params)
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(runDir, initParamsFile), pb, 0o600); err != nil {
		return fmt.Errorf("write run parameters: %w", err)
	}

	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("find the xrun binary: %w", err)
	}
	args := opts.Args
	useReaper := reaperUsable(exe)
	if useReaper {
		args = append([]string{ReaperPath, "--"}, opts.Args...)
	} else {
		log.Debug("xrun binary is not static: the command runs as PID 1 without a native init", "binary", exe)
	}

	cfg, err := config(runDir, exe, useReaper, uids, gids, opts)
	if err != nil {
		return err
	}
	c, err := libcontainer.Create(filepath.Join(opts.RunRoot, stateDir), id, cfg)
	if err != nil {
		return fmt.Errorf("create container: %w", err)
	}
	defer func() {
		if err := c.Destroy(); err != nil {
			log.Debug("destroy container", "err", err)
		}
	}()

	proc := &libcontainer.Process{
		Args:   args,
		Env:    opts.Env,
		Cwd:    opts.Cwd,
		Stdin:  opts.Stdin,
		Stdout: opts.Stdout,
		Stderr: opts.Stderr,
		Init:   true,
	}
	var tty *ttySession
	if opts.TTY {
		f, ok := opts.Stdin.(*os.File)
		if !ok || !IsTerminal(f) {
			return errors.New("-t needs standard input to be a terminal")
		}
		if tty, err = newTTY(proc, f); err != nil {
			return err
		}
		defer tty.close()
		proc.Stdin, proc.Stdout, proc.Stderr = nil, nil, nil
	}
	// Notify before starting so no signal between start and the forwarding
	// loop falls through to the default action (killing xrun only).
	sigc := make(chan os.Signal, 16)
	signal.Notify(sigc, forwarded...)
	defer signal.Stop(sigc)

	if err := c.Run(proc); err != nil {
		return startError(err, opts.Args[0])
	}
	if tty != nil {
		if err := tty.attach(opts.Stdin, opts.Stdout); err != nil {
			_ = proc.Signal(unix.SIGKILL)
			_, _ = proc.Wait()
			return err
		}
		tty.resize()
	}
	done := make(chan struct{})
	defer close(done)
	go func() {
		for {
			select {
			case s := <-sigc:
				if s == unix.SIGWINCH && tty != nil {
					tty.resize()
					continue
				}
				_ = proc.Signal(s)
			case <-done:
				return
			}
		}
	}()
	st, err := proc.Wait()
	if st == nil {
		return fmt.Errorf("wait for the command: %w", err)
	}
	code := exitCode(st)
	if code != 0 {
		return &ExitError{Code: code}
	}
	return nil
}

// startError turns a libcontainer start failure into the codes a shell uses:
// 127 when the command does not exist, 126 when it cannot be executed.
func startError(err error, cmd string) error {
	msg := err.Error()
	switch {
	case errors.Is(err, exec.ErrNotFound) || strings.Contains(msg, "executable file not found") || strings.Contains(msg, "no such file or directory"):
		return &CommandError{Code: 127, Err: fmt.Errorf("%s: command not found in the image: check the name and the image's PATH", cmd)}
	case strings.Contains(msg, "permission denied") || strings.Contains(msg, "exec format error"):
		return &CommandError{Code: 126, Err: fmt.Errorf("%s: cannot execute: %w", cmd, err)}
	}
	return fmt.Errorf("start container: %w", err)
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

func newID() (string, error) {
	b := make([]byte, 8)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return "xrun-" + hex.EncodeToString(b), nil
}

// capabilities is the set a rootless podman container gets: enough for
// package managers (chown, setuid to _apt, chroot) and nothing that could
// matter outside the user namespace anyway.
var capabilities = []string{
	"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FOWNER", "CAP_FSETID", "CAP_KILL",
	"CAP_NET_BIND_SERVICE", "CAP_SETFCAP", "CAP_SETGID", "CAP_SETPCAP",
	"CAP_SETUID", "CAP_SYS_CHROOT", "CAP_AUDIT_WRITE",
}

// config builds the libcontainer configuration through an OCI runtime spec,
// as runc does for `runc spec --rootless`, so the rootless adjustments
// (sysfs as a read-only rbind, no uid=/gid= mount options, device binds)
// come from specconv itself.
func config(runDir, exe string, useReaper bool, uids, gids []specs.LinuxIDMapping, opts Options) (*configs.Config, error) {
	spec := specconv.Example()
	specconv.ToRootless(spec)
	spec.Root = &specs.Root{Path: filepath.Join(runDir, rootfsDir)}
	spec.Linux.UIDMappings, spec.Linux.GIDMappings = uids, gids
	spec.Hostname = opts.Hostname
	spec.Process.Terminal = false
	spec.Process.Rlimits = nil
	spec.Process.NoNewPrivileges = false
	spec.Process.Capabilities = &specs.LinuxCapabilities{
		Bounding: capabilities, Permitted: capabilities, Effective: capabilities,
	}
	var ns []specs.LinuxNamespace
	for _, n := range spec.Linux.Namespaces {
		// Host network by default; no cgroup namespace (rootless cgroups are
		// not managed at all).
		if n.Type != specs.CgroupNamespace && n.Type != specs.NetworkNamespace {
			ns = append(ns, n)
		}
	}
	spec.Linux.Namespaces = ns
	// Keep the network-related /proc entries readable: with the host
	// network they describe the real interfaces.
	spec.Linux.MaskedPaths = []string{"/proc/kcore", "/proc/keys", "/proc/timer_list", "/sys/firmware"}

	add := func(src, dst string, ro bool) {
		o := []string{"rbind", "nosuid", "nodev"}
		if ro {
			o = append(o, "ro")
		}
		spec.Mounts = append(spec.Mounts, specs.Mount{Source: src, Destination: dst, Type: "bind", Options: o})
	}
	for _, f := range []string{"/etc/resolv.conf", "/etc/hosts"} {
		if _, err := os.Stat(f); err == nil {
			add(f, f, true)
		}
	}
	for _, b := range opts.Binds {
		add(b.Source, b.Destination, b.ReadOnly)
	}
	if useReaper {
		add(exe, ReaperPath, true)
	}
	if p := opts.Emulation; p != nil && p.Strategy == binfmt.HostHandler && p.Emulator != "" && !strings.Contains(p.HostFlags, "F") {
		// A host handler without F opens its interpreter at exec time,
		// by path, inside the container: put it there.
		add(p.Emulator, p.Emulator, true)
	}

	cfg, err := specconv.CreateLibcontainerConfig(&specconv.CreateOpts{
		CgroupName:      filepath.Base(runDir),
		Spec:            spec,
		RootlessEUID:    os.Geteuid() != 0,
		RootlessCgroups: true,
	})
	if err != nil {
		return nil, fmt.Errorf("container config: %w", err)
	}
	// Rootless: no cgroup is created or joined; device access is limited by
	// the user namespace (only bound device nodes exist), not by cgroups.
	cfg.Cgroups.Rootless = true
	cfg.Cgroups.Resources.Devices = nil
	cfg.ParentDeathSignal = int(unix.SIGKILL)
	return cfg, nil
}

// quietLibcontainer routes libcontainer's logrus output to nothing unless
// the logger wants debug output: its warnings (e.g. about OOM counters of
// the cgroups a rootless run does not have) mean nothing to a user.
func quietLibcontainer(log *slog.Logger) {
	if log.Enabled(context.Background(), slog.LevelDebug) {
		logrus.SetLevel(logrus.DebugLevel)
		return
	}
	logrus.SetOutput(io.Discard)
}

// binfmtFlags are the flags of the handler a run registers:
//   - F: the kernel opens the emulator at registration, so it works after
//     pivot_root, where its host path no longer exists.
//   - P: keep the command's argv[0] (qemu learns it from AT_FLAGS);
//     multi-call binaries such as busybox pick their applet from it.
//   - C: compute credentials from the binary, not from qemu, so setuid
//     programs (sudo, su) work; only meaningful when more than one id is
//     mapped.
func binfmtFlags(fullIDs bool) string {
	if fullIDs {
		return "FPC"
	}
	return "FP"
}
