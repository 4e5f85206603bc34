// Package store is the on-disk image store: the content-addressed blobs
// (manifests, configs, layers), the index of what ref@platform resolved to
// (what lets a run work offline), the gc lock that keeps pulls and prune
// apart, and, on top of them, the listing, removal and garbage collection
// of cached images with their unpacked rootfs (xrun images, rmi, prune).
//
// The store is its own package, not part of the registry client (pull):
// pull writes into it and reads from it, while images, rmi and prune use it
// without any registry. It imports neither pull nor the CLI; pkg/cache says
// where its files live and pkg/rootfs owns the unpacked trees.
package store

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/xrun-dev/xrun/pkg/accel"
	"github.com/xrun-dev/xrun/pkg/cache"
	"github.com/xrun-dev/xrun/pkg/fsutil"
	"github.com/xrun-dev/xrun/pkg/rootfs"
)

// Image is one image in the cache: a reference resolved for a platform.
type Image struct {
	Ref      string    // canonical reference
	Platform string    // platform asked for
	Selected string    // platform of the manifest chosen (may be an older variant)
	Digest   v1.Hash   // manifest digest (rootfs key)
	Size     int64     // unpacked bytes if unpacked, else compressed bytes of its blobs
	Unpacked bool      // its rootfs is in the cache (it runs offline)
	Pulled   time.Time // when it was resolved
	LastUsed time.Time // last run (zero if never run since unpacked)
	// AccelBytes is the size of its --accel native toolchains (0: none).
	AccelBytes int64
}

// Images lists the images of the cache at root, most recently used first.
func Images(root string) ([]Image, error) {
	recs, err := New(root).Records()
	if err != nil {
		return nil, err
	}
	cache, ac := rootfs.NewCache(root), accel.Cache{Root: root}
	var out []Image
	for _, r := range recs {
		im := Image{Ref: r.Ref, Platform: r.Platform, Selected: r.Selected, Digest: r.Digest, Size: r.Size, Pulled: r.Updated}
		for _, k := range ac.KeysOf(r.Digest.Hex) {
			if _, err := os.Stat(ac.Tree(k)); err == nil {
				im.AccelBytes += ac.Size(k)
			}
		}
		if inf, err := cache.Info(r.Digest.Hex); err == nil {
			im.Unpacked, im.Size = true, inf.Bytes
			if inf.LastUsed.After(inf.Unpacked) {
				im.LastUsed = inf.LastUsed
			}
		}
		out = append(out, im)
	}
	slices.SortFunc(out, func(a, b Image) int {
		ta, tb := latest(a), latest(b)
		if c := tb.Compare(ta); c != 0 {
			return c
		}
		return strings.Compare(a.Ref+a.Platform, b.Ref+b.Platform)
	})
	return out, nil
}

func latest(im Image) time.Time {
	if im.LastUsed.After(im.Pulled) {
		return im.LastUsed
	}
	return im.Pulled
}

// ErrNoMatch means rmi found no image for the reference.
var ErrNoMatch = errors.New("no such image in the cache")

// Remove removes the images matching ref (a reference as for pull, or a
// manifest digest or its first 12+ hex digits) and, when platform is not
// "", that platform (canonical os/arch[/variant], as pull.PlatformString
// writes it): their index records and rootfs. Blobs stay until
// Prune. A rootfs that a run holds is not removed, and neither is the
// record that leads to it: that is an error (rootfs.ErrInUse).
func Remove(root, ref, platform string) ([]Image, error) {
	ims, err := Images(root)
	if err != nil {
		return nil, err
	}
	want := platform
	match, err := matcher(ref)
	if err != nil {
		return nil, err
	}
	var hit []Image
	for _, im := range ims {
		if match(im) && (want == "" || im.Platform == want || im.Selected == want) {
			hit = append(hit, im)
		}
	}
	if len(hit) == 0 {
		what := ref
		if want != "" {
			what += " for " + want
		}
		return nil, fmt.Errorf("%w: %s (see xrun images)", ErrNoMatch, what)
	}
	s, cache := New(root), rootfs.NewCache(root)
	var removed []Image
	var errs []error
	for _, im := range hit {
		// Another record (another tag, or another requested platform that
		// resolved to the same manifest) may share the rootfs: keep it.
		shared := slices.ContainsFunc(ims, func(o Image) bool {
			return o.Digest == im.Digest && !slices.ContainsFunc(hit, func(h Image) bool { return h.Ref == o.Ref && h.Platform == o.Platform })
		})
		if !shared && cache.Has(im.Digest.Hex) {
			if _, err := cache.TryRemove(im.Digest.Hex); err != nil && !errors.Is(err, rootfs.ErrNotFound) {
				if errors.Is(err, rootfs.ErrInUse) {
					err = fmt.Errorf("image %s (%s) is in use by a running xrun: %w; try again when it ends", im.Ref, im.Platform, rootfs.ErrInUse)
				}
				errs = append(errs, err)
				continue
			}
		}
		if !shared {
			if err := removeAccel(root, im.Digest.Hex); err != nil {
				errs = append(errs, fmt.Errorf("image %s (%s): %w", im.Ref, im.Platform, err))
				continue
			}
		}
		if err := s.RemoveRecord(im.Ref, im.Platform); err != nil {
			errs = append(errs, fmt.Errorf("remove %s (%s): %w", im.Ref, im.Platform, err))
			continue
		}
		removed = append(removed, im)
	}
	return removed, errors.Join(errs...)
}

// pruneShims removes the directory skeletons laid over images of shared
// caches (engine's ownerShim) that no run holds: a run makes its own again.
func pruneShims(root string) {
	ents, _ := fsutil.ReadDirIfExists(cache.ShimsDir(root))
	for _, e := range ents {
		p := filepath.Join(cache.ShimsDir(root), e.Name())
		if strings.HasPrefix(e.Name(), ".tmp-") {
			_ = fsutil.RemoveAll(p)
			continue
		}
		lk, err := fsutil.TryLockFile(cache.LockPath(root, "shim-"+e.Name()), fsutil.Exclusive)
		if err != nil {
			continue
		}
		_ = fsutil.RemoveAll(p)
		lk.Unlock()
	}
}

// removeAccel removes the --accel toolchains of an image digest (hex).
func removeAccel(root, digestHex string) error {
	ac := accel.Cache{Root: root}
	for _, k := range ac.KeysOf(digestHex) {
		if _, err := ac.TryRemove(k); err != nil {
			if errors.Is(err, accel.ErrInUse) {
				return fmt.Errorf("its --accel toolchain is in use by a running xrun: %w; try again when it ends", err)
			}
			return err
		}
	}
	return nil
}

// matcher returns what ref designates: a digest (prefix) or a reference.
func matcher(ref string) (func(Image) bool, error) {
	hexd := strings.TrimPrefix(ref, "sha256:")
	if len(hexd) >= 12 && len(hexd) <= 64 && strings.Trim(hexd, "0123456789abcdef") == "" {
		return func(im Image) bool { return strings.HasPrefix(im.Digest.Hex, hexd) }, nil
	}
	r, err := name.ParseReference(ref)
	if err != nil {
		return nil, fmt.Errorf("invalid image reference %q: %v", ref, err)
	}
	canon := r.Name()
	return func(im Image) bool { return im.Ref == canon }, nil
}

// PruneReport says what Prune removed.
type PruneReport struct {
	Blobs       int      // blobs removed
	BlobBytes   int64    // their size
	Rootfs      int      // rootfs removed
	RootfsBytes int64    // their content size, as recorded at unpack
	TempBytes   int64    // partial downloads removed
	Busy        []string // rootfs kept because a run holds them (keys)
	Accel       int      // --accel toolchains removed (their bytes are in RootfsBytes)
}

// Freed is the total of bytes removed.
func (r PruneReport) Freed() int64 { return r.BlobBytes + r.RootfsBytes + r.TempBytes }

// Prune removes the blobs and rootfs that no index record references, and
// what interrupted pulls and unpacks left behind. It waits for pulls in
// progress (and keeps new ones waiting) and never touches a rootfs a run
// holds.
func Prune(ctx context.Context, root string) (PruneReport, error) {
	var rep PruneReport
	s, cache := New(root), rootfs.NewCache(root)
	unlock, err := s.LockGC(ctx)
	if err != nil {
		return rep, fmt.Errorf("prune: %w", err)
	}
	defer unlock()
	recs, err := s.Records()
	if err != nil {
		return rep, fmt.Errorf("prune: %w", err)
	}
	blobs := map[v1.Hash]bool{}
	keys := map[string]bool{}
	for _, r := range recs {
		keys[r.Digest.Hex] = true
		for _, b := range r.Blobs {
			blobs[b] = true
		}
	}
	ks, err := cache.Keys()
	if err != nil {
		return rep, fmt.Errorf("prune: %w", err)
	}
	var errs []error
	for _, k := range ks {
		if keys[k] {
			continue
		}
		n, err := cache.TryRemove(k)
		switch {
		case errors.Is(err, rootfs.ErrInUse):
			rep.Busy = append(rep.Busy, k)
		case errors.Is(err, rootfs.ErrNotFound):
		case err != nil:
			errs = append(errs, err)
		default:
			rep.Rootfs++
			rep.RootfsBytes += n
		}
	}
	cache.CleanTemp()
	ac := accel.Cache{Root: root}
	aks, _ := ac.Keys()
	for _, k := range aks {
		if d, _, _ := strings.Cut(k, "-"); keys[d] {
			continue
		}
		n, err := ac.TryRemove(k)
		switch {
		case errors.Is(err, accel.ErrInUse):
			rep.Busy = append(rep.Busy, "accel/"+k)
		case err != nil:
			errs = append(errs, err)
		default:
			rep.Accel++
			rep.RootfsBytes += n
		}
	}
	rep.TempBytes += ac.CleanTemp(time.Hour)
	pruneShims(root)
	bs, err := s.Blobs()
	if err != nil {
		return rep, fmt.Errorf("prune: %w", err)
	}
	for _, b := range bs {
		if blobs[b.Digest] {
			continue
		}
		if err := s.RemoveBlob(b.Digest); err != nil {
			errs = append(errs, fmt.Errorf("prune: %w", err))
			continue
		}
		rep.Blobs++
		rep.BlobBytes += b.Size
	}
	rep.TempBytes += s.CleanTemp()
	return rep, errors.Join(errs...)
}
