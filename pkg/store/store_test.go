package store_test

import (
	"context"
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

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/xrun-dev/xrun/pkg/engine"
	"github.com/xrun-dev/xrun/pkg/pull"
	"github.com/xrun-dev/xrun/pkg/rootfs"
	"github.com/xrun-dev/xrun/pkg/store"
)

// reg is an in-process registry that counts GETs by path and can corrupt
// one blob.
type reg struct {
	host string
	mu   sync.Mutex
	gets map[string]int
	bad  string // blob digest to corrupt
}

func newReg(t *testing.T) *reg {
	t.Helper()
	t.Setenv("HOME", t.TempDir())
	t.Setenv("DOCKER_CONFIG", t.TempDir())
	t.Setenv("XDG_RUNTIME_DIR", "")
	t.Setenv("REGISTRY_AUTH_FILE", "")
	r := &reg{gets: map[string]int{}}
	h := registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if req.Method == http.MethodGet {
			r.mu.Lock()
			r.gets[req.URL.Path]++
			bad := r.bad != "" && strings.HasSuffix(req.URL.Path, "/blobs/"+r.bad)
			r.mu.Unlock()
			if bad {
				w = &flipWriter{ResponseWriter: w}
			}
		}
		h.ServeHTTP(w, req)
	}))
	t.Cleanup(srv.Close)
	r.host = strings.TrimPrefix(srv.URL, "http://")
	return r
}

type flipWriter struct {
	http.ResponseWriter
	done bool
}

func (w *flipWriter) Write(b []byte) (int, error) {
	if !w.done && len(b) > 0 {
		w.done = true
		b = slices.Clone(b)
		b[len(b)/2] ^= 0xff
	}
	return w.ResponseWriter.Write(b)
}

func (r *reg) count(suffix string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for p, c := range r.gets {
		if strings.HasSuffix(p, suffix) {
			n += c
		}
	}
	return n
}

func push(t *testing.T, ref string, layers int64) v1.Image {
	t.Helper()
	img, err := random.Image(2048, layers)
	if err != nil {
		t.Fatal(err)
	}
	cf, _ := img.ConfigFile()
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", "arm64"
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		t.Fatal(err)
	}
	r, _ := name.ParseReference(ref)
	if err := remote.Write(r, img); err != nil {
		t.Fatal(err)
	}
	return img
}

func prepare(ctx context.Context, cache, ref string) (*engine.Prepared, error) {
	return engine.Prepare(ctx, engine.Options{CacheDir: cache, Image: ref, Platform: "linux/arm64"})
}

// TestColdConcurrent: 8 cold Prepares of one image (like make -j8) download
// each blob once, unpack once, and all succeed.
func TestColdConcurrent(t *testing.T) {
	r := newReg(t)
	ref := r.host + "/app:1"
	img := push(t, ref, 4)
	cache := t.TempDir()
	var wg sync.WaitGroup
	errs := make([]error, 8)
	for i := range errs {
		wg.Go(func() {
			p, err := prepare(context.Background(), cache, ref)
			if err == nil {
				p.Release()
			}
			errs[i] = err
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("Prepare #%d: %v", i, err)
		}
	}
	m, _ := img.Manifest()
	for _, l := range append([]v1.Descriptor{m.Config}, m.Layers...) {
		if n := r.count("/blobs/" + l.Digest.String()); n != 1 {
			t.Errorf("blob %s downloaded %d times, want 1", l.Digest, n)
		}
	}
	if n := r.count("/manifests/1"); n != 1 {
		t.Errorf("manifest fetched %d times, want 1", n)
	}
	d, _ := img.Digest()
	if !rootfs.NewCache(cache).Has(d.Hex) {
		t.Errorf("rootfs not published")
	}
}

// TestColdCorrupt: a layer that fails its digest while streaming is never
// stored, the error names it, and no rootfs is published.
func TestColdCorrupt(t *testing.T) {
	r := newReg(t)
	ref := r.host + "/bad:1"
	img := push(t, ref, 3)
	m, _ := img.Manifest()
	bad := m.Layers[1].Digest
	r.bad = bad.String()
	cache := t.TempDir()
	_, err := prepare(context.Background(), cache, ref)
	if !errors.Is(err, pull.ErrDigestMismatch) || !strings.Contains(err.Error(), "layer 2/3 "+bad.String()) {
		t.Fatalf("Prepare = %v, want ErrDigestMismatch naming layer 2/3 %s", err, bad)
	}
	s := store.New(cache)
	if s.HasBlob(bad) {
		t.Errorf("corrupt blob stored")
	}
	d, _ := img.Digest()
	if rootfs.NewCache(cache).Has(d.Hex) {
		t.Errorf("rootfs published from a corrupt stream")
	}
	ents, _ := os.ReadDir(filepath.Join(cache, "rootfs"))
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), ".tmp-") {
			t.Errorf("temp rootfs left: %s", e.Name())
		}
	}
	// Fixed upstream: the next run completes the pull.
	r.mu.Lock()
	r.bad = ""
	r.mu.Unlock()
	p, err := prepare(context.Background(), cache, ref)
	if err != nil {
		t.Fatalf("Prepare after the fix = %v", err)
	}
	p.Release()
}

func TestImagesRmiPrune(t *testing.T) {
	r := newReg(t)
	ref1, ref2 := r.host+"/one:1", r.host+"/two:1"
	push(t, ref1, 2)
	push(t, ref2, 2)
	cache := t.TempDir()
	ctx := context.Background()
	p1, err := prepare(ctx, cache, ref1)
	if err != nil {
		t.Fatal(err)
	}
	p1.Release()
	p2, err := prepare(ctx, cache, ref2)
	if err != nil {
		t.Fatal(err)
	}
	// p2 stays held, as by a run in progress.

	ims, err := store.Images(cache)
	if err != nil || len(ims) != 2 {
		t.Fatalf("Images = %v, %v; want 2", ims, err)
	}
	for _, im := range ims {
		if !im.Unpacked || im.Size <= 0 || im.Platform != "linux/arm64" || im.LastUsed.IsZero() {
			t.Errorf("image %+v: want unpacked, sized, linux/arm64, used", im)
		}
	}

	// Nothing to prune yet.
	rep, err := store.Prune(ctx, cache)
	if err != nil || rep.Blobs != 0 || rep.Rootfs != 0 {
		t.Errorf("Prune with nothing unreferenced = %+v, %v", rep, err)
	}

	// rmi of an image in use fails and keeps it.
	if _, err := store.Remove(cache, ref2, ""); !errors.Is(err, rootfs.ErrInUse) {
		t.Errorf("Remove(in use) = %v, want ErrInUse", err)
	}
	if _, err := store.Remove(cache, r.host+"/none:1", ""); !errors.Is(err, store.ErrNoMatch) {
		t.Errorf("Remove(unknown) = %v, want ErrNoMatch", err)
	}
	if _, err := store.Remove(cache, ref1, "linux/riscv64"); !errors.Is(err, store.ErrNoMatch) {
		t.Errorf("Remove(other platform) = %v, want ErrNoMatch", err)
	}
	removed, err := store.Remove(cache, ref1, "linux/arm64")
	if err != nil || len(removed) != 1 {
		t.Fatalf("Remove(%s) = %v, %v", ref1, removed, err)
	}
	if rootfs.NewCache(cache).Has(p1.Image.Digest.Hex) {
		t.Errorf("rmi left the rootfs")
	}
	if ims, _ := store.Images(cache); len(ims) != 1 {
		t.Errorf("Images after rmi = %v", ims)
	}

	rep, err = store.Prune(ctx, cache)
	if err != nil || rep.Blobs != 4 || rep.BlobBytes <= 0 { // manifest, config, 2 layers
		t.Errorf("Prune after rmi = %+v, %v; want 4 blobs freed", rep, err)
	}
	for _, l := range p2.Image.Layers {
		if !store.New(cache).HasBlob(l.Digest) {
			t.Errorf("prune removed a blob of the image still there: %s", l.Digest)
		}
	}

	// An unreferenced rootfs held by a run is kept by prune.
	if err := store.New(cache).RemoveRecord(p2.Image.Ref, "linux/arm64"); err != nil {
		t.Fatal(err)
	}
	rep, err = store.Prune(ctx, cache)
	if err != nil || len(rep.Busy) != 1 || !rootfs.NewCache(cache).Has(p2.Image.Digest.Hex) {
		t.Errorf("Prune with a held rootfs = %+v, %v; want it kept as busy", rep, err)
	}
	p2.Release()
	rep, err = store.Prune(ctx, cache)
	if err != nil || rep.Rootfs != 1 || rootfs.NewCache(cache).Has(p2.Image.Digest.Hex) {
		t.Errorf("Prune after release = %+v, %v; want the rootfs removed", rep, err)
	}
}
