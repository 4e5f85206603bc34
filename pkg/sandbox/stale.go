package sandbox

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/xrun-dev/xrun/pkg/binfmt"
	"github.com/xrun-dev/xrun/pkg/fsutil"
	"github.com/xrun-dev/xrun/pkg/userns"
)

// A run's directory, <run root>/<id>, holds everything of the run: its
// parameters, the mount points of its rootfs and scratch space, and
// libcontainer's state (state/<id>). The run holds an exclusive flock on the
// directory itself from just after creating it until it has removed it, so
// a run directory whose lock can be taken belongs to a run that is gone
// (xrun killed with SIGKILL: the kernel releases the lock).

// staleMinAge is how old an unlocked run directory must be to be collected:
// a run creates its directory a moment before it locks it.
const staleMinAge = 10 * time.Second

// createRunDir creates and locks a new run directory under runRoot and
// returns its id and path, and the lock on it
// (release it after removing the directory).
func createRunDir(runRoot string) (id, dir string, lock *fsutil.Lock, err error) {
	for attempt := 0; attempt < 5; attempt++ {
		if id, err = newID(); err != nil {
			return "", "", nil, err
		}
		dir = filepath.Join(runRoot, id)
		if err := os.Mkdir(dir, 0o700); err != nil {
			return "", "", nil, fmt.Errorf("create run directory: %w", err)
		}
		lock, err = lockDir(dir, false)
		if errors.Is(err, os.ErrNotExist) {
			continue // collected as stale between mkdir and lock: try again
		}
		if err != nil {
			return "", "", nil, fmt.Errorf("lock run directory: %w", err)
		}
		var st unix.Stat_t
		if err := unix.Fstat(int(lock.Fd()), &st); err != nil || st.Nlink == 0 {
			// Removed by a collector that held the lock before us.
			lock.Unlock()
			continue
		}
		return id, dir, lock, nil
	}
	return "", "", nil, errors.New("create run directory: removed by other runs again and again: try again")
}

// lockDir takes an exclusive flock on the directory dir itself (not
// following a symlink); with nonBlocking, it fails with fsutil.ErrLocked
// when another process holds it.
func lockDir(dir string, nonBlocking bool) (*fsutil.Lock, error) {
	if nonBlocking {
		return fsutil.TryLockDir(dir, fsutil.Exclusive)
	}
	return fsutil.LockDir(dir, fsutil.Exclusive)
}

// collectStale removes what runs killed with SIGKILL left behind in
// runRoot (which resolveRunRoot checked to be the user's own): run
// directories whose lock nobody holds, and state of older xrun versions
// whose container init is gone. Nothing from the state is run or
// signalled: libcontainer's Destroy would run its hooks and kill the
// processes of its cgroup.
func collectStale(runRoot string, log *slog.Logger) {
	entries, err := os.ReadDir(runRoot)
	if err != nil {
		return
	}
	for _, e := range entries {
		id := e.Name()
		if !strings.HasPrefix(id, "xrun-") {
			continue
		}
		if collectRunDir(runRoot, id) {
			log.Debug("collected state of an interrupted run", "id", id)
		}
	}
	collectOldState(runRoot, log)
}

// lockedStale says whether a directory whose lock a collector has just
// taken is stale: still linked and at least staleMinAge old.
func lockedStale(f *fsutil.Lock) bool {
	var st unix.Stat_t
	return unix.Fstat(int(f.Fd()), &st) == nil && st.Nlink > 0 &&
		time.Since(time.Unix(st.Mtim.Unix())) >= staleMinAge
}

// collectRunDir removes the run directory runRoot/id when it is stale.
func collectRunDir(runRoot, id string) bool {
	dir := filepath.Join(runRoot, id)
	f, err := lockDir(dir, true)
	if err != nil {
		if errors.Is(err, unix.ELOOP) || errors.Is(err, unix.ENOTDIR) {
			// Not a directory xrun made: remove the entry, never follow it.
			return os.Remove(dir) == nil
		}
		return false // locked by a live run, or gone
	}
	defer f.Unlock()
	if !lockedStale(f) {
		return false
	}
	if oldStateLive(runRoot, id) {
		return false
	}
	// Remove while holding the lock: a run that created this directory
	// and is waiting for its lock then sees it gone and starts over.
	return userns.RemoveTree(dir) == nil
}

// collectOldState removes the libcontainer state that xrun versions before
// locked run directories kept in runRoot/state/<id>, once its init process
// is gone. The state is read for the pid only.
func collectOldState(runRoot string, log *slog.Logger) {
	stateRoot := filepath.Join(runRoot, stateDir)
	entries, err := os.ReadDir(stateRoot)
	if err != nil {
		return
	}
	for _, e := range entries {
		id := e.Name()
		if !strings.HasPrefix(id, "xrun-") || oldStateLive(runRoot, id) {
			continue
		}
		if info, err := e.Info(); err != nil || time.Since(info.ModTime()) < staleMinAge {
			continue
		}
		if userns.RemoveTree(filepath.Join(stateRoot, id)) == nil {
			log.Debug("collected state of an interrupted run (older xrun)", "id", id)
		}
	}
	_ = os.Remove(stateRoot) // once empty
}

// oldStateLive reports whether runRoot/state/<id>/state.json, written by an
// older xrun, names an init process that still exists.
func oldStateLive(runRoot, id string) bool {
	fd, err := unix.Open(filepath.Join(runRoot, stateDir, id, "state.json"), unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return false
	}
	f := os.NewFile(uintptr(fd), "state.json")
	defer f.Close()
	var s struct {
		Pid int `json:"init_process_pid"`
	}
	if err := json.NewDecoder(io.LimitReader(f, 4<<20)).Decode(&s); err != nil || s.Pid <= 0 {
		return false
	}
	return syscall.Kill(s.Pid, 0) != syscall.ESRCH
}

// reaperUsable reports whether the xrun binary can serve as PID 1 inside an
// arbitrary image: only a static binary runs without the image's loader.
func reaperUsable(exe string) bool {
	ok, err := binfmt.IsStatic(exe)
	return err == nil && ok
}
