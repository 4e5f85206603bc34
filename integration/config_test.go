//go:build integration

package integration

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestProjectConfig runs xrun in a project with a .xrun.yaml, from a
// subdirectory, as an unprivileged user: no flags needed, targets, and
// `xrun shell` reading commands from a pipe.
func TestProjectConfig(t *testing.T) {
	needImages(t)
	needQemu(t, platformByName("linux/arm64"))
	needQemu(t, platformByName("linux/s390x"))
	needBinfmtNS(t)
	u := needUser(t, subUserName)
	dir := workDir(t, u)
	cfg := fmt.Sprintf(`# a project that builds for two platforms
image: %s
platform: linux/arm64
env: [GREETING=from-config]
targets:
  arm64: {}
  s390x:
    platform: linux/s390x
`, h.reg.ref(busyboxRepo))
	if err := os.WriteFile(filepath.Join(dir, ".xrun.yaml"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	sub := filepath.Join(dir, "src")
	if err := mkdirOwned(sub, u); err != nil {
		t.Fatal(err)
	}

	out, _, code := run(t, opts{user: u, dir: sub}, "--", "sh", "-c", "uname -m; echo $GREETING; pwd")
	if want := "aarch64\nfrom-config\n" + sub + "\n"; code != 0 || out != want {
		t.Errorf("xrun -- ... in a project = %d, %q; want 0, %q", code, out, want)
	}

	out, _, code = run(t, opts{user: u, dir: sub}, "--target", "s390x", "--", "uname", "-m")
	if code != 0 || out != "s390x\n" {
		t.Errorf("xrun --target s390x = %d, %q; want 0, \"s390x\\n\"", code, out)
	}

	out, stderr, code := run(t, opts{user: u, dir: sub}, "--target", "all", "--", "sh", "-c", "uname -m; [ $(uname -m) = aarch64 ] || exit 4")
	if code != 4 || out != "aarch64\ns390x\n" {
		t.Errorf("xrun --target all = %d, %q; want 4 (s390x's status), \"aarch64\\ns390x\\n\"", code, out)
	}
	for _, want := range []string{"xrun: target arm64: ok", "xrun: target s390x: exit 4"} {
		if !strings.Contains(stderr, want) {
			t.Errorf("xrun --target all stderr lacks %q:\n%s", want, stderr)
		}
	}

	// xrun shell: the image from the file, commands from standard input.
	out, _, code = run(t, opts{user: u, dir: sub, stdin: []byte("uname -m\necho in $(pwd)\nexit 3\n")}, "shell")
	if want := "aarch64\nin " + sub + "\n"; code != 3 || out != want {
		t.Errorf("xrun shell <script = %d, %q; want 3, %q", code, out, want)
	}

	// Flags beat the file.
	out, _, code = run(t, opts{user: u, dir: sub}, "--platform", "linux/amd64", "-e", "GREETING=from-flag", "--", "sh", "-c", "uname -m; echo $GREETING")
	if code != 0 || out != "x86_64\nfrom-flag\n" {
		t.Errorf("flags over .xrun.yaml = %d, %q; want 0, \"x86_64\\nfrom-flag\\n\"", code, out)
	}
}
