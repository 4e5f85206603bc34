package doctor

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/xrun-dev/xrun/pkg/binfmt"
)

// fakeMachine is a /proc/sys (sysctls by file name under it) and /etc for
// Options' seams.
func fakeMachine(t *testing.T, sys map[string]string, osRelease string) (System, string) {
	t.Helper()
	root := t.TempDir()
	etc := filepath.Join(root, "etc")
	for name, v := range sys {
		p := filepath.Join(root, "proc", "sys", name)
		os.MkdirAll(filepath.Dir(p), 0o755)
		os.WriteFile(p, []byte(v+"\n"), 0o644)
	}
	os.MkdirAll(etc, 0o755)
	os.WriteFile(filepath.Join(etc, "os-release"), []byte(osRelease), 0o644)
	return System{FS: os.DirFS(root), Getenv: func(string) string { return "" }, Exe: "/opt/xrun/bin/xrun", Geteuid: func() int { return 1000 }}, etc
}

func find(r *Report, name string) *Check {
	for i := range r.Checks {
		if r.Checks[i].Name == name {
			return &r.Checks[i]
		}
	}
	return nil
}

func TestRunNoUserNS(t *testing.T) {
	sys, etc := fakeMachine(t, map[string]string{
		"user/max_user_namespaces":                     "0",
		"kernel/apparmor_restrict_unprivileged_userns": "1",
	}, "ID=ubuntu\nID_LIKE=debian\n")
	r := Run(context.Background(), Options{
		Platforms: []Platform{{GOARCH: "arm64"}},
		CacheDir:  t.TempDir(),
		Binfmt:    binfmt.Options{KernelRelease: "6.8.0-generic", Emulator: "/nonexistent/qemu"},
		sys:       sys, etc: etc,
		probe: func(context.Context, string) (*probeResult, error) {
			return nil, errors.New("fork/exec: operation not permitted")
		},
		smoke: func(context.Context, *binfmt.Plan, *slog.Logger) (time.Duration, error) {
			t.Error("smoke test run without a plan")
			return 0, nil
		},
	})
	c := find(r, "user namespaces")
	if c == nil || c.Status != Fail ||
		!strings.Contains(c.Fix, "sudo sysctl user.max_user_namespaces=15000") ||
		!strings.Contains(c.Detail, "user.max_user_namespaces is 0") {
		t.Errorf("user namespaces check = %+v", c)
	}
	c = find(r, "linux/arm64")
	if c == nil || c.Status != Fail || !strings.Contains(c.Fix, "sudo apt-get install qemu-user-static; or, without root: xrun emulator install") {
		t.Errorf("linux/arm64 check = %+v", c)
	}
	if len(r.Failed()) != 2 {
		t.Errorf("failed checks = %+v, want 2", r.Failed())
	}
}

func TestRunSmoke(t *testing.T) {
	sys, etc := fakeMachine(t, nil, "ID=fedora\n")
	emu := filepath.Join(t.TempDir(), "qemu-riscv64-static")
	prog, _ := binfmt.TestProgram("amd64") // any static ELF will do as a fake emulator
	os.WriteFile(emu, prog, 0o755)
	var ran []string
	r := Run(context.Background(), Options{
		Platforms: []Platform{{GOARCH: "riscv64"}, {GOARCH: "s390x"}},
		CacheDir:  t.TempDir(),
		Binfmt:    binfmt.Options{KernelRelease: "6.18.1", HostGOARCH: "amd64", Emulator: filepath.Dir(emu), BinfmtDir: t.TempDir()},
		sys:       sys, etc: etc,
		probe: func(context.Context, string) (*probeResult, error) {
			return &probeResult{Overlay: "mount overlay: invalid argument"}, nil
		},
		smoke: func(_ context.Context, p *binfmt.Plan, _ *slog.Logger) (time.Duration, error) {
			ran = append(ran, p.Arch.GOARCH)
			return time.Millisecond, nil
		},
	})
	if c := find(r, "rootless overlayfs"); c == nil || c.Status != Fail || !strings.Contains(c.Fix, "XRUN_CACHE=") {
		t.Errorf("overlay check = %+v", c)
	}
	if c := find(r, "linux/s390x"); c == nil || c.Status != Fail || !strings.HasPrefix(c.Fix, "sudo dnf install qemu-user-static") {
		t.Errorf("linux/s390x check = %+v", c)
	}
	if c := find(r, "run linux/riscv64"); c == nil || c.Status != OK {
		t.Errorf("run linux/riscv64 check = %+v", c)
	}
	if strings.Join(ran, ",") != "riscv64" {
		t.Errorf("smoke tests ran for %q, want riscv64", ran)
	}
}

// TestNoEmulatorFromCurrentDir is the attack of issue 13 item 5: with an
// empty (or relative) entry in PATH, a qemu-aarch64-static planted in the
// directory where doctor is run (a cloned repository, /tmp) was taken as
// the emulator, run with --version on the host, and used for the smoke
// test. It must not be found at all.
func TestNoEmulatorFromCurrentDir(t *testing.T) {
	sys, etc := fakeMachine(t, nil, "ID=debian\n")
	dir := t.TempDir()
	prog, _ := binfmt.TestProgram("amd64") // a static ELF, as a real qemu is
	for _, d := range []string{dir, filepath.Join(dir, "bin")} {
		os.MkdirAll(d, 0o755)
		if err := os.WriteFile(filepath.Join(d, "qemu-aarch64-static"), prog, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	t.Chdir(dir)
	t.Setenv("PATH", ":bin:./bin:/nonexistent:")
	r := Run(context.Background(), Options{
		Platforms: []Platform{{GOARCH: "arm64"}},
		CacheDir:  t.TempDir(),
		Binfmt:    binfmt.Options{KernelRelease: "6.18.1", HostGOARCH: "amd64", BinfmtDir: t.TempDir(), SystemDirs: []string{}},
		sys:       sys, etc: etc,
		probe: func(context.Context, string) (*probeResult, error) {
			return &probeResult{}, nil
		},
		smoke: func(_ context.Context, p *binfmt.Plan, _ *slog.Logger) (time.Duration, error) {
			t.Errorf("smoke test run with %s", p.Emulator)
			return 0, nil
		},
	})
	for _, c := range r.Checks {
		if strings.Contains(c.Detail, dir) {
			t.Errorf("check %s uses the planted emulator: %s", c.Name, c.Detail)
		}
	}
	if c := find(r, "linux/arm64"); c == nil || c.Status != Fail {
		t.Errorf("linux/arm64 check = %+v, want a failure (no emulator)", c)
	}
}

// TestCacheReadableByOthers: a cache other users can read (made by an
// older xrun, or an XRUN_CACHE directory) is a warning that says how to
// make it private; a private one is not.
func TestCacheReadableByOthers(t *testing.T) {
	for _, tc := range []struct {
		mode os.FileMode
		warn bool
	}{{0o755, true}, {0o711, true}, {0o700, false}} {
		dir := t.TempDir()
		if err := os.Chmod(dir, tc.mode); err != nil {
			t.Fatal(err)
		}
		d := &doctor{o: Options{CacheDir: dir}}
		d.o.fill()
		d.checkCache()
		var warned *Check
		for i, c := range d.r.Checks {
			if c.Name == "cache" && c.Status == Warn {
				warned = &d.r.Checks[i]
			}
		}
		if (warned != nil) != tc.warn {
			t.Errorf("mode %v: warning %+v, want one: %v", tc.mode, warned, tc.warn)
		}
		if warned != nil && !strings.Contains(warned.Fix, "chmod 700 "+dir) {
			t.Errorf("mode %v: fix %q, want chmod 700", tc.mode, warned.Fix)
		}
	}
}

func TestFreeSubStart(t *testing.T) {
	dir := t.TempDir()
	f := filepath.Join(dir, "subuid")
	if got := freeSubStart(f); got != 100000 {
		t.Errorf("freeSubStart(no file) = %d", got)
	}
	os.WriteFile(f, []byte("a:100000:65536\nb:200000:65536\n"), 0o644)
	if got := freeSubStart(f); got != 327680 {
		t.Errorf("freeSubStart = %d, want 327680", got)
	}
}

func TestStartupHugePages(t *testing.T) {
	for _, tc := range []struct {
		setting string // "": the file does not exist
		status  Status
		want    string
	}{
		{"always within_size advise [never] deny force", Info, "echo within_size | sudo tee"},
		{"always within_size [advise] never deny force", Info, "shmem_enabled: advise"},
		{"always [within_size] advise never deny force", OK, "huge pages (within_size)"},
		{"[always] within_size advise never deny force", OK, "huge pages (always)"},
		{"", Info, "cannot read"},
	} {
		sys, etc := fakeMachine(t, nil, "ID=debian\n")
		thp := filepath.Join(t.TempDir(), "shmem_enabled")
		if tc.setting != "" {
			os.WriteFile(thp, []byte(tc.setting+"\n"), 0o644)
		}
		r := Run(context.Background(), Options{
			Platforms: []Platform{{GOARCH: "arm64"}},
			CacheDir:  t.TempDir(),
			Binfmt:    binfmt.Options{KernelRelease: "6.8.0", Emulator: "/nonexistent/qemu"},
			sys:       sys, etc: etc, shmemTHP: thp,
			probe: func(context.Context, string) (*probeResult, error) {
				return nil, errors.New("not probed in this test")
			},
			smoke: func(context.Context, *binfmt.Plan, *slog.Logger) (time.Duration, error) { return 0, nil },
		})
		c := find(r, "start-up")
		if c == nil || c.Status != tc.status || !strings.Contains(c.Detail, tc.want) {
			t.Errorf("%q: start-up check = %+v, want status %v and %q", tc.setting, c, tc.status, tc.want)
		}
	}
}
