// Package doctor checks that this machine can run xrun's foreign-platform
// containers and names the exact fix for each thing that is missing.
package doctor

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/xrun-dev/xrun/pkg/binfmt"
	"github.com/xrun-dev/xrun/pkg/userns"
)

// Status is the outcome of one check.
type Status int

const (
	OK   Status = iota // works
	Info               // for information; nothing to do
	Warn               // works, but something is limited; Fix says how to lift it
	Fail               // xrun cannot do what was asked; Fix says how to repair it
)

func (s Status) String() string {
	return [...]string{"ok", "info", "warn", "FAIL"}[s]
}

// Check is one item of the report.
type Check struct {
	Status Status
	Name   string // "kernel", "user namespaces", "linux/arm64", ...
	Detail string
	Fix    string // the command or step that repairs it (Warn, Fail)
}

// Report is the result of Run.
type Report struct {
	Checks []Check
}

// Failed returns the checks with status Fail.
func (r *Report) Failed() []Check {
	var f []Check
	for _, c := range r.Checks {
		if c.Status == Fail {
			f = append(f, c)
		}
	}
	return f
}

// Options tune Run.
type Options struct {
	// Platforms to check (OS/ARCH[/VARIANT] as parsed by the caller, given
	// here as GOARCH and variant pairs). Empty: every architecture of
	// binfmt.Arches; then a missing emulator is a warning, and only "no
	// foreign platform can run at all" fails.
	Platforms []Platform
	// CacheDir is xrun's cache (required).
	CacheDir string
	// Binfmt are the emulation settings a run would use (emulator,
	// installed dir, forced strategy, search dirs).
	Binfmt binfmt.Options
	// Out receives each check as it completes (nil: nothing is printed).
	Out io.Writer
	// Logger defaults to discarding.
	Logger *slog.Logger

	// Seams for tests.
	sys      System // this machine as the user-namespace table reads it
	shmemTHP string // default /sys/kernel/mm/transparent_hugepage/shmem_enabled
	etc      string // default /etc
	probe    func(ctx context.Context, cacheDir string) (*probeResult, error)
	smoke    func(ctx context.Context, plan *binfmt.Plan, log *slog.Logger) (time.Duration, error)
}

// Platform is a platform to check.
type Platform struct {
	GOARCH, Variant string
}

func (p Platform) String() string {
	s := "linux/" + p.GOARCH
	if p.Variant != "" {
		s += "/" + p.Variant
	}
	return s
}

func (o *Options) fill() {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	o.sys = o.sys.fill()
	if o.etc == "" {
		o.etc = "/etc"
	}
	if o.shmemTHP == "" {
		o.shmemTHP = "/sys/kernel/mm/transparent_hugepage/shmem_enabled"
	}
	if o.probe == nil {
		o.probe = runProbe
	}
	if o.smoke == nil {
		cacheDir := o.CacheDir
		o.smoke = func(ctx context.Context, plan *binfmt.Plan, log *slog.Logger) (time.Duration, error) {
			return smokeRun(ctx, plan, cacheDir, log)
		}
	}
	if o.Out == nil {
		o.Out = io.Discard
	}
}

type doctor struct {
	o      Options
	r      Report
	distro distro
}

func (d *doctor) add(c Check) {
	d.r.Checks = append(d.r.Checks, c)
	fmt.Fprintf(d.o.Out, "%-5s %s: %s\n", c.Status, c.Name, c.Detail)
	if c.Fix != "" && c.Status >= Warn {
		fmt.Fprintf(d.o.Out, "      fix: %s\n", strings.ReplaceAll(c.Fix, "\n", "\n      "))
	}
}

// Run performs every check, in the order a run depends on them, and ends
// with a smoke test per platform: a tiny static program of that
// architecture (binfmt.TestProgram) run in a real container through the
// strategy a run would use.
func Run(ctx context.Context, o Options) *Report {
	o.fill()
	d := &doctor{o: o, distro: readDistro(o.etc)}

	kernelOK := d.checkKernel()
	usernsOK, probe := d.checkUserNS(ctx)
	d.checkBinfmtNS(kernelOK, usernsOK, probe)
	d.checkSubIDs()
	d.checkOverlay(usernsOK, probe)
	d.checkHostHandlers(kernelOK)
	d.checkCache()
	d.checkStartup()
	plans := d.checkPlatforms()
	d.smokeTests(ctx, usernsOK, plans)
	return &d.r
}

func (d *doctor) checkKernel() bool {
	release := d.o.Binfmt.KernelRelease
	if release == "" {
		var u unix.Utsname
		if err := unix.Uname(&u); err == nil {
			release = unix.ByteSliceToString(u.Release[:])
		}
	}
	major, minor, ok := binfmt.ParseRelease(release)
	switch {
	case ok && (major > 6 || major == 6 && minor >= 7):
		d.add(Check{Status: OK, Name: "kernel", Detail: fmt.Sprintf("Linux %s has binfmt_misc per user namespace (6.7+): emulators are registered inside each container, nothing on the host", release)})
		return true
	case !binfmt.InterceptHost(runtime.GOARCH):
		d.add(Check{Status: Warn, Name: "kernel", Detail: fmt.Sprintf("Linux %s is older than 6.7: binfmt_misc cannot be registered in a user namespace, so foreign platforms need a handler registered on the host (exec interception is available on amd64 and arm64 hosts only)", release),
			Fix: "upgrade to Linux 6.7+, or ask an admin to register qemu-user-static with the F flag (update-binfmts --enable qemu-ARCH)"})
		return false
	default:
		d.add(Check{Status: Info, Name: "kernel", Detail: fmt.Sprintf("Linux %s is older than 6.7: binfmt_misc cannot be registered in a user namespace, so foreign platforms use a handler registered on the host if there is one, else exec interception (xrun's init traces each exec: a little slower to start programs, and no ptrace inside)", release)})
		return false
	}
}

// userNSSysctls are the settings that can forbid user namespaces, reported
// as facts by the user namespace check.
var userNSSysctls = []string{
	"user.max_user_namespaces", "kernel.unprivileged_userns_clone", "kernel.apparmor_restrict_unprivileged_userns",
}

// checkUserNS creates a user namespace (the probe) and, when the kernel
// refuses it or a fresh /proc in it, names the cause and its fix from the
// user-namespace table (userns.go).
func (d *doctor) checkUserNS(ctx context.Context) (bool, *probeResult) {
	var facts []string
	for _, name := range userNSSysctls {
		if v, ok := d.o.sys.sysctl(name); ok {
			facts = append(facts, name+"="+v)
		}
	}
	sysctls := ""
	if len(facts) > 0 {
		sysctls = " (" + strings.Join(facts, ", ") + ")"
	}
	p, err := d.o.probe(ctx, d.o.CacheDir)
	what := "cannot create a user namespace"
	var f UserNSFailure
	switch {
	case err != nil:
		// The probe's own error is Go's fork/exec, which covers unshare
		// and writing the id maps.
		f = UserNSFailure{Step: StepUnshare, Errno: errnoOf(err, strings.ToLower(err.Error()))}
	case p.Proc != "":
		what = "created a user namespace but cannot mount a fresh /proc in it (a run needs one)"
		err = errors.New(p.Proc)
		f = UserNSFailure{Step: StepProcMount, Errno: errnoOf(err, strings.ToLower(p.Proc))}
	default:
		d.add(Check{Status: OK, Name: "user namespaces", Detail: "created a user and mount namespace and mounted /proc in it" + sysctls})
		return true, p
	}
	b := DiagnoseUserNS(d.o.sys, f)
	if b == nil {
		b = &genericUserNSBlock
		if f.Step == StepProcMount {
			_, fix := containerFix("", false)
			b = &UserNSBlock{Cause: "part of /proc may be hidden, as container runtimes do", DoctorFix: fix}
		}
	}
	d.add(Check{Status: Fail, Name: "user namespaces", Detail: fmt.Sprintf("%s: %v%s: %s", what, err, sysctls, b.Cause), Fix: b.DoctorFix})
	return false, nil
}

func (d *doctor) checkBinfmtNS(kernelOK, usernsOK bool, p *probeResult) {
	const name = "binfmt_misc in a user namespace"
	switch {
	case !usernsOK:
		d.add(Check{Status: Info, Name: name, Detail: "not tested: no user namespace"})
	case p.Binfmt == "":
		d.add(Check{Status: OK, Name: name, Detail: "mounted a private binfmt_misc instance (handlers registered there stay inside the container)"})
	case !kernelOK:
		d.add(Check{Status: Info, Name: name, Detail: "not available on this kernel (" + p.Binfmt + "); a host handler is needed"})
	default:
		d.add(Check{Status: Fail, Name: name, Detail: p.Binfmt,
			Fix: "check that the kernel has CONFIG_BINFMT_MISC (modprobe binfmt_misc as root if it is a module)"})
	}
}

func (d *doctor) checkSubIDs() {
	const name = "subordinate ids"
	if os.Geteuid() == 0 {
		d.add(Check{Status: Info, Name: name, Detail: "running as root: ids 0-65536 are mapped as they are"})
		return
	}
	u, err := user.Current()
	if err != nil {
		d.add(Check{Status: Warn, Name: name, Detail: fmt.Sprintf("who am I: %v", err)})
		return
	}
	uidR, okU := subRange(filepath.Join(d.o.etc, "subuid"), u.Username, u.Uid)
	gidR, okG := subRange(filepath.Join(d.o.etc, "subgid"), u.Username, u.Uid)
	if !okU || !okG {
		start := freeSubStart(filepath.Join(d.o.etc, "subuid"), filepath.Join(d.o.etc, "subgid"))
		d.add(Check{Status: Warn, Name: name,
			Detail: fmt.Sprintf("%s has no range in %s/subuid and %s/subgid: only root exists in containers (apt's _apt user, useradd and chown fail)", u.Username, d.o.etc, d.o.etc),
			Fix:    fmt.Sprintf("echo %s:%d:65536 | sudo tee -a /etc/subuid /etc/subgid", u.Username, start)})
		return
	}
	var missing []string
	fix := d.distro.install("uidmap", "shadow-utils", "shadow")
	for _, tool := range []string{"newuidmap", "newgidmap"} {
		p, err := exec.LookPath(tool)
		if err != nil {
			missing = append(missing, tool+" is not installed")
			continue
		}
		if why, how := userns.HelperUnusable(p); why != "" {
			missing = append(missing, why)
			if how != "" {
				fix = how
			}
		}
	}
	if len(missing) > 0 {
		d.add(Check{Status: Warn, Name: name,
			Detail: fmt.Sprintf("%s has subuid %s and subgid %s but %s: only root exists in containers", u.Username, uidR, gidR, strings.Join(missing, ", ")),
			Fix:    fix})
		return
	}
	d.add(Check{Status: OK, Name: name, Detail: fmt.Sprintf("%s has subuid %s and subgid %s; newuidmap and newgidmap are installed: 65536 ids in containers, setuid programs work", u.Username, uidR, gidR)})
}

func (d *doctor) checkOverlay(usernsOK bool, p *probeResult) {
	const name = "rootless overlayfs"
	switch {
	case !usernsOK:
		d.add(Check{Status: Info, Name: name, Detail: "not tested: no user namespace"})
	case p.Overlay == "":
		d.add(Check{Status: OK, Name: name, Detail: "mounted an overlay over a directory of the cache in a user namespace"})
	default:
		d.add(Check{Status: Fail, Name: name, Detail: "cannot mount an overlay over a directory of the cache in a user namespace: " + p.Overlay,
			Fix: "Linux 5.11+ is needed; if it is, put the cache on a local filesystem (ext4, xfs, btrfs, tmpfs), e.g. XRUN_CACHE=/var/tmp/$USER/xrun"})
	}
}

func (d *doctor) checkHostHandlers(kernelOK bool) {
	const name = "host handlers"
	hs, mounted, disabled, err := binfmt.HostEntries(d.o.Binfmt.BinfmtDir)
	dir := d.o.Binfmt.BinfmtDir
	if dir == "" {
		dir = "/proc/sys/fs/binfmt_misc"
	}
	switch {
	case err != nil:
		d.add(Check{Status: Info, Name: name, Detail: fmt.Sprintf("cannot read %s: %v", dir, err)})
		return
	case !mounted:
		detail := dir + " is not mounted: none (not needed on Linux 6.7+)"
		if !kernelOK {
			d.add(Check{Status: Warn, Name: name, Detail: dir + " is not mounted: no handlers on the host",
				Fix: "as root: mount -t binfmt_misc binfmt_misc " + dir + ", then register qemu-user-static with the F flag"})
			return
		}
		d.add(Check{Status: Info, Name: name, Detail: detail})
		return
	case disabled:
		d.add(Check{Status: Info, Name: name, Detail: "binfmt_misc is disabled on the host (echo 1 > " + dir + "/status as root enables it)"})
		return
	}
	var lines []string
	for _, h := range hs {
		if h.Arch == nil {
			continue
		}
		s := fmt.Sprintf("%s (linux/%s via %s, flags %q", h.Name, h.Arch.GOARCH, h.Interpreter, h.Flags)
		if !h.Enabled {
			s += ", disabled"
		}
		if h.Unusable != "" {
			s += ", unusable: " + h.Unusable
		}
		lines = append(lines, s+")")
	}
	if len(lines) == 0 {
		d.add(Check{Status: Info, Name: name, Detail: "none for a foreign architecture in " + dir})
		return
	}
	d.add(Check{Status: Info, Name: name, Detail: strings.Join(lines, "; ")})
}

// checkStartup reports the one machine setting found to change a warm
// run's start-up: libcontainer copies the xrun binary into a sealed memfd on
// every run (its protection against CVE-2019-5736), and that copy of shared
// memory is several times cheaper when it may use transparent huge pages
// (bench/RESULTS.md: about 8 of 30 ms). Never more than Info: runs work the
// same either way, and the setting is the machine's, not the user's.
func (d *doctor) checkStartup() {
	const name = "start-up"
	b, err := os.ReadFile(d.o.shmemTHP)
	if err != nil {
		d.add(Check{Status: Info, Name: name, Detail: fmt.Sprintf("cannot read %s: %v", d.o.shmemTHP, err)})
		return
	}
	mode := selectedWord(string(b))
	size := ""
	if exe, err := os.Executable(); err == nil {
		if st, err := os.Stat(exe); err == nil {
			size = " (" + humanBytes(st.Size()) + ")"
		}
	}
	switch mode {
	case "always", "within_size", "force":
		d.add(Check{Status: OK, Name: name, Detail: fmt.Sprintf("shared memory may use huge pages (%s): the per-run copy of xrun%s into a sealed memfd is cheap", mode, size)})
	default:
		d.add(Check{Status: Info, Name: name, Detail: fmt.Sprintf("shared memory does not use huge pages (shmem_enabled: %s), so each run's copy of xrun%s into a sealed memfd "+
			"(libcontainer's CVE-2019-5736 protection) costs several ms; an administrator can make it cheap with "+
			"`echo within_size | sudo tee %s`", mode, size, d.o.shmemTHP)})
	}
}

// selectedWord returns the bracketed choice of a sysfs setting such as
// "always within_size advise [never] deny force", or the text itself.
func selectedWord(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.IndexByte(s, '['); i >= 0 {
		if j := strings.IndexByte(s[i:], ']'); j > 0 {
			return s[i+1 : i+j]
		}
	}
	return s
}

func (d *doctor) checkCache() {
	const name = "cache"
	dir := d.o.CacheDir
	if err := os.MkdirAll(dir, 0o700); err != nil {
		d.add(Check{Status: Fail, Name: name, Detail: fmt.Sprintf("cannot create %s: %v", dir, err),
			Fix: "set XRUN_CACHE to a directory you can write, e.g. XRUN_CACHE=$HOME/.cache/xrun"})
		return
	}
	if err := unix.Access(dir, unix.W_OK); err != nil {
		d.add(Check{Status: Fail, Name: name, Detail: fmt.Sprintf("%s is not writable: %v", dir, err),
			Fix: "set XRUN_CACHE to a directory you can write, or fix the owner of " + dir})
		return
	}
	if st, err := os.Stat(dir); err == nil && st.Mode().Perm()&0o077 != 0 {
		// Earlier versions made it 0755; runs tighten the default cache
		// themselves, not one named with XRUN_CACHE.
		d.add(Check{Status: Warn, Name: name,
			Detail: fmt.Sprintf("%s has mode %04o: other users can read the images you pulled", dir, st.Mode().Perm()),
			Fix:    "chmod 700 " + dir + " (unless you share it on purpose)"})
	}
	var size int64
	var files int
	_ = filepath.WalkDir(dir, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		if e.Type().IsRegular() {
			if fi, err := e.Info(); err == nil {
				size += fi.Size()
				files++
			}
		}
		return nil
	})
	free := ""
	var st unix.Statfs_t
	if unix.Statfs(dir, &st) == nil {
		free = fmt.Sprintf(", %s free", humanBytes(int64(st.Bavail)*int64(st.Bsize)))
	}
	d.add(Check{Status: Info, Name: name, Detail: fmt.Sprintf("%s: %s in %d files%s", dir, humanBytes(size), files, free)})
}

func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

// checkPlatforms decides, for each platform, how it would run and reports
// the emulator; it returns the platforms that can run with their plans.
func (d *doctor) checkPlatforms() map[Platform]*binfmt.Plan {
	plats := d.o.Platforms
	explicit := len(plats) > 0
	if !explicit {
		for _, a := range binfmt.Arches {
			if a.GOARCH != runtime.GOARCH {
				plats = append(plats, Platform{GOARCH: a.GOARCH})
			}
		}
	}
	plans := map[Platform]*binfmt.Plan{}
	for _, p := range plats {
		bo := d.o.Binfmt
		bo.Logger = d.o.Logger
		plan, err := binfmt.Decide(p.GOARCH, p.Variant, bo)
		if err != nil {
			st := Fail
			if !explicit && (errors.Is(err, binfmt.ErrNoEmulator) || errors.Is(err, binfmt.ErrDynamicEmulator)) {
				st = Warn
			}
			d.add(Check{Status: st, Name: p.String(), Detail: err.Error(), Fix: d.fixFor(err, p)})
			continue
		}
		plans[p] = plan
		switch plan.Strategy {
		case binfmt.Native:
			detail := "runs natively"
			if _, why, err := binfmt.NativeSupport(p.GOARCH, bo); err == nil && why != "" {
				detail += ": " + why
			}
			d.add(Check{Status: OK, Name: p.String(), Detail: detail})
		case binfmt.Namespaced:
			d.add(Check{Status: OK, Name: p.String(), Detail: "namespaced: " + d.describeEmulator(p, plan.Emulator) + notNative(plan)})
		case binfmt.HostHandler:
			how := "used as it is (F flag)"
			if !strings.Contains(plan.HostFlags, "F") {
				how = "its interpreter is bound into the container (no F flag)"
			}
			d.add(Check{Status: OK, Name: p.String(), Detail: fmt.Sprintf("host handler with %s, flags %q: %s", plan.Emulator, plan.HostFlags, how) + notNative(plan)})
		case binfmt.Intercept:
			d.add(Check{Status: OK, Name: p.String(), Detail: "intercept (no binfmt_misc: xrun's init traces each exec and runs foreign programs under " +
				d.describeEmulator(p, plan.Emulator) + "; ptrace, strace and gdb do not work inside)" + notNative(plan)})
		}
	}
	if !explicit && len(plans) == 0 {
		d.add(Check{Status: Fail, Name: "emulation", Detail: "no foreign platform can run on this machine",
			Fix: d.fixFor(binfmt.ErrNoEmulator, Platform{GOARCH: "arm64"})})
	}
	return plans
}

// notNative is "; emulated because ..." when the host's CPU family could
// run the platform natively but this machine does not.
func notNative(plan *binfmt.Plan) string {
	if plan.NotNative == "" {
		return ""
	}
	return "; emulated because " + plan.NotNative
}

// describeEmulator says where the emulator was found, that it is static,
// and its version.
func (d *doctor) describeEmulator(p Platform, path string) string {
	s := path
	bo := d.o.Binfmt
	if e, err := binfmt.FindEmulator(p.GOARCH, bo); err == nil && e.Path == path {
		s += " (" + e.Source
	} else {
		s += " ("
	}
	if ok, err := binfmt.IsStatic(path); err == nil && ok {
		s += ", static"
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if out, err := exec.CommandContext(ctx, path, "--version").Output(); err == nil {
		line, _, _ := strings.Cut(string(out), "\n")
		s += ", " + strings.TrimSpace(line)
	}
	return strings.Replace(s+")", "(, ", "(", 1)
}

// fixFor names the fix of a binfmt.Decide error on this machine.
func (d *doctor) fixFor(err error, p Platform) string {
	switch {
	case errors.Is(err, binfmt.ErrNoEmulator), errors.Is(err, binfmt.ErrDynamicEmulator):
		return d.distro.install("qemu-user-static", "qemu-user-static", "qemu-user-static") + "; or, without root: xrun emulator install"
	case errors.Is(err, binfmt.ErrKernelTooOld):
		return "upgrade to Linux 6.7+, or have an admin register a static qemu with the F flag on the host (" +
			d.distro.install("qemu-user-static", "qemu-user-static", "qemu-user-static-binfmt") + ")"
	case errors.Is(err, binfmt.ErrNoHostHandler), errors.Is(err, binfmt.ErrNotNative):
		return "unset XRUN_BINFMT_STRATEGY"
	case errors.Is(err, binfmt.ErrUnknownArch):
		return "use a platform xrun supports (xrun emulator list)"
	}
	return ""
}

func (d *doctor) smokeTests(ctx context.Context, usernsOK bool, plans map[Platform]*binfmt.Plan) {
	// In the order of the report.
	var order []Platform
	for _, c := range d.r.Checks {
		for p := range plans {
			if c.Name == p.String() {
				order = append(order, p)
			}
		}
	}
	for _, p := range order {
		plan := plans[p]
		name := "run " + p.String()
		if !usernsOK {
			d.add(Check{Status: Fail, Name: name, Detail: "not run: no user namespace (see above)", Fix: "fix user namespaces first"})
			continue
		}
		took, err := d.o.smoke(ctx, plan, d.o.Logger)
		if err != nil {
			d.add(Check{Status: Fail, Name: name, Detail: fmt.Sprintf("a %s test program did not run (%s): %v", p, plan.Strategy, err),
				Fix: "run xrun --debug --platform " + p.String() + " IMAGE -- true to see every step, and report it"})
			continue
		}
		d.add(Check{Status: OK, Name: name, Detail: fmt.Sprintf("a %s test program ran in a container (%s, %v)", p, plan.Strategy, took.Round(time.Millisecond))})
	}
}

// subRange returns "START:COUNT" of the first range of name (or uid) in an
// /etc/subuid-style file.
func subRange(file, name, uid string) (string, bool) {
	b, err := os.ReadFile(file)
	if err != nil {
		return "", false
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Split(strings.TrimSpace(line), ":")
		if len(f) == 3 && (f[0] == name || f[0] == uid) {
			if n, err := strconv.Atoi(f[2]); err == nil && n > 0 {
				return f[1] + ":" + f[2], true
			}
		}
	}
	return "", false
}

// freeSubStart returns the first id at or above 100000 that no range in
// the files uses, rounded up to a multiple of 65536.
func freeSubStart(files ...string) int {
	start := 100000
	for _, file := range files {
		b, _ := os.ReadFile(file)
		for _, line := range strings.Split(string(b), "\n") {
			f := strings.Split(strings.TrimSpace(line), ":")
			if len(f) != 3 {
				continue
			}
			s, err1 := strconv.Atoi(f[1])
			n, err2 := strconv.Atoi(f[2])
			if err1 == nil && err2 == nil && s+n > start {
				start = s + n
			}
		}
	}
	if start != 100000 {
		start = (start + 65535) / 65536 * 65536
	}
	return start
}

// distro is what /etc/os-release says, to name package commands.
type distro struct{ id, like string }

func readDistro(etc string) distro {
	b, err := os.ReadFile(filepath.Join(etc, "os-release"))
	if err != nil {
		b, _ = os.ReadFile("/usr/lib/os-release")
	}
	var d distro
	for _, line := range strings.Split(string(b), "\n") {
		k, v, _ := strings.Cut(line, "=")
		v = strings.Trim(v, `"'`)
		switch k {
		case "ID":
			d.id = v
		case "ID_LIKE":
			d.like = v
		}
	}
	return d
}

func (d distro) is(names ...string) bool {
	fields := append([]string{d.id}, strings.Fields(d.like)...)
	for _, f := range fields {
		for _, n := range names {
			if f == n {
				return true
			}
		}
	}
	return false
}

// install returns the command that installs a package here: deb is the
// Debian/Ubuntu name, rpm the Fedora one, arch the Arch Linux one.
func (d distro) install(deb, rpm, arch string) string {
	switch {
	case d.is("debian", "ubuntu"):
		return "sudo apt-get install " + deb
	case d.is("fedora", "rhel", "centos"):
		return "sudo dnf install " + rpm
	case d.is("arch"):
		return "sudo pacman -S " + arch
	}
	return fmt.Sprintf("install %s (Debian/Ubuntu: apt-get install %s; Fedora: dnf install %s; Arch: pacman -S %s)", deb, deb, rpm, arch)
}
