package rootfs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/xrun-dev/xrun/pkg/fsutil"
)

// ErrInUse is wrapped when a rootfs cannot be removed because a run holds it.
var ErrInUse = errors.New("rootfs in use")

// Each published rootfs <key> has a small file beside it, <key>.used: its
// content is the Info written at publish time, its mtime the last time a
// run acquired it. Runs touch it (one utimensat) rather than anything in
// the rootfs, which a run never writes.
func (c *Cache) usedPath(key string) string { return filepath.Join(c.rootfsDir(), key+".used") }

// Info describes a published rootfs.
type Info struct {
	Key      string    `json:"-"`
	Bytes    int64     `json:"bytes"`    // file content bytes unpacked
	Files    int       `json:"files"`    // regular files
	Unpacked time.Time `json:"unpacked"` // when it was published
	LastUsed time.Time `json:"-"`        // last Acquire (Unpacked if never run)
}

// Info returns what is known about the published rootfs key.
func (c *Cache) Info(key string) (Info, error) {
	if !c.Has(key) {
		return Info{}, fmt.Errorf("rootfs %s: %w", key, ErrNotFound)
	}
	inf := Info{Key: key}
	p := c.usedPath(key)
	if b, err := os.ReadFile(p); err == nil {
		json.Unmarshal(b, &inf)
	}
	if fi, err := os.Stat(p); err == nil {
		inf.LastUsed = fi.ModTime()
	} else if fi, err := os.Stat(c.Path(key)); err == nil {
		inf.LastUsed = fi.ModTime()
	}
	if inf.Unpacked.IsZero() {
		inf.Unpacked = inf.LastUsed
	}
	return inf, nil
}

// writeInfo records st for key, before it is published.
func (c *Cache) writeInfo(key string, st Stats) {
	// The file's mtime starts equal to Unpacked: LastUsed after Unpacked
	// means the image ran.
	now := time.Now().UTC().Truncate(time.Second)
	b, _ := json.Marshal(Info{Bytes: st.Bytes, Files: st.Files, Unpacked: now})
	// The temp name is one removeStale collects if this process dies.
	if fsutil.WriteFileAtomic(c.usedPath(key), tmpPrefix+key+"-info", b, 0o600) == nil {
		_ = os.Chtimes(c.usedPath(key), now, now)
	}
}

// Acquire takes a shared lock on the published rootfs key, to be held for
// as long as a run uses it: Remove waits for it and prune skips it. It also
// records the time of use (Info.LastUsed). It waits while the key is being
// unpacked or removed, and returns ErrNotFound if, then, key is not
// published. release is safe to call more than once.
func (c *Cache) Acquire(ctx context.Context, key string) (release func(), err error) {
	if err := checkKey(key); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Dir(c.lockPath(key)), 0o700); err != nil {
		return nil, fmt.Errorf("acquire rootfs %s: %w", key, err)
	}
	lk, err := fsutil.LockFile(ctx, c.lockPath(key), fsutil.Shared)
	if err != nil {
		return nil, fmt.Errorf("acquire rootfs %s: %w", key, err)
	}
	if !c.Has(key) {
		lk.Unlock()
		return nil, fmt.Errorf("acquire rootfs %s: %w", key, ErrNotFound)
	}
	now := time.Now()
	if err := os.Chtimes(c.usedPath(key), now, now); errors.Is(err, fs.ErrNotExist) {
		if f, err := os.OpenFile(c.usedPath(key), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644); err == nil {
			f.Close()
		}
	}
	return lk.Unlock, nil
}

// TryRemove is Remove that fails with ErrInUse instead of waiting when a
// run holds key (or it is being unpacked). It returns the bytes the
// rootfs held, as recorded when it was unpacked (0 if unknown).
func (c *Cache) TryRemove(key string) (int64, error) {
	if err := checkKey(key); err != nil {
		return 0, err
	}
	if !c.Has(key) {
		return 0, fmt.Errorf("remove rootfs %s: %w", key, ErrNotFound)
	}
	if err := os.MkdirAll(filepath.Dir(c.lockPath(key)), 0o700); err != nil {
		return 0, fmt.Errorf("remove rootfs %s: %w", key, err)
	}
	lk, err := fsutil.TryLockFile(c.lockPath(key), fsutil.Exclusive)
	if errors.Is(err, fsutil.ErrLocked) {
		return 0, fmt.Errorf("remove rootfs %s: %w", key, ErrInUse)
	}
	if err != nil {
		return 0, fmt.Errorf("remove rootfs %s: %w", key, err)
	}
	defer lk.Unlock()
	inf, _ := c.Info(key)
	if err := c.removeLocked(key); err != nil {
		return 0, err
	}
	return inf.Bytes, nil
}

// CleanTemp removes the temp dirs of interrupted unpacks and removals
// whose lock is free, and the <key>.used files of rootfs that are gone.
func (c *Cache) CleanTemp() {
	ents, err := os.ReadDir(c.rootfsDir())
	if err != nil {
		return
	}
	for _, e := range ents {
		if k, ok := strings.CutSuffix(e.Name(), ".used"); ok && checkKey(k) == nil {
			if _, err := os.Lstat(c.Path(k)); errors.Is(err, fs.ErrNotExist) {
				os.Remove(filepath.Join(c.rootfsDir(), e.Name()))
			}
		}
	}
	c.removeStale("", Options{Logger: slog.New(slog.DiscardHandler)})
}
