package rootfs

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/xrun-dev/xrun/pkg/cache"
	"github.com/xrun-dev/xrun/pkg/fsutil"
	"github.com/xrun-dev/xrun/pkg/userns"
)

// Cache keeps unpacked images at Root/rootfs/<key>/ (key = manifest digest
// hex). Unpacking happens in Root/rootfs/.tmp-<key>-* under the flock
// Root/locks/rootfs-<key>.lock, and the rename into place is the commit
// point: a published rootfs is always complete, and N processes asking for
// the same key unpack it once.
type Cache struct {
	Root string

	// removeInNS, when set, replaces userns.Remove (tests).
	removeInNS func(dir string) error
}

// NewCache returns a cache rooted at root (created on first Ensure).
func NewCache(root string) *Cache { return &Cache{Root: root} }

const tmpPrefix = ".tmp-"

func (c *Cache) rootfsDir() string { return cache.RootfsDir(c.Root) }

func (c *Cache) lockPath(key string) string { return cache.LockPath(c.Root, "rootfs-"+key) }

// Path returns Root/rootfs/<key>, whether or not it exists.
func (c *Cache) Path(key string) string { return filepath.Join(c.rootfsDir(), key) }

// Has reports whether key is published (and therefore complete).
func (c *Cache) Has(key string) bool {
	if checkKey(key) != nil {
		return false
	}
	fi, err := os.Lstat(c.Path(key))
	return err == nil && fi.IsDir()
}

// Keys lists the published keys (for garbage collection).
func (c *Cache) Keys() ([]string, error) {
	ents, err := fsutil.ReadDirIfExists(c.rootfsDir())
	if err != nil {
		return nil, fmt.Errorf("list rootfs cache: %w", err)
	}
	var keys []string
	for _, e := range ents {
		if e.IsDir() && checkKey(e.Name()) == nil {
			keys = append(keys, e.Name())
		}
	}
	return keys, nil
}

// checkKey accepts keys made of [A-Za-z0-9_] (hex digests): they cannot
// contain a path separator, "..", or the "-" that ends the key in temp names.
func checkKey(key string) error {
	if key == "" || len(key) > 200 {
		return fmt.Errorf("%w %q", ErrInvalidKey, key)
	}
	for _, r := range key {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_') {
			return fmt.Errorf("%w %q", ErrInvalidKey, key)
		}
	}
	return nil
}

// Ensure returns the rootfs directory for key, unpacking layers (in order)
// if it is not published yet. Concurrent callers for one key, in this process
// or others, wait for a single unpack and reuse it. Stale temp dirs whose
// lock is free are removed on the way. On failure nothing is published and
// the temp dir is removed.
func (c *Cache) Ensure(ctx context.Context, key string, layers []Layer, opts Options) (string, error) {
	if err := checkKey(key); err != nil {
		return "", err
	}
	opts, err := opts.fill()
	if err != nil {
		return "", err
	}
	dst := c.Path(key)
	if c.Has(key) {
		return dst, nil
	}
	for _, d := range []string{c.rootfsDir(), filepath.Dir(c.lockPath(key))} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return "", fmt.Errorf("create cache dir: %w", err)
		}
	}
	lk, err := c.lock(ctx, key)
	if err != nil {
		return "", err
	}
	defer lk.Unlock()
	if c.Has(key) {
		opts.Logger.Debug("rootfs unpacked by another process", "key", key)
		return dst, nil
	}
	c.removeStale(key, opts)

	tmp, err := os.MkdirTemp(c.rootfsDir(), tmpPrefix+key+"-")
	if err != nil {
		return "", fmt.Errorf("unpack rootfs %s: %w", key, err)
	}
	start := time.Now()
	stats, err := fill(ctx, tmp, layers, opts)
	if err == nil {
		c.writeInfo(key, stats)
		err = publish(tmp, dst)
	}
	if err != nil {
		if rerr := c.removeTree(tmp); rerr != nil {
			opts.Logger.Warn("cannot remove temp rootfs", "path", tmp, "err", rerr)
		}
		return "", fmt.Errorf("unpack rootfs %s: %w", key, err)
	}
	opts.Logger.Debug("rootfs unpacked", "key", key, "layers", len(layers), "files", stats.Files,
		"bytes", stats.Bytes, "duration", time.Since(start))
	return dst, nil
}

// fill unpacks layers into the empty temp dir tmp, in a user namespace
// with opts.InUserNS, else (or if that is unavailable) in-process.
func fill(ctx context.Context, tmp string, layers []Layer, opts Options) (Stats, error) {
	if opts.InUserNS {
		unpack := opts.unpacker
		if unpack == nil {
			unpack = unpackInUserNS
		}
		st, err := unpack(ctx, tmp, layers, opts)
		if !errors.Is(err, ErrUnpackerUnavailable) {
			if err == nil {
				logSkipped(opts.Logger, st)
			}
			return st, err
		}
		opts.Logger.Debug("unpacking in-process", "reason", err)
		// The contract says it touched nothing; make sure of it.
		if ents, rerr := os.ReadDir(tmp); rerr != nil || len(ents) != 0 {
			return Stats{}, fmt.Errorf("[internal error] unavailable unpacker left %s non-empty: %v", tmp, rerr)
		}
	}
	return UnpackLayers(ctx, tmp, layers, opts)
}

// UnpackLayers applies layers in order onto dir, which must exist (and
// should be empty), with one unpacker: a directory made 0555 by one layer
// stays writable for the next. The root gets mode 0755 unless a layer has
// a "./" entry. It is what Cache.Ensure does in-process, for an
// unpacker running elsewhere (another process, a user namespace).
func UnpackLayers(ctx context.Context, dir string, layers []Layer, opts Options) (Stats, error) {
	opts, err := opts.fill()
	if err != nil {
		return Stats{}, err
	}
	u, err := newUnpacker(dir, opts)
	if err != nil {
		return Stats{}, err
	}
	defer u.close()
	// MkdirTemp made the root 0700; an image without a "./" entry gets 0755.
	var st unix.Stat_t
	if err := unix.Fstat(u.rootFD, &st); err != nil {
		return Stats{}, err
	}
	u.pending[""] = dirMeta{ino: st.Ino, mode: 0o755}
	for i, l := range layers {
		name := l.Digest
		if name == "" {
			name = fmt.Sprintf("#%d", i)
		}
		if err := u.applyLayer(ctx, l); err != nil {
			return u.stats, fmt.Errorf("layer %s: %w", name, err)
		}
	}
	return u.stats, u.finish()
}

// publish makes the unpacked tree durable, then renames it into place.
func publish(tmp, dst string) error {
	fd, err := unix.Open(tmp, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	// One syncfs instead of an fsync per file: a crash after the rename must
	// not leave a published rootfs with empty files.
	err = unix.Syncfs(fd)
	unix.Close(fd)
	if err != nil {
		return fmt.Errorf("sync: %w", err)
	}
	if err := os.Rename(tmp, dst); err != nil {
		return err
	}
	fsutil.SyncDir(filepath.Dir(dst))
	return nil
}

func (c *Cache) lock(ctx context.Context, key string) (*fsutil.Lock, error) {
	lk, err := fsutil.LockFile(ctx, c.lockPath(key), fsutil.Exclusive)
	if err != nil {
		return nil, fmt.Errorf("lock rootfs %s: %w", key, err)
	}
	return lk, nil
}

// removeStale removes temp dirs left by interrupted unpacks or removals: ours
// (we hold key's lock) and those of keys whose lock is free.
func (c *Cache) removeStale(key string, opts Options) {
	ents, err := os.ReadDir(c.rootfsDir())
	if err != nil {
		return
	}
	for _, e := range ents {
		rest, ok := strings.CutPrefix(e.Name(), tmpPrefix)
		if !ok {
			continue
		}
		i := strings.LastIndexByte(rest, '-')
		if i < 0 || checkKey(rest[:i]) != nil {
			continue
		}
		k := rest[:i]
		p := filepath.Join(c.rootfsDir(), e.Name())
		var lk *fsutil.Lock
		if k != key {
			if lk, err = fsutil.TryLockFile(c.lockPath(k), fsutil.Exclusive); err != nil {
				continue // in use
			}
		}
		opts.Logger.Debug("removing stale temp rootfs", "path", p)
		if err := c.removeTree(p); err != nil {
			opts.Logger.Warn("cannot remove stale temp rootfs", "path", p, "err", err)
		}
		if lk != nil {
			lk.Unlock()
		}
	}
}

// Remove deletes a published rootfs, even with 0000/0555 directories inside.
// It takes the key's lock (waiting for runs that hold it, see Acquire),
// renames the tree out of the way (so it stops being published at once),
// then deletes it. A missing key gives ErrNotFound.
func (c *Cache) Remove(key string) error {
	if err := checkKey(key); err != nil {
		return err
	}
	if !c.Has(key) {
		return fmt.Errorf("remove rootfs %s: %w", key, ErrNotFound)
	}
	if err := os.MkdirAll(filepath.Dir(c.lockPath(key)), 0o700); err != nil {
		return fmt.Errorf("remove rootfs %s: %w", key, err)
	}
	lk, err := c.lock(context.Background(), key)
	if err != nil {
		return err
	}
	defer lk.Unlock()
	return c.removeLocked(key)
}

// removeLocked removes key, whose lock the caller holds exclusively.
func (c *Cache) removeLocked(key string) error {
	if !c.Has(key) {
		return fmt.Errorf("remove rootfs %s: %w", key, ErrNotFound)
	}
	var rnd [8]byte
	rand.Read(rnd[:])
	tmp := filepath.Join(c.rootfsDir(), tmpPrefix+key+"-rm"+hex.EncodeToString(rnd[:]))
	if err := os.Rename(c.Path(key), tmp); err != nil {
		return fmt.Errorf("remove rootfs %s: %w", key, err)
	}
	os.Remove(c.usedPath(key))
	if err := c.removeTree(tmp); err != nil {
		return fmt.Errorf("remove rootfs %s: %w", key, err)
	}
	return nil
}

// removeAll is RemoveAll; tests make it refuse.
var removeAll = fsutil.RemoveAll

// removeTree is RemoveAll, then, for what permissions kept RemoveAll from
// removing, userns.Remove: an image unpacked with its owners
// (Options.InUserNS) holds files and 0700 directories owned by
// subordinate ids. It is used by Remove, TryRemove, CleanTemp and
// Ensure's clean-up.
func (c *Cache) removeTree(p string) error {
	err := removeAll(p)
	if err == nil || !errors.Is(err, fs.ErrPermission) {
		return err
	}
	remove := c.removeInNS
	if remove == nil {
		remove = userns.Remove
	}
	if rerr := remove(p); rerr != nil {
		return fmt.Errorf("%w; then: %v", err, rerr)
	}
	return nil
}
