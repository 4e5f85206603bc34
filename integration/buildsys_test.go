//go:build integration

package integration

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/xrun-dev/xrun/internal/testutil"
)

var glibcImage struct {
	once sync.Once
	ref  string
	err  error
}

// needGlibcImage pushes testimage.GlibcRepo once and returns its reference.
func needGlibcImage(t *testing.T) string {
	t.Helper()
	needImages(t)
	glibcImage.once.Do(func() { glibcImage.ref, glibcImage.err = h.images.PushGlibc(h.reg.addr) })
	if glibcImage.err != nil {
		testutil.SkipOrFail(t, "glibc test image: %v", glibcImage.err)
	}
	return glibcImage.ref
}

// readmeBlock returns the code block of README.md whose first line starts
// with first (e.g. "# aarch64.cmake:"): the tests use the README's
// configurations as a user copies them.
func readmeBlock(t *testing.T, first string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, block := range strings.Split(string(b), "```")[1:] {
		_, body, _ := strings.Cut(block, "\n")
		// A block in a list item is indented: take the indentation of
		// its first line off every line.
		indent := body[:len(body)-len(strings.TrimLeft(body, " "))]
		if indent != "" {
			lines := strings.Split(body, "\n")
			for i, l := range lines {
				lines[i] = strings.TrimPrefix(l, indent)
			}
			body = strings.Join(lines, "\n")
		}
		if strings.HasPrefix(body, first) {
			return body
		}
	}
	t.Fatalf("README.md has no code block starting with %q", first)
	return ""
}

// TestBuildSystems cross-builds integration/testdata/crossbuild with the
// host's cross gcc (dynamically linked against glibc) using CMake + ctest
// and Meson + meson test, with the README's toolchain and cross files and
// xrun as the emulator, for arm64 and riscv64, as an unprivileged user.
// The tests check the machine, an argument with a space, a data file in
// the build directory, and a failing test's status (expected to fail).
func TestBuildSystems(t *testing.T) {
	for _, tool := range []string{"cmake", "ctest", "meson", "ninja", "aarch64-linux-gnu-gcc", "riscv64-linux-gnu-gcc"} {
		if _, err := exec.LookPath(tool); err != nil {
			testutil.SkipOrFail(t, "%s not installed (hack/setup.sh installs it)", tool)
		}
	}
	image := needGlibcImage(t)
	cmakeFile := readmeBlock(t, "# aarch64.cmake:")
	mesonFile := readmeBlock(t, "# aarch64.ini:")
	for _, arch := range []struct{ platform, machine string }{{"linux/arm64", "aarch64"}, {"linux/riscv64", "riscv64"}} {
		p := platformByName(arch.platform)
		t.Run(subtestName(p), func(t *testing.T) {
			u := needRun(t, subUserName, p)
			adapt := func(s string) string {
				s = strings.ReplaceAll(s, "debian:bookworm", image)
				if arch.machine != "aarch64" {
					s = strings.ReplaceAll(strings.ReplaceAll(s, "aarch64", arch.machine), "arm64", arch.machine)
				}
				return s
			}
			env := []string{"PATH=" + filepath.Dir(h.xrun) + ":/usr/local/bin:/usr/bin:/bin"}
			want := "machine=" + arch.machine + " arg=[two words] data=data from the source tree"
			steps := func(t *testing.T, dir string, argvs ...[]string) string {
				var out string
				for _, argv := range argvs {
					o, stderr, code := runAs(t, opts{user: u, dir: dir, env: env, timeout: 10 * 60e9}, argv...)
					if code != 0 {
						t.Fatalf("%s: exit %d\n%s\n%s", strings.Join(argv, " "), code, o, stderr)
					}
					out += o
				}
				return out
			}
			t.Run("cmake", func(t *testing.T) {
				dir := projectCopy(t, u)
				writeOwned(t, u, dir, map[string]string{"aarch64.cmake": adapt(cmakeFile)}, 0o644)
				out := steps(t, dir,
					[]string{"cmake", "-DCMAKE_TOOLCHAIN_FILE=aarch64.cmake", "-B", "build"},
					[]string{"cmake", "--build", "build"},
					[]string{"ctest", "--test-dir", "build", "-j4", "-V"})
				for _, w := range []string{want, "100% tests passed, 0 tests failed out of 3"} {
					if !strings.Contains(out, w) {
						t.Errorf("ctest output lacks %q:\n%s", w, out)
					}
				}
			})
			t.Run("meson", func(t *testing.T) {
				dir := projectCopy(t, u)
				writeOwned(t, u, dir, map[string]string{"aarch64.ini": adapt(mesonFile)}, 0o644)
				out := steps(t, dir,
					[]string{"meson", "setup", "--cross-file", "aarch64.ini", "build"},
					[]string{"meson", "test", "-C", "build", "-v"})
				for _, w := range []string{want, "Ok:                 2", "Expected Fail:      1"} {
					if !strings.Contains(out, w) {
						t.Errorf("meson output lacks %q:\n%s", w, out)
					}
				}
			})
		})
	}
}

// projectCopy copies testdata/crossbuild into a new directory owned by u.
func projectCopy(t *testing.T, u *testUser) string {
	t.Helper()
	dir := workDir(t, u)
	src := filepath.Join("testdata", "crossbuild")
	entries, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	files := map[string]string{}
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(src, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		files[e.Name()] = string(b)
	}
	writeOwned(t, u, dir, files, 0o644)
	return dir
}

// TestCargoRunner: `cargo test --target aarch64-unknown-linux-gnu` of a
// workspace, with the README's .cargo/config.toml: the test binaries live
// in the workspace's target/ (outside the member package, the current
// directory cargo runs them in) and run in the arm64 glibc image.
func TestCargoRunner(t *testing.T) {
	p := platformByName("linux/arm64")
	for _, tool := range []string{"cargo", "rustc", "aarch64-linux-gnu-gcc"} {
		if _, err := exec.LookPath(tool); err != nil {
			testutil.SkipOrFail(t, "%s not installed (hack/setup.sh installs Debian's rustc, cargo and libstd-rust-dev:arm64)", tool)
		}
	}
	if _, err := os.Stat("/usr/lib/rustlib/aarch64-unknown-linux-gnu"); err != nil {
		testutil.SkipOrFail(t, "no Rust standard library for arm64 (apt-get install libstd-rust-dev:arm64): %v", err)
	}
	image := needGlibcImage(t)
	u := needRun(t, subUserName, p)
	dir := workDir(t, u)
	writeOwned(t, u, dir, map[string]string{
		".cargo/config.toml":     strings.ReplaceAll(readmeBlock(t, "# .cargo/config.toml:"), "debian:bookworm", image),
		"Cargo.toml":             "[workspace]\nmembers = [\"crates/calc\"]\n",
		"crates/calc/Cargo.toml": "[package]\nname = \"calc\"\nversion = \"0.1.0\"\nedition = \"2021\"\n",
		"crates/calc/data.txt":   "data of the package\n",
		"crates/calc/src/lib.rs": `pub fn add(a: i32, b: i32) -> i32 { a + b }

#[cfg(test)]
mod tests {
    #[test]
    fn adds() { assert_eq!(super::add(40, 2), 42); }

    #[test]
    fn platform() {
        println!("arch={} data={}", std::env::consts::ARCH,
            std::fs::read_to_string("data.txt").unwrap().trim());
        assert_eq!(std::env::consts::ARCH, "aarch64");
    }
}
`,
	}, 0o644)
	env := []string{"PATH=" + filepath.Dir(h.xrun) + ":/usr/local/bin:/usr/bin:/bin", "CARGO_HOME=" + filepath.Join(dir, ".cargo-home")}
	out, stderr, code := runAs(t, opts{user: u, dir: dir, env: env, timeout: 10 * 60e9},
		"cargo", "test", "--offline", "--target", "aarch64-unknown-linux-gnu", "--", "--nocapture")
	if code != 0 || !strings.Contains(out, "arch=aarch64 data=data of the package") || !strings.Contains(out, "test result: ok. 2 passed") {
		t.Fatalf("cargo test: exit %d\n%s\n%s", code, out, stderr)
	}
}
