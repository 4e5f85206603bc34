package binfmt

import (
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// handlerFile is a binfmt_misc entry for goarch as the kernel shows it
// (magic already masked, as the kernel stores it).
func handlerFile(goarch, interp, flags string, enabled bool) string {
	a, err := Lookup(goarch)
	if err != nil {
		panic(err)
	}
	state := "enabled"
	if !enabled {
		state = "disabled"
	}
	return fmt.Sprintf("%s\ninterpreter %s\nflags: %s\noffset 0\nmagic %s\nmask %s\n",
		state, interp, flags, hex.EncodeToString(a.Magic), hex.EncodeToString(a.Mask))
}

// mipsn32elHandler is Debian's qemu-mipsn32el entry: mipsel's magic with
// the EF_MIPS_ABI2 bit required.
func mipsn32elHandler(interp string) string {
	a, _ := Lookup("mipsle")
	magic := slices.Clone(a.Magic)
	magic[36] = 0x20
	return fmt.Sprintf("enabled\ninterpreter %s\nflags: F\noffset 0\nmagic %s\nmask %s\n",
		interp, hex.EncodeToString(magic), hex.EncodeToString(a.Mask))
}

func TestDecide(t *testing.T) {
	const (
		static  = "static"
		dynamic = "dynamic"
		text    = "text"
	)
	type tc struct {
		name            string
		goarch, variant string
		host            string            // default amd64
		kernel          string            // default 6.18.44-fc-v595
		files           map[string]string // $ROOT-relative path -> static, dynamic, text
		handlers        map[string]string // host binfmt_misc entries; $ROOT expanded
		path            string            // $PATH; $ROOT expanded
		inRoot          bool              // run in $ROOT (relative PATH entries point into it)
		qemuPath        string            // $XRUN_QEMU_PATH; $ROOT expanded
		emulator        string            // Options.Emulator; $ROOT expanded
		installed       string            // Options.InstalledDir; $ROOT expanded
		sysDirs         []string          // Options.SystemDirs (replacing the fake system dirs); $ROOT expanded
		force           Strategy          // Options.Force
		noCompat        bool              // the probe says this host does not run its NativeOn arches
		want            *Plan             // Arch is filled from goarch; $ROOT expanded
		wantErr         error
		wantMsg         string // $ROOT expanded
	}
	aarch64Static := map[string]string{"usr/bin/qemu-aarch64-static": static}
	tests := []tc{
		{name: "native", goarch: "amd64", want: &Plan{Strategy: Native}},
		{name: "386 on amd64", goarch: "386", want: &Plan{Strategy: Native}},
		{name: "386 on amd64 without IA-32", goarch: "386", noCompat: true,
			files: map[string]string{"usr/bin/qemu-i386-static": static},
			want:  &Plan{Strategy: Namespaced, Emulator: "$ROOT/usr/bin/qemu-i386-static", NotNative: "probe: no"}},
		{name: "386 on amd64 without IA-32 or emulator", goarch: "386", noCompat: true, wantErr: ErrNoEmulator,
			wantMsg: "no emulator for linux/386: " + NoEmulatorHint + " (probe: no)"},
		{name: "386 on amd64 without IA-32, host handler", goarch: "386", noCompat: true, kernel: "6.1.0",
			handlers: map[string]string{"qemu-i386": handlerFile("386", "$ROOT/h/qemu-i386-static", "F", true)},
			want:     &Plan{Strategy: HostHandler, Emulator: "$ROOT/h/qemu-i386-static", HostFlags: "F", NotNative: "probe: no"}},
		{name: "force native, 386 without IA-32", goarch: "386", noCompat: true, force: Native, wantErr: ErrNotNative,
			wantMsg: "strategy native was forced (XRUN_BINFMT_STRATEGY) but probe: no: unset it"},
		{name: "arm on arm64", goarch: "arm", variant: "v7", host: "arm64", want: &Plan{Strategy: Native}},
		{name: "arm on arm64 without AArch32", goarch: "arm", variant: "v7", host: "arm64", noCompat: true,
			files: map[string]string{"usr/bin/qemu-arm-static": static},
			want:  &Plan{Strategy: Namespaced, Emulator: "$ROOT/usr/bin/qemu-arm-static", NotNative: "probe: no"}},
		{name: "unknown arch that is the host's", goarch: "sparc64", host: "sparc64",
			want: &Plan{Strategy: Native, Arch: &Arch{Name: "sparc64", GOARCH: "sparc64"}}},
		{name: "unknown arch", goarch: "sparc64", wantErr: ErrUnknownArch,
			wantMsg: `no emulation known for architecture "sparc64"; xrun supports: 386, amd64, arm, arm64, loong64, mips64le, mipsle, ppc64le, riscv64, s390x`},
		{name: "unknown variant", goarch: "arm", variant: "v9", wantErr: ErrUnknownArch,
			wantMsg: "no emulation known for linux/arm/v9; supported variants: v5, v6, v7"},
		{name: "arm64 variant v8", goarch: "arm64", variant: "v8", files: aarch64Static,
			want: &Plan{Strategy: Namespaced, Emulator: "$ROOT/usr/bin/qemu-aarch64-static"}},
		{name: "system dir", goarch: "arm64", files: aarch64Static,
			want: &Plan{Strategy: Namespaced, Emulator: "$ROOT/usr/bin/qemu-aarch64-static"}},
		{name: "kernel 6.7 exactly", goarch: "arm64", kernel: "6.7.0", files: aarch64Static,
			want: &Plan{Strategy: Namespaced, Emulator: "$ROOT/usr/bin/qemu-aarch64-static"}},
		{name: "libexec before /usr/bin", goarch: "arm64",
			files: map[string]string{"libexec/aarch64-binfmt-P": static, "usr/bin/qemu-aarch64-static": static},
			want:  &Plan{Strategy: Namespaced, Emulator: "$ROOT/libexec/aarch64-binfmt-P"}},
		{name: "PATH before system dirs; -static before plain", goarch: "riscv64", path: "$ROOT/p1:$ROOT/p2",
			files: map[string]string{"p1/qemu-riscv64": static, "p2/qemu-riscv64-static": static, "usr/bin/qemu-riscv64-static": static},
			want:  &Plan{Strategy: Namespaced, Emulator: "$ROOT/p2/qemu-riscv64-static"}},
		{name: "dynamic on PATH skipped for static", goarch: "arm64", path: "$ROOT/p1",
			files: map[string]string{"p1/qemu-aarch64": dynamic, "usr/local/bin/qemu-aarch64-static": static},
			want:  &Plan{Strategy: Namespaced, Emulator: "$ROOT/usr/local/bin/qemu-aarch64-static"}},
		{name: "non-executable and non-ELF skipped", goarch: "arm64", path: "$ROOT/p1",
			files: map[string]string{"p1/qemu-aarch64-static": text, "usr/bin/qemu-aarch64-static": static},
			want:  &Plan{Strategy: Namespaced, Emulator: "$ROOT/usr/bin/qemu-aarch64-static"}},
		// Relative and empty PATH entries (the current directory) are never
		// searched: a qemu planted in a project directory must not be run.
		{name: "empty PATH entry is not the current directory", goarch: "arm64", path: ":$ROOT/p1:", inRoot: true,
			files: map[string]string{"qemu-aarch64-static": static, "usr/bin/qemu-aarch64-static": static},
			want:  &Plan{Strategy: Namespaced, Emulator: "$ROOT/usr/bin/qemu-aarch64-static"}},
		{name: "relative PATH entries skipped", goarch: "arm64", path: ".:p1:./p2:../" + "$BASE" + "/p1", inRoot: true,
			files: map[string]string{"qemu-aarch64-static": static, "p1/qemu-aarch64": static, "p2/qemu-aarch64-static": static,
				"usr/bin/qemu-aarch64-static": static},
			want: &Plan{Strategy: Namespaced, Emulator: "$ROOT/usr/bin/qemu-aarch64-static"}},
		{name: "only a relative PATH entry has one", goarch: "arm64", path: "p1", inRoot: true, sysDirs: []string{},
			files:   map[string]string{"p1/qemu-aarch64-static": static},
			wantErr: ErrNoEmulator,
			wantMsg: "no emulator for linux/arm64: install qemu-user-static (Debian/Ubuntu: apt-get install qemu-user-static; Fedora: dnf install qemu-user-static), run xrun emulator install, or pass --emulator PATH"},
		{name: "XRUN_QEMU_PATH dir", goarch: "arm64", qemuPath: "$ROOT/q",
			files: map[string]string{"q/qemu-aarch64-static": static, "usr/bin/qemu-aarch64-static": static},
			want:  &Plan{Strategy: Namespaced, Emulator: "$ROOT/q/qemu-aarch64-static"}},
		{name: "XRUN_QEMU_PATH file", goarch: "arm64", qemuPath: "$ROOT/q/my-qemu",
			files: map[string]string{"q/my-qemu": static, "usr/bin/qemu-aarch64-static": static},
			want:  &Plan{Strategy: Namespaced, Emulator: "$ROOT/q/my-qemu"}},
		{name: "XRUN_QEMU_PATH dir without it", goarch: "arm64", qemuPath: "$ROOT/q",
			files:   map[string]string{"q/qemu-riscv64-static": static, "usr/bin/qemu-aarch64-static": static},
			wantErr: ErrNoEmulator, wantMsg: "emulator for linux/arm64: stat $ROOT/q/qemu-aarch64-static: no such file or directory"},
		{name: "--emulator wins", goarch: "arm64", emulator: "$ROOT/e/qemu", qemuPath: "$ROOT/q",
			files: map[string]string{"e/qemu": static, "q/qemu-aarch64-static": static},
			want:  &Plan{Strategy: Namespaced, Emulator: "$ROOT/e/qemu"}},
		{name: "--emulator dynamic", goarch: "arm64", emulator: "$ROOT/usr/bin/qemu-aarch64",
			files:   map[string]string{"usr/bin/qemu-aarch64": dynamic, "usr/bin/qemu-aarch64-static": static},
			wantErr: ErrDynamicEmulator,
			wantMsg: "emulator $ROOT/usr/bin/qemu-aarch64 is dynamically linked and cannot load inside the image: install qemu-user-static, run xrun emulator install, or pass a static --emulator"},
		{name: "--emulator missing", goarch: "arm64", emulator: "$ROOT/nope", files: aarch64Static,
			wantErr: ErrNoEmulator, wantMsg: "emulator for linux/arm64: stat $ROOT/nope: no such file or directory"},
		{name: "only dynamic", goarch: "arm64", files: map[string]string{"usr/bin/qemu-aarch64": dynamic},
			wantErr: ErrDynamicEmulator,
			wantMsg: "emulator $ROOT/usr/bin/qemu-aarch64 is dynamically linked and cannot load inside the image: install qemu-user-static, run xrun emulator install, or pass a static --emulator"},
		{name: "only dynamic, host handler", goarch: "arm64", files: map[string]string{"usr/bin/qemu-aarch64": dynamic, "h/qemu-aarch64-static": static},
			handlers: map[string]string{"qemu-aarch64": handlerFile("arm64", "$ROOT/h/qemu-aarch64-static", "F", true)},
			want:     &Plan{Strategy: HostHandler, Emulator: "$ROOT/h/qemu-aarch64-static", HostFlags: "F"}},
		{name: "no emulator", goarch: "riscv64", wantErr: ErrNoEmulator,
			wantMsg: "no emulator for linux/riscv64: install qemu-user-static (Debian/Ubuntu: apt-get install qemu-user-static; Fedora: dnf install qemu-user-static), run xrun emulator install, or pass --emulator PATH"},
		{name: "no emulator, host handler", goarch: "riscv64", files: map[string]string{"h/qemu-riscv64-static": static},
			handlers: map[string]string{"qemu-riscv64": handlerFile("riscv64", "$ROOT/h/qemu-riscv64-static", "OCF", true)},
			want:     &Plan{Strategy: HostHandler, Emulator: "$ROOT/h/qemu-riscv64-static", HostFlags: "OCF"}},
		{name: "namespaced preferred over host handler", goarch: "arm64", files: map[string]string{"usr/bin/qemu-aarch64-static": static},
			handlers: map[string]string{"qemu-aarch64": handlerFile("arm64", "$ROOT/usr/bin/qemu-aarch64-static", "F", true)},
			want:     &Plan{Strategy: Namespaced, Emulator: "$ROOT/usr/bin/qemu-aarch64-static"}},
		{name: "old kernel, F handler", goarch: "arm64", kernel: "6.1.0-28-amd64", files: aarch64Static,
			handlers: map[string]string{"qemu-aarch64": handlerFile("arm64", "$ROOT/usr/bin/qemu-aarch64-static", "POCF", true)},
			want:     &Plan{Strategy: HostHandler, Emulator: "$ROOT/usr/bin/qemu-aarch64-static", HostFlags: "POCF"}},
		{name: "old kernel, F handler whose interpreter is gone", goarch: "arm64", kernel: "6.6.30",
			handlers: map[string]string{"qemu-aarch64": handlerFile("arm64", "/gone/qemu-aarch64-static", "F", true)},
			want:     &Plan{Strategy: HostHandler, Emulator: "/gone/qemu-aarch64-static", HostFlags: "F"}},
		{name: "old kernel, handler without F", goarch: "arm64", kernel: "5.15.0", files: aarch64Static,
			handlers: map[string]string{"qemu-aarch64": handlerFile("arm64", "$ROOT/usr/bin/qemu-aarch64-static", "", true)},
			want:     &Plan{Strategy: HostHandler, Emulator: "$ROOT/usr/bin/qemu-aarch64-static", HostFlags: ""}},
		{name: "old kernel, F preferred among handlers", goarch: "arm64", kernel: "5.15.0", files: aarch64Static,
			handlers: map[string]string{
				"a-qemu": handlerFile("arm64", "$ROOT/usr/bin/qemu-aarch64-static", "OC", true),
				"b-qemu": handlerFile("arm64", "$ROOT/usr/bin/qemu-aarch64-static", "OCF", true),
			},
			want: &Plan{Strategy: HostHandler, Emulator: "$ROOT/usr/bin/qemu-aarch64-static", HostFlags: "OCF"}},
		{name: "old kernel, no handler", goarch: "arm64", kernel: "6.1.0-28-amd64", files: aarch64Static,
			handlers: map[string]string{"qemu-riscv64": handlerFile("riscv64", "$ROOT/usr/bin/qemu-aarch64-static", "F", true)},
			want:     &Plan{Strategy: Intercept, Emulator: "$ROOT/usr/bin/qemu-aarch64-static"}},
		{name: "old kernel, disabled handler", goarch: "arm64", kernel: "6.1.0", files: aarch64Static,
			handlers: map[string]string{"qemu-aarch64": handlerFile("arm64", "$ROOT/usr/bin/qemu-aarch64-static", "F", false)},
			want:     &Plan{Strategy: Intercept, Emulator: "$ROOT/usr/bin/qemu-aarch64-static"}},
		{name: "old kernel, binfmt_misc disabled", goarch: "arm64", kernel: "6.1.0", files: aarch64Static,
			handlers: map[string]string{"status": "disabled\n", "qemu-aarch64": handlerFile("arm64", "$ROOT/usr/bin/qemu-aarch64-static", "F", true)},
			want:     &Plan{Strategy: Intercept, Emulator: "$ROOT/usr/bin/qemu-aarch64-static"}},
		{name: "old kernel, dynamic handler", goarch: "arm64", kernel: "6.1.0",
			files:    map[string]string{"usr/bin/qemu-aarch64": dynamic},
			handlers: map[string]string{"qemu-aarch64": handlerFile("arm64", "$ROOT/usr/bin/qemu-aarch64", "F", true)},
			wantErr:  ErrKernelTooOld,
			wantMsg:  "kernel 6.1 cannot register binfmt handlers in a user namespace (needs Linux 6.7+) and no usable host handler for aarch64 is registered (qemu-aarch64: interpreter $ROOT/usr/bin/qemu-aarch64 is dynamically linked): ask an admin to register qemu-user-static with the F flag (e.g. update-binfmts --enable qemu-aarch64) or upgrade the kernel (with a static qemu-user, xrun would intercept the execs instead)"},
		{name: "unparsable kernel counts as old", goarch: "arm64", kernel: "weird", files: aarch64Static,
			want: &Plan{Strategy: Intercept, Emulator: "$ROOT/usr/bin/qemu-aarch64-static"}},
		{name: "old kernel, only an n32 handler for mipsel", goarch: "mipsle", kernel: "6.1.0",
			files:    map[string]string{"usr/bin/qemu-mipsn32el-static": static},
			handlers: map[string]string{"qemu-mipsn32el": mipsn32elHandler("$ROOT/usr/bin/qemu-mipsn32el-static")},
			wantErr:  ErrKernelTooOld,
			wantMsg:  "kernel 6.1 cannot register binfmt handlers in a user namespace (needs Linux 6.7+) and no host handler for mipsel is registered: ask an admin to register qemu-user-static with the F flag (e.g. update-binfmts --enable qemu-mipsel) or upgrade the kernel (with a static qemu-user, xrun would intercept the execs instead)"},
		// Installed emulators (xrun emulator install) come last.
		{name: "installed dir", goarch: "riscv64", installed: "$ROOT/cache/emulators/amd64",
			files: map[string]string{"cache/emulators/amd64/qemu-riscv64-static": static},
			want:  &Plan{Strategy: Namespaced, Emulator: "$ROOT/cache/emulators/amd64/qemu-riscv64-static"}},
		{name: "system before installed", goarch: "arm64", installed: "$ROOT/cache/emulators/amd64",
			files: map[string]string{"cache/emulators/amd64/qemu-aarch64-static": static, "usr/bin/qemu-aarch64-static": static},
			want:  &Plan{Strategy: Namespaced, Emulator: "$ROOT/usr/bin/qemu-aarch64-static"}},
		{name: "installed beats a dynamic system qemu", goarch: "arm64", installed: "$ROOT/inst",
			files: map[string]string{"usr/bin/qemu-aarch64": dynamic, "inst/qemu-aarch64-static": static},
			want:  &Plan{Strategy: Namespaced, Emulator: "$ROOT/inst/qemu-aarch64-static"}},
		// Options.SystemDirs replaces the system dirs, e.g. to hide them.
		{name: "SystemDirs empty hides the system's qemu", goarch: "arm64", sysDirs: []string{}, files: aarch64Static,
			wantErr: ErrNoEmulator,
			wantMsg: "no emulator for linux/arm64: install qemu-user-static (Debian/Ubuntu: apt-get install qemu-user-static; Fedora: dnf install qemu-user-static), run xrun emulator install, or pass --emulator PATH"},
		{name: "SystemDirs searched for all names", goarch: "arm64", sysDirs: []string{"$ROOT/s1", "$ROOT/s2"},
			files: map[string]string{"usr/bin/qemu-aarch64-static": static, "s2/aarch64-binfmt-P": static},
			want:  &Plan{Strategy: Namespaced, Emulator: "$ROOT/s2/aarch64-binfmt-P"}},
		// --emulator and XRUN_QEMU_PATH may name a directory.
		{name: "--emulator dir", goarch: "arm64", emulator: "$ROOT/e",
			files: map[string]string{"e/qemu-aarch64-static": static, "usr/bin/qemu-aarch64-static": static},
			want:  &Plan{Strategy: Namespaced, Emulator: "$ROOT/e/qemu-aarch64-static"}},
		// Forced strategies (XRUN_BINFMT_STRATEGY).
		{name: "force native on a native arch", goarch: "386", force: Native, want: &Plan{Strategy: Native}},
		{name: "force native on a foreign arch", goarch: "arm64", force: Native, files: aarch64Static, wantErr: ErrNotNative,
			wantMsg: "strategy native was forced (XRUN_BINFMT_STRATEGY) but a linux/amd64 host cannot run linux/arm64 binaries: unset it"},
		{name: "force namespaced on a native arch", goarch: "386", force: Namespaced,
			files: map[string]string{"usr/bin/qemu-i386-static": static},
			want:  &Plan{Strategy: Namespaced, Emulator: "$ROOT/usr/bin/qemu-i386-static"}},
		{name: "force namespaced, old kernel", goarch: "arm64", force: Namespaced, kernel: "6.1.0", files: aarch64Static,
			handlers: map[string]string{"qemu-aarch64": handlerFile("arm64", "$ROOT/usr/bin/qemu-aarch64-static", "F", true)},
			wantErr:  ErrKernelTooOld,
			wantMsg:  "strategy namespaced was forced (XRUN_BINFMT_STRATEGY) but kernel 6.1 cannot register binfmt handlers in a user namespace (needs Linux 6.7+): unset it or upgrade the kernel"},
		{name: "force namespaced, no emulator but a host handler", goarch: "riscv64", force: Namespaced,
			files:    map[string]string{"h/qemu-riscv64-static": static},
			handlers: map[string]string{"qemu-riscv64": handlerFile("riscv64", "$ROOT/h/qemu-riscv64-static", "F", true)},
			wantErr:  ErrNoEmulator,
			wantMsg:  "no emulator for linux/riscv64: install qemu-user-static (Debian/Ubuntu: apt-get install qemu-user-static; Fedora: dnf install qemu-user-static), run xrun emulator install, or pass --emulator PATH"},
		{name: "force intercept on a 6.7+ kernel", goarch: "arm64", force: Intercept, files: aarch64Static,
			want: &Plan{Strategy: Intercept, Emulator: "$ROOT/usr/bin/qemu-aarch64-static"}},
		{name: "force intercept on a ppc64le host", goarch: "arm64", host: "ppc64le", force: Intercept, files: aarch64Static,
			wantErr: ErrNoHostHandler,
			wantMsg: "strategy intercept was forced (XRUN_BINFMT_STRATEGY) but exec interception is available on amd64 and arm64 hosts only, not ppc64le: unset it"},
		{name: "old kernel, ppc64le host: no interception", goarch: "arm64", host: "ppc64le", kernel: "6.1.0", files: aarch64Static,
			wantErr: ErrKernelTooOld,
			wantMsg: "kernel 6.1 cannot register binfmt handlers in a user namespace (needs Linux 6.7+) and no host handler for aarch64 is registered: ask an admin to register qemu-user-static with the F flag (e.g. update-binfmts --enable qemu-aarch64) or upgrade the kernel"},
		{name: "old kernel, arm64 host intercepts amd64", goarch: "amd64", host: "arm64", kernel: "6.1.0",
			files: map[string]string{"usr/bin/qemu-x86_64-static": static},
			want:  &Plan{Strategy: Intercept, Emulator: "$ROOT/usr/bin/qemu-x86_64-static"}},
		{name: "force intercept without an emulator", goarch: "arm64", force: Intercept, wantErr: ErrNoEmulator,
			wantMsg: "no emulator for linux/arm64: install qemu-user-static (Debian/Ubuntu: apt-get install qemu-user-static; Fedora: dnf install qemu-user-static), run xrun emulator install, or pass --emulator PATH"},
		{name: "force host-handler over namespaced", goarch: "arm64", force: HostHandler, files: aarch64Static,
			handlers: map[string]string{"qemu-aarch64": handlerFile("arm64", "$ROOT/usr/bin/qemu-aarch64-static", "", true)},
			want:     &Plan{Strategy: HostHandler, Emulator: "$ROOT/usr/bin/qemu-aarch64-static", HostFlags: ""}},
		{name: "force host-handler without one", goarch: "arm64", force: HostHandler, files: aarch64Static, wantErr: ErrNoHostHandler,
			wantMsg: "strategy host-handler was forced (XRUN_BINFMT_STRATEGY) but no host handler for aarch64 is registered in $ROOT/binfmt_misc: unset it, or register one as root (e.g. update-binfmts --enable qemu-aarch64)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := t.TempDir()
			expand := func(s string) string {
				return strings.NewReplacer("$ROOT", root, "$BASE", filepath.Base(root)).Replace(s)
			}
			if tt.inRoot {
				t.Chdir(root)
			}
			for rel, kind := range tt.files {
				p := filepath.Join(root, rel)
				switch kind {
				case static, dynamic:
					writeELF(t, p, kind == dynamic)
				case text:
					if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
						t.Fatal(err)
					}
					if err := os.WriteFile(p, []byte("#!/bin/sh\n"), 0o644); err != nil {
						t.Fatal(err)
					}
				}
			}
			binfmtDir := filepath.Join(root, "binfmt_misc")
			if err := os.Mkdir(binfmtDir, 0o755); err != nil {
				t.Fatal(err)
			}
			for name, content := range tt.handlers {
				if err := os.WriteFile(filepath.Join(binfmtDir, name), []byte(expand(content)), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			// What the kernel shows besides entries.
			os.WriteFile(filepath.Join(binfmtDir, "register"), nil, 0o200)
			env := map[string]string{"PATH": expand(tt.path), EnvQemuPath: expand(tt.qemuPath)}
			opts := Options{
				Emulator:      expand(tt.emulator),
				HostGOARCH:    tt.host,
				BinfmtDir:     binfmtDir,
				KernelRelease: tt.kernel,
				getenv:        func(k string) string { return env[k] },
				systemDirs: &systemDirs{
					libexec: filepath.Join(root, "libexec"),
					bins:    []string{filepath.Join(root, "usr/bin"), filepath.Join(root, "usr/local/bin")},
				},
				compatProbe: func(*Arch) (bool, string) {
					if tt.noCompat {
						return false, "probe: no"
					}
					return true, "probe: yes"
				},
			}
			opts.InstalledDir = expand(tt.installed)
			opts.Force = tt.force
			if tt.sysDirs != nil {
				opts.systemDirs = nil
				opts.SystemDirs = []string{}
				for _, d := range tt.sysDirs {
					opts.SystemDirs = append(opts.SystemDirs, expand(d))
				}
			}
			if opts.HostGOARCH == "" {
				opts.HostGOARCH = "amd64"
			}
			if opts.KernelRelease == "" {
				opts.KernelRelease = "6.18.44-fc-v595"
			}
			got, err := Decide(tt.goarch, tt.variant, opts)
			if tt.wantErr != nil || tt.wantMsg != "" {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("Decide(%q, %q) error = %v, want errors.Is %v (plan %+v)", tt.goarch, tt.variant, err, tt.wantErr, got)
				}
				if err.Error() != expand(tt.wantMsg) {
					t.Errorf("Decide(%q, %q) error =\n%s\nwant\n%s", tt.goarch, tt.variant, err, expand(tt.wantMsg))
				}
				return
			}
			if err != nil {
				t.Fatalf("Decide(%q, %q) error = %v", tt.goarch, tt.variant, err)
			}
			want := *tt.want
			want.Emulator = expand(want.Emulator)
			if want.Arch == nil {
				want.Arch, _ = Lookup(tt.goarch)
			}
			if diff := cmp.Diff(&want, got); diff != "" {
				t.Errorf("Decide(%q, %q) (-want +got):\n%s", tt.goarch, tt.variant, diff)
			}
		})
	}
}

func TestParseRelease(t *testing.T) {
	for _, tt := range []struct {
		in           string
		major, minor int
		ok           bool
	}{
		{"6.18.44-fc-v595", 6, 18, true},
		{"6.7", 6, 7, true},
		{"6.1.0-28-amd64", 6, 1, true},
		{"5.15.0-1051-azure", 5, 15, true},
		{"6.10-rc1", 6, 10, true},
		{"6", 0, 0, false},
		{"", 0, 0, false},
		{"x.y", 0, 0, false},
	} {
		major, minor, ok := ParseRelease(tt.in)
		if major != tt.major || minor != tt.minor || ok != tt.ok {
			t.Errorf("ParseRelease(%q) = %d, %d, %v, want %d, %d, %v", tt.in, major, minor, ok, tt.major, tt.minor, tt.ok)
		}
	}
}

func TestIsStatic(t *testing.T) {
	dir := t.TempDir()
	writeELF(t, filepath.Join(dir, "static"), false)
	writeELF(t, filepath.Join(dir, "dynamic"), true)
	os.WriteFile(filepath.Join(dir, "script"), []byte("#!/bin/sh\n"), 0o755)
	cases := map[string]bool{filepath.Join(dir, "static"): true, filepath.Join(dir, "dynamic"): false}
	// Real files, when present: Debian's static-pie qemu, a dynamic PIE.
	if _, err := os.Stat("/usr/bin/qemu-aarch64-static"); err == nil {
		cases["/usr/bin/qemu-aarch64-static"] = true
	}
	if _, err := os.Stat("/bin/ls"); err == nil {
		cases["/bin/ls"] = false
	}
	for p, want := range cases {
		got, err := IsStatic(p)
		if err != nil || got != want {
			t.Errorf("IsStatic(%s) = %v, %v, want %v", p, got, err, want)
		}
	}
	if _, err := IsStatic(filepath.Join(dir, "script")); err == nil {
		t.Errorf("IsStatic(script) succeeded, want an error")
	}
}

func TestIsStaticCrossBinaries(t *testing.T) {
	// CGO_ENABLED=0 Go programs are static for every arch.
	for goarch, p := range crossBinaries(t) {
		if ok, err := IsStatic(p); !ok || err != nil {
			t.Errorf("IsStatic(GOARCH=%s program) = %v, %v, want true", goarch, ok, err)
		}
	}
}

func TestParseStrategy(t *testing.T) {
	for in, want := range map[string]Strategy{"": "", "auto": "", "native": Native, "namespaced": Namespaced, "host-handler": HostHandler} {
		if got, err := ParseStrategy(in); err != nil || got != want {
			t.Errorf("ParseStrategy(%q) = %q, %v, want %q", in, got, err, want)
		}
	}
	if _, err := ParseStrategy("host"); err == nil || !strings.Contains(err.Error(), "use auto, native, namespaced or host-handler") {
		t.Errorf("ParseStrategy(host) error = %v", err)
	}
	if _, err := Decide("arm64", "", Options{Force: "bogus"}); err == nil {
		t.Error("Decide with Force bogus: no error")
	}
}

func TestFindEmulatorSource(t *testing.T) {
	root := t.TempDir()
	writeELF(t, filepath.Join(root, "p/qemu-aarch64-static"), false)
	writeELF(t, filepath.Join(root, "inst/qemu-riscv64-static"), false)
	env := map[string]string{"PATH": filepath.Join(root, "p")}
	opts := Options{InstalledDir: filepath.Join(root, "inst"), SystemDirs: []string{},
		getenv: func(k string) string { return env[k] }}
	for goarch, want := range map[string]Emulator{
		"arm64":   {Path: filepath.Join(root, "p/qemu-aarch64-static"), Source: FromPATH},
		"riscv64": {Path: filepath.Join(root, "inst/qemu-riscv64-static"), Source: FromInstalled},
	} {
		got, err := FindEmulator(goarch, opts)
		if err != nil || *got != want {
			t.Errorf("FindEmulator(%s) = %+v, %v, want %+v", goarch, got, err, want)
		}
	}
	o := opts
	o.Emulator = filepath.Join(root, "inst")
	if got, err := FindEmulator("riscv64", o); err != nil || got.Source != FromFlag {
		t.Errorf("FindEmulator with --emulator dir = %+v, %v", got, err)
	}
	if _, err := FindEmulator("s390x", opts); !errors.Is(err, ErrNoEmulator) {
		t.Errorf("FindEmulator(s390x) error = %v, want ErrNoEmulator", err)
	}
}

func TestHostEntries(t *testing.T) {
	dir := t.TempDir()
	if _, mounted, _, err := HostEntries(dir); mounted || err != nil {
		t.Fatalf("HostEntries(empty dir) mounted=%v err=%v, want not mounted", mounted, err)
	}
	writeELF(t, filepath.Join(dir, "q/qemu-aarch64"), true)
	files := map[string]string{
		"status":       "enabled\n",
		"register":     "",
		"qemu-aarch64": handlerFile("arm64", filepath.Join(dir, "q/qemu-aarch64"), "OCF", true),
		"qemu-riscv64": handlerFile("riscv64", "/gone/qemu-riscv64-static", "F", false),
		"python3.11":   "enabled\ninterpreter /usr/bin/python3.11\nflags: \noffset 0\nmagic a70d0d0a\n",
	}
	for name, c := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(c), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	hs, mounted, disabled, err := HostEntries(dir)
	if err != nil || !mounted || disabled {
		t.Fatalf("HostEntries: mounted=%v disabled=%v err=%v", mounted, disabled, err)
	}
	got := map[string]string{}
	for _, h := range hs {
		arch := "-"
		if h.Arch != nil {
			arch = h.Arch.GOARCH
		}
		got[h.Name] = fmt.Sprintf("%s %s %v %q", arch, h.Flags, h.Enabled, h.Unusable)
	}
	want := map[string]string{
		"qemu-aarch64": fmt.Sprintf("arm64 OCF true %q", "interpreter "+filepath.Join(dir, "q/qemu-aarch64")+" is dynamically linked"),
		"qemu-riscv64": `riscv64 F false ""`,
		"python3.11":   `-  true ""`,
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("HostEntries (-want +got):\n%s", diff)
	}
}
