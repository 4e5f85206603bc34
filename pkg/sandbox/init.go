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
		if !reportInitError(err) {
			fmt.Fprintf(os.Stderr, "xrun: prepare container: %v\n", err)
		}
		os.Exit(125)
	}
	libcontainer.Init()
}

// initErrorFile, in the run directory, receives the error of prepare. Run
// reports it as its own error: one line that the CLI can explain (a mount
// refused in the user namespace, say), where the init printing it would
// add a second line beside libcontainer's "procReady not received".
const initErrorFile = "init-error"

// reportInitError writes err to initErrorFile of this run (the init's
// working directory is the run's rootfs); false when this is not one of
// xrun's runs or the file cannot be written.
func reportInitError(err error) bool {
	wd, werr := os.Getwd()
	if werr != nil {
		return false
	}
	runDir := filepath.Dir(wd)
	if _, serr := os.Stat(filepath.Join(runDir, initParamsFile)); serr != nil {
		return false
	}
	return os.WriteFile(filepath.Join(runDir, initErrorFile), []byte(err.Error()), 0o600) == nil
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
	if err := mountOverlay(append(p.Layers, p.Lower), p.Upper, p.Work, filepath.Join(runDir, scratchDir), p.DiskScratch, root); err != nil {
		return err
	}
	if p.AptNoSandbox {
		if err := writeAptConfig(root); err != nil {
			return err
		}
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

// mountOverlay mounts an overlay of lowers (topmost first; the last is the
// image) onto target. Rootless overlayfs
// (Linux 5.11+) is allowed in a user namespace that owns the mount
// namespace; the kernel stores its metadata in user.* xattrs. Without
// upper, the upper and work dirs are on a private tmpfs mounted on scratch:
// everything written by the run lives there and vanishes with the mount
// namespace. With upper (a named container), they are on disk and persist.
func mountOverlay(lowers []string, upper, work, scratch, disk, target string) error {
	lower := lowers[len(lowers)-1]
	if upper == "" {
		if err := unix.Mount("tmpfs", scratch, "tmpfs", 0, "mode=0700"); err != nil {
			return fmt.Errorf("mount scratch tmpfs: %w", err)
		}
		upper, work = filepath.Join(scratch, "upper"), filepath.Join(scratch, "work")
		for _, d := range []string{upper, work} {
			if err := os.Mkdir(d, 0o755); err != nil {
				return err
			}
		}
		// Before Linux 6.6 a tmpfs has no user.* xattrs: the upper layer
		// goes to disk (the cache) instead.
		if disk != "" {
			err := unix.Setxattr(upper, "user.xrun.probe", []byte{1}, 0)
			if err == nil {
				_ = unix.Removexattr(upper, "user.xrun.probe")
			} else if errors.Is(err, unix.EOPNOTSUPP) {
				_ = unix.Unmount(scratch, unix.MNT_DETACH)
				upper, work = filepath.Join(disk, "upper"), filepath.Join(disk, "work")
				for _, d := range []string{upper, work} {
					if err := os.Mkdir(d, 0o755); err != nil {
						return fmt.Errorf("create the upper layer on disk (this kernel's tmpfs has no user xattrs): %w", err)
					}
				}
			}
		}
		// The overlay root takes the mode of the upper dir's root when it
		// exists: give it the image root's.
		if st, err := os.Stat(lower); err == nil {
			_ = os.Chmod(upper, st.Mode().Perm())
		}
	}
	// userxattr: overlayfs keeps its metadata (opaque directories,
	// redirects) in user.overlay.* xattrs, the only ones a user namespace
	// may set. Without it the mount succeeds but cannot record them, and
	// removing a directory of the image (rm -rf /usr) fails with EIO.
	esc := make([]string, len(lowers))
	for i, l := range lowers {
		esc[i] = escapeOverlay(l)
	}
	data := fmt.Sprintf("lowerdir=%s,upperdir=%s,workdir=%s,userxattr", strings.Join(esc, ":"), escapeOverlay(upper), escapeOverlay(work))
	err := unix.Mount("overlay", target, "overlay", 0, data)
	if errors.Is(err, unix.EINVAL) && os.Geteuid() == 0 {
		// Real root in the initial user namespace: trusted.* xattrs work
		// there, and some kernels refuse userxattr outside a user namespace.
		err = unix.Mount("overlay", target, "overlay", 0, strings.TrimSuffix(data, ",userxattr"))
	}
	if err != nil {
		return fmt.Errorf("mount overlay on the image (is rootless overlayfs supported? Linux 5.11+): %w", err)
	}
	return nil
}

// escapeOverlay escapes the characters overlayfs treats as separators.
func escapeOverlay(p string) string {
	r := strings.NewReplacer(`\`, `\\`, `,`, `\,`, `:`, `\:`)
	return r.Replace(p)
}

// aptConfPath is the apt configuration a run with a single-id map adds.
const aptConfPath = "/etc/apt/apt.conf.d/00xrun-sandbox"

const aptConf = `// Written by xrun: only root exists in this container (no subordinate id
// range), so apt cannot switch to its _apt user for downloads.
APT::Sandbox::User "root";
`

// hasAptConfig reports whether the image has apt's /etc/apt directory.
func hasAptConfig(lower string) bool {
	r, err := os.OpenRoot(lower)
	if err != nil {
		return false
	}
	defer r.Close()
	st, err := r.Stat("etc/apt")
	return err == nil && st.IsDir()
}

// writeAptConfig writes aptConfPath into the mounted overlay at root,
// resolving paths inside root (the image's symlinks cannot lead out). An
// existing file (a named container's) is left as it is.
func writeAptConfig(root string) error {
	r, err := os.OpenRoot(root)
	if err != nil {
		return err
	}
	defer r.Close()
	rel := strings.TrimPrefix(aptConfPath, "/")
	if _, err := r.Lstat(rel); err == nil {
		return nil
	}
	if err := r.MkdirAll(filepath.Dir(rel), 0o755); err != nil {
		return fmt.Errorf("write %s: %w", aptConfPath, err)
	}
	if err := r.WriteFile(rel, []byte(aptConf), 0o644); err != nil {
		return fmt.Errorf("write %s: %w", aptConfPath, err)
	}
	return nil
}
