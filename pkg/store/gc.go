package store

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/xrun-dev/xrun/pkg/cache"
	"github.com/xrun-dev/xrun/pkg/fsutil"
)

// gcLock is the lock file that keeps prune (exclusive) and pulls (shared)
// apart: a pull holds it from the first blob it writes until the record
// that references its blobs exists, so prune never deletes a blob that is
// about to be referenced.
const gcLock = "gc"

// HoldGC takes the gc lock shared; release gives it back. A pull holds it
// from the first blob it writes until the record that references them is
// written.
func (s *Store) HoldGC(ctx context.Context) (release func(), err error) {
	p := cache.LockPath(s.Root, gcLock)
	l, err := fsutil.LockFile(ctx, p, fsutil.Shared)
	if err != nil {
		return nil, fmt.Errorf("lock %s: %w", p, err)
	}
	return l.Unlock, nil
}

// LockGC takes the gc lock exclusively, waiting (until ctx is done) for
// pulls in progress to finish, and keeps new pulls waiting until unlock.
func (s *Store) LockGC(ctx context.Context) (unlock func(), err error) {
	return s.Lock(ctx, gcLock)
}

// Record is what the index says ref resolved to for a platform.
type Record struct {
	Ref      string       // canonical reference
	Platform string       // requested platform, os/arch[/variant]
	Selected string       // platform of the manifest chosen (may be an older variant)
	Digest   v1.Hash      // manifest digest: the rootfs cache key
	Index    *v1.Hash     // index the manifest was chosen from, if any
	Updated  time.Time    // when it was resolved
	Blobs    []v1.Hash    // manifest, config and layers (those the manifest in the store lists)
	Size     int64        // compressed size of config and layers
	Manifest *v1.Manifest // nil when the manifest blob is missing
}

// Records lists the index: one Record per ref@platform resolved. Corrupt
// records are skipped.
func (s *Store) Records() ([]Record, error) {
	ents, err := fsutil.ReadDirIfExists(s.indexDir())
	if err != nil {
		return nil, fmt.Errorf("list cache index: %w", err)
	}
	var out []Record
	for _, e := range ents {
		if !strings.HasSuffix(e.Name(), ".json") || strings.HasPrefix(e.Name(), ".tmp-") {
			continue
		}
		b, err := os.ReadFile(filepath.Join(s.indexDir(), e.Name()))
		if err != nil {
			continue
		}
		var r record
		if json.Unmarshal(b, &r) != nil || r.Ref == "" || r.Digest.Hex == "" {
			continue
		}
		rec := *r.record()
		rec.Blobs = append(rec.Blobs, r.Digest)
		if r.Index != nil {
			rec.Blobs = append(rec.Blobs, *r.Index)
		}
		if mb, err := s.ReadBlob(r.Digest); err == nil {
			if m, err := v1.ParseManifest(bytes.NewReader(mb)); err == nil {
				rec.Manifest = m
				rec.Blobs = append(rec.Blobs, m.Config.Digest)
				rec.Size += m.Config.Size
				for _, l := range m.Layers {
					rec.Blobs = append(rec.Blobs, l.Digest)
					rec.Size += l.Size
				}
			}
		}
		out = append(out, rec)
	}
	return out, nil
}

// RemoveRecord deletes the index record of ref@platform (ref canonical, as
// in Record.Ref). A missing record is not an error.
func (s *Store) RemoveRecord(ref, platform string) error {
	err := os.Remove(s.recordPath(ref, platform))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	return err
}

// BlobInfo is one blob in the store.
type BlobInfo struct {
	Digest v1.Hash
	Size   int64
}

// Blobs lists the blobs in the store.
func (s *Store) Blobs() ([]BlobInfo, error) {
	dir := cache.BlobsDir(s.Root, "sha256")
	ents, err := fsutil.ReadDirIfExists(dir)
	if err != nil {
		return nil, fmt.Errorf("list blobs: %w", err)
	}
	var out []BlobInfo
	for _, e := range ents {
		h := v1.Hash{Algorithm: "sha256", Hex: e.Name()}
		if len(h.Hex) != 64 || !e.Type().IsRegular() {
			continue
		}
		fi, err := e.Info()
		if err != nil {
			continue
		}
		out = append(out, BlobInfo{Digest: h, Size: fi.Size()})
	}
	return out, nil
}

// RemoveBlob deletes blob h. Call it with LockGC held and only for blobs
// no record references.
func (s *Store) RemoveBlob(h v1.Hash) error {
	err := os.Remove(s.BlobPath(h))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	return err
}

// CleanTemp removes the temp files of interrupted downloads that no
// download holds (their blob's lock is free) and returns the bytes freed.
func (s *Store) CleanTemp() int64 {
	ents, err := os.ReadDir(s.tmpDir())
	if err != nil {
		return 0
	}
	var freed int64
	for _, e := range ents {
		rest, ok := strings.CutPrefix(e.Name(), "blob-")
		hexd, _, ok2 := strings.Cut(rest, "-")
		if !ok || !ok2 || len(hexd) != 64 {
			continue
		}
		l, err := fsutil.TryLockFile(cache.LockPath(s.Root, "blob-"+hexd), fsutil.Exclusive)
		if err != nil {
			continue // a download is writing it
		}
		if fi, err := e.Info(); err == nil && os.Remove(filepath.Join(s.tmpDir(), e.Name())) == nil {
			freed += fi.Size()
		}
		l.Unlock()
	}
	return freed
}
