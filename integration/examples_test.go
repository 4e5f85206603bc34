//go:build integration

package integration

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/xrun-dev/xrun/internal/testutil"
)

// TestExampleProject runs the README's Makefile example (examples/clib) for
// real, as an unprivileged user: `make -j4 check-all` builds a C library
// natively and with Debian's arm64 and riscv64 cross compilers, then runs
// each test binary on its platform, the foreign ones through xrun, in
// parallel.
func TestExampleProject(t *testing.T) {
	needImages(t)
	needQemu(t, platformByName("linux/arm64"))
	needQemu(t, platformByName("linux/riscv64"))
	needBinfmtNS(t)
	for _, cc := range []string{"aarch64-linux-gnu-gcc", "riscv64-linux-gnu-gcc", "make"} {
		if _, err := exec.LookPath(cc); err != nil {
			testutil.SkipOrFail(t, "%s not installed (hack/setup.sh installs it)", cc)
		}
	}
	u := needUser(t, subUserName)
	dir := workDir(t, u)
	src := filepath.Join("..", "examples", "clib")
	entries, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(src, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		dst := filepath.Join(dir, e.Name())
		if err := os.WriteFile(dst, b, 0o644); err != nil {
			t.Fatal(err)
		}
		if os.Geteuid() == 0 {
			if err := os.Chown(dst, u.uid, u.gid); err != nil {
				t.Fatal(err)
			}
		}
	}
	image := h.reg.ref(busyboxRepo)
	stdout, stderr, code := runAs(t, opts{user: u, dir: dir},
		"make", "-j4", "check-all", "XRUN="+h.xrun, "IMAGE="+image)
	if code != 0 {
		t.Fatalf("make -j4 check-all: exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
	}
	for _, want := range []string{"x86_64 little-endian: ok", "aarch64 little-endian: ok", "riscv64 little-endian: ok"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("make check-all output lacks %q:\n%s", want, stdout)
		}
	}
}
