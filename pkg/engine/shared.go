package engine

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/xrun-dev/xrun/pkg/cache"
	"github.com/xrun-dev/xrun/pkg/fsutil"
	"github.com/xrun-dev/xrun/pkg/pull"
	"github.com/xrun-dev/xrun/pkg/rootfs"
	"github.com/xrun-dev/xrun/pkg/store"
)

// EnvAdditionalCaches names read-only caches to look in before pulling
// (public, documented): DIR[:DIR...].
const EnvAdditionalCaches = "XRUN_ADDITIONAL_CACHES"

// AdditionalCaches parses a DIR[:DIR...] list (XRUN_ADDITIONAL_CACHES).
// Directories must be absolute.
func AdditionalCaches(list string) ([]string, error) {
	var out []string
	for _, d := range strings.Split(list, ":") {
		if d == "" {
			continue
		}
		if !filepath.IsAbs(d) {
			return nil, fmt.Errorf("%s: %q is not an absolute path: give absolute directories separated by ':'", EnvAdditionalCaches, d)
		}
		out = append(out, filepath.Clean(d))
	}
	return out, nil
}

// fromShared resolves o.Image in the read-only caches o.AdditionalCaches,
// in order, with no network: an image whose record, manifest, config and
// unpacked rootfs are all there is used in place (no copy). It returns the
// image and the cache that has it, or nil.
func fromShared(ctx context.Context, o Options, popts []pull.Option) (*pull.Image, string) {
	if o.Pull == pull.PullAlways {
		return nil, ""
	}
	log := o.Logger
	for _, dir := range o.AdditionalCaches {
		if dir == filepath.Clean(o.CacheDir) {
			continue
		}
		if err := checkSharedCache(dir); err != nil {
			log.Warn("not using the additional cache: "+err.Error(), "cache", dir)
			continue
		}
		c := pull.NewClient(store.New(dir))
		img, err := c.Resolve(ctx, o.Image, append(popts[:len(popts):len(popts)], pull.WithPolicy(pull.PullNever))...)
		if err != nil {
			log.Debug("not in the additional cache", "cache", dir, "err", err)
			continue
		}
		if !rootfs.NewCache(dir).Has(img.Digest.Hex) {
			log.Debug("in the additional cache but not unpacked", "cache", dir, "digest", img.Digest)
			continue
		}
		log.Info("using the additional cache", "cache", dir, "digest", img.Digest.String())
		return img, dir
	}
	return nil, ""
}

// checkSharedCache refuses a read-only cache that someone other than its
// owner could change: its directories must belong to root or to this user
// and not be writable by group or others (else another user could plant
// an image that this user's runs would trust).
func checkSharedCache(dir string) error {
	for _, d := range []string{dir, cache.IndexDir(dir), cache.BlobsDir(dir, "sha256"), cache.RootfsDir(dir)} {
		fi, err := os.Stat(d)
		if err != nil {
			return err
		}
		st, ok := fi.Sys().(*syscall.Stat_t)
		if !ok {
			return fmt.Errorf("%s: cannot read its owner", d)
		}
		if st.Uid != 0 && int(st.Uid) != os.Getuid() {
			return fmt.Errorf("%s belongs to uid %d, neither root nor you", d, st.Uid)
		}
		if fi.Mode().Perm()&0o022 != 0 {
			return fmt.Errorf("%s is writable by group or others (mode %04o): remove their write permission", d, fi.Mode().Perm())
		}
	}
	return nil
}

// ownerShim returns the overlay layer that makes an image of a shared
// cache writable for this user: the image's directories, with their modes,
// owned by the user (so, in the container, by its root), cached in the
// user's cache by digest. Files of the image owned by ids this user's
// namespace does not map show as nobody and cannot be changed (the
// overlay could not copy them up with their owner), but new files can be
// created in every directory, which is what builds and tests do. The
// lock it returns is held (shared) for the run; prune removes shims no run
// holds.
func ownerShim(ctx context.Context, cacheDir, rootfsDir, key string) (string, func(), error) {
	dir := filepath.Join(cache.ShimsDir(cacheDir), key)
	lockPath := cache.LockPath(cacheDir, "shim-"+key)
	if err := os.MkdirAll(filepath.Dir(lockPath), 0o700); err != nil {
		return "", nil, err
	}
	for {
		lk, err := fsutil.LockFile(ctx, lockPath, fsutil.Shared)
		if err != nil {
			return "", nil, err
		}
		if _, err := os.Lstat(dir); err == nil {
			return dir, lk.Unlock, nil
		}
		lk.Unlock()
		lk, err = fsutil.LockFile(ctx, lockPath, fsutil.Exclusive)
		if err != nil {
			return "", nil, err
		}
		if _, err := os.Lstat(dir); err != nil {
			err = makeShim(rootfsDir, dir)
		}
		lk.Unlock()
		if err != nil {
			return "", nil, fmt.Errorf("prepare the shared image's directories: %w", err)
		}
	}
}

// makeShim creates, at dst, the directory tree of src with the same modes.
func makeShim(src, dst string) error {
	if err := os.MkdirAll(filepath.Dir(dst), 0o700); err != nil {
		return err
	}
	tmp, err := os.MkdirTemp(filepath.Dir(dst), ".tmp-")
	if err != nil {
		return err
	}
	defer fsutil.RemoveAll(tmp)
	err = filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrPermission) && d != nil && d.IsDir() {
				return fs.SkipDir // private to its owner: stays as the image has it
			}
			return err
		}
		if !d.IsDir() {
			return nil
		}
		rel, _ := filepath.Rel(src, p)
		t := filepath.Join(tmp, rel)
		if rel != "." {
			if err := os.Mkdir(t, 0o700); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	// Modes last (a 0555 directory would refuse its children), deepest
	// first.
	var dirs []string
	_ = filepath.WalkDir(tmp, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			dirs = append(dirs, p)
		}
		return nil
	})
	for i := len(dirs) - 1; i >= 0; i-- {
		rel, _ := filepath.Rel(tmp, dirs[i])
		fi, err := os.Stat(filepath.Join(src, rel))
		if err != nil {
			return err
		}
		if err := os.Chmod(dirs[i], fi.Mode().Perm()|fi.Mode()&(fs.ModeSticky|fs.ModeSetgid)); err != nil {
			return err
		}
	}
	if err := os.Rename(tmp, dst); err != nil {
		return err
	}
	return nil
}
