package doctor

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/xrun-dev/xrun/pkg/binfmt"
	"github.com/xrun-dev/xrun/pkg/cache"
	"github.com/xrun-dev/xrun/pkg/sandbox"
)

// probeArg is the argument with which the doctor re-executes the xrun
// binary inside a new user and mount namespace (see IsProbe).
const probeArg = "__xrun-doctor-probe"

// probeResult is what the probe child reports: "" for what works, else
// the error.
type probeResult struct {
	Overlay string `json:"overlay"`
	Binfmt  string `json:"binfmt"`
	Proc    string `json:"proc"` // a fresh procfs, as every run mounts
}

// IsProbe reports whether this process is the doctor's probe child; the
// binary's main must then call ProbeMain before anything else.
func IsProbe(args []string) bool { return len(args) == 3 && args[1] == probeArg }

// ProbeMain runs inside the new user, mount and pid namespace runProbe
// created: it mounts a tmpfs, a fresh /proc (refused where parts of the
// host's /proc are masked, as in containers), an overlay whose lower
// directory is in the cache (as a run does), and a binfmt_misc instance,
// and prints what failed as JSON. It returns the exit status.
func ProbeMain(args []string) int {
	base := args[2]
	var r probeResult
	mnt := filepath.Join(base, "mnt")
	err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, "")
	if err == nil {
		err = unix.Mount("tmpfs", mnt, "tmpfs", 0, "mode=0755")
	}
	if err != nil {
		r.Overlay = fmt.Sprintf("mount a tmpfs in a user namespace: %v", err)
		r.Binfmt, r.Proc = r.Overlay, r.Overlay
	} else {
		r.Proc = probeProc(filepath.Join(mnt, "proc"))
		r.Overlay = probeOverlay(filepath.Join(base, "lower"), mnt)
		r.Binfmt = probeBinfmt(filepath.Join(mnt, "binfmt"))
	}
	if err := json.NewEncoder(os.Stdout).Encode(r); err != nil {
		return 1
	}
	return 0
}

func probeProc(dir string) string {
	if err := os.Mkdir(dir, 0o755); err != nil {
		return err.Error()
	}
	if err := unix.Mount("proc", dir, "proc", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""); err != nil {
		return fmt.Sprintf("mount proc: %v", err)
	}
	return ""
}

func probeOverlay(lower, mnt string) string {
	upper, work, merged := filepath.Join(mnt, "upper"), filepath.Join(mnt, "work"), filepath.Join(mnt, "merged")
	for _, d := range []string{upper, work, merged} {
		if err := os.Mkdir(d, 0o755); err != nil {
			return err.Error()
		}
	}
	data := fmt.Sprintf("lowerdir=%s,upperdir=%s,workdir=%s", lower, upper, work)
	if err := unix.Mount("overlay", merged, "overlay", 0, data); err != nil {
		return fmt.Sprintf("mount overlay: %v", err)
	}
	if _, err := os.Stat(filepath.Join(merged, "probe")); err != nil {
		return fmt.Sprintf("overlay does not show the lower directory: %v", err)
	}
	if err := os.WriteFile(filepath.Join(merged, "probe"), []byte("copied up\n"), 0o644); err != nil {
		return fmt.Sprintf("write through the overlay: %v", err)
	}
	return ""
}

func probeBinfmt(dir string) string {
	if err := os.Mkdir(dir, 0o755); err != nil {
		return err.Error()
	}
	if err := unix.Mount("binfmt_misc", dir, "binfmt_misc", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""); err != nil {
		return fmt.Sprintf("mount binfmt_misc: %v", err)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err.Error()
	}
	for _, e := range entries {
		if e.Name() != "register" && e.Name() != "status" {
			return fmt.Sprintf("the mounted binfmt_misc shows the host's handler %s: it is not a private instance", e.Name())
		}
	}
	return ""
}

// runProbe re-executes this binary as the probe child in a new user, mount
// and pid namespace (a procfs is mounted for a pid namespace), with the
// caller as root. An error means no user
// namespace could be created.
func runProbe(ctx context.Context, cacheDir string) (*probeResult, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	parent := cacheDir
	if err := os.MkdirAll(parent, 0o755); err != nil {
		parent = os.TempDir()
	}
	base, err := os.MkdirTemp(parent, ".doctor-")
	if err != nil {
		base, err = os.MkdirTemp("", "xrun-doctor-")
		if err != nil {
			return nil, err
		}
	}
	defer os.RemoveAll(base)
	for _, d := range []string{"lower", "mnt"} {
		if err := os.Mkdir(filepath.Join(base, d), 0o755); err != nil {
			return nil, err
		}
	}
	if err := os.WriteFile(filepath.Join(base, "lower", "probe"), []byte("lower\n"), 0o644); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, exe, probeArg, base)
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags:  syscall.CLONE_NEWUSER | syscall.CLONE_NEWNS | syscall.CLONE_NEWPID,
		UidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getuid(), Size: 1}},
		GidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getgid(), Size: 1}},
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return nil, fmt.Errorf("probe in a user namespace: %v: %s", err, strings.TrimSpace(stderr.String()))
		}
		return nil, err
	}
	var r probeResult
	if err := json.Unmarshal(stdout.Bytes(), &r); err != nil {
		return nil, fmt.Errorf("[internal error] probe output %q: %w", stdout.String(), err)
	}
	return &r, nil
}

// smokeRun runs binfmt.TestProgram for the plan's arch in a container
// exactly as xrun runs a command: overlay over a one-file rootfs, the
// plan's emulation (registered in the container's user namespace, or a
// host handler), xrun as PID 1. The program exits with
// binfmt.TestProgramStatus; anything else is an error. Like a run, it keeps
// its state in cacheDir/run when the run root in /tmp is not safe.
func smokeRun(ctx context.Context, plan *binfmt.Plan, cacheDir string, log *slog.Logger) (time.Duration, error) {
	prog, err := binfmt.TestProgram(plan.Arch.GOARCH)
	if err != nil {
		return 0, err
	}
	dir, err := os.MkdirTemp("", "xrun-doctor-rootfs-")
	if err != nil {
		return 0, err
	}
	defer os.RemoveAll(dir)
	if err := os.Chmod(dir, 0o755); err != nil {
		return 0, err
	}
	if err := os.WriteFile(filepath.Join(dir, "xrun-test"), prog, 0o755); err != nil {
		return 0, err
	}
	emu := plan
	if plan.Strategy == binfmt.Native {
		emu = nil
	}
	var out bytes.Buffer
	t0 := time.Now()
	err = sandbox.Run(ctx, sandbox.Options{
		Lower:     dir,
		Args:      []string{"/xrun-test"},
		Emulation: emu,
		Stdin:     bytes.NewReader(nil),
		Stdout:    &out,
		Stderr:    &out,
		Logger:    log,

		// As in a run: when the run root in /tmp is not safe to use.
		FallbackRunRoot: cache.RunDir(cacheDir),
	})
	took := time.Since(t0)
	var ee *sandbox.ExitError
	switch {
	case errors.As(err, &ee) && ee.Code == binfmt.TestProgramStatus:
		return took, nil
	case err == nil:
		return took, fmt.Errorf("it exited with status 0, want %d", binfmt.TestProgramStatus)
	case errors.As(err, &ee):
		return took, fmt.Errorf("it exited with status %d, want %d%s", ee.Code, binfmt.TestProgramStatus, outputSuffix(out.Bytes()))
	}
	return took, fmt.Errorf("%w%s", err, outputSuffix(out.Bytes()))
}

func outputSuffix(b []byte) string {
	s := strings.TrimSpace(string(b))
	if s == "" {
		return ""
	}
	if len(s) > 300 {
		s = s[:300] + "..."
	}
	return ": " + s
}
