package accel

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/xrun-dev/xrun/pkg/cache"
	"github.com/xrun-dev/xrun/pkg/fsutil"
)

// State is what the cache knows of one image's accelerator: a tree ready
// to use, or why there is none (a Refusal is remembered, so that later
// runs do not download the packages again to find the same answer).
type State struct {
	Format  int        `json:"format"`
	Refused string     `json:"refused,omitempty"`
	Tool    *Toolchain `json:"toolchain,omitempty"`
	// Cross are the downloaded packages (name -> version).
	Cross  map[string]string `json:"cross,omitempty"`
	Rules  Rules             `json:"rules"`
	Native []string          `json:"native,omitempty"`
	// Checked lists what the self-check compared (all identical).
	Checked  []string      `json:"checked,omitempty"`
	Prepared time.Time     `json:"prepared"`
	Took     time.Duration `json:"took"`
}

// ErrInUse is returned by TryRemove when a run uses the tree.
var ErrInUse = errors.New("accelerator in use")

// Cache keeps accelerator trees at <root>/accel/<key>/{state.json,tree/}.
type Cache struct{ Root string }

// Key is the cache key of an image digest's (hex) tree for a host
// architecture (GOARCH).
func Key(digestHex, hostArch string) string { return digestHex + "-" + hostArch }

func (c Cache) dir() string { return cache.AccelDir(c.Root) }

// Path is the entry of key.
func (c Cache) Path(key string) string { return filepath.Join(c.dir(), key) }

// Tree is the overlay layer of key.
func (c Cache) Tree(key string) string { return filepath.Join(c.Path(key), "tree") }

func (c Cache) lockPath(key string) string { return cache.LockPath(c.Root, "accel-"+key) }

// Lock takes key's lock: Exclusive to prepare or remove it, Shared for a
// run that uses it.
func (c Cache) Lock(ctx context.Context, key string, mode fsutil.LockMode) (*fsutil.Lock, error) {
	if err := os.MkdirAll(filepath.Dir(c.lockPath(key)), 0o700); err != nil {
		return nil, err
	}
	return fsutil.LockFile(ctx, c.lockPath(key), mode)
}

// State reads key's state; nil, nil when there is none (or of another
// format).
func (c Cache) State(key string) (*State, error) {
	b, err := os.ReadFile(filepath.Join(c.Path(key), "state.json"))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var st State
	if err := json.Unmarshal(b, &st); err != nil || st.Format != FormatVersion {
		return nil, nil
	}
	return &st, nil
}

// TempDir makes a work directory in the cache (same file system as the
// trees and the images, for renames and hard links).
func (c Cache) TempDir(key string) (string, error) {
	if err := os.MkdirAll(c.dir(), 0o700); err != nil {
		return "", err
	}
	return os.MkdirTemp(c.dir(), ".tmp-"+key+"-")
}

// Publish makes key's entry: state, and the tree at tree (a directory in
// a TempDir; "" for a refusal). The caller holds key's lock exclusively.
func (c Cache) Publish(key, tree string, st *State) error {
	st.Format = FormatVersion
	if err := c.removeEntry(key); err != nil {
		return err
	}
	tmp, err := c.TempDir(key)
	if err != nil {
		return err
	}
	if tree != "" {
		if err := os.Rename(tree, filepath.Join(tmp, "tree")); err != nil {
			return err
		}
	}
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(tmp, "state.json"), b, 0o644); err != nil {
		return err
	}
	if err := os.Rename(tmp, c.Path(key)); err != nil {
		return err
	}
	fsutil.SyncDir(c.dir())
	return nil
}

// removeEntry removes key's entry (lock held).
func (c Cache) removeEntry(key string) error {
	if _, err := os.Lstat(c.Path(key)); errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	var rnd [8]byte
	rand.Read(rnd[:])
	gone := filepath.Join(c.dir(), ".tmp-rm-"+hex.EncodeToString(rnd[:]))
	if err := os.Rename(c.Path(key), gone); err != nil {
		return err
	}
	return fsutil.RemoveAll(gone)
}

// Keys lists the entries.
func (c Cache) Keys() ([]string, error) {
	ents, err := fsutil.ReadDirIfExists(c.dir())
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range ents {
		if e.IsDir() && !strings.HasPrefix(e.Name(), ".") {
			out = append(out, e.Name())
		}
	}
	return out, nil
}

// KeysOf lists the entries of an image digest (hex), for any host.
func (c Cache) KeysOf(digestHex string) []string {
	keys, _ := c.Keys()
	var out []string
	for _, k := range keys {
		if strings.HasPrefix(k, digestHex+"-") {
			out = append(out, k)
		}
	}
	return out
}

// Size is the bytes of key's entry on disk.
func (c Cache) Size(key string) int64 {
	var n int64
	_ = filepath.WalkDir(c.Path(key), func(_ string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			if fi, err := d.Info(); err == nil {
				n += fi.Size()
			}
		}
		return nil
	})
	return n
}

// TryRemove removes key's entry unless a run uses it (ErrInUse); it
// returns the bytes freed.
func (c Cache) TryRemove(key string) (int64, error) {
	if err := os.MkdirAll(filepath.Dir(c.lockPath(key)), 0o700); err != nil {
		return 0, err
	}
	lk, err := fsutil.TryLockFile(c.lockPath(key), fsutil.Exclusive)
	if errors.Is(err, fsutil.ErrLocked) {
		return 0, fmt.Errorf("remove accelerator %s: %w", key, ErrInUse)
	}
	if err != nil {
		return 0, err
	}
	defer lk.Unlock()
	n := c.Size(key)
	if err := c.removeEntry(key); err != nil {
		return 0, fmt.Errorf("remove accelerator %s: %w", key, err)
	}
	return n, nil
}

// CleanTemp removes work directories left by interrupted preparations
// (not locked: call it with no preparation running, as prune does).
func (c Cache) CleanTemp(olderThan time.Duration) int64 {
	ents, _ := fsutil.ReadDirIfExists(c.dir())
	var n int64
	for _, e := range ents {
		if !strings.HasPrefix(e.Name(), ".tmp-") {
			continue
		}
		if fi, err := e.Info(); err == nil && time.Since(fi.ModTime()) > olderThan {
			p := filepath.Join(c.dir(), e.Name())
			n += c.sizeOf(p)
			_ = fsutil.RemoveAll(p)
		}
	}
	return n
}

func (c Cache) sizeOf(p string) int64 {
	var n int64
	_ = filepath.WalkDir(p, func(_ string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			if fi, err := d.Info(); err == nil {
				n += fi.Size()
			}
		}
		return nil
	})
	return n
}
