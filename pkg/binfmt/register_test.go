package binfmt

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

func TestRegisterLine(t *testing.T) {
	a, _ := Lookup("arm64")
	got := RegisterLine(a, "/usr/bin/qemu-aarch64-static", "F")
	// Debian's qemu-aarch64.conf magic and mask, byte for byte.
	want := `:xrun-aarch64:M::` +
		`\x7f\x45\x4c\x46\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\xb7\x00:` +
		`\xff\xff\xff\xff\xff\xff\xff\x00\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff\xff:` +
		`/usr/bin/qemu-aarch64-static:F`
	if got != want {
		t.Errorf("RegisterLine =\n%s\nwant\n%s", got, want)
	}
	// Every row round-trips through the kernel's unescaping.
	for i := range Arches {
		a := &Arches[i]
		f := strings.Split(RegisterLine(a, "/q", "FC")[1:], ":")
		if len(f) != 7 || f[0] != "xrun-"+a.Name || f[5] != "/q" || f[6] != "FC" {
			t.Errorf("%s: RegisterLine fields %q", a.GOARCH, f)
			continue
		}
		magic, err1 := unescape(f[3])
		mask, err2 := unescape(f[4])
		if err1 != nil || err2 != nil || !bytes.Equal(magic, a.Magic) || !bytes.Equal(mask, a.Mask) {
			t.Errorf("%s: RegisterLine magic/mask do not round-trip", a.GOARCH)
		}
	}
}

func TestIsIdentityMap(t *testing.T) {
	for in, want := range map[string]bool{
		"         0          0 4294967295\n": true,
		"         0       1000          1\n": false,
		"         0          0          1\n": false,
		"0 0 4294967295\n1 1 1\n":            false,
	} {
		if got := isIdentityMap(in); got != want {
			t.Errorf("isIdentityMap(%q) = %v, want %v", in, got, want)
		}
	}
}

func TestMountAndRegisterBadInput(t *testing.T) {
	a, _ := Lookup("arm64")
	for _, tt := range []struct {
		plan  *Plan
		flags string
		want  string
	}{
		{nil, "F", "[internal error]"},
		{&Plan{Strategy: HostHandler, Arch: a, Emulator: "/q"}, "F", "[internal error]"},
		{&Plan{Strategy: Namespaced, Arch: a}, "F", "[internal error]"},
		{&Plan{Strategy: Namespaced, Arch: a, Emulator: "/q"}, "FX", "only P, O, C, F exist"},
		{&Plan{Strategy: Namespaced, Arch: a, Emulator: "/a:b"}, "F", "containing ':'"},
	} {
		err := MountAndRegister(t.TempDir(), tt.plan, tt.flags)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("MountAndRegister(%+v, %q) = %v, want an error containing %q", tt.plan, tt.flags, err, tt.want)
		}
	}
}

// TestMountAndRegisterRefusesHost checks that, run in the initial user
// namespace (e.g. as root on the host), nothing is mounted or registered.
func TestMountAndRegisterRefusesHost(t *testing.T) {
	if init, err := inInitialUserNS(); err != nil || !init {
		t.Skipf("not in the initial user namespace (%v): the refusal cannot be tested here", err)
	}
	a, _ := Lookup("arm64")
	err := MountAndRegister(t.TempDir(), &Plan{Strategy: Namespaced, Arch: a, Emulator: "/usr/bin/qemu-aarch64-static"}, "F")
	if err == nil || !strings.Contains(err.Error(), "initial user namespace") {
		t.Fatalf("MountAndRegister in the initial user namespace = %v, want a refusal", err)
	}
}

// foreignGOARCH is an arch this host needs an emulator for.
func foreignGOARCH() string {
	if runtime.GOARCH == "arm64" {
		return "riscv64"
	}
	return "arm64"
}

// TestMountAndRegister re-executes the test binary in a new user+mount
// namespace (as an unprivileged user, or as root: root creates one too),
// where registerChild mounts binfmt_misc, registers qemu and runs a
// cross-compiled binary directly.
func TestMountAndRegister(t *testing.T) {
	goarch := foreignGOARCH()
	plan := needBinfmtNS(t, goarch)
	bin := crossBinaries(t)[goarch]

	tmp := t.TempDir()
	// A copy of qemu that the child deletes after registering: with F the
	// handler keeps working (the kernel holds the file open).
	emu := filepath.Join(tmp, "qemu-copy")
	copyFile(t, plan.Emulator, emu)
	for _, d := range []string{"mnt1", "mnt2"} {
		if err := os.Mkdir(filepath.Join(tmp, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe)
	cmd.Env = append(os.Environ(), childEnv+"=register",
		"XRUN_T_GOARCH="+goarch, "XRUN_T_BIN="+bin, "XRUN_T_EMU="+emu,
		"XRUN_T_STATIC_EMU="+plan.Emulator, "XRUN_T_DIR="+tmp)
	cmd.SysProcAttr = nsAttr()
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err = cmd.Run()
	t.Logf("child stderr:\n%s", stderr.String())
	if err != nil || !strings.Contains(stdout.String(), "CHILD-OK") {
		t.Fatalf("child: %v\nstdout:\n%s", err, stdout.String())
	}
	// The host's binfmt_misc (if mounted) did not get the handler.
	if _, err := os.Stat("/proc/sys/fs/binfmt_misc/" + HandlerName(plan.Arch)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("host /proc/sys/fs/binfmt_misc/%s: %v, want it absent", HandlerName(plan.Arch), err)
	}
	// Nor can the host run the binary through it.
	if out, err := exec.Command(bin).CombinedOutput(); err == nil && hostHasHandler(plan.Arch) == "" {
		t.Errorf("the host ran the %s binary without a host handler: %s", goarch, out)
	}
}

// hostHasHandler returns the name of a host handler for a, if any.
func hostHasHandler(a *Arch) string {
	h, _ := findHostHandler(a, "/proc/sys/fs/binfmt_misc", slog.New(slog.DiscardHandler))
	if h == nil {
		return ""
	}
	return h.name
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	src, err := os.Open(from)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	dst, err := os.OpenFile(to, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(dst, src); err != nil {
		t.Fatal(err)
	}
	if err := dst.Close(); err != nil {
		t.Fatal(err)
	}
}

// registerChild runs inside the new user+mount namespace (see TestMain).
func registerChild() error {
	goarch, bin, emu, dir := os.Getenv("XRUN_T_GOARCH"), os.Getenv("XRUN_T_BIN"), os.Getenv("XRUN_T_EMU"), os.Getenv("XRUN_T_DIR")
	want := "hello from " + goarch + "\n"
	if init, err := inInitialUserNS(); err != nil || init {
		return fmt.Errorf("expected a new user namespace: init=%v, %v", init, err)
	}
	// Keep every mount of this test in this namespace.
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return fmt.Errorf("make / private: %w", err)
	}
	// Before registering, this namespace sees the host's handlers (none
	// for goarch on a CI machine); log what happens.
	out, err := exec.Command(bin).CombinedOutput()
	fmt.Fprintf(os.Stderr, "before registering: %q, %v\n", out, err)

	plan, err := Decide(goarch, "", Options{Emulator: emu})
	if err != nil {
		return err
	}
	if plan.Strategy != Namespaced {
		return fmt.Errorf("Decide = %+v, want namespaced", plan)
	}
	mnt1 := filepath.Join(dir, "mnt1")
	if err := MountAndRegister(mnt1, plan, "F"); err != nil {
		return err
	}
	entry, err := os.ReadFile(filepath.Join(mnt1, HandlerName(plan.Arch)))
	if err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "registered:\n%s", entry)
	if !bytes.HasPrefix(entry, []byte("enabled\n")) || !bytes.Contains(entry, []byte("flags: F\n")) {
		return fmt.Errorf("unexpected entry:\n%s", entry)
	}
	// F: the kernel opened qemu at registration; its path is not needed.
	if err := os.Remove(emu); err != nil {
		return err
	}
	out, err = exec.Command(bin).Output()
	if err != nil || string(out) != want {
		return fmt.Errorf("run %s after registering: %q, %v; want %q", bin, out, err, want)
	}

	// Registering again (another mount in the same user namespace) replaces
	// the handler instead of failing with EEXIST.
	plan.Emulator = os.Getenv("XRUN_T_STATIC_EMU")
	mnt2 := filepath.Join(dir, "mnt2")
	if err := MountAndRegister(mnt2, plan, "FP"); err != nil {
		return fmt.Errorf("second registration: %w", err)
	}
	entry, err = os.ReadFile(filepath.Join(mnt2, HandlerName(plan.Arch)))
	if err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "registered again:\n%s", entry)
	// One instance per user namespace: the first mount shows the new entry.
	entry, err = os.ReadFile(filepath.Join(mnt1, HandlerName(plan.Arch)))
	fmt.Fprintf(os.Stderr, "seen through the first mount: %v\n%s", err, entry)
	out, err = exec.Command(bin).Output()
	if err != nil || string(out) != want {
		return fmt.Errorf("run %s after registering again: %q, %v; want %q", bin, out, err, want)
	}
	return nil
}
