package config

import (
	"bufio"
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"

	"github.com/xrun-dev/xrun/pkg/fsutil"
)

// The trust list remembers the project files the user has reviewed and
// trusted (xrun config trust), like direnv's allow list: one line per file,
// "SHA256 PATH", PATH absolute with symbolic links resolved. A trusted file
// whose content changes is no longer trusted: the hash no longer matches.

// TrustListPath returns where the trust list lives:
// $XDG_CONFIG_HOME/xrun/trusted, else $HOME/.config/xrun/trusted.
func TrustListPath() (string, error) {
	if d := os.Getenv("XDG_CONFIG_HOME"); filepath.IsAbs(d) {
		return filepath.Join(d, "xrun", "trusted"), nil
	}
	home := os.Getenv("HOME")
	if !filepath.IsAbs(home) {
		return "", errors.New("find the trust list of .xrun.yaml files: set HOME or XDG_CONFIG_HOME")
	}
	return filepath.Join(home, ".config", "xrun", "trusted"), nil
}

// TrustList is the set of trusted files: real path -> sha256 (hex).
type TrustList struct {
	path    string
	entries map[string]string
}

// LoadTrustList reads the trust list at path (a missing file is an empty
// list). A list that someone else could have written is refused: it would
// let them trust files in the user's name.
func LoadTrustList(path string, uid int) (*TrustList, error) {
	l := &TrustList{path: path, entries: map[string]string{}}
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if errors.Is(err, fs.ErrNotExist) {
		return l, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read the trust list: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("read the trust list: %w", err)
	}
	st, _ := fi.Sys().(*syscall.Stat_t)
	if !fi.Mode().IsRegular() || st == nil || int(st.Uid) != uid || fi.Mode().Perm()&0o022 != 0 {
		return nil, fmt.Errorf("trust list %s is not a file only you can write: remove it and trust your files again (xrun config trust FILE)", path)
	}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		sum, p, ok := strings.Cut(sc.Text(), " ")
		if !ok || len(sum) != 64 || !filepath.IsAbs(p) {
			continue // not ours: ignore rather than trust
		}
		if _, err := hex.DecodeString(sum); err != nil {
			continue
		}
		l.entries[p] = sum
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read the trust list %s: %w", path, err)
	}
	return l, nil
}

// Path returns where the list is stored.
func (l *TrustList) Path() string {
	if l == nil {
		return "none (set HOME or XDG_CONFIG_HOME)"
	}
	return l.path
}

// Trusted reports whether the file at real path with content hash sum is
// trusted. A nil list trusts nothing.
func (l *TrustList) Trusted(path string, sum [32]byte) bool {
	return l != nil && l.entries[path] == hex.EncodeToString(sum[:])
}

// Known reports whether path is in the list, whatever its hash.
func (l *TrustList) Known(path string) bool {
	if l == nil {
		return false
	}
	_, ok := l.entries[path]
	return ok
}

// Add trusts the file at real path with content hash sum (replacing the
// hash of an earlier version).
func (l *TrustList) Add(path string, sum [32]byte) error {
	if !filepath.IsAbs(path) || strings.ContainsAny(path, "\n\x00") {
		return fmt.Errorf("cannot trust %q: the path must be absolute and on one line", path)
	}
	l.entries[path] = hex.EncodeToString(sum[:])
	return nil
}

// Remove forgets path; it reports whether it was in the list.
func (l *TrustList) Remove(path string) bool {
	_, ok := l.entries[path]
	delete(l.entries, path)
	return ok
}

// EditTrustList loads the list at path, lets edit change it, and saves it,
// holding a lock (path + ".lock") so that two xrun config commands at once
// do not lose each other's change.
func EditTrustList(path string, uid int, edit func(*TrustList) error) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("save the trust list: %w", err)
	}
	lock, err := fsutil.LockFile(context.Background(), path+".lock", fsutil.Exclusive)
	if err != nil {
		return fmt.Errorf("lock the trust list: %w", err)
	}
	defer lock.Unlock()
	l, err := LoadTrustList(path, uid)
	if err != nil {
		return err
	}
	if err := edit(l); err != nil {
		return err
	}
	return l.Save()
}

// Save writes the list atomically (a temporary file renamed over it),
// mode 0600, creating its directory (0700) when missing.
func (l *TrustList) Save() error {
	dir := filepath.Dir(l.path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("save the trust list: %w", err)
	}
	paths := make([]string, 0, len(l.entries))
	for p := range l.entries {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	var b bytes.Buffer
	for _, p := range paths {
		fmt.Fprintf(&b, "%s %s\n", l.entries[p], p)
	}
	if err := fsutil.WriteFileAtomic(l.path, ".trusted-*", b.Bytes(), 0o600); err != nil {
		return fmt.Errorf("save the trust list: %w", err)
	}
	return nil
}
