package binfmt

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"syscall"
	"testing"

	"github.com/xrun-dev/xrun/internal/testutil"
)

// childEnv selects a role when the test binary is re-executed inside a new
// user+mount namespace (see TestMain and TestMountAndRegister).
const childEnv = "XRUN_BINFMT_TEST_CHILD"

func TestMain(m *testing.M) {
	switch os.Getenv(childEnv) {
	case "":
	case "probe":
		os.Exit(0)
	case "register":
		if err := registerChild(); err != nil {
			fmt.Fprintln(os.Stderr, "child:", err)
			os.Exit(1)
		}
		fmt.Println("CHILD-OK")
		os.Exit(0)
	default:
		fmt.Fprintf(os.Stderr, "unknown %s=%q\n", childEnv, os.Getenv(childEnv))
		os.Exit(2)
	}
	code := m.Run()
	if crossDir != "" {
		os.RemoveAll(crossDir)
	}
	os.Exit(code)
}

// crossTargets are the tiny programs cross-compiled for the table tests,
// keyed by the GOARCH their ELF must match.
var crossTargets = []struct{ goarch, goarm string }{
	{"386", ""}, {"amd64", ""}, {"arm", "7"}, {"arm64", ""}, {"loong64", ""},
	{"mips64le", ""}, {"mipsle", ""}, {"ppc64le", ""}, {"riscv64", ""}, {"s390x", ""},
}

// helloSrc prints "hello from GOARCH". It uses syscall rather than os or fmt
// so that a cold build cache compiles less for each arch.
const helloSrc = `package main

import (
	"runtime"
	"syscall"
)

func main() { syscall.Write(1, []byte("hello from "+runtime.GOARCH+"\n")) }
`

var (
	crossOnce sync.Once
	crossDir  string
	crossBins map[string]string
	crossErr  error
)

// crossBinaries builds helloSrc for every crossTargets entry once per test
// binary and returns GOARCH -> path. A cold Go build cache makes this take
// a while (each arch's runtime is compiled once); later runs are cached.
func crossBinaries(t *testing.T) map[string]string {
	t.Helper()
	crossOnce.Do(func() {
		goTool, err := exec.LookPath("go")
		if err != nil {
			goTool = filepath.Join(runtime.GOROOT(), "bin", "go")
			if _, err := os.Stat(goTool); err != nil {
				crossErr = fmt.Errorf("no go tool to cross-compile test programs: %w", err)
				return
			}
		}
		crossDir, crossErr = os.MkdirTemp("", "xrun-binfmt-cross-")
		if crossErr != nil {
			return
		}
		if err := os.WriteFile(filepath.Join(crossDir, "go.mod"), []byte("module hello\n\ngo 1.22\n"), 0o644); err != nil {
			crossErr = err
			return
		}
		if err := os.WriteFile(filepath.Join(crossDir, "main.go"), []byte(helloSrc), 0o644); err != nil {
			crossErr = err
			return
		}
		bins := map[string]string{}
		var mu sync.Mutex
		var wg sync.WaitGroup
		sem := make(chan struct{}, max(2, runtime.NumCPU()))
		for _, tg := range crossTargets {
			wg.Add(1)
			go func() {
				defer wg.Done()
				sem <- struct{}{}
				defer func() { <-sem }()
				out := filepath.Join(crossDir, "hello-"+tg.goarch)
				cmd := exec.Command(goTool, "build", "-trimpath", "-o", out, ".")
				cmd.Dir = crossDir
				cmd.Env = append(os.Environ(), "GOOS=linux", "GOARCH="+tg.goarch, "GOARM="+tg.goarm,
					"CGO_ENABLED=0", "GOTOOLCHAIN=local", "GOFLAGS=", "GOWORK=off")
				b, err := cmd.CombinedOutput()
				mu.Lock()
				defer mu.Unlock()
				if err != nil {
					if crossErr == nil {
						crossErr = fmt.Errorf("go build GOARCH=%s: %v\n%s", tg.goarch, err, b)
					}
					return
				}
				bins[tg.goarch] = out
			}()
		}
		wg.Wait()
		crossBins = bins
	})
	if crossErr != nil {
		testutil.SkipOrFail(t, "%v", crossErr)
	}
	return crossBins
}

// elfHeader returns the first bytes of a file, enough for every magic.
func elfHeader(t *testing.T, path string) []byte {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, 128)
	n, err := f.Read(b)
	if err != nil {
		t.Fatal(err)
	}
	return b[:n]
}

// writeELF writes a minimal host-arch (x86-64 header; only the program
// headers matter to IsStatic) ELF file, dynamic when interp is set.
func writeELF(t *testing.T, path string, interp bool) {
	t.Helper()
	var progs []elf.Prog64
	if interp {
		progs = append(progs, elf.Prog64{Type: uint32(elf.PT_INTERP), Off: 64 + 56, Filesz: 28, Memsz: 28, Align: 1})
	}
	progs = append(progs, elf.Prog64{Type: uint32(elf.PT_LOAD), Flags: uint32(elf.PF_R | elf.PF_X), Align: 0x1000})
	h := elf.Header64{
		Type: uint16(elf.ET_EXEC), Machine: uint16(elf.EM_X86_64), Version: uint32(elf.EV_CURRENT),
		Phoff: 64, Ehsize: 64, Phentsize: 56, Phnum: uint16(len(progs)), Shentsize: 64,
	}
	copy(h.Ident[:], "\x7fELF\x02\x01\x01")
	var buf bytes.Buffer
	binary.Write(&buf, binary.LittleEndian, h)
	binary.Write(&buf, binary.LittleEndian, progs)
	buf.WriteString("/lib64/ld-linux-x86-64.so.2\x00")
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, buf.Bytes(), 0o755); err != nil {
		t.Fatal(err)
	}
}

// nsAttr is a new user+mount namespace in which the caller's uid and gid
// are root. It works unprivileged (kernel permitting) and as root.
func nsAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{
		Cloneflags:  syscall.CLONE_NEWUSER | syscall.CLONE_NEWNS,
		UidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getuid(), Size: 1}},
		GidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getgid(), Size: 1}},
	}
}

// needBinfmtNS skips (or, with XRUN_TEST_MUST_WORK=1, fails) unless this
// machine can register binfmt handlers in a user namespace: Linux 6.7+, a
// user namespace can be created, and a static qemu exists for goarch.
// It returns Decide's plan for goarch.
func needBinfmtNS(t *testing.T, goarch string) *Plan {
	t.Helper()
	if runtime.GOOS != "linux" {
		testutil.SkipOrFail(t, "binfmt_misc is Linux only")
	}
	var o Options
	if err := o.fill(); err != nil {
		testutil.SkipOrFail(t, "%v", err)
	}
	if !kernelAtLeast(o.KernelRelease, 6, 7) {
		testutil.SkipOrFail(t, "kernel %s has no binfmt_misc per user namespace (needs 6.7+)", o.KernelRelease)
	}
	exe, err := os.Executable()
	if err != nil {
		testutil.SkipOrFail(t, "%v", err)
	}
	cmd := exec.Command(exe)
	cmd.Env = append(os.Environ(), childEnv+"=probe")
	cmd.SysProcAttr = nsAttr()
	if out, err := cmd.CombinedOutput(); err != nil {
		testutil.SkipOrFail(t, "cannot create a user namespace (sysctl kernel.unprivileged_userns_clone, user.max_user_namespaces or AppArmor?): %v %s", err, out)
	}
	plan, err := Decide(goarch, "", Options{})
	if err != nil {
		testutil.SkipOrFail(t, "%v", err)
	}
	if plan.Strategy != Namespaced {
		testutil.SkipOrFail(t, "Decide(%s) = %s, want %s", goarch, plan.Strategy, Namespaced)
	}
	return plan
}
