package store

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/xrun-dev/xrun/pkg/cache"
	"github.com/xrun-dev/xrun/pkg/fsutil"
)

// Store is the content-addressed cache of manifests, configs and layer blobs
// and the index of what references resolved to, rooted at Root:
//
//	Root/blobs/sha256/<hex>   blobs, only ever created by rename after a digest check
//	Root/blobs/tmp/           partial downloads (cleaned when stale)
//	Root/index/<hex>.json     ref@platform -> manifest digest, hex = sha256("ref@os/arch[/variant]")
//	Root/locks/blob-<hex>.lock one flock per blob: one process downloads, the others wait
//
// Several processes may use the same Root at once (make -j): every write is
// a temp file plus rename, and each blob is downloaded under its flock.
// The zero value is not usable; use New.
type Store struct {
	// Root is the directory of the cache (XRUN_CACHE, or ~/.cache/xrun).
	Root string

	cleanOnce sync.Once
}

// staleTemp is how old a file in blobs/tmp must be before it is removed as
// left over from an interrupted download. Live downloads rewrite their file
// continuously, so an hour without a write means the writer is gone.
const staleTemp = time.Hour

// New returns the store rooted at root. Directories are created on first write.
func New(root string) *Store {
	return &Store{Root: root}
}

// BlobPath returns the path of blob h: Root/blobs/<algorithm>/<hex>.
func (s *Store) BlobPath(h v1.Hash) string {
	return cache.BlobPath(s.Root, h.Algorithm, h.Hex)
}

func (s *Store) tmpDir() string   { return cache.BlobTmpDir(s.Root) }
func (s *Store) indexDir() string { return cache.IndexDir(s.Root) }

// HasBlob reports whether blob h is in the store.
func (s *Store) HasBlob(h v1.Hash) bool {
	fi, err := os.Stat(s.BlobPath(h))
	return err == nil && fi.Mode().IsRegular()
}

// ReadBlob returns the contents of blob h, which must be in the store.
func (s *Store) ReadBlob(h v1.Hash) ([]byte, error) {
	return os.ReadFile(s.BlobPath(h))
}

// ErrDigestMismatch is returned (wrapped) when downloaded bytes do not hash
// to the digest they were fetched by; such bytes are not stored.
var ErrDigestMismatch = errors.New("digest mismatch")

// Watch follows one download and says when to resume it. All fields are
// optional.
type Watch struct {
	// Started is called with the temp file's path once it exists: the
	// blob's bytes appear there as they arrive.
	Started func(tmp string)
	// Wrote is called with the number of bytes in the temp file after
	// each write.
	Wrote func(total int64)
	// Progress gets the byte counts.
	Progress interface{ Add(n int64) }
	// Attempts is how many times a body cut short by an error that
	// Transient accepts (reset, timeout) is fetched again, resuming where
	// it stopped. 0 means 1.
	Attempts int
	// Transient says whether a read error may be resumed; nil means none
	// may. The registry client knows which errors are transient.
	Transient func(error) bool
	Log       func(msg string, args ...any)
}

// PutBlob makes sure blob h is in the store, calling open to get its bytes
// if it is not. open is called with the blob's lock held, so concurrent
// callers (in this or other processes) download it only once. It reports
// whether it wrote the blob. The bytes are hashed while copying; a blob that
// does not match h never appears under blobs/sha256.
func (s *Store) PutBlob(ctx context.Context, h v1.Hash, open func() (io.ReadCloser, error), w Watch) (bool, error) {
	if h.Algorithm != "sha256" || len(h.Hex) != sha256.Size*2 {
		return false, fmt.Errorf("unsupported digest %q: only sha256 is supported", h)
	}
	if s.HasBlob(h) {
		return false, nil
	}
	unlock, err := s.Lock(ctx, "blob-"+h.Hex)
	if err != nil {
		return false, err
	}
	defer unlock()
	// Another process may have written it while we waited for the lock.
	if s.HasBlob(h) {
		return false, nil
	}
	s.cleanOnce.Do(s.cleanTemp)
	tmp, err := s.createBlobTemp(h)
	if err != nil {
		return false, err
	}
	defer func() {
		if tmp != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if w.Started != nil {
		w.Started(tmp.Name())
	}
	hasher := sha256.New()
	if err := download(ctx, h, tmp, hasher, open, w); err != nil {
		return false, err
	}
	if got := hashOf(hasher); got != h {
		return false, fmt.Errorf("%w: got %s, want %s", ErrDigestMismatch, got, h)
	}
	if err := s.commitBlob(tmp, h); err != nil {
		return false, err
	}
	tmp = nil
	return true, nil
}

// createBlobTemp creates the temp file blob h is downloaded into, in
// blobs/tmp, having removed what a killed download of h left there (the
// caller holds h's lock).
func (s *Store) createBlobTemp(h v1.Hash) (*os.File, error) {
	if err := os.MkdirAll(filepath.Dir(s.BlobPath(h)), 0o700); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(s.tmpDir(), 0o700); err != nil {
		return nil, err
	}
	prefix := "blob-" + h.Hex + "-"
	if old, _ := filepath.Glob(filepath.Join(s.tmpDir(), prefix+"*")); len(old) > 0 {
		for _, f := range old {
			os.Remove(f)
		}
	}
	return os.CreateTemp(s.tmpDir(), prefix+"*")
}

// download copies blob h from open into tmp and hasher, resuming a body
// cut short by a transient error up to w.Attempts times.
func download(ctx context.Context, h v1.Hash, tmp *os.File, hasher hash.Hash, open func() (io.ReadCloser, error), w Watch) error {
	var written int64
	for attempt := 1; ; attempt++ {
		err := copyBlob(ctx, tmp, hasher, &written, open, w)
		if err == nil {
			return nil
		}
		if attempt >= max(w.Attempts, 1) || w.Transient == nil || !w.Transient(err) || ctx.Err() != nil {
			return err
		}
		if w.Log != nil {
			w.Log("download interrupted; resuming", "blob", h, "at", written, "attempt", attempt+1, "err", err)
		}
		select {
		case <-time.After(time.Duration(attempt) * 500 * time.Millisecond):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// commitBlob makes the verified download tmp the blob h: read-only,
// synced, renamed into place, its directory synced. It closes tmp.
func (s *Store) commitBlob(tmp *os.File, h v1.Hash) error {
	if err := tmp.Chmod(0o444); err != nil {
		return err
	}
	if err := tmp.Sync(); err != nil {
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), s.BlobPath(h)); err != nil {
		return err
	}
	fsutil.SyncDir(filepath.Dir(s.BlobPath(h)))
	return nil
}

// copyBlob appends the blob's bytes to tmp, which already holds *written
// bytes of it (from an attempt cut short): those are skipped in the new
// stream, and the hash is recomputed over the file's own bytes, so that
// what is hashed is exactly what is stored (and what streaming readers
// have read).
func copyBlob(ctx context.Context, tmp *os.File, hasher hash.Hash, written *int64, open func() (io.ReadCloser, error), w Watch) error {
	rc, err := open()
	if err != nil {
		return err
	}
	// A body that stalls fails with a timeout (the registry client's idle
	// guard), which its Transient accepts, so the download resumes.
	defer rc.Close()
	r := fsutil.ContextReader(ctx, rc)
	if *written > 0 {
		hasher.Reset()
		if _, err := io.Copy(hasher, io.NewSectionReader(tmp, 0, *written)); err != nil {
			return err
		}
		if _, err := io.CopyN(io.Discard, r, *written); err != nil {
			return err
		}
	}
	buf := make([]byte, 256<<10)
	for {
		n, rerr := r.Read(buf)
		if n > 0 {
			if _, err := tmp.Write(buf[:n]); err != nil {
				return err
			}
			hasher.Write(buf[:n])
			*written += int64(n)
			if w.Progress != nil {
				w.Progress.Add(int64(n))
			}
			if w.Wrote != nil {
				w.Wrote(*written)
			}
		}
		if errors.Is(rerr, io.EOF) {
			return nil
		}
		if rerr != nil {
			return rerr
		}
	}
}

func hashOf(h hash.Hash) v1.Hash {
	return v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(h.Sum(nil))}
}

// Lock takes the exclusive flock Root/locks/<name>.lock, waiting until ctx
// is done. flock locks belong to the open file, so goroutines of one process
// exclude each other too.
func (s *Store) Lock(ctx context.Context, name string) (unlock func(), err error) {
	p := cache.LockPath(s.Root, name)
	l, err := fsutil.LockFile(ctx, p, fsutil.Exclusive)
	if err != nil {
		return nil, fmt.Errorf("lock %s: %w", p, err)
	}
	return l.Unlock, nil
}

// cleanTemp removes files in blobs/tmp and index/ left by interrupted writes
// that have not been touched for staleTemp. Errors are ignored: another
// process may be cleaning at the same time.
func (s *Store) cleanTemp() {
	for _, dir := range []string{s.tmpDir(), s.indexDir()} {
		entries, err := os.ReadDir(dir)
		if err != nil {
			continue
		}
		for _, e := range entries {
			if dir == s.indexDir() && !strings.HasPrefix(e.Name(), ".tmp-") {
				continue
			}
			if fi, err := e.Info(); err == nil && time.Since(fi.ModTime()) > staleTemp {
				os.Remove(filepath.Join(dir, e.Name()))
			}
		}
	}
}

// record is the JSON file index/<key>.json: what ref resolved to for a platform.
type record struct {
	Ref      string    `json:"ref"`             // canonical reference
	Platform string    `json:"platform"`        // requested platform, os/arch[/variant]
	Digest   v1.Hash   `json:"digest"`          // manifest digest for that platform
	Index    *v1.Hash  `json:"index,omitempty"` // index the manifest was chosen from, if any
	Selected string    `json:"selected"`        // platform of the selected manifest (may differ in variant)
	Updated  time.Time `json:"updated"`
}

// RecordKey is the file name (without .json) of the index record of
// ref@platform, and the name of the lock its resolution holds.
func RecordKey(ref, platform string) string {
	sum := sha256.Sum256([]byte(ref + "@" + platform))
	return hex.EncodeToString(sum[:])
}

func (s *Store) recordPath(ref, platform string) string {
	return filepath.Join(s.indexDir(), RecordKey(ref, platform)+".json")
}

// ReadRecord returns the index record for ref@platform (the fields the
// index file holds; not Blobs, Size or Manifest), or nil if there is none.
func (s *Store) ReadRecord(ref, platform string) (*Record, error) {
	b, err := os.ReadFile(s.recordPath(ref, platform))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var r record
	if err := json.Unmarshal(b, &r); err != nil {
		// A corrupt record is a cache miss, not a failure: it is rewritten
		// on the next successful resolve.
		return nil, nil
	}
	if r.Ref != ref || r.Platform != platform {
		return nil, nil
	}
	return r.record(), nil
}

func (r *record) record() *Record {
	return &Record{Ref: r.Ref, Platform: r.Platform, Selected: r.Selected, Digest: r.Digest, Index: r.Index, Updated: r.Updated}
}

// WriteRecord atomically writes the index record of rec.Ref@rec.Platform
// (the fields Ref, Platform, Selected, Digest, Index and Updated).
func (s *Store) WriteRecord(rec *Record) error {
	if err := os.MkdirAll(s.indexDir(), 0o700); err != nil {
		return err
	}
	r := &record{Ref: rec.Ref, Platform: rec.Platform, Digest: rec.Digest, Index: rec.Index, Selected: rec.Selected, Updated: rec.Updated}
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	return fsutil.WriteFileAtomic(s.recordPath(r.Ref, r.Platform), ".tmp-*", append(b, '\n'), 0o600)
}
