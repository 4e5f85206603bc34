package binfmt

import (
	"debug/elf"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/xrun-dev/xrun/internal/testutil"
)

// TestTestProgram checks every program against the arch table (the kernel
// hands it to the arch's handler) and debug/elf, and runs it: natively when
// the host can, else under the system's static qemu directly.
func TestTestProgram(t *testing.T) {
	for i := range Arches {
		a := &Arches[i]
		t.Run(a.GOARCH, func(t *testing.T) {
			b, err := TestProgram(a.GOARCH)
			if err != nil {
				t.Fatal(err)
			}
			if !a.Matches(b) {
				t.Errorf("the %s arch table row does not match its test program", a.GOARCH)
			}
			for j := range Arches {
				if o := &Arches[j]; o != a && o.Matches(b) {
					t.Errorf("the %s row matches the %s test program", o.GOARCH, a.GOARCH)
				}
			}
			p := filepath.Join(t.TempDir(), "prog")
			if err := os.WriteFile(p, b, 0o755); err != nil {
				t.Fatal(err)
			}
			f, err := elf.Open(p)
			if err != nil {
				t.Fatalf("debug/elf: %v", err)
			}
			f.Close()
			if ok, err := IsStatic(p); !ok || err != nil {
				t.Errorf("IsStatic = %v, %v", ok, err)
			}
			var cmd *exec.Cmd
			// The host's own answer: 386 on an amd64 kernel whose IA-32
			// emulation is off runs under qemu like any foreign arch.
			if native, why := nativeSupport(a, &Options{HostGOARCH: runtime.GOARCH}); native {
				t.Logf("native: %s", why)
				cmd = exec.Command(p)
			} else {
				qemu := "/usr/bin/qemu-" + a.Name + "-static"
				if _, err := os.Stat(qemu); err != nil {
					testutil.SkipOrFail(t, "no %s to run the program (qemu-user-static): %v", qemu, err)
				}
				cmd = exec.Command(qemu, p)
			}
			err = cmd.Run()
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ExitCode() != TestProgramStatus {
				t.Errorf("%s: %v, want exit status %d", cmd, err, TestProgramStatus)
			}
		})
	}
	if _, err := TestProgram("sparc64"); err == nil {
		t.Error("TestProgram(sparc64): no error")
	}
}
