//go:build integration

package integration

// Emulation strategies forced in turn (XRUN_BINFMT_STRATEGY), the
// no-emulator error, emulators installed from a registry image (by `xrun
// emulator install` and automatically), and `xrun doctor`.

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/xrun-dev/xrun/integration/testimage"
	"github.com/xrun-dev/xrun/internal/testutil"
	"github.com/xrun-dev/xrun/pkg/binfmt"
)

const hostBinfmtDir = "/proc/sys/fs/binfmt_misc"

var (
	qemuImageOnce sync.Once
	qemuImageRef  string
	qemuImageErr  error
)

// needQemuImage pushes the emulator image (testimage.PushQemu) once and
// returns its reference pinned by digest.
func needQemuImage(t *testing.T) string {
	t.Helper()
	needRegistry(t)
	qemuImageOnce.Do(func() { qemuImageRef, qemuImageErr = testimage.PushQemu(h.reg.addr) })
	if qemuImageErr != nil {
		testutil.SkipOrFail(t, "emulator test image: %v", qemuImageErr)
	}
	return qemuImageRef
}

// freshCache is an empty XRUN_CACHE owned by u, as a KEY=VALUE.
func freshCache(t *testing.T, u *testUser) (env, dir string) {
	t.Helper()
	dir, err := os.MkdirTemp(h.base, "cache-")
	if err != nil {
		t.Fatal(err)
	}
	if err := mkdirOwned(dir, u); err != nil {
		t.Fatal(err)
	}
	return "XRUN_CACHE=" + dir, dir
}

// noSystemQemu hides every emulator of the machine from xrun: an empty
// PATH directory and no system directories.
func noSystemQemu(t *testing.T) []string {
	empty := filepath.Join(h.base, "empty-path")
	if err := os.MkdirAll(empty, 0o755); err != nil {
		t.Fatal(err)
	}
	return []string{"PATH=" + empty, "XRUN_QEMU_SYSTEM_DIRS=none"}
}

// registerHostHandler registers, as root, a handler for arch on the host's
// binfmt_misc (mounting it first when needed) with interp and flags, and
// removes it (and unmounts what it mounted) when the test ends.
func registerHostHandler(t *testing.T, goarch, interp, flags string) {
	t.Helper()
	if os.Geteuid() != 0 {
		testutil.SkipOrFail(t, "registering a host binfmt handler needs root")
	}
	if _, err := os.Stat(filepath.Join(hostBinfmtDir, "register")); err != nil {
		if err := syscall.Mount("binfmt_misc", hostBinfmtDir, "binfmt_misc", 0, ""); err != nil {
			testutil.SkipOrFail(t, "mount binfmt_misc on %s: %v", hostBinfmtDir, err)
		}
		t.Cleanup(func() {
			if err := syscall.Unmount(hostBinfmtDir, 0); err != nil {
				t.Errorf("unmount %s: %v", hostBinfmtDir, err)
			}
		})
	}
	a, err := binfmt.Lookup(goarch)
	if err != nil {
		t.Fatal(err)
	}
	// binfmt.RegisterLine escapes magic and mask as \xHH for the kernel
	// (raw bytes would be misparsed, and a wrong mask can send every
	// binary of the host to qemu). A name of its own keeps it apart from
	// any handler of the machine.
	name := fmt.Sprintf("xrun-it-%d-%s", os.Getpid(), a.Name)
	line := strings.Replace(binfmt.RegisterLine(a, interp, flags), ":"+binfmt.HandlerName(a)+":", ":"+name+":", 1)
	if err := os.WriteFile(filepath.Join(hostBinfmtDir, "register"), []byte(line), 0); err != nil {
		testutil.SkipOrFail(t, "register a host handler: %v", err)
	}
	entry := filepath.Join(hostBinfmtDir, name)
	t.Cleanup(func() {
		if err := os.WriteFile(entry, []byte("-1"), 0); err != nil && !errors.Is(err, os.ErrNotExist) {
			t.Errorf("remove host handler %s: %v", name, err)
		}
	})
	b, _ := os.ReadFile(entry)
	t.Logf("host handler %s:\n%s", name, b)
}

// TestEmulationStrategies forces each strategy in turn and runs arm64 as
// the user with a subordinate range; --verbose names the strategy and emulator.
func TestEmulationStrategies(t *testing.T) {
	p := platformByName("linux/arm64")
	if p.Native() {
		t.Skip("arm64 is native here")
	}
	u := needRun(t, subUserName, p)
	img := h.reg.ref(busyboxRepo)

	t.Run("namespaced", func(t *testing.T) {
		out, stderr, code := run(t, opts{user: u, env: []string{"XRUN_BINFMT_STRATEGY=namespaced"}},
			"--verbose", "--platform", p.Name, img, "--", "uname", "-m")
		if code != 0 || out != "aarch64\n" {
			t.Fatalf("uname -m = %q, exit %d", out, code)
		}
		if !strings.Contains(stderr, "strategy=namespaced emulator=/usr/bin/"+p.Qemu) {
			t.Errorf("-v does not name the strategy and emulator: %q", stderr)
		}
	})

	// A copy of qemu at a path that exists on the host only: without F the
	// container must get it bound at that path.
	qdir := filepath.Join(h.base, "host-qemu")
	if err := os.MkdirAll(qdir, 0o755); err != nil {
		t.Fatal(err)
	}
	interp := filepath.Join(qdir, p.Qemu)
	if err := copyFile("/usr/bin/"+p.Qemu, interp, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, flags string
		bound       bool // the interpreter is visible in the container
	}{
		{"host-handler-F", "F", false},
		{"host-handler-without-F", "", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			registerHostHandler(t, p.Arch, interp, tc.flags)
			out, stderr, code := run(t, opts{user: u, env: []string{"XRUN_BINFMT_STRATEGY=host-handler"}},
				"--verbose", "--platform", p.Name, img, "--", "sh", "-c", "uname -m; ls "+interp+" 2>/dev/null || echo absent")
			want := "aarch64\n" + map[bool]string{true: interp, false: "absent"}[tc.bound] + "\n"
			if code != 0 || out != want {
				t.Fatalf("output %q, exit %d; want %q", out, code, want)
			}
			if !strings.Contains(stderr, "strategy=host-handler emulator="+interp) {
				t.Errorf("-v does not name the host handler: %q", stderr)
			}
		})
	}

	t.Run("host-handler-missing", func(t *testing.T) {
		_, stderr, code := run(t, opts{user: u, env: []string{"XRUN_BINFMT_STRATEGY=host-handler"}},
			"--platform", p.Name, img, "--", "true")
		wantXrunError(t, stderr, code, "strategy host-handler was forced", "no host handler for aarch64")
	})

	t.Run("bad-strategy", func(t *testing.T) {
		_, stderr, code := run(t, opts{user: u, env: []string{"XRUN_BINFMT_STRATEGY=qemu"}},
			"--platform", p.Name, img, "--", "true")
		wantXrunError(t, stderr, code, "XRUN_BINFMT_STRATEGY", "use auto, native, namespaced or host-handler")
	})
}

// TestNoEmulator: with no qemu anywhere and --no-emulator-pull, a foreign
// platform fails with the documented one-line error, before downloading
// any layer (emulation is decided once the manifest is known).
func TestNoEmulator(t *testing.T) {
	p := platformByName("linux/riscv64")
	u := needRun(t, noSubUserName, p)
	cache, dir := freshCache(t, u)
	env := append(noSystemQemu(t), cache)
	_, stderr, code := run(t, opts{user: u, env: env},
		"--no-emulator-pull", "--platform", p.Name, h.reg.ref(busyboxRepo), "--", "true")
	wantXrunError(t, stderr, code, "no emulator for linux/riscv64: install qemu-user-static", "xrun emulator install", "--emulator PATH")
	if layers := layerBlobs(t, dir, p); len(layers) > 0 {
		t.Errorf("a run that cannot emulate downloaded layers first: %v", layers)
	}
	if entries, _ := os.ReadDir(filepath.Join(dir, "rootfs")); len(entries) > 0 {
		t.Errorf("a run that cannot emulate unpacked the image: %v", entries)
	}
}

// layerBlobs lists the blobs in cache dir that are layers of p's image.
func layerBlobs(t *testing.T, dir string, p testPlatform) []string {
	t.Helper()
	img, err := h.images.Busybox.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	var found []string
	for _, m := range img.Manifests {
		if m.Platform == nil || m.Platform.Architecture != p.Arch {
			continue
		}
		im, err := h.images.Busybox.Image(m.Digest)
		if err != nil {
			t.Fatal(err)
		}
		layers, err := im.Layers()
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range layers {
			d, err := l.Digest()
			if err != nil {
				t.Fatal(err)
			}
			if _, err := os.Stat(filepath.Join(dir, "blobs", d.Algorithm, d.Hex)); err == nil {
				found = append(found, d.String())
			}
		}
	}
	return found
}

// TestEmulatorInstall installs emulators from the registry image, with
// `xrun emulator install --image` and automatically, with every system
// emulator hidden.
func TestEmulatorInstall(t *testing.T) {
	for _, name := range []string{"linux/arm64", "linux/riscv64"} {
		if platformByName(name).Native() {
			t.Skipf("%s is native here", name)
		}
	}
	u := needRun(t, noSubUserName, platformByName("linux/riscv64"))
	ref := needQemuImage(t)
	img := h.reg.ref(busyboxRepo)
	installed := func(cacheDir, qemu string) string {
		return filepath.Join(cacheDir, "emulators", runtime.GOARCH, qemu)
	}

	t.Run("command", func(t *testing.T) {
		cache, cacheDir := freshCache(t, u)
		env := append(noSystemQemu(t), cache)
		_, stderr, code := run(t, opts{user: u, env: env}, "emulator", "install", "--image", h.reg.ref(testimage.QemuRepo))
		wantXrunError(t, stderr, code, "must be pinned by digest")

		out, _, code := run(t, opts{user: u, env: env}, "emulator", "install", "--image", ref)
		if code != 0 || !strings.Contains(out, "installed arm64 riscv64") {
			t.Fatalf("emulator install: %q, exit %d", out, code)
		}
		for _, q := range []string{"qemu-aarch64-static", "qemu-riscv64-static"} {
			if _, err := os.Stat(installed(cacheDir, q)); err != nil {
				t.Errorf("installed emulator: %v", err)
			}
		}
		out, _, code = run(t, opts{user: u, env: env}, "emulator", "list")
		rows := map[string]string{}
		for _, line := range strings.Split(out, "\n") {
			if f := strings.Fields(line); len(f) == 3 {
				rows[f[0]] = f[1] + " " + f[2]
			}
		}
		if code != 0 || rows["linux/riscv64"] != installed(cacheDir, "qemu-riscv64-static")+" installed" ||
			rows["linux/s390x"] != "- none" || !strings.Contains(out, "from "+ref) {
			t.Errorf("emulator list:\n%s", out)
		}
		for _, p := range []testPlatform{platformByName("linux/arm64"), platformByName("linux/riscv64")} {
			out, stderr, code := run(t, opts{user: u, env: env}, "--verbose", "--no-emulator-pull", "--platform", p.Name, img, "--", "uname", "-m")
			if code != 0 || out != p.Uname()+"\n" {
				t.Errorf("%s: uname -m %q, exit %d", p.Name, out, code)
			}
			if !strings.Contains(stderr, "emulator="+filepath.Join(cacheDir, "emulators", runtime.GOARCH)) {
				t.Errorf("%s: -v does not show the installed emulator: %q", p.Name, stderr)
			}
		}
		// s390x is not in the emulator image: the error says so.
		_, stderr, code = run(t, opts{user: u, env: append(env, "XRUN_EMULATOR_IMAGE="+ref)},
			"--platform", "linux/s390x", img, "--", "true")
		wantXrunError(t, stderr, code, "no emulator for linux/s390x", "has none for linux/s390x")
	})

	t.Run("automatic", func(t *testing.T) {
		cache, cacheDir := freshCache(t, u)
		env := append(noSystemQemu(t), cache, "XRUN_EMULATOR_IMAGE="+ref)
		out, stderr, code := run(t, opts{user: u, env: env}, "--verbose", "--platform", "linux/riscv64", img, "--", "uname", "-m")
		if code != 0 || out != "riscv64\n" {
			t.Fatalf("uname -m %q, exit %d", out, code)
		}
		if !strings.Contains(stderr, "installing emulators") {
			t.Errorf("-v does not say it installed emulators: %q", stderr)
		}
		if _, err := os.Stat(installed(cacheDir, "qemu-riscv64-static")); err != nil {
			t.Errorf("installed emulator: %v", err)
		}
	})
}

// TestDoctor: every check passes here; with no emulator the platform's
// check names the fix and doctor exits non-zero.
func TestDoctor(t *testing.T) {
	p := platformByName("linux/arm64")
	u := needRun(t, subUserName, p)
	t.Run("pass", func(t *testing.T) {
		cache, _ := freshCache(t, u)
		out, stderr, code := run(t, opts{user: u, env: []string{cache}}, "doctor", "--platform", "linux/arm64", "--platform", "linux/riscv64")
		if code != 0 || strings.Contains(out, "FAIL") || stderr != "" {
			t.Fatalf("doctor: exit %d\n%s\n%s", code, out, stderr)
		}
		for _, want := range []string{
			"ok    user namespaces", "ok    binfmt_misc in a user namespace", "ok    rootless overlayfs",
			"ok    subordinate ids", "ok    linux/arm64: namespaced: /usr/bin/qemu-aarch64-static",
			"ok    run linux/arm64: ", "ok    run linux/riscv64: ", "info  cache: ",
		} {
			if !strings.Contains(out, want) {
				t.Errorf("doctor output lacks %q", want)
			}
		}
	})
	t.Run("no-emulator", func(t *testing.T) {
		cache, _ := freshCache(t, u)
		env := append(noSystemQemu(t), cache)
		out, stderr, code := run(t, opts{user: u, env: env}, "doctor", "--platform", "linux/riscv64")
		if code != 1 {
			t.Errorf("doctor exit %d, want 1", code)
		}
		if !strings.Contains(out, "FAIL  linux/riscv64: no emulator for linux/riscv64") ||
			!strings.Contains(out, "qemu-user-static; or, without root: xrun emulator install") {
			t.Errorf("doctor output does not name the fix:\n%s", out)
		}
		if stderr != "xrun: doctor: 1 problem(s): linux/riscv64 (each fix is above)\n" {
			t.Errorf("doctor stderr %q", stderr)
		}
	})
}

// TestIA32 runs the linux/386 image as both users the way this machine
// allows: natively where the kernel runs 32-bit x86 programs, else under
// qemu-i386 with --verbose saying why (IA-32 emulation off). Which way is
// decided by the harness running a 32-bit program itself, not by xrun.
func TestIA32(t *testing.T) {
	if runtime.GOARCH != "amd64" {
		t.Skip("32-bit x86 is native or emulated only on amd64 hosts")
	}
	p := platformByName("linux/386")
	t.Logf("this kernel runs 32-bit x86 programs: %v", p.Native())
	for _, user := range testUsers {
		t.Run(user, func(t *testing.T) {
			u := needRun(t, user, p)
			out, stderr, code := run(t, opts{user: u}, "--verbose", "--platform", p.Name, h.reg.ref(busyboxRepo),
				"--", "sh", "-c", "uname -m; exit 7")
			if code != 7 || out != p.Uname()+"\n" {
				t.Fatalf("uname -m = %q, exit %d; want %q, exit 7\n%s", out, code, p.Uname(), stderr)
			}
			if p.Native() {
				if !strings.Contains(stderr, "strategy=native") {
					t.Errorf("IA-32 runs here but --verbose does not say native: %q", stderr)
				}
				return
			}
			if !strings.Contains(stderr, "strategy=namespaced emulator=/usr/bin/"+p.Qemu) ||
				!strings.Contains(stderr, "does not run 32-bit x86 programs") {
				t.Errorf("--verbose does not say 386 is emulated and why: %q", stderr)
			}
		})
	}
}
