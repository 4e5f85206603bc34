package pull

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/xrun-dev/xrun/pkg/store"
)

// testRegistry is an in-process registry. wrap, if set, wraps its handler
// (to count or corrupt requests).
type testRegistry struct {
	srv  *httptest.Server
	host string

	mu   sync.Mutex
	gets map[string]int // GET count per request path
}

func newTestRegistry(t *testing.T, wrap func(http.Handler) http.Handler) *testRegistry {
	t.Helper()
	tr := &testRegistry{gets: map[string]int{}}
	var h http.Handler = registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	if wrap != nil {
		h = wrap(h)
	}
	count := h
	h = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet {
			tr.mu.Lock()
			tr.gets[r.URL.Path]++
			tr.mu.Unlock()
		}
		count.ServeHTTP(w, r)
	})
	tr.srv = httptest.NewServer(h)
	t.Cleanup(tr.srv.Close)
	tr.host = strings.TrimPrefix(tr.srv.URL, "http://")
	return tr
}

// blobGets returns how many times blob h was downloaded.
func (tr *testRegistry) blobGets(h v1.Hash) int {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	n := 0
	for p, c := range tr.gets {
		if strings.HasSuffix(p, "/blobs/"+h.String()) {
			n += c
		}
	}
	return n
}

func (tr *testRegistry) requests() int {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	n := 0
	for _, c := range tr.gets {
		n += c
	}
	return n
}

func mustPlatform(t *testing.T, s string) v1.Platform {
	t.Helper()
	p, err := ParsePlatform(s)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// mkImage returns a random image with layers layers whose config declares p.
func mkImage(t *testing.T, p v1.Platform, layers int64) v1.Image {
	t.Helper()
	img, err := random.Image(512, layers)
	if err != nil {
		t.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture, cf.Variant = p.OS, p.Architecture, p.Variant
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// mkIndex returns an index with one image per platform (as written, not
// normalized) plus a buildkit-style attestation entry, and the image
// digests by platform string.
func mkIndex(t *testing.T, platforms ...string) (v1.ImageIndex, map[string]v1.Hash) {
	t.Helper()
	var idx v1.ImageIndex = empty.Index
	digests := map[string]v1.Hash{}
	for _, s := range platforms {
		parts := strings.Split(s, "/")
		p := v1.Platform{OS: parts[0], Architecture: parts[1]}
		if len(parts) > 2 {
			p.Variant = parts[2]
		}
		img := mkImage(t, p, 2)
		d, err := img.Digest()
		if err != nil {
			t.Fatal(err)
		}
		digests[s] = d
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{Platform: &p}})
	}
	att := mkImage(t, v1.Platform{OS: "unknown", Architecture: "unknown"}, 1)
	idx = mutate.AppendManifests(idx, mutate.IndexAddendum{Add: att, Descriptor: v1.Descriptor{
		Platform:    &v1.Platform{OS: "unknown", Architecture: "unknown"},
		Annotations: map[string]string{"vnd.docker.reference.type": "attestation-manifest"},
	}})
	return idx, digests
}

func pushIndex(t *testing.T, ref string, idx v1.ImageIndex) v1.Hash {
	t.Helper()
	r, err := name.ParseReference(ref)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.WriteIndex(r, idx); err != nil {
		t.Fatal(err)
	}
	d, err := idx.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func pushImage(t *testing.T, ref string, img v1.Image) v1.Hash {
	t.Helper()
	r, err := name.ParseReference(ref)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(r, img); err != nil {
		t.Fatal(err)
	}
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// testOpts are the options every test uses: no credentials from the host.
func testOpts(p v1.Platform, more ...Option) []Option {
	return append([]Option{WithPlatform(p), WithKeychain(authn.NewMultiKeychain())}, more...)
}

var multiPlatforms = []string{"linux/amd64", "linux/arm64/v8", "linux/arm/v6", "linux/arm/v7", "linux/riscv64"}

func TestResolveSelectsPlatform(t *testing.T) {
	tr := newTestRegistry(t, nil)
	idx, digests := mkIndex(t, multiPlatforms...)
	pushIndex(t, tr.host+"/multi:latest", idx)
	// An index without arm/v7, to check the variant fallback.
	old, oldDigests := mkIndex(t, "linux/amd64", "linux/arm/v5", "linux/arm/v6")
	pushIndex(t, tr.host+"/old:1", old)

	for _, tt := range []struct {
		ref, platform string
		wantDigest    v1.Hash
		wantPlatform  string
	}{
		{"/multi", "linux/amd64", digests["linux/amd64"], "linux/amd64"},
		{"/multi", "linux/arm64", digests["linux/arm64/v8"], "linux/arm64"},
		{"/multi", "aarch64", digests["linux/arm64/v8"], "linux/arm64"},
		{"/multi", "linux/arm/v7", digests["linux/arm/v7"], "linux/arm/v7"},
		{"/multi", "linux/arm/v6", digests["linux/arm/v6"], "linux/arm/v6"},
		{"/multi:latest", "riscv64", digests["linux/riscv64"], "linux/riscv64"},
		{"/old:1", "linux/arm/v7", oldDigests["linux/arm/v6"], "linux/arm/v6"},
		{"/old:1", "linux/arm/v5", oldDigests["linux/arm/v5"], "linux/arm/v5"},
	} {
		s := newClient(t.TempDir())
		ref := tr.host + tt.ref
		img, err := s.Resolve(context.Background(), ref, testOpts(mustPlatform(t, tt.platform))...)
		if err != nil {
			t.Errorf("Resolve(%q, %s) = %v", ref, tt.platform, err)
			continue
		}
		if img.Digest != tt.wantDigest {
			t.Errorf("Resolve(%q, %s).Digest = %v, want %v", ref, tt.platform, img.Digest, tt.wantDigest)
		}
		if got := PlatformString(img.Platform); got != tt.wantPlatform {
			t.Errorf("Resolve(%q, %s).Platform = %v, want %v", ref, tt.platform, got, tt.wantPlatform)
		}
		if len(img.Layers) != 2 || img.Config == nil {
			t.Errorf("Resolve(%q, %s) = %d layers, config %v; want 2 layers and a config", ref, tt.platform, len(img.Layers), img.Config)
		}
		for _, h := range []v1.Hash{img.Digest} {
			if !s.HasBlob(h) {
				t.Errorf("Resolve(%q, %s): manifest %v not in store", ref, tt.platform, h)
			}
		}
	}
}

func TestResolveImageFields(t *testing.T) {
	tr := newTestRegistry(t, nil)
	img := mkImage(t, mustPlatform(t, "linux/arm64"), 3)
	ref := tr.host + "/single:v1"
	d := pushImage(t, ref, img)
	s := newClient(t.TempDir())
	got, err := s.Resolve(context.Background(), ref, testOpts(mustPlatform(t, "linux/arm64"))...)
	if err != nil {
		t.Fatalf("Resolve(%q) = %v", ref, err)
	}
	m, _ := img.Manifest()
	cf, _ := img.ConfigFile()
	want := &Image{Ref: ref, Digest: d, Platform: mustPlatform(t, "linux/arm64"), Config: cf}
	for i, l := range m.Layers {
		want.Layers = append(want.Layers, Layer{Digest: l.Digest, DiffID: cf.RootFS.DiffIDs[i], MediaType: l.MediaType, Size: l.Size})
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Resolve(%q) mismatch (-want +got):\n%s", ref, diff)
	}
	if !s.HasBlob(m.Config.Digest) {
		t.Errorf("Resolve(%q): config blob not in store", ref)
	}
	// A single-platform image for the wrong platform is refused.
	_, err = s.Resolve(context.Background(), ref, testOpts(mustPlatform(t, "linux/amd64"))...)
	if !errors.Is(err, ErrNoPlatform) || !strings.Contains(err.Error(), "it has: linux/arm64") {
		t.Errorf("Resolve(%q, linux/amd64) = %v, want ErrNoPlatform listing linux/arm64", ref, err)
	}
}

func TestResolveErrors(t *testing.T) {
	tr := newTestRegistry(t, nil)
	idx, _ := mkIndex(t, multiPlatforms...)
	pushIndex(t, tr.host+"/multi:latest", idx)

	for _, tt := range []struct {
		ref, platform string
		want          error
		msg           string
	}{
		{tr.host + "/multi", "linux/s390x", ErrNoPlatform,
			`image "` + tr.host + `/multi" has no linux/s390x variant; it has: linux/amd64, linux/arm64, linux/arm/v6, linux/arm/v7, linux/riscv64`},
		{tr.host + "/multi", "linux/arm/v5", ErrNoPlatform, "has no linux/arm/v5 variant"},
		{tr.host + "/multi:nope", "linux/amd64", ErrNotFound,
			`image "` + tr.host + `/multi:nope" not found: check the name and tag (xrun resolves short names to docker.io/library/NAME:latest)`},
		{tr.host + "/nothere", "linux/amd64", ErrNotFound, "not found"},
		{"UPPER/Case:x", "linux/amd64", ErrInvalidReference, `invalid image reference "UPPER/Case:x": `},
		{tr.host + "/multi", "linux/amd64", ErrNotCached, "image " + tr.host + "/multi for linux/amd64 is not in the cache"},
	} {
		opts := testOpts(mustPlatform(t, tt.platform))
		if tt.want == ErrNotCached {
			opts = append(opts, WithPolicy(PullNever))
		}
		_, err := newClient(t.TempDir()).Resolve(context.Background(), tt.ref, opts...)
		if !errors.Is(err, tt.want) || !strings.Contains(err.Error(), tt.msg) {
			t.Errorf("Resolve(%q, %s) = %v, want %v containing %q", tt.ref, tt.platform, err, tt.want, tt.msg)
		}
		t.Logf("error: %v", err)
		if err != nil && strings.Contains(err.Error(), "\n") {
			t.Errorf("Resolve(%q, %s) error has several lines: %q", tt.ref, tt.platform, err)
		}
	}
}

func TestResolveOffline(t *testing.T) {
	tr := newTestRegistry(t, nil)
	idx, digests := mkIndex(t, multiPlatforms...)
	ref := tr.host + "/multi:latest"
	pushIndex(t, ref, idx)
	s := newClient(t.TempDir())
	arm64 := mustPlatform(t, "linux/arm64")
	first, err := s.Resolve(context.Background(), ref, testOpts(arm64)...)
	if err != nil {
		t.Fatalf("Resolve(%q) = %v", ref, err)
	}
	n := tr.requests()
	second, err := s.Resolve(context.Background(), ref, testOpts(arm64)...)
	if err != nil {
		t.Fatalf("cached Resolve(%q) = %v", ref, err)
	}
	if got := tr.requests() - n; got != 0 {
		t.Errorf("cached Resolve(%q) made %d requests, want 0", ref, got)
	}
	if diff := cmp.Diff(first, second); diff != "" {
		t.Errorf("cached Resolve(%q) differs (-first +second):\n%s", ref, diff)
	}

	tr.srv.Close()
	for _, p := range []Policy{PullMissing, PullNever} {
		img, err := s.Resolve(context.Background(), ref, testOpts(arm64, WithPolicy(p))...)
		if err != nil {
			t.Errorf("offline Resolve(%q, --pull=%s) = %v", ref, p, err)
			continue
		}
		if img.Digest != digests["linux/arm64/v8"] {
			t.Errorf("offline Resolve(%q, --pull=%s).Digest = %v, want %v", ref, p, img.Digest, digests["linux/arm64/v8"])
		}
	}
	_, err = s.Resolve(context.Background(), ref, testOpts(mustPlatform(t, "riscv64"), WithPolicy(PullNever))...)
	if !errors.Is(err, ErrNotCached) {
		t.Errorf("Resolve(%q, riscv64, --pull=never) = %v, want ErrNotCached", ref, err)
	}
	_, err = s.Resolve(context.Background(), ref, testOpts(arm64, WithPolicy(PullAlways))...)
	if !errors.Is(err, ErrNetwork) || !strings.Contains(err.Error(), "check the registry address and your network, or use --pull=never") {
		t.Errorf("Resolve(%q, --pull=always) with the registry down = %v, want ErrNetwork with a hint", ref, err)
	}
	t.Logf("error: %v", err)
}

func TestResolvePullAlways(t *testing.T) {
	tr := newTestRegistry(t, nil)
	p := mustPlatform(t, "linux/arm64")
	ref := tr.host + "/app:latest"
	d1 := pushImage(t, ref, mkImage(t, p, 1))
	s := newClient(t.TempDir())
	resolve := func(pol Policy) v1.Hash {
		t.Helper()
		img, err := s.Resolve(context.Background(), ref, testOpts(p, WithPolicy(pol))...)
		if err != nil {
			t.Fatalf("Resolve(%q, --pull=%s) = %v", ref, pol, err)
		}
		return img.Digest
	}
	if got := resolve(PullMissing); got != d1 {
		t.Fatalf("Resolve(%q) = %v, want %v", ref, got, d1)
	}
	d2 := pushImage(t, ref, mkImage(t, p, 1)) // retag
	for _, tt := range []struct {
		policy Policy
		want   v1.Hash
	}{
		{PullMissing, d1}, // cached
		{PullNever, d1},
		{PullAlways, d2}, // sees the retag and updates the index
		{PullMissing, d2},
		{PullNever, d2},
	} {
		if got := resolve(tt.policy); got != tt.want {
			t.Errorf("Resolve(%q, --pull=%s) = %v, want %v", ref, tt.policy, got, tt.want)
		}
	}
}

func TestResolveDigestPinned(t *testing.T) {
	tr := newTestRegistry(t, nil)
	idx, digests := mkIndex(t, multiPlatforms...)
	idxDigest := pushIndex(t, tr.host+"/multi:latest", idx)
	ref := tr.host + "/multi@" + idxDigest.String()
	s := newClient(t.TempDir())
	p := mustPlatform(t, "linux/arm/v7")
	img, err := s.Resolve(context.Background(), ref, testOpts(p)...)
	if err != nil {
		t.Fatalf("Resolve(%q) = %v", ref, err)
	}
	if img.Digest != digests["linux/arm/v7"] || img.Ref != ref {
		t.Errorf("Resolve(%q) = %v %v, want %v %v", ref, img.Ref, img.Digest, ref, digests["linux/arm/v7"])
	}
	tr.srv.Close()
	// Cached digest-pinned references never use the network, even with --pull=always.
	img, err = s.Resolve(context.Background(), ref, testOpts(p, WithPolicy(PullAlways))...)
	if err != nil || img.Digest != digests["linux/arm/v7"] {
		t.Errorf("offline Resolve(%q, --pull=always) = %v, %v; want %v", ref, img, err, digests["linux/arm/v7"])
	}
}

func TestShortNameCanonical(t *testing.T) {
	for _, tt := range []struct{ in, want string }{
		{"alpine", "index.docker.io/library/alpine:latest"},
		{"debian:bookworm", "index.docker.io/library/debian:bookworm"},
		{"127.0.0.1:5000/x", "127.0.0.1:5000/x:latest"},
	} {
		r, err := name.ParseReference(tt.in)
		if err != nil || r.Name() != tt.want {
			t.Errorf("name.ParseReference(%q).Name() = %v, %v, want %v", tt.in, r, err, tt.want)
		}
		if strings.HasPrefix(tt.in, "127.0.0.1") && r.Context().Scheme() != "http" {
			t.Errorf("name.ParseReference(%q).Context().Scheme() = %v, want http", tt.in, r.Context().Scheme())
		}
	}
}

// checkBlobs checks that every file in blobs/sha256 hashes to its name and
// that blobs/tmp is empty.
// newClient is a client over a store at root.
func newClient(root string) *Client { return NewClient(store.New(root)) }

func checkBlobs(t *testing.T, s *Client) {
	t.Helper()
	dir := filepath.Join(s.Root, "blobs", "sha256")
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256(b)
		if got := hex.EncodeToString(sum[:]); got != e.Name() {
			t.Errorf("blob %s has digest %s", e.Name(), got)
		}
	}
	tmp, _ := os.ReadDir(filepath.Join(s.Root, "blobs", "tmp"))
	if len(tmp) != 0 {
		t.Errorf("blobs/tmp has %d files left, want none", len(tmp))
	}
}

func TestFetch(t *testing.T) {
	tr := newTestRegistry(t, nil)
	p := mustPlatform(t, "linux/riscv64")
	ref := tr.host + "/app:1"
	pushImage(t, ref, mkImage(t, p, 3))
	s := newClient(filepath.Join(t.TempDir(), "cache"))
	img, err := s.Resolve(context.Background(), ref, testOpts(p)...)
	if err != nil {
		t.Fatalf("Resolve(%q) = %v", ref, err)
	}
	// With --pull=never, missing layers are an error.
	if err := s.Fetch(context.Background(), img, testOpts(p, WithPolicy(PullNever))...); !errors.Is(err, ErrNotCached) {
		t.Errorf("Fetch(%q, --pull=never) = %v, want ErrNotCached", ref, err)
	}
	if err := s.Fetch(context.Background(), img, testOpts(p)...); err != nil {
		t.Fatalf("Fetch(%q) = %v", ref, err)
	}
	for _, l := range img.Layers {
		if !s.HasBlob(l.Digest) {
			t.Errorf("Fetch(%q): layer %v not in store", ref, l.Digest)
		}
		if got, want := s.BlobPath(l.Digest), filepath.Join(s.Root, "blobs", "sha256", l.Digest.Hex); got != want {
			t.Errorf("BlobPath(%v) = %q, want %q", l.Digest, got, want)
		}
	}
	checkBlobs(t, s)
	// The cache is private: its root and every directory in it are 0700
	// (other users must not read the layers of private images).
	_ = filepath.WalkDir(s.Root, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			t.Error(err)
			return nil
		}
		if fi, err := d.Info(); err == nil && d.IsDir() && fi.Mode().Perm()&0o077 != 0 {
			t.Errorf("%s has mode %v, want 0700", path, fi.Mode().Perm())
		}
		return nil
	})

	// Everything cached: no network needed.
	tr.srv.Close()
	img, err = s.Resolve(context.Background(), ref, testOpts(p, WithPolicy(PullNever))...)
	if err != nil {
		t.Fatalf("offline Resolve(%q) = %v", ref, err)
	}
	if err := s.Fetch(context.Background(), img, testOpts(p, WithPolicy(PullNever))...); err != nil {
		t.Errorf("offline Fetch(%q) = %v", ref, err)
	}
}

// corruptWriter flips the first byte of a response body.
type corruptWriter struct {
	http.ResponseWriter
	done bool
}

func (w *corruptWriter) Write(b []byte) (int, error) {
	if !w.done && len(b) > 0 {
		w.done = true
		b = slices.Clone(b)
		b[0] ^= 0xff
	}
	return w.ResponseWriter.Write(b)
}

func TestFetchCorruptBlob(t *testing.T) {
	var bad v1.Hash
	var mu sync.Mutex
	tr := newTestRegistry(t, func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			mu.Lock()
			corrupt := bad.Hex != "" && r.Method == http.MethodGet && strings.HasSuffix(r.URL.Path, "/blobs/"+bad.String())
			mu.Unlock()
			if corrupt {
				w = &corruptWriter{ResponseWriter: w}
			}
			h.ServeHTTP(w, r)
		})
	})
	p := mustPlatform(t, "linux/arm64")
	ref := tr.host + "/app:1"
	pushImage(t, ref, mkImage(t, p, 3))
	s := newClient(t.TempDir())
	img, err := s.Resolve(context.Background(), ref, testOpts(p)...)
	if err != nil {
		t.Fatalf("Resolve(%q) = %v", ref, err)
	}
	mu.Lock()
	bad = img.Layers[1].Digest
	mu.Unlock()
	err = s.Fetch(context.Background(), img, testOpts(p)...)
	if !errors.Is(err, ErrDigestMismatch) || !strings.Contains(err.Error(), "layer 2/3 "+bad.String()) {
		t.Fatalf("Fetch(%q) with a corrupt layer = %v, want ErrDigestMismatch naming layer 2/3 %v", ref, err, bad)
	}
	t.Logf("error: %v", err)
	if _, err := os.Stat(s.BlobPath(bad)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("corrupt blob %v: stat = %v, want not exist", bad, err)
	}
	checkBlobs(t, s)
}

func TestFetchConcurrent(t *testing.T) {
	tr := newTestRegistry(t, nil)
	p := mustPlatform(t, "linux/arm/v7")
	ref := tr.host + "/app:1"
	img := mkImage(t, p, 4)
	pushImage(t, ref, img)
	root := t.TempDir()

	var wg sync.WaitGroup
	errs := make([]error, 8)
	for i := range errs {
		wg.Go(func() {
			// One client and store per goroutine, like separate xrun processes.
			s := newClient(root)
			got, err := s.Resolve(context.Background(), ref, testOpts(p)...)
			if err == nil {
				err = s.Fetch(context.Background(), got, testOpts(p, WithJobs(2))...)
			}
			errs[i] = err
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("goroutine %d: %v", i, err)
		}
	}
	m, _ := img.Manifest()
	for _, l := range append([]v1.Descriptor{m.Config}, m.Layers...) {
		if got := tr.blobGets(l.Digest); got != 1 {
			t.Errorf("blob %v downloaded %d times, want 1", l.Digest, got)
		}
	}
	checkBlobs(t, newClient(root))
}
