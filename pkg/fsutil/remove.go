package fsutil

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// RemoveAll removes path and everything below it, like os.RemoveAll, but
// also through directories that are not writable or searchable by their
// owner (0000, 0555): each directory is made owner-rwx before it is emptied.
// A symlink at path is removed, not followed. A missing path is not an error.
func RemoveAll(p string) error {
	p = filepath.Clean(p)
	if p == "/" || p == "." || p == "" {
		return fmt.Errorf("remove %q: refusing to remove this path", p)
	}
	dir, base := filepath.Split(p)
	if dir == "" {
		dir = "."
	}
	dfd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if errors.Is(err, unix.ENOENT) {
		return nil
	}
	if err != nil {
		return &os.PathError{Op: "remove", Path: p, Err: err}
	}
	defer unix.Close(dfd)
	if err := RemoveAllAt(dfd, base); err != nil {
		return &os.PathError{Op: "remove", Path: p, Err: err}
	}
	return nil
}

// RemoveAllAt removes name inside the directory dfd, recursively, making
// directories owner-rwx as it goes. dfd must be writable.
func RemoveAllAt(dfd int, name string) error {
	err := unix.Unlinkat(dfd, name, 0)
	if err == nil || errors.Is(err, unix.ENOENT) {
		return nil
	}
	if !errors.Is(err, unix.EISDIR) && !errors.Is(err, unix.EPERM) {
		return err
	}
	fd, oerr := OpenDirAt(dfd, name)
	if errors.Is(oerr, unix.ENOENT) {
		return nil
	}
	if errors.Is(oerr, unix.ENOTDIR) || errors.Is(oerr, unix.ELOOP) {
		return err // not a directory after all: report the unlink error
	}
	if oerr != nil {
		return oerr
	}
	f := os.NewFile(uintptr(fd), name)
	defer f.Close()
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return err
	}
	if st.Mode&0o700 != 0o700 {
		if err := unix.Fchmod(fd, st.Mode&0o7777|0o700); err != nil {
			return err
		}
	}
	for {
		names, rerr := f.Readdirnames(1024)
		for _, n := range names {
			if err := RemoveAllAt(fd, n); err != nil {
				return err
			}
		}
		if rerr != nil || len(names) == 0 {
			break
		}
		// Entries were removed while reading: restart from the beginning so
		// none is skipped.
		if _, err := f.Seek(0, 0); err != nil {
			return err
		}
	}
	err = unix.Unlinkat(dfd, name, unix.AT_REMOVEDIR)
	if errors.Is(err, unix.ENOENT) {
		return nil
	}
	return err
}

// OpenDirAt opens the directory name in dfd without following a symlink,
// making it owner-rwx first if the open is refused (0000 dirs, unprivileged).
func OpenDirAt(dfd int, name string) (int, error) {
	flags := unix.O_RDONLY | unix.O_DIRECTORY | unix.O_NOFOLLOW | unix.O_CLOEXEC
	fd, err := unix.Openat(dfd, name, flags, 0)
	if errors.Is(err, unix.EACCES) {
		var st unix.Stat_t
		if serr := unix.Fstatat(dfd, name, &st, unix.AT_SYMLINK_NOFOLLOW); serr != nil || st.Mode&unix.S_IFMT != unix.S_IFDIR {
			return -1, err
		}
		if cerr := unix.Fchmodat(dfd, name, st.Mode&0o7777|0o700, 0); cerr != nil {
			return -1, err
		}
		fd, err = unix.Openat(dfd, name, flags, 0)
	}
	return fd, err
}
