package binfmt

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"

	"github.com/xrun-dev/xrun/internal/testutil"
)

// TestProbeIA32 checks the probe against a second way of asking: executing
// the same program from a file. Both must agree, whichever way this kernel
// answers (IA-32 emulation on or off).
func TestProbeIA32(t *testing.T) {
	if runtime.GOARCH != "amd64" {
		t.Skip("IA-32 is probed on amd64 hosts only")
	}
	prog, err := TestProgram("386")
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "prog386")
	if err := os.WriteFile(p, prog, 0o755); err != nil {
		t.Fatal(err)
	}
	err = exec.Command(p).Run()
	var ee *exec.ExitError
	var want bool
	switch {
	case errors.As(err, &ee) && ee.ExitCode() == TestProgramStatus:
		want = true
	case errors.Is(err, syscall.ENOEXEC):
		want = false
	default:
		t.Fatalf("running %s: %v; want exit %d or ENOEXEC", p, err, TestProgramStatus)
	}
	got, why := probeIA32()
	t.Logf("probeIA32: %v, %s", got, why)
	if got != want {
		t.Errorf("probeIA32() = %v (%s); executing the file said %v", got, why, want)
	}
	if !want && !strings.HasPrefix(why, IA32Off) {
		t.Errorf("reason %q does not start with %q", why, IA32Off)
	}
	// Decide with the real probe: native when it runs, emulated when not.
	plan, err := Decide("386", "", Options{SystemDirs: []string{"/usr/bin"}})
	if err != nil {
		if !want {
			testutil.SkipOrFail(t, "no qemu-i386-static to emulate 386 with: %v", err)
		}
		t.Fatal(err)
	}
	if (plan.Strategy == Native) != want || (plan.NotNative == "") != want {
		t.Errorf("Decide(386) = %+v, want native=%v", plan, want)
	}
}

func TestRememberedProbe(t *testing.T) {
	if bootID() == "" {
		t.Skip("no /proc/sys/kernel/random/boot_id")
	}
	dir := filepath.Join(t.TempDir(), "probes")
	calls := 0
	probe := func(answer bool, why string) func() (bool, string) {
		return func() (bool, string) { calls++; return answer, why }
	}
	if ok, why := rememberedProbe(dir, "x", probe(false, "it said no")); ok || why != "it said no" || calls != 1 {
		t.Fatalf("first: %v %q, %d calls", ok, why, calls)
	}
	// Remembered for this boot: the probe does not run again.
	if ok, why := rememberedProbe(dir, "x", probe(true, "changed")); ok || why != "it said no" || calls != 1 {
		t.Fatalf("second: %v %q, %d calls", ok, why, calls)
	}
	// Another boot's answer is not used.
	if err := os.WriteFile(filepath.Join(dir, "x"), []byte("other-boot yes old\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if ok, why := rememberedProbe(dir, "x", probe(false, "fresh")); ok || why != "fresh" || calls != 2 {
		t.Fatalf("other boot: %v %q, %d calls", ok, why, calls)
	}
	// A probe that could not decide is not remembered.
	if ok, _ := rememberedProbe(dir, "y", probe(true, "assumed: no memfd")); !ok {
		t.Fatal("assumed answer not returned")
	}
	if _, err := os.Stat(filepath.Join(dir, "y")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("an assumed answer was remembered: %v", err)
	}
	// No dir: probes every time.
	rememberedProbe("", "x", probe(true, "a"))
	rememberedProbe("", "x", probe(true, "a"))
	if calls != 5 {
		t.Errorf("without a dir: %d calls, want 5", calls)
	}
}
