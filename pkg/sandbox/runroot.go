package sandbox

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/xrun-dev/xrun/pkg/binfmt"
	"github.com/xrun-dev/xrun/pkg/cache"
	"github.com/xrun-dev/xrun/pkg/fsutil"
	"github.com/xrun-dev/xrun/pkg/userns"
)

// unsafeRunRoot says why a directory cannot hold run state.
type unsafeRunRoot struct {
	path   string
	reason string
}

func (e *unsafeRunRoot) Error() string { return "run directory " + e.path + " " + e.reason }

// resolveRunRoot returns the run root to use: opts.RunRoot when it is set
// (it must be safe), else DefaultRunRoot() when it is safe, else
// opts.FallbackRunRoot (a private directory under the cache). Each is
// created when missing; see ensureRunRoot for what safe means.
func resolveRunRoot(explicit, fallback string, log *slog.Logger) (string, error) {
	if explicit != "" {
		explicit, err := filepath.Abs(explicit)
		if err == nil {
			err = ensureRunRoot(explicit)
		}
		if err != nil {
			return "", fmt.Errorf("no safe run directory: %w", err)
		}
		return explicit, nil
	}
	def, err := filepath.Abs(DefaultRunRoot())
	if err == nil {
		if err = ensureRunRoot(def); err == nil {
			return def, nil
		}
	}
	if fallback == "" {
		return "", fmt.Errorf("no safe run directory: %w", err)
	}
	fallback, ferr := filepath.Abs(fallback)
	if ferr == nil {
		ferr = ensureRunRoot(fallback)
	}
	if ferr != nil {
		return "", fmt.Errorf("no safe run directory: %v; %v: set XDG_RUNTIME_DIR to a directory of yours with mode 0700", err, ferr)
	}
	var unsafe *unsafeRunRoot
	if errors.As(err, &unsafe) {
		// Someone else's directory at a predictable path, or one that others
		// may write to: worth saying even without --verbose.
		log.Warn("run directory not safe to use, using one in the cache", "why", err.Error(), "instead", fallback)
	} else {
		log.Info("run directory not usable, using one in the cache", "why", err, "instead", fallback)
	}
	return fallback, nil
}

// ensureRunRoot creates dir when missing and checks that nobody but the
// invoking user (and root) can have put anything in it: it must be a
// directory, not a symlink, owned by the user, with no permission bits for
// group or others; its parent must be owned by the user or root and, when
// others may write to it (as /tmp), sticky, so that nobody else can rename
// or replace the entry. The checks are made on file descriptors (openat with
// O_NOFOLLOW, fstat), not on paths that could change in between.
//
// An existing directory that fails them is never repaired: someone else
// may already have planted files in it.
func ensureRunRoot(dir string) error {
	dir = filepath.Clean(dir)
	if !filepath.IsAbs(dir) || dir == "/" {
		return &unsafeRunRoot{dir, "is not an absolute path below /"}
	}
	parent, name := filepath.Dir(dir), filepath.Base(dir)
	uid := uint32(os.Geteuid())
	pfd, err := unix.Open(parent, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if errors.Is(err, unix.ENOENT) {
		// A cache or runtime directory that does not exist yet: create it
		// (private, like everything xrun creates for itself).
		if err = os.MkdirAll(parent, 0o700); err == nil {
			pfd, err = unix.Open(parent, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		}
	}
	if err != nil {
		return &os.PathError{Op: "open", Path: parent, Err: err}
	}
	defer unix.Close(pfd)
	var pst unix.Stat_t
	if err := unix.Fstat(pfd, &pst); err != nil {
		return &os.PathError{Op: "stat", Path: parent, Err: err}
	}
	if pst.Uid != uid && pst.Uid != 0 {
		return &unsafeRunRoot{dir, fmt.Sprintf("is in %s, which is owned by uid %d, not you (uid %d)", parent, pst.Uid, uid)}
	}
	if pst.Mode&0o022 != 0 && pst.Mode&unix.S_ISVTX == 0 {
		return &unsafeRunRoot{dir, fmt.Sprintf("is in %s, which others may write to (mode %04o, not sticky)", parent, pst.Mode&0o7777)}
	}
	if err := unix.Mkdirat(pfd, name, 0o700); err != nil && !errors.Is(err, unix.EEXIST) {
		return &os.PathError{Op: "mkdir", Path: dir, Err: err}
	}
	fd, err := unix.Openat(pfd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		var st unix.Stat_t
		if serr := unix.Fstatat(pfd, name, &st, unix.AT_SYMLINK_NOFOLLOW); serr == nil {
			switch {
			case st.Mode&unix.S_IFMT == unix.S_IFLNK:
				return &unsafeRunRoot{dir, fmt.Sprintf("is a symlink (owned by uid %d)", st.Uid)}
			case st.Mode&unix.S_IFMT != unix.S_IFDIR:
				return &unsafeRunRoot{dir, fmt.Sprintf("is not a directory (owned by uid %d)", st.Uid)}
			case st.Uid != uid:
				return &unsafeRunRoot{dir, fmt.Sprintf("is owned by uid %d, not you (uid %d)", st.Uid, uid)}
			}
		}
		return &os.PathError{Op: "open", Path: dir, Err: err}
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return &os.PathError{Op: "stat", Path: dir, Err: err}
	}
	if st.Uid != uid {
		return &unsafeRunRoot{dir, fmt.Sprintf("is owned by uid %d, not you (uid %d)", st.Uid, uid)}
	}
	if st.Mode&0o077 != 0 {
		return &unsafeRunRoot{dir, fmt.Sprintf("has mode %04o: others may have written to it", st.Mode&0o7777)}
	}
	if st.Mode&0o700 != 0o700 {
		// Ours and closed to others, but created under a strict umask.
		if err := unix.Fchmod(fd, 0o700); err != nil {
			return &os.PathError{Op: "chmod", Path: dir, Err: err}
		}
	}
	return nil
}

// diskScratch is where a run's upper layer goes when a tmpfs cannot hold
// it (see initParams.DiskScratch): in the cache's run directory, named
// after the run.
func diskScratch(cacheDir, runDir string) string {
	return filepath.Join(cache.RunDir(cacheDir), scratchPrefix+filepath.Base(runDir))
}

// scratchPrefix names the runs' upper layers on disk in the cache's run
// directory.
const scratchPrefix = "scratch-"

// tmpfsUserXattrs says whether this kernel's tmpfs has user.* xattrs
// (Linux 6.6), which rootless overlayfs needs in its upper layer.
func tmpfsUserXattrs() bool {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return true
	}
	major, minor, ok := binfmt.ParseRelease(unix.ByteSliceToString(u.Release[:]))
	return !ok || major > 6 || major == 6 && minor >= 6
}

// makeDiskScratch creates and locks the directory for a run's upper layer
// on disk; the run's init uses it only if its tmpfs lacks user xattrs. The
// lock tells collectStaleScratch the run is alive.
func makeDiskScratch(dir string) (*fsutil.Lock, error) {
	if err := os.MkdirAll(filepath.Dir(dir), 0o700); err != nil {
		return nil, fmt.Errorf("create the run's upper layer on disk: %w", err)
	}
	if err := os.Mkdir(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create the run's upper layer on disk: %w", err)
	}
	lock, err := fsutil.LockDir(dir, fsutil.Exclusive)
	if err != nil {
		os.Remove(dir)
		return nil, fmt.Errorf("lock the run's upper layer on disk: %w", err)
	}
	return lock, nil
}

// removeDiskScratch removes a run's upper layer on disk and releases its
// lock; files the container created as other ids are removed in a user
// namespace that maps them.
func removeDiskScratch(dir string, lock *fsutil.Lock, log *slog.Logger) {
	defer lock.Unlock()
	if err := userns.RemoveTree(dir); err != nil {
		log.Warn("could not remove the run's upper layer on disk", "dir", dir, "err", err)
	}
}

// collectStaleScratch removes the upper layers on disk of runs killed with
// SIGKILL: those whose lock nobody holds.
func collectStaleScratch(cacheDir string, log *slog.Logger) {
	dir := cache.RunDir(cacheDir)
	entries, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	for _, e := range entries {
		if !strings.HasPrefix(e.Name(), scratchPrefix) || !e.IsDir() {
			continue
		}
		p := filepath.Join(dir, e.Name())
		lock, err := lockDir(p, true)
		if err != nil {
			continue // a live run's, or gone
		}
		if lockedStale(lock) && userns.RemoveTree(p) == nil {
			log.Debug("collected the upper layer of an interrupted run", "dir", p)
		}
		lock.Unlock()
	}
}
