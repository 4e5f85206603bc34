//go:build integration

package integration

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/xrun-dev/xrun/internal/testutil"
)

// writeOwned writes files (path relative to dir -> content) owned by u,
// creating directories as needed.
func writeOwned(t *testing.T, u *testUser, dir string, files map[string]string, mode os.FileMode) {
	t.Helper()
	for rel, content := range files {
		p := filepath.Join(dir, rel)
		for d := filepath.Dir(p); len(d) > len(dir); d = filepath.Dir(d) {
			if err := mkdirOwned(d, u); err != nil {
				t.Fatal(err)
			}
		}
		if err := os.WriteFile(p, []byte(content), mode); err != nil {
			t.Fatal(err)
		}
		if os.Geteuid() == 0 {
			if err := os.Chown(p, u.uid, u.gid); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// TestRunnerProgram: a command that is a host file outside every bound
// directory (a build tool's freshly built program) runs as if run
// directly: bound read-only at its own path; arguments with spaces, stdin,
// the current directory and the exit status pass through.
func TestRunnerProgram(t *testing.T) {
	for _, name := range []string{"linux/amd64", "linux/arm64"} {
		p := platformByName(name)
		t.Run(subtestName(p), func(t *testing.T) {
			u := needRun(t, subUserName, p)
			progDir := workDir(t, u) // not the current directory
			cwd := workDir(t, u)
			prog := filepath.Join(progDir, "out", "prog")
			writeOwned(t, u, progDir, map[string]string{"out/prog": `#!/bin/sh
printf '%s|' "$@"; echo
echo "machine=$(uname -m) pwd=$(pwd)"
read line; echo "stdin=$line"
echo oops > "$0" 2>/dev/null && echo "wrote the program"
exit 5
`}, 0o755)
			out, stderr, code := run(t, opts{user: u, dir: cwd, stdin: []byte("from the pipe\n")},
				"--verbose", "--platform", p.Name, h.reg.ref(busyboxRepo), "--", prog, "a b", "", "c")
			want := fmt.Sprintf("a b||c|\nmachine=%s pwd=%s\nstdin=from the pipe\n", p.Uname(), cwd)
			if code != 5 || out != want {
				t.Fatalf("exit %d, stdout %q; want exit 5, %q\nstderr: %s", code, out, want, stderr)
			}
			if !strings.Contains(stderr, "binding the program read-only at its own path") {
				t.Errorf("--verbose does not say the program was bound: %q", stderr)
			}
			// An image's own program is never replaced by a host file.
			out, _, code = run(t, opts{user: u, dir: cwd}, "--platform", p.Name, h.reg.ref(busyboxRepo), "--", "/bin/uname", "-m")
			if code != 0 || out != p.Uname()+"\n" {
				t.Errorf("/bin/uname -m: %q exit %d", out, code)
			}
		})
	}
}

// TestGoTestExec: `go test -exec 'xrun --platform linux/ARCH IMAGE --'`
// of a module cross-compiled for arm64 and riscv64, as the README shows: the
// test binaries (in go's temp dir, outside the module) run in the image, see
// their package directory and testdata, and report their machine; with -p 1
// and -p 4 (parallel xrun calls), and a failing test (go test's status).
func TestGoTestExec(t *testing.T) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		testutil.SkipOrFail(t, "no go command: %v", err)
	}
	for _, arch := range []struct{ platform, goarch, machine string }{
		{"linux/arm64", "arm64", "aarch64"}, {"linux/riscv64", "riscv64", "riscv64"},
	} {
		p := platformByName(arch.platform)
		t.Run(subtestName(p), func(t *testing.T) {
			u := needRun(t, subUserName, p)
			mod := workDir(t, u)
			files := map[string]string{"go.mod": "module example.com/m\n\ngo 1.22\n"}
			for i := range 4 {
				pkg := fmt.Sprintf("p%d", i)
				files[pkg+"/testdata/hello.txt"] = "hello " + pkg + "\n"
				files[pkg+"/p_test.go"] = fmt.Sprintf(`package %s

import (
	"flag"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"
)

func TestPlatform(t *testing.T) {
	if runtime.GOARCH != %q {
		t.Errorf("GOARCH %%s", runtime.GOARCH)
	}
	out, err := exec.Command("uname", "-m").Output()
	if err != nil || strings.TrimSpace(string(out)) != %q {
		t.Errorf("uname -m: %%q %%v", out, err)
	}
	b, err := os.ReadFile("testdata/hello.txt")
	if err != nil || string(b) != "hello %s\n" {
		t.Errorf("testdata: %%q %%v", b, err)
	}
	if flag.Arg(0) == "fail" {
		t.Fatal("asked to fail")
	}
}
`, pkg, arch.goarch, arch.machine, pkg)
			}
			writeOwned(t, u, mod, files, 0o644)
			env := []string{
				"PATH=" + filepath.Dir(goBin) + ":/usr/local/bin:/usr/bin:/bin",
				"GOARCH=" + arch.goarch, "CGO_ENABLED=0", "GOTOOLCHAIN=local", "GOFLAGS=", "GOPROXY=off",
			}
			exe := h.xrun + " --platform " + p.Name + " " + h.reg.ref(busyboxRepo) + " --"
			for _, par := range []string{"1", "4"} {
				out, stderr, code := runAs(t, opts{user: u, dir: mod, env: env, timeout: 10 * 60e9},
					goBin, "test", "-count=1", "-p", par, "-exec", exe, "./...")
				if code != 0 || strings.Count(out, "ok  \texample.com/m/p") != 4 {
					t.Fatalf("go test -p %s -exec xrun: exit %d\n%s\n%s", par, code, out, stderr)
				}
			}
			// A failing test (told so by an argument) fails go test.
			out, _, code := runAs(t, opts{user: u, dir: mod, env: env, timeout: 10 * 60e9},
				goBin, "test", "-count=1", "-exec", exe, "./p2", "-args", "fail")
			if code != 1 || !strings.Contains(out, "asked to fail") {
				t.Errorf("failing test: exit %d\n%s", code, out)
			}
		})
	}
}
