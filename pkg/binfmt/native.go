package binfmt

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/xrun-dev/xrun/pkg/fsutil"
)

// NativeSupport reports whether this host runs goarch's binaries without an
// emulator, and why, as Decide sees it (probes remembered in opts.ProbeDir).
func NativeSupport(goarch string, opts Options) (bool, string, error) {
	if err := opts.fill(); err != nil {
		return false, "", err
	}
	a, err := Lookup(goarch)
	if err != nil {
		return goarch == opts.HostGOARCH, "", err
	}
	ok, why := nativeSupport(a, &opts)
	return ok, why, nil
}

// nativeSupport reports whether this host runs a's binaries without an
// emulator, and why (for doctor and --verbose). The arch table's NativeOn
// says which CPU families can; whether this machine does is asked of the
// kernel, because it can be switched off:
//   - 386 on amd64 needs IA-32 emulation, which a kernel may lack
//     (CONFIG_IA32_EMULATION=n), start disabled
//     (CONFIG_IA32_EMULATION_DEFAULT_DISABLED, ia32_emulation=0 since 6.7)
//     or have overridden by a hypervisor; execve then fails with ENOEXEC.
//   - arm on arm64 needs AArch32 at EL0, absent from many recent CPUs.
//
// A HostGOARCH other than this process's (tests) is taken at its word.
func nativeSupport(a *Arch, opts *Options) (bool, string) {
	host := opts.HostGOARCH
	if a.GOARCH == host {
		return true, "the host's own architecture"
	}
	if !slices.Contains(a.NativeOn, host) {
		return false, fmt.Sprintf("a linux/%s CPU cannot run linux/%s programs", host, a.GOARCH)
	}
	if opts.compatProbe != nil {
		return opts.compatProbe(a)
	}
	if host != runtime.GOARCH {
		return true, "assumed for a linux/" + host + " host"
	}
	switch {
	case a.GOARCH == "386" && host == "amd64":
		return rememberedProbe(opts.ProbeDir, "ia32", probeIA32)
	case a.GOARCH == "arm" && host == "arm64":
		// Cheap enough to ask every time.
		if aarch32Supported() {
			return true, "this CPU runs 32-bit ARM programs (AArch32 at EL0)"
		}
		return false, "this CPU or kernel does not run 32-bit ARM programs (no AArch32 at EL0 or no CONFIG_COMPAT)"
	}
	return true, "assumed for a linux/" + host + " host"
}

// perLinux32 is PER_LINUX32 from <linux/personality.h>.
const perLinux32 = 0x0008

// aarch32Supported reports whether this arm64 machine runs 32-bit ARM
// binaries. On arm64, personality(PER_LINUX32) fails with EINVAL unless the
// kernel has CONFIG_COMPAT and every CPU implements AArch32 at EL0
// (arch/arm64/kernel/sys.c, system_supports_32bit_el0), which is exactly
// what running an arm binary natively needs. Personality is per thread, so
// the probe locks the thread and restores the old value.
func aarch32Supported() bool {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	old, _, errno := unix.RawSyscall(unix.SYS_PERSONALITY, 0xffffffff, 0, 0)
	if errno != 0 {
		return false
	}
	if _, _, errno = unix.RawSyscall(unix.SYS_PERSONALITY, perLinux32, 0, 0); errno != 0 {
		return false
	}
	unix.RawSyscall(unix.SYS_PERSONALITY, old, 0, 0)
	return true
}

// IA32Off is the start of the reason given when this amd64 kernel refuses
// 32-bit x86 programs (the rest says how that was found).
const IA32Off = "this kernel does not run 32-bit x86 programs"

// probeIA32 executes TestProgram("386"): the only reliable way to know,
// since the switch can be in the kernel's configuration, its command line
// or the hypervisor, and none of them is readable by a user.
func probeIA32() (bool, string) {
	err := runTestProgram("386")
	var ee *exec.ExitError
	switch {
	case err == nil:
		return true, "this kernel runs 32-bit x86 programs (IA-32 emulation is on; checked by running one)"
	case errors.Is(err, syscall.ENOEXEC):
		return false, IA32Off + " (IA-32 emulation is off: execve of a test program returned ENOEXEC; " +
			"see ia32_emulation= and CONFIG_IA32_EMULATION)"
	case errors.As(err, &ee):
		return false, fmt.Sprintf("%s (a 32-bit x86 test program ended with %v)", IA32Off, ee.ProcessState)
	}
	// The probe itself could not run (no memfd, no exec): keep the
	// kernel's default, which runs them.
	return true, fmt.Sprintf("assumed: a 32-bit x86 test program could not be started (%v)", err)
}

// runTestProgram executes TestProgram(goarch) from a sealed memory file
// (no temp file, works where /tmp is noexec) and returns nil when it exits
// with TestProgramStatus.
func runTestProgram(goarch string) error {
	prog, err := TestProgram(goarch)
	if err != nil {
		return err
	}
	fd, err := unix.MemfdCreate("xrun-probe-"+goarch, unix.MFD_CLOEXEC|unix.MFD_EXEC)
	if errors.Is(err, unix.EINVAL) { // before Linux 6.3, which added MFD_EXEC
		fd, err = unix.MemfdCreate("xrun-probe-"+goarch, unix.MFD_CLOEXEC)
	}
	if err != nil {
		return fmt.Errorf("memfd_create: %w", err)
	}
	w := os.NewFile(uintptr(fd), "memfd")
	defer w.Close()
	if _, err := w.Write(prog); err != nil {
		return err
	}
	// execve refuses a file open for writing (ETXTBSY): run it through a
	// read-only descriptor of its own. Its path is this process's, which
	// the child shares until exec (close-on-exec acts after the open).
	r, err := os.Open(fmt.Sprintf("/proc/self/fd/%d", fd))
	if err != nil {
		return err
	}
	defer r.Close()
	w.Close()
	cmd := exec.Command(fmt.Sprintf("/proc/self/fd/%d", r.Fd()))
	cmd.Env = []string{}
	err = cmd.Run()
	var ee *exec.ExitError
	if errors.As(err, &ee) && ee.ExitCode() == TestProgramStatus {
		return nil
	}
	if err == nil {
		return fmt.Errorf("the %s test program exited 0, want %d", goarch, TestProgramStatus)
	}
	return err
}

// rememberedProbe returns probe's answer, remembered in dir/name for the
// current boot (the file holds the boot id, "yes" or "no", and the reason).
// A probe that could not decide ("assumed...") is not remembered.
func rememberedProbe(dir, name string, probe func() (bool, string)) (bool, string) {
	boot := bootID()
	file := filepath.Join(dir, name)
	if dir != "" && boot != "" {
		if b, err := os.ReadFile(file); err == nil {
			id, rest, _ := strings.Cut(strings.TrimSpace(string(b)), " ")
			answer, why, _ := strings.Cut(rest, " ")
			if id == boot && (answer == "yes" || answer == "no") && why != "" {
				return answer == "yes", why
			}
		}
	}
	ok, why := probe()
	if dir != "" && boot != "" && !strings.HasPrefix(why, "assumed") {
		answer := "no"
		if ok {
			answer = "yes"
		}
		// Best effort: a failed write only means probing again next time.
		_ = writeProbe(dir, file, boot+" "+answer+" "+why+"\n")
	}
	return ok, why
}

// writeProbe writes a probe file atomically, so a concurrent reader sees
// the old answer or the new one.
func writeProbe(dir, file, content string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	return fsutil.WriteFileAtomic(file, ".tmp-", []byte(content), 0o600)
}

// bootID is the kernel's random id of this boot ("" when unreadable).
func bootID() string {
	b, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}
