package fsutil

import (
	"errors"
	"io/fs"
	"os"
)

// ReadDirIfExists is os.ReadDir, except that a directory that does not
// exist (a cache part nothing has created yet) lists as empty.
func ReadDirIfExists(dir string) ([]os.DirEntry, error) {
	ents, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	return ents, err
}
