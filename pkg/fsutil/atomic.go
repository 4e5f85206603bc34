package fsutil

import (
	"os"
	"path/filepath"
)

// WriteFileAtomic writes data to path with mode perm through a temporary
// file in the same directory (named by pattern, as os.CreateTemp takes it,
// so that each cache's clean-up of interrupted writes recognizes it),
// synced, renamed into place, and the directory synced: a reader sees the
// old file or the whole new one, never a part, and after a crash the new
// file is complete or absent.
func WriteFileAtomic(path, pattern string, data []byte, perm os.FileMode) error {
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, pattern)
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // after the rename: ENOENT, ignored
	err = tmp.Chmod(perm)
	if err == nil {
		_, err = tmp.Write(data)
	}
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		return err
	}
	SyncDir(dir)
	return nil
}

// SyncDir fsyncs the directory dir, so that a rename into it survives a
// crash. It is best effort: a directory that cannot be opened or synced
// (some file systems refuse) leaves the rename as durable as it was.
func SyncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		d.Close()
	}
}
