package fsutil

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"
)

// ErrLocked is returned by TryLockFile and TryLockDir when another open
// file (another process, or another goroutine of this one) holds a
// conflicting lock.
var ErrLocked = errors.New("locked by another process")

// LockMode says whether a lock excludes every other holder (Exclusive) or
// only exclusive ones (Shared).
type LockMode int

const (
	Exclusive LockMode = unix.LOCK_EX
	Shared    LockMode = unix.LOCK_SH
)

// lockPoll is how often LockFile retries while it waits: flock(2) has no
// blocking form that honours a context.
const lockPoll = 25 * time.Millisecond

// Lock is a held flock. flock locks belong to the open file, so two
// goroutines of one process exclude each other too.
type Lock struct{ f *os.File }

// Path is the locked file's (or directory's) path.
func (l *Lock) Path() string { return l.f.Name() }

// Fd is the locked file's descriptor (to fstat it).
func (l *Lock) Fd() uintptr { return l.f.Fd() }

// Unlock releases the lock. It is safe to call more than once.
func (l *Lock) Unlock() {
	if l != nil && l.f != nil {
		_ = unix.Flock(int(l.f.Fd()), unix.LOCK_UN)
		l.f.Close()
		l.f = nil
	}
}

// LockFile takes the lock on the lock file path in mode, waiting until it
// is free or ctx is done (then the error is ctx's). The lock file is
// created 0600, never through a symlink, and its directory (the cache's
// locks/) 0700.
func LockFile(ctx context.Context, path string, mode LockMode) (*Lock, error) {
	f, err := openLockFile(path)
	if err != nil {
		return nil, err
	}
	if ctx.Done() == nil {
		// Nothing can cancel the wait: block in the kernel.
		if err := flock(f, int(mode)); err != nil {
			f.Close()
			return nil, err
		}
		return &Lock{f}, nil
	}
	t := time.NewTicker(lockPoll)
	defer t.Stop()
	for {
		err := flock(f, int(mode)|unix.LOCK_NB)
		if err == nil {
			return &Lock{f}, nil
		}
		if !errors.Is(err, unix.EWOULDBLOCK) {
			f.Close()
			return nil, err
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, ctx.Err()
		case <-t.C:
		}
	}
}

// TryLockFile is LockFile that fails with ErrLocked instead of waiting.
func TryLockFile(path string, mode LockMode) (*Lock, error) {
	f, err := openLockFile(path)
	if err != nil {
		return nil, err
	}
	return tryLock(f, mode)
}

// TryLockDir takes the lock on the directory dir itself (opened without
// following a symlink), or fails with ErrLocked.
func TryLockDir(dir string, mode LockMode) (*Lock, error) {
	f, err := openNoFollow(dir, unix.O_RDONLY|unix.O_DIRECTORY, 0)
	if err != nil {
		return nil, err
	}
	return tryLock(f, mode)
}

// LockDir takes the lock on the directory dir itself, waiting for it.
func LockDir(dir string, mode LockMode) (*Lock, error) {
	f, err := openNoFollow(dir, unix.O_RDONLY|unix.O_DIRECTORY, 0)
	if err != nil {
		return nil, err
	}
	if err := flock(f, int(mode)); err != nil {
		f.Close()
		return nil, err
	}
	return &Lock{f}, nil
}

func tryLock(f *os.File, mode LockMode) (*Lock, error) {
	err := flock(f, int(mode)|unix.LOCK_NB)
	if err == nil {
		return &Lock{f}, nil
	}
	f.Close()
	if errors.Is(err, unix.EWOULDBLOCK) {
		return nil, ErrLocked
	}
	return nil, err
}

func openLockFile(path string) (*os.File, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, err
	}
	return openNoFollow(path, unix.O_RDONLY|unix.O_CREAT, 0o600)
}

func openNoFollow(path string, flags int, perm uint32) (*os.File, error) {
	fd, err := unix.Open(path, flags|unix.O_NOFOLLOW|unix.O_CLOEXEC, perm)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: path, Err: err}
	}
	return os.NewFile(uintptr(fd), path), nil
}

// flock is flock(2), retried when a signal interrupts it.
func flock(f *os.File, how int) error {
	for {
		err := unix.Flock(int(f.Fd()), how)
		if err != unix.EINTR {
			if err != nil {
				return &os.PathError{Op: "flock", Path: f.Name(), Err: err}
			}
			return nil
		}
	}
}
