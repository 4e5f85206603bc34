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
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/opencontainers/runc/libcontainer"
	"github.com/opencontainers/runc/libcontainer/configs"
	"github.com/opencontainers/runc/libcontainer/specconv"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/sirupsen/logrus"
	"golang.org/x/sys/unix"

	"github.com/xrun-dev/xrun/pkg/binfmt"
	"github.com/xrun-dev/xrun/pkg/fsutil"
	"github.com/xrun-dev/xrun/pkg/userns"
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
	// Layers are more read-only directories laid over Lower, topmost
	// first (the native toolchain of --accel): the overlay's lowerdir is
	// Layers..., Lower.
	Layers []string
	// Upper and Work, when set, are the overlay's upper and work
	// directories on disk (a named container, see OpenContainer) instead of
	// a tmpfs: what the command writes outlives the run.
	Upper, Work string
	// ReadOnly makes the container's root filesystem read-only (binds,
	// Tmpfs, /dev and /tmp-like mounts given by the user stay writable).
	ReadOnly bool
	// Tmpfs are tmpfs mounts, writable even with ReadOnly.
	Tmpfs []Tmpfs
	// Network is NetworkHost (default: the host's network) or NetworkNone
	// (a new network namespace with only a loopback interface).
	Network string
	// User is who the command runs as (default root, the invoking user on
	// the host). Its ids must exist in the container's id map.
	User *User
	// RunRoot holds per-run directories and libcontainer state. It must be
	// the invoking user's own directory, mode 0700, not a symlink (it is
	// created when missing). Default: DefaultRunRoot() when that is such a
	// directory, else FallbackRunRoot.
	RunRoot string
	// FallbackRunRoot is the run root when the default one is not safe
	// (e.g. /tmp/xrun-<uid> created by another user): a private directory
	// under the cache.
	FallbackRunRoot string
	// Args is the command to run; it must not be empty.
	Args []string
	// Env is the environment of the command (image Env plus overrides).
	Env []string
	// Cwd is the working directory inside the container (default "/").
	Cwd string
	// Binds are host paths bound into the container.
	Binds []Bind
	// CacheDir is xrun's cache. Like RunRoot, a container never gets it
	// writable: where a bind holds it, an empty read-only tmpfs hides it,
	// and a writable bind of a path inside it is refused (see protect.go).
	CacheDir string
	// Emulation, when set, registers a qemu handler inside the container's
	// user namespace before pivot_root (Strategy binfmt.Namespaced), or
	// binds a host handler's interpreter (binfmt.HostHandler).
	Emulation *binfmt.Plan
	// TTY gives the command a pseudo-terminal; Stdin must then be a
	// terminal (*os.File), and Stdout receives everything the pty prints.
	TTY bool
	// Interactive (-i) passes a terminal on Stdin to the command, through
	// xrun (see stdio.go); without it, and without TTY, the command reads
	// /dev/null when Stdin is a terminal. Pipes and files always pass.
	Interactive bool
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

// Tmpfs is a tmpfs mounted in the container.
type Tmpfs struct {
	Destination string
	// Options are mount options (e.g. "size=64m", "mode=755", "noexec");
	// nosuid, nodev and mode=1777 are the defaults.
	Options []string
}

// Network modes.
const (
	NetworkHost = "host"
	NetworkNone = "none"
)

func (o *Options) fill() error {
	if len(o.Args) == 0 {
		return errors.New("[internal error] sandbox: no command")
	}
	if o.Lower == "" {
		return errors.New("[internal error] sandbox: no rootfs")
	}
	if o.Cwd == "" {
		o.Cwd = "/"
	}
	switch o.Network {
	case "":
		o.Network = NetworkHost
	case NetworkHost, NetworkNone:
	default:
		return fmt.Errorf("unknown network mode %q: use host or none", o.Network)
	}
	if (o.Upper == "") != (o.Work == "") {
		return errors.New("[internal error] sandbox: upper without work dir")
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
// $TMPDIR/xrun-<uid>. Being predictable, it may have been created by
// someone else: Run uses it only after checking it (see ensureRunRoot).
func DefaultRunRoot() string {
	if d := os.Getenv("XDG_RUNTIME_DIR"); d != "" {
		return filepath.Join(d, "xrun")
	}
	return filepath.Join(os.TempDir(), fmt.Sprintf("xrun-%d", os.Getuid()))
}

// initParams is what the parent hands to the re-executed `xrun init` (which
// gets no environment and no arguments from libcontainer): it reads them from
// the run directory, the parent of its working directory (libcontainer starts
// init in Config.Rootfs).
type initParams struct {
	Lower  string   `json:"lower"`
	Layers []string `json:"layers,omitempty"` // over Lower, topmost first
	Upper  string   `json:"upper,omitempty"`  // "" = on a tmpfs
	Work   string   `json:"work,omitempty"`
	// DiskScratch is where the upper layer goes when a tmpfs cannot hold
	// it: before Linux 6.6 tmpfs has no user.* xattrs, which rootless
	// overlayfs needs to record renamed and removed directories (dpkg
	// fails with EXDEV without them). The parent removes it after the run.
	DiskScratch string `json:"disk_scratch,omitempty"`
	// AptNoSandbox writes an apt configuration that keeps apt from
	// switching to _apt, which does not exist with a single-id map.
	AptNoSandbox bool         `json:"apt_no_sandbox,omitempty"`
	Emulation    *binfmt.Plan `json:"emulation,omitempty"`
	BinfmtFlags  string       `json:"binfmt_flags,omitempty"`
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

	// Refuse a user the id map cannot hold before anything is created.
	uids, gids, fullIDs := userns.IDMappings(log)
	if err := checkUser(opts.User, uids, gids); err != nil {
		return err
	}
	id, runDir, lock, err := newRunDir(&opts, log)
	if err != nil {
		return err
	}
	// Unlock only once the directory is gone (see collectStale).
	defer lock.Unlock()
	defer os.RemoveAll(runDir)
	scratch := ""
	if opts.Upper == "" && opts.CacheDir != "" && !tmpfsUserXattrs() {
		collectStaleScratch(opts.CacheDir, log)
		scratch = diskScratch(opts.CacheDir, runDir)
		slock, err := makeDiskScratch(scratch)
		if err != nil {
			return err
		}
		defer removeDiskScratch(scratch, slock, log)
	}
	if err := writeInitParams(runDir, opts, scratch, fullIDs, log); err != nil {
		return err
	}

	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("find the xrun binary: %w", err)
	}
	useReaper := reaperUsable(exe)
	if p := opts.Emulation; p != nil && p.Strategy == binfmt.Intercept && !useReaper {
		return fmt.Errorf("exec interception needs xrun's native init, and %s is not a static binary: use a release build (make build)", exe)
	}
	cfg, err := config(runDir, exe, useReaper, uids, gids, opts)
	if err != nil {
		return err
	}
	c, err := libcontainer.Create(filepath.Join(runDir, stateDir), id, cfg)
	if err != nil {
		return fmt.Errorf("create container: %w", err)
	}
	defer func() {
		if err := c.Destroy(); err != nil {
			log.Debug("destroy container", "err", err)
		}
	}()

	proc := newProcess(opts, exe, useReaper, log)
	cio, err := connectIO(proc, opts, log)
	if err != nil {
		return err
	}
	defer cio.close()
	// Notify before starting so no signal between start and the forwarding
	// loop falls through to the default action (killing xrun only).
	sigc := make(chan os.Signal, 16)
	signal.Notify(sigc, forwarded...)
	defer signal.Stop(sigc)
	return runProcess(c, proc, cio, sigc, runDir, opts, log)
}

// newRunDir finds the run root, collects what killed runs left there, and
// creates this run's directory, locked, with its mount points.
func newRunDir(opts *Options, log *slog.Logger) (id, runDir string, lock *fsutil.Lock, err error) {
	runRoot, err := resolveRunRoot(opts.RunRoot, opts.FallbackRunRoot, log)
	if err != nil {
		return "", "", nil, err
	}
	// From here on RunRoot is the directory in use: the one the container
	// must never see writable (protectMounts).
	opts.RunRoot = runRoot
	collectStale(runRoot, log)
	id, runDir, lock, err = createRunDir(runRoot)
	if err != nil {
		return "", "", nil, err
	}
	for _, d := range []string{rootfsDir, scratchDir} {
		if err := os.Mkdir(filepath.Join(runDir, d), 0o700); err != nil {
			os.RemoveAll(runDir)
			lock.Unlock()
			return "", "", nil, fmt.Errorf("create run directory: %w", err)
		}
	}
	return id, runDir, lock, nil
}

// writeInitParams writes what the re-executed init needs (see Init) into
// the run directory.
func writeInitParams(runDir string, opts Options, scratch string, fullIDs bool, log *slog.Logger) error {
	params := initParams{Lower: opts.Lower, Layers: opts.Layers, Upper: opts.Upper, Work: opts.Work, DiskScratch: scratch}
	if !fullIDs && (hasAptConfig(opts.Lower) || opts.Upper != "" && hasAptConfig(opts.Upper)) {
		// apt drops privileges to _apt for downloads, which fails when only
		// root is mapped (setgroups is denied): tell it not to.
		params.AptNoSandbox = true
		log.Info("only one id is mapped (no subordinate id range): apt is told to download as root (" + aptConfPath +
			"); with a range in /etc/subuid and /etc/subgid, apt's _apt sandbox, useradd and chown work too")
	}
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
	return nil
}

// newProcess is the container's process: the command under the native
// reaper when the binary can serve as one, else the command itself.
func newProcess(opts Options, exe string, useReaper bool, log *slog.Logger) *libcontainer.Process {
	args := opts.Args
	if useReaper {
		args = reaperArgs(opts.User, opts.Args)
		if p := opts.Emulation; p != nil && p.Strategy == binfmt.Intercept {
			args = append([]string{args[0], "-x", interceptSpec(p)}, args[1:]...)
		}
	} else {
		log.Debug("xrun binary is not static: the command runs as PID 1 without a native init", "binary", exe)
	}
	proc := &libcontainer.Process{
		Args:   args,
		Env:    opts.Env,
		Cwd:    opts.Cwd,
		Stdin:  opts.Stdin,
		Stdout: opts.Stdout,
		Stderr: opts.Stderr,
		Init:   true,
	}
	if u := opts.User; u != nil && !useReaper {
		// Without the reaper, libcontainer switches to the user itself (but
		// leaves the supplementary groups alone: it never calls setgroups
		// in a rootless container).
		proc.UID, proc.GID = int(u.UID), int(u.GID)
		for _, g := range u.AdditionalGIDs {
			proc.AdditionalGroups = append(proc.AdditionalGroups, int(g))
		}
	}
	return proc
}

// containerIO is how the process's standard streams are connected: relayed
// pipes (stdio), or a terminal (tty, with -t).
type containerIO struct {
	stdio *stdioRelay
	tty   *ttySession
}

// connectIO connects proc's standard streams as opts asks.
func connectIO(proc *libcontainer.Process, opts Options, log *slog.Logger) (*containerIO, error) {
	if !opts.TTY {
		// No terminal fd ever enters the container (see stdio.go).
		stdio, err := setupStdio(proc, opts, log)
		if err != nil {
			return nil, fmt.Errorf("set up standard input and output: %w", err)
		}
		return &containerIO{stdio: stdio}, nil
	}
	f, ok := opts.Stdin.(*os.File)
	if !ok || !IsTerminal(f) {
		return nil, errors.New("-t needs standard input to be a terminal")
	}
	tty, err := newTTY(proc, f)
	if err != nil {
		return nil, err
	}
	proc.Stdin, proc.Stdout, proc.Stderr = nil, nil, nil
	return &containerIO{tty: tty}, nil
}

func (cio *containerIO) close() {
	if cio.tty != nil {
		cio.tty.close()
	}
}

// runProcess starts proc in c, forwards the signals of sigc to it while it
// runs, and returns its exit status as an error (nil for 0).
func runProcess(c *libcontainer.Container, proc *libcontainer.Process, cio *containerIO, sigc chan os.Signal, runDir string, opts Options, log *slog.Logger) error {
	t0 := time.Now()
	if err := c.Run(proc); err != nil {
		if cio.stdio != nil {
			cio.stdio.abort()
		}
		if msg, rerr := os.ReadFile(filepath.Join(runDir, initErrorFile)); rerr == nil {
			return fmt.Errorf("prepare container: %s", msg)
		}
		return startError(err, proc.Args[0], opts.Args[0])
	}
	if cio.stdio != nil {
		cio.stdio.started()
	}
	log.Info("set up", "took", time.Since(t0).Round(time.Millisecond))
	t0 = time.Now()
	if tty := cio.tty; tty != nil {
		if err := tty.attach(opts.Stdin, opts.Stdout); err != nil {
			_ = proc.Signal(unix.SIGKILL)
			_, _ = proc.Wait()
			return err
		}
		tty.resize()
	}
	done := make(chan struct{})
	defer close(done)
	go forwardSignals(sigc, done, proc, cio.tty)
	st, err := proc.Wait()
	if cio.stdio != nil {
		cio.stdio.finish()
	}
	if st == nil {
		return fmt.Errorf("wait for the command: %w", err)
	}
	code := exitCode(st)
	log.Info("ran", "status", code, "took", time.Since(t0).Round(time.Millisecond))
	if code != 0 {
		return &ExitError{Code: code}
	}
	return nil
}

// forwardSignals sends what arrives on sigc to proc until done; a
// terminal's SIGWINCH resizes the container's terminal instead.
func forwardSignals(sigc chan os.Signal, done chan struct{}, proc *libcontainer.Process, tty *ttySession) {
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
	spec.Root = &specs.Root{Path: filepath.Join(runDir, rootfsDir), Readonly: opts.ReadOnly}
	spec.Linux.UIDMappings, spec.Linux.GIDMappings = uids, gids
	spec.Hostname = opts.Hostname
	spec.Process.Terminal = false
	spec.Process.Rlimits = nil
	spec.Process.NoNewPrivileges = false
	caps := capabilities
	if p := opts.Emulation; p != nil && p.Strategy == binfmt.Intercept {
		// The init reads the traced processes' memory and /proc entries,
		// whatever user they run as; the command does not get it
		// (intercept.c drops it before the exec).
		caps = append(slices.Clone(caps), "CAP_SYS_PTRACE")
	}
	spec.Process.Capabilities = &specs.LinuxCapabilities{
		Bounding: caps, Permitted: caps, Effective: caps,
	}
	spec.Linux.Namespaces = namespaces(spec.Linux.Namespaces, opts.Network)
	restrictSys(spec)
	addMounts(spec, exe, useReaper, opts)

	// Last, so that they cover what the binds above exposed.
	masks, err := protectMounts(opts.Binds, []protected{{opts.CacheDir, "xrun's cache"}, {opts.RunRoot, "xrun's run directory"}})
	if err != nil {
		return nil, err
	}
	spec.Mounts = append(spec.Mounts, masks...)

	cfg, err := specconv.CreateLibcontainerConfig(&specconv.CreateOpts{
		CgroupName:      filepath.Base(runDir),
		Spec:            spec,
		RootlessEUID:    !userns.RealRoot(),
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

// namespaces are the container's namespaces: the spec's, without the
// cgroup namespace and with the host network unless network is none.
func namespaces(specNS []specs.LinuxNamespace, network string) []specs.LinuxNamespace {
	var ns []specs.LinuxNamespace
	for _, n := range specNS {
		// Host network by default; no cgroup namespace (rootless cgroups are
		// not managed at all).
		if n.Type != specs.CgroupNamespace && n.Type != specs.NetworkNamespace {
			ns = append(ns, n)
		}
	}
	if network == NetworkNone {
		// A new network namespace: libcontainer brings up its loopback
		// interface, and nothing else exists.
		ns = append(ns, specs.LinuxNamespace{Type: specs.NetworkNamespace})
	}
	return ns
}

// restrictSys masks and drops what of /proc and /sys a container does not
// need, and makes /sys read-only recursively.
func restrictSys(spec *specs.Spec) {
	// Keep the network-related /proc entries readable: with the host
	// network they describe the real interfaces.
	spec.Linux.MaskedPaths = []string{"/proc/kcore", "/proc/keys", "/proc/timer_list", "/sys/firmware"}
	// No /sys/fs/cgroup of its own: /sys is already bound read-only and
	// recursively, and on a cgroup v1 host the separate cgroup mount costs
	// a bind and a remount per controller on every start.
	spec.Mounts = slices.DeleteFunc(spec.Mounts, func(m specs.Mount) bool { return m.Destination == "/sys/fs/cgroup" })
	for i, m := range spec.Mounts {
		if m.Destination == "/sys" {
			// ToRootless binds the host's /sys with "ro", which leaves its
			// submounts (cgroup hierarchies, tracing, bpf...) writable:
			// "rro" makes every one of them read-only (mount_setattr
			// with AT_RECURSIVE).
			spec.Mounts[i].Options = append(slices.Clone(m.Options), "rro")
		}
	}
}

// addMounts adds the run's binds and tmpfs mounts to spec: the host's
// resolv.conf and hosts, opts' binds and tmpfs, the reaper, and a host
// handler's interpreter.
func addMounts(spec *specs.Spec, exe string, useReaper bool, opts Options) {
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
	for _, t := range opts.Tmpfs {
		o := []string{"nosuid", "nodev"}
		if !slices.ContainsFunc(t.Options, func(s string) bool { return strings.HasPrefix(s, "mode=") }) {
			o = append(o, "mode=1777")
		}
		spec.Mounts = append(spec.Mounts, specs.Mount{Source: "tmpfs", Destination: t.Destination, Type: "tmpfs", Options: append(o, t.Options...)})
	}
	if useReaper {
		add(exe, ReaperPath, true)
	}
	if p := opts.Emulation; p != nil && p.Strategy == binfmt.Intercept && useReaper {
		add(p.Emulator, interceptQemuPath(p), true)
	}
	if p := opts.Emulation; p != nil && p.Strategy == binfmt.HostHandler && p.Emulator != "" && !strings.Contains(p.HostFlags, "F") {
		// A host handler without F opens its interpreter at exec time,
		// by path, inside the container: put it there.
		add(p.Emulator, p.Emulator, true)
	}
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
