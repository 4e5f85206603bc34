package binfmt

import (
	"bufio"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Strategy says how binaries of an architecture run.
type Strategy string

const (
	// Native: the host CPU runs them; nothing to set up.
	Native Strategy = "native"
	// Namespaced: register Plan.Emulator in a binfmt_misc instance of the
	// container's own user namespace (MountAndRegister).
	Namespaced Strategy = "namespaced"
	// HostHandler: a handler registered in the host's binfmt_misc runs them.
	HostHandler Strategy = "host-handler"
	// Intercept: no binfmt_misc at all; the container's native init traces
	// the command's execs and runs foreign programs under Plan.Emulator
	// (pkg/sandbox's intercept.c). Any kernel with user namespaces.
	Intercept Strategy = "intercept"
)

// Sentinel errors of Decide, for errors.Is. The errors Decide returns carry
// a one-line message with the fix; these only classify them.
var (
	// ErrNoEmulator: no qemu for the arch was found (or the one named is unusable).
	ErrNoEmulator = errors.New("no emulator")
	// ErrKernelTooOld: the kernel cannot register handlers in a user
	// namespace and the host has no usable handler.
	ErrKernelTooOld = errors.New("kernel too old for binfmt_misc in a user namespace")
	// ErrDynamicEmulator: the only emulator found is dynamically linked.
	ErrDynamicEmulator = errors.New("emulator is dynamically linked")
	// ErrNoHostHandler: Options.Force is HostHandler and the host has no
	// usable handler for the arch.
	ErrNoHostHandler = errors.New("no usable host handler")
	// ErrNotNative: Options.Force is Native and the host cannot run the arch.
	ErrNotNative = errors.New("not runnable natively")
)

// Strategies lists the strategies in the order Decide tries them.
var Strategies = []Strategy{Native, Namespaced, HostHandler, Intercept}

// ParseStrategy checks a strategy name (as given in XRUN_BINFMT_STRATEGY);
// "" and "auto" mean no forced strategy.
func ParseStrategy(s string) (Strategy, error) {
	switch s {
	case "", "auto":
		return "", nil
	}
	if slices.Contains(Strategies, Strategy(s)) {
		return Strategy(s), nil
	}
	return "", fmt.Errorf("unknown emulation strategy %q: use auto, native, namespaced or host-handler", s)
}

// planError is a one-line message for the user that unwraps to a sentinel.
type planError struct {
	kind error
	msg  string
}

func (e *planError) Error() string { return e.msg }
func (e *planError) Unwrap() error { return e.kind }

// EnvQemuPath names a public environment variable: a static emulator file,
// or a directory holding qemu-NAME-static files.
const EnvQemuPath = "XRUN_QEMU_PATH"

// Options tune Decide. The zero value is ready to use.
type Options struct {
	// Emulator is the --emulator PATH override (a file, or a directory
	// holding qemu-NAME-static): used as is, and an error if unusable. Then
	// $XRUN_QEMU_PATH (likewise), then qemu-NAME-static and qemu-NAME on
	// $PATH, then /usr/libexec/qemu-binfmt/NAME-binfmt-P (Debian's links to
	// the static builds), then /usr/bin and /usr/local/bin, then
	// InstalledDir.
	Emulator string
	// InstalledDir holds the emulators `xrun emulator install` put in the
	// cache (<cache>/emulators/<host GOARCH>/qemu-NAME-static); searched
	// last, so a system-wide qemu-user-static wins. "" searches nothing.
	InstalledDir string
	// SystemDirs, when not nil, replaces the fixed system directories
	// (/usr/libexec/qemu-binfmt, /usr/bin, /usr/local/bin): each is searched
	// for qemu-NAME-static, qemu-NAME and NAME-binfmt-P. An empty non-nil
	// slice searches none (tests use it to hide the host's qemu).
	SystemDirs []string
	// Force, when set, makes Decide use that strategy or fail saying why it
	// cannot (ErrNotNative, ErrNoEmulator, ErrKernelTooOld,
	// ErrNoHostHandler); the strategies before it are skipped. It exists
	// for tests and troubleshooting (XRUN_BINFMT_STRATEGY).
	Force Strategy
	// HostGOARCH defaults to runtime.GOARCH (set for tests).
	HostGOARCH string
	// BinfmtDir is the host's binfmt_misc, default /proc/sys/fs/binfmt_misc.
	BinfmtDir string
	// KernelRelease defaults to uname -r; namespaced binfmt needs >= 6.7.
	KernelRelease string
	// Logger defaults to discarding.
	Logger *slog.Logger
	// ProbeDir is where the answers of the native-support probes (does
	// this kernel run 32-bit x86 programs?) are remembered for the current
	// boot, one small file each; "" probes every time.
	ProbeDir string

	// Seams for tests: getenv defaults to os.Getenv; systemDirs (nil: the
	// defaults above) replaces the fixed directories searched after $PATH;
	// compatProbe replaces the probe of native support.
	getenv     func(string) string
	systemDirs *systemDirs
	// compatProbe, when set, answers nativeSupport's probe of this
	// machine (tests inject both answers).
	compatProbe func(a *Arch) (bool, string)
}

type systemDirs struct {
	libexec string   // holds NAME-binfmt-P
	bins    []string // hold qemu-NAME-static, qemu-NAME
	// libexecToo: also look for NAME-binfmt-P in each of bins (SystemDirs).
	libexecToo bool
}

var defaultSystemDirs = systemDirs{
	libexec: "/usr/libexec/qemu-binfmt",
	bins:    []string{"/usr/bin", "/usr/local/bin"},
}

func (o *Options) fill() error {
	if o.HostGOARCH == "" {
		o.HostGOARCH = runtime.GOARCH
	}
	if o.BinfmtDir == "" {
		o.BinfmtDir = "/proc/sys/fs/binfmt_misc"
	}
	if o.KernelRelease == "" {
		var u unix.Utsname
		if err := unix.Uname(&u); err != nil {
			return fmt.Errorf("uname: %w", err)
		}
		o.KernelRelease = unix.ByteSliceToString(u.Release[:])
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.getenv == nil {
		o.getenv = os.Getenv
	}
	if o.systemDirs == nil {
		o.systemDirs = &defaultSystemDirs
		if o.SystemDirs != nil {
			o.systemDirs = &systemDirs{bins: o.SystemDirs, libexec: "", libexecToo: true}
		}
	}
	if _, err := ParseStrategy(string(o.Force)); err != nil {
		return err
	}
	return nil
}

// Plan is Decide's answer.
type Plan struct {
	Strategy Strategy
	Arch     *Arch
	// Emulator is, for Namespaced, the host path of the static qemu to
	// register; for HostHandler, the handler's interpreter (without the F
	// flag the caller must bind it into the rootfs at this same path).
	Emulator string
	// HostFlags are the host handler's flags ("F", "OCF", ...), HostHandler only.
	HostFlags string
	// NotNative says, for an arch that this host's CPU family can run
	// natively (Arch.NativeOn), why this machine does not, e.g. "this
	// kernel refuses 32-bit x86 programs ...": the reason it is emulated.
	NotNative string `json:",omitempty"`
}

// Decide picks how binaries for goarch/variant run, in this order:
//   - Native if the host runs them;
//   - Namespaced if the kernel is 6.7+ and a static emulator is found;
//   - HostHandler if BinfmtDir has an enabled handler whose magic matches
//     the arch and whose interpreter can work inside a foreign rootfs;
//   - else an error whose message says how to fix it, which errors.Is one of
//     ErrUnknownArch, ErrNoEmulator, ErrKernelTooOld, ErrDynamicEmulator.
func Decide(goarch, variant string, opts Options) (*Plan, error) {
	if err := opts.fill(); err != nil {
		return nil, err
	}
	log := opts.Logger.With("arch", goarch)
	a, err := Lookup(goarch)
	if err != nil {
		if goarch == opts.HostGOARCH {
			// Not in the table but the host's own: nothing to emulate.
			return &Plan{Strategy: Native, Arch: &Arch{Name: goarch, GOARCH: goarch}}, nil
		}
		return nil, err
	}
	if !a.supportsVariant(variant) {
		return nil, &planError{kind: ErrUnknownArch, msg: fmt.Sprintf(
			"no emulation known for linux/%s/%s; supported variants: %s",
			goarch, variant, strings.Join(a.Variants, ", "))}
	}
	force := opts.Force
	var notNative string // why a host of a NativeOn arch cannot run a's binaries
	if force == "" || force == Native {
		native, why := nativeSupport(a, &opts)
		if native {
			log.Debug("binfmt: native", "host", opts.HostGOARCH, "why", why)
			return &Plan{Strategy: Native, Arch: a}, nil
		}
		if slices.Contains(a.NativeOn, opts.HostGOARCH) {
			notNative = why
			log.Debug("binfmt: not native", "host", opts.HostGOARCH, "why", why)
		}
		if force == Native {
			if notNative != "" {
				return nil, &planError{kind: ErrNotNative, msg: fmt.Sprintf(
					"strategy native was forced (XRUN_BINFMT_STRATEGY) but %s: unset it", notNative)}
			}
			return nil, &planError{kind: ErrNotNative, msg: fmt.Sprintf(
				"strategy native was forced (XRUN_BINFMT_STRATEGY) but a linux/%s host cannot run linux/%s binaries: unset it",
				opts.HostGOARCH, goarch)}
		}
	}
	plan, err := decideEmulated(a, force, opts, log)
	if err != nil && notNative != "" {
		var pe *planError
		if errors.As(err, &pe) {
			// Say why the host's own CPU does not run them: the user
			// expects it to (386 on amd64, arm on arm64).
			err = &planError{kind: pe.kind, msg: pe.msg + " (" + notNative + ")"}
		}
	}
	if plan != nil {
		plan.NotNative = notNative
	}
	return plan, err
}

// decideEmulated is Decide's choice among the emulated strategies.
func decideEmulated(a *Arch, force Strategy, opts Options, log *slog.Logger) (*Plan, error) {
	// Namespaced registration first: it needs nothing from the host but a
	// static qemu, and does not depend on how (or whether) the host's
	// handlers are set up.
	var emuErr error // why the namespaced way is out, for the final error
	kernelOK := kernelAtLeast(opts.KernelRelease, 6, 7)
	if force == "" || force == Namespaced {
		if kernelOK {
			emu, err := findEmulator(a, &opts, log)
			if err == nil {
				log.Debug("binfmt: namespaced", "emulator", emu.Path, "from", emu.Source)
				return &Plan{Strategy: Namespaced, Arch: a, Emulator: emu.Path}, nil
			}
			if force == Namespaced || opts.Emulator != "" || opts.getenv(EnvQemuPath) != "" {
				// An emulator the user named is unusable: say so rather than
				// silently taking another way.
				return nil, err
			}
			emuErr = err
			log.Debug("binfmt: no usable emulator", "err", err)
		} else if force == Namespaced {
			return nil, &planError{kind: ErrKernelTooOld, msg: fmt.Sprintf(
				"strategy namespaced was forced (XRUN_BINFMT_STRATEGY) but kernel %s cannot register binfmt handlers in a user namespace (needs Linux 6.7+): unset it or upgrade the kernel",
				shortRelease(opts.KernelRelease))}
		} else if opts.Emulator != "" {
			log.Warn("binfmt: kernel too old to register the emulator in a user namespace; ignoring it",
				"kernel", opts.KernelRelease, "emulator", opts.Emulator)
		}
	}

	if force == Intercept {
		if !InterceptHost(opts.HostGOARCH) {
			return nil, &planError{kind: ErrNoHostHandler, msg: fmt.Sprintf(
				"strategy intercept was forced (XRUN_BINFMT_STRATEGY) but exec interception is available on amd64 and arm64 hosts only, not %s: unset it",
				opts.HostGOARCH)}
		}
		emu, err := findEmulator(a, &opts, log)
		if err != nil {
			return nil, err
		}
		log.Debug("binfmt: intercept (forced)", "emulator", emu.Path, "from", emu.Source)
		return &Plan{Strategy: Intercept, Arch: a, Emulator: emu.Path}, nil
	}
	h, unusable := findHostHandler(a, opts.BinfmtDir, log)
	if h != nil && force != Intercept {
		log.Debug("binfmt: host handler", "name", h.name, "interpreter", h.interp, "flags", h.flags)
		return &Plan{Strategy: HostHandler, Arch: a, Emulator: h.interp, HostFlags: h.flags}, nil
	}
	what := fmt.Sprintf("no host handler for %s is registered", a.Name)
	if unusable != "" {
		what = fmt.Sprintf("no usable host handler for %s is registered (%s)", a.Name, unusable)
	}
	if force == HostHandler {
		return nil, &planError{kind: ErrNoHostHandler, msg: fmt.Sprintf(
			"strategy host-handler was forced (XRUN_BINFMT_STRATEGY) but %s in %s: unset it, or register one as root (e.g. update-binfmts --enable qemu-%s)",
			what, opts.BinfmtDir, a.Name)}
	}
	if kernelOK {
		return nil, emuErr
	}
	// An old kernel and no host handler: intercept the execs.
	if !InterceptHost(opts.HostGOARCH) {
		return nil, &planError{kind: ErrKernelTooOld, msg: fmt.Sprintf(
			"kernel %s cannot register binfmt handlers in a user namespace (needs Linux 6.7+) and %s: "+
				"ask an admin to register qemu-user-static with the F flag (e.g. update-binfmts --enable qemu-%s) or upgrade the kernel",
			shortRelease(opts.KernelRelease), what, a.Name)}
	}
	if emu, err := findEmulator(a, &opts, log); err == nil {
		log.Debug("binfmt: intercept", "emulator", emu.Path, "from", emu.Source, "why", "kernel "+shortRelease(opts.KernelRelease)+" has no binfmt_misc per user namespace and "+what)
		return &Plan{Strategy: Intercept, Arch: a, Emulator: emu.Path}, nil
	} else if opts.Emulator != "" || opts.getenv(EnvQemuPath) != "" {
		return nil, err
	}
	return nil, &planError{kind: ErrKernelTooOld, msg: fmt.Sprintf(
		"kernel %s cannot register binfmt handlers in a user namespace (needs Linux 6.7+) and %s: "+
			"ask an admin to register qemu-user-static with the F flag (e.g. update-binfmts --enable qemu-%s) or upgrade the kernel (with a static qemu-user, xrun would intercept the execs instead)",
		shortRelease(opts.KernelRelease), what, a.Name)}
}

// InterceptHost says whether exec interception works on host architecture
// goarch: the init's tracer knows the registers of amd64 and arm64 only
// (pkg/sandbox/intercept.c).
func InterceptHost(goarch string) bool { return goarch == "amd64" || goarch == "arm64" }

// kernelAtLeast compares the major.minor of a release such as
// "6.18.44-fc-v595". An unparsable release counts as too old.
func kernelAtLeast(release string, major, minor int) bool {
	gotMajor, gotMinor, ok := ParseRelease(release)
	if !ok {
		return false
	}
	return gotMajor > major || (gotMajor == major && gotMinor >= minor)
}

// ParseRelease returns major.minor of a kernel release such as "6.18.44-x".
func ParseRelease(release string) (major, minor int, ok bool) {
	majS, rest, found := strings.Cut(release, ".")
	if !found {
		return 0, 0, false
	}
	end := strings.IndexFunc(rest, func(r rune) bool { return r < '0' || r > '9' })
	if end < 0 {
		end = len(rest)
	}
	major, err1 := strconv.Atoi(majS)
	minor, err2 := strconv.Atoi(rest[:end])
	if err1 != nil || err2 != nil {
		return 0, 0, false
	}
	return major, minor, true
}

// shortRelease is "6.1" for "6.1.0-28-amd64", for messages.
func shortRelease(release string) string {
	if major, minor, ok := ParseRelease(release); ok {
		return fmt.Sprintf("%d.%d", major, minor)
	}
	return strconv.Quote(release)
}

// Where an emulator was found (Emulator.Source).
const (
	FromFlag      = "--emulator"
	FromEnv       = EnvQemuPath
	FromPATH      = "PATH"
	FromSystem    = "system"
	FromInstalled = "installed" // by xrun emulator install, in the cache
)

// Emulator is a static qemu-user binary found for an arch.
type Emulator struct {
	Path   string // absolute
	Source string // FromFlag, FromEnv, FromPATH, FromSystem or FromInstalled
}

// FindEmulator returns the static emulator Decide would register for goarch
// in the namespaced strategy, searching in the order documented on
// Options.Emulator. Its errors are Decide's (ErrUnknownArch, ErrNoEmulator,
// ErrDynamicEmulator).
func FindEmulator(goarch string, opts Options) (*Emulator, error) {
	if err := opts.fill(); err != nil {
		return nil, err
	}
	a, err := Lookup(goarch)
	if err != nil {
		return nil, err
	}
	return findEmulator(a, &opts, opts.Logger.With("arch", goarch))
}

// NoEmulatorHint is the fix named by the ErrNoEmulator error of an arch.
const NoEmulatorHint = "install qemu-user-static (Debian/Ubuntu: apt-get install qemu-user-static; " +
	"Fedora: dnf install qemu-user-static), run xrun emulator install, or pass --emulator PATH"

// findEmulator returns the first static emulator for a in the order
// documented on Options.Emulator. Dynamic candidates are skipped (they look
// for their own loader inside the guest rootfs and fail there); if only
// dynamic ones exist the error says so.
func findEmulator(a *Arch, opts *Options, log *slog.Logger) (*Emulator, error) {
	// Named by the user: must work.
	named, source := opts.Emulator, FromFlag
	if named == "" {
		named, source = opts.getenv(EnvQemuPath), FromEnv
	}
	if named != "" {
		return namedEmulator(a, named, source)
	}
	firstDynamic := ""
	for _, c := range emulatorCandidates(a, opts, log) {
		if checkExecutable(c.path) != nil {
			continue
		}
		ok, err := IsStatic(c.path)
		if err != nil {
			log.Debug("binfmt: skip emulator candidate", "path", c.path, "err", err)
			continue
		}
		if !ok {
			log.Debug("binfmt: skip dynamic emulator", "path", c.path)
			if firstDynamic == "" {
				firstDynamic = c.path
			}
			continue
		}
		abs, err := filepath.Abs(c.path)
		return &Emulator{Path: abs, Source: c.source}, err
	}
	if firstDynamic != "" {
		return nil, dynamicError(firstDynamic)
	}
	return nil, &planError{kind: ErrNoEmulator, msg: fmt.Sprintf("no emulator for linux/%s: %s", a.GOARCH, NoEmulatorHint)}
}

// namedEmulator checks the emulator the user named (a file, or a
// directory holding qemu-NAME-static): it must exist and be static.
func namedEmulator(a *Arch, named, source string) (*Emulator, error) {
	if fi, err := os.Stat(named); err == nil && fi.IsDir() {
		named = filepath.Join(named, "qemu-"+a.Name+"-static")
	}
	if err := checkExecutable(named); err != nil {
		return nil, &planError{kind: ErrNoEmulator, msg: fmt.Sprintf("emulator for linux/%s: %v", a.GOARCH, err)}
	}
	ok, err := IsStatic(named)
	if err != nil {
		return nil, &planError{kind: ErrNoEmulator, msg: fmt.Sprintf("emulator for linux/%s: %v", a.GOARCH, err)}
	}
	if !ok {
		return nil, dynamicError(named)
	}
	abs, err := filepath.Abs(named)
	return &Emulator{Path: abs, Source: source}, err
}

// emulatorCandidate is a path where an emulator may be, and where the
// path came from (FromPATH, FromSystem, FromInstalled).
type emulatorCandidate struct{ path, source string }

// emulatorCandidates are the paths searched for a's emulator, in the order
// documented on Options.Emulator.
func emulatorCandidates(a *Arch, opts *Options, log *slog.Logger) []emulatorCandidate {
	static := "qemu-" + a.Name + "-static"
	plain := "qemu-" + a.Name
	var cands []emulatorCandidate
	// Only absolute PATH entries: an empty one means the current
	// directory, and a relative one a directory below it, where anyone who
	// can write the project directory (or a cloned repository) could put a
	// qemu-ARCH-static that doctor would run on the host and every run would
	// register. Go's exec.LookPath refuses them too (exec.ErrDot).
	var pathDirs []string
	for _, d := range filepath.SplitList(opts.getenv("PATH")) {
		if !filepath.IsAbs(d) {
			log.Debug("binfmt: PATH entry is not absolute: not searched for emulators", "entry", d)
			continue
		}
		pathDirs = append(pathDirs, d)
	}
	for _, name := range []string{static, plain} {
		for _, d := range pathDirs {
			cands = append(cands, emulatorCandidate{filepath.Join(d, name), FromPATH})
		}
	}
	sd := opts.systemDirs
	if sd.libexec != "" {
		cands = append(cands, emulatorCandidate{filepath.Join(sd.libexec, a.Name+"-binfmt-P"), FromSystem})
	}
	for _, d := range sd.bins {
		cands = append(cands, emulatorCandidate{filepath.Join(d, static), FromSystem}, emulatorCandidate{filepath.Join(d, plain), FromSystem})
		if sd.libexecToo {
			cands = append(cands, emulatorCandidate{filepath.Join(d, a.Name+"-binfmt-P"), FromSystem})
		}
	}
	if opts.InstalledDir != "" {
		cands = append(cands, emulatorCandidate{filepath.Join(opts.InstalledDir, static), FromInstalled})
	}
	return cands
}

func dynamicError(path string) error {
	return &planError{kind: ErrDynamicEmulator, msg: fmt.Sprintf(
		"emulator %s is dynamically linked and cannot load inside the image: install qemu-user-static, run xrun emulator install, or pass a static --emulator", path)}
}

// checkExecutable reports why path is not an executable regular file.
func checkExecutable(path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return err
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("%s is not a regular file", path)
	}
	if fi.Mode().Perm()&0o111 == 0 {
		return fmt.Errorf("%s is not executable", path)
	}
	return nil
}

// hostHandler is one entry of a binfmt_misc directory, as the kernel shows
// it (fs/binfmt_misc.c entry_status):
//
//	enabled
//	interpreter /usr/bin/qemu-aarch64-static
//	flags: F
//	offset 0
//	magic 7f454c46...
//	mask ffffff...
type hostHandler struct {
	name, interp, flags string
	enabled             bool
	offset              int
	magic, mask         []byte
}

func parseHostHandler(name string, data []byte) (*hostHandler, error) {
	h := &hostHandler{name: name}
	sc := bufio.NewScanner(strings.NewReader(string(data)))
	for sc.Scan() {
		line := sc.Text()
		key, val, _ := strings.Cut(line, " ")
		var err error
		switch key {
		case "enabled":
			h.enabled = true
		case "disabled":
		case "interpreter":
			h.interp = val
		case "flags:":
			h.flags = val
		case "offset":
			h.offset, err = strconv.Atoi(val)
		case "magic":
			h.magic, err = hex.DecodeString(val)
		case "mask":
			h.mask, err = hex.DecodeString(val)
		case "extension":
			return nil, errors.New("extension handler")
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", line, err)
		}
	}
	if h.magic == nil {
		return nil, errors.New("no magic")
	}
	if h.mask == nil {
		// Registered without a mask: the kernel compares every byte.
		h.mask = bytes0xff(len(h.magic))
	}
	return h, nil
}

func bytes0xff(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = 0xff
	}
	return b
}

// sampleHeaders are ELF headers the arch's handler must match: an
// executable and a position-independent one (ET_EXEC and ET_DYN).
func sampleHeaders(a *Arch) [][]byte {
	const n = 64 // an ELF64 header; longer than any magic in the table
	exec := make([]byte, max(n, len(a.Magic)))
	copy(exec, a.Magic)
	dyn := slices.Clone(exec)
	// e_type is the half-word at offset 16, in the file's byte order (EI_DATA).
	if exec[5] == 2 {
		exec[16], exec[17], dyn[16], dyn[17] = 0, 2, 0, 3
	} else {
		exec[16], exec[17], dyn[16], dyn[17] = 2, 0, 3, 0
	}
	return [][]byte{exec, dyn}
}

// findHostHandler returns a usable handler for a among the enabled ones in
// dir; the one preferred has the F flag, then the first by name. unusable
// says why a matching handler was rejected, for the error message.
func findHostHandler(a *Arch, dir string, log *slog.Logger) (h *hostHandler, unusable string) {
	if st, err := os.ReadFile(filepath.Join(dir, "status")); err == nil && strings.TrimSpace(string(st)) == "disabled" {
		log.Debug("binfmt: host binfmt_misc is disabled", "dir", dir)
		return nil, ""
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		if !errors.Is(err, fs.ErrNotExist) {
			log.Debug("binfmt: read host handlers", "err", err)
		}
		return nil, ""
	}
	var found []*hostHandler
	for _, e := range entries { // ReadDir sorts by name
		if e.Name() == "register" || e.Name() == "status" || e.IsDir() {
			continue
		}
		data, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			continue
		}
		c, err := parseHostHandler(e.Name(), data)
		if err != nil {
			log.Debug("binfmt: skip host handler", "name", e.Name(), "err", err)
			continue
		}
		if !c.enabled || c.offset != 0 {
			continue
		}
		if !slices.ContainsFunc(sampleHeaders(a), func(s []byte) bool { return matches(s, c.magic, c.mask) }) {
			continue
		}
		if why := handlerUnusable(c); why != "" {
			log.Debug("binfmt: unusable host handler", "name", c.name, "why", why)
			if unusable == "" {
				unusable = fmt.Sprintf("%s: %s", c.name, why)
			}
			continue
		}
		found = append(found, c)
	}
	if len(found) == 0 {
		return nil, unusable
	}
	if i := slices.IndexFunc(found, func(c *hostHandler) bool { return strings.Contains(c.flags, "F") }); i >= 0 {
		return found[i], ""
	}
	return found[0], ""
}

// handlerUnusable says why a matching host handler cannot run binaries of a
// foreign rootfs, or "" if it can.
func handlerUnusable(h *hostHandler) string {
	static, err := IsStatic(h.interp)
	if err != nil {
		if strings.Contains(h.flags, "F") && errors.Is(err, fs.ErrNotExist) {
			// F: the kernel opened the interpreter at registration and
			// keeps it open; the path may be gone (e.g. registered from a
			// container image) and the handler still works.
			return ""
		}
		return fmt.Sprintf("interpreter %s: %v", h.interp, err)
	}
	if !static {
		// Even with F the interpreter's own loader (PT_INTERP) is looked
		// up at exec time, in the guest's root, where it does not exist.
		return fmt.Sprintf("interpreter %s is dynamically linked", h.interp)
	}
	return ""
}
