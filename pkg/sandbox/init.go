package sandbox

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/opencontainers/runc/libcontainer"
	"golang.org/x/sys/unix"

	"github.com/xrun-dev/xrun/pkg/binfmt"
)

// IsInit reports whether this process is libcontainer's re-executed init
// (`/proc/self/exe init`, started with the _LIBCONTAINER_INITPIPE variable).
func IsInit(args []string) bool {
	return len(args) > 1 && args[1] == "init" && os.Getenv("_LIBCONTAINER_INITPIPE") != ""
}

// Init is the body of the re-executed `xrun init`. It runs inside the new
// user, mount and pid namespaces (nsenter's C constructor has already
// entered them) but before libcontainer prepares the rootfs and calls
// pivot_root, which is the one moment where both the host's files and the
// container's namespaces are at hand. It never returns.
func Init() {
	if err := prepare(); err != nil {
		fmt.Fprintf(os.Stderr, "xrun: prepare container: %v\n", err)
		os.Exit(125)
	}
	libcontainer.Init()
}

func prepare() error {
	// Config.ParentDeathSignal is set on the init's first stage, not on the
	// process that becomes the container's PID 1; without this an emulated
	// command outlives a `kill -9` of xrun for many minutes.
	if err := unix.Prctl(unix.PR_SET_PDEATHSIG, uintptr(unix.SIGKILL), 0, 0, 0); err != nil {
		return fmt.Errorf("set parent death signal: %w", err)
	}
	// libcontainer starts init in Config.Rootfs = <run dir>/rootfs.
	wd, err := os.Getwd()
	if err != nil {
		return err
	}
	runDir := filepath.Dir(wd)
	b, err := os.ReadFile(filepath.Join(runDir, initParamsFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil // not one of our runs
	} else if err != nil {
		return err
	}
	var p initParams
	if err := json.Unmarshal(b, &p); err != nil {
		return fmt.Errorf("read run parameters: %w", err)
	}
	root := filepath.Join(runDir, rootfsDir)
	if err := mountOverlay(p.Lower, filepath.Join(runDir, scratchDir), root); err != nil {
		return err
	}
	if p.Emulation != nil {
		// The handler lives as long as this binfmt_misc instance stays
		// mounted, so mount it inside the new root where it survives
		// pivot_root (hidden under the container's /proc, which is mounted
		// on top later). F makes the kernel open the emulator now, while its
		// host path is still reachable.
		dir := filepath.Join(root, "proc/sys/fs/binfmt_misc")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return fmt.Errorf("create binfmt_misc mount point: %w", err)
		}
		if err := binfmt.MountAndRegister(dir, p.Emulation, p.BinfmtFlags); err != nil {
			return err
		}
	}
	return nil
}

// mountOverlay mounts an overlay of lower, with upper and work dirs on a
// private tmpfs, onto target. Rootless overlayfs (Linux 5.11+) is allowed in
// a user namespace that owns the mount namespace; the kernel stores its
// metadata in user.* xattrs. Everything written by the run lives on the
// tmpfs and vanishes with the mount namespace.
func mountOverlay(lower, scratch, target string) error {
	if err := unix.Mount("tmpfs", scratch, "tmpfs", 0, "mode=0700"); err != nil {
		return fmt.Errorf("mount scratch tmpfs: %w", err)
	}
	upper, work := filepath.Join(scratch, "upper"), filepath.Join(scratch, "work")
	for _, d := range []string{upper, work} {
		if err := os.Mkdir(d, 0o755); err != nil {
			return err
		}
	}
	// The overlay root takes the mode of the upper dir's root when it
	// exists: give it the image root's.
	if st, err := os.Stat(lower); err == nil {
		_ = os.Chmod(upper, st.Mode().Perm())
	}
	data := fmt.Sprintf("lowerdir=%s,upperdir=%s,workdir=%s", escapeOverlay(lower), escapeOverlay(upper), escapeOverlay(work))
	if err := unix.Mount("overlay", target, "overlay", 0, data); err != nil {
		return fmt.Errorf("mount overlay on the image (is rootless overlayfs supported? Linux 5.11+): %w", err)
	}
	return nil
}

// escapeOverlay escapes the characters overlayfs treats as separators.
func escapeOverlay(p string) string {
	r := strings.NewReplacer(`\`, `\\`, `,`, `\,`, `:`, `\:`)
	return r.Replace(p)
}
