package rootfs

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"

	"github.com/xrun-dev/xrun/pkg/fsutil"
)

const testKey = "0123abcd"

func gzipBytes(t testing.TB, b []byte) []byte {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	zw.Write(b)
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func zstdBytes(t testing.TB, b []byte) []byte {
	var buf bytes.Buffer
	zw, err := zstd.NewWriter(&buf)
	if err != nil {
		t.Fatal(err)
	}
	zw.Write(b)
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// blobLayer returns a layer serving blob, whose uncompressed form is tarb.
func blobLayer(name string, tarb, blob []byte, mediaType string, opens *atomic.Int32) Layer {
	return Layer{
		Digest: "sha256:" + name, DiffID: digestOf(tarb), MediaType: mediaType,
		Open: func() (io.ReadCloser, error) {
			if opens != nil {
				opens.Add(1)
			}
			return io.NopCloser(bytes.NewReader(blob)), nil
		},
	}
}

func newCache(t *testing.T) *Cache {
	c := NewCache(t.TempDir())
	t.Cleanup(func() { fsutil.RemoveAll(filepath.Join(c.Root, "rootfs")) })
	return c
}

func assertNoTmp(t *testing.T, c *Cache) {
	t.Helper()
	ents, _ := os.ReadDir(filepath.Join(c.Root, "rootfs"))
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), tmpPrefix) {
			t.Errorf("temp dir left behind: %s", e.Name())
		}
	}
}

func TestEnsureFormats(t *testing.T) {
	l1 := mkLayer(t, reg("etc/os-release", "ID=test\n", 0o644), dirE("bin", 0o755), reg("bin/sh", "sh", 0o755))
	l2 := mkLayer(t, wh("etc/os-release"), reg("etc/hostname", "box\n", 0o644))
	for _, tc := range []struct {
		name     string
		compress func(testing.TB, []byte) []byte
		media    string
	}{
		{"plain", func(_ testing.TB, b []byte) []byte { return b }, "application/vnd.oci.image.layer.v1.tar"},
		{"gzip", gzipBytes, "application/vnd.oci.image.layer.v1.tar+gzip"},
		{"zstd", zstdBytes, "application/vnd.oci.image.layer.v1.tar+zstd"},
		{"gzip-docker", gzipBytes, "application/vnd.docker.image.rootfs.diff.tar.gzip"},
		{"gzip-unknown-media", gzipBytes, "application/octet-stream"},
		{"zstd-lying-media", zstdBytes, "application/vnd.oci.image.layer.v1.tar+gzip"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newCache(t)
			layers := []Layer{
				blobLayer("one", l1, tc.compress(t, l1), tc.media, nil),
				blobLayer("two", l2, tc.compress(t, l2), tc.media, nil),
			}
			p, err := c.Ensure(t.Context(), testKey, layers, Options{})
			if err != nil {
				t.Fatal(err)
			}
			if p != c.Path(testKey) || !c.Has(testKey) {
				t.Errorf("Ensure = %q, Has = %v; want %q, true", p, c.Has(testKey), c.Path(testKey))
			}
			got := walkTree(t, p)
			if got["etc/hostname"].Body != "box\n" || got["bin/sh"].Body != "sh" || got["etc/os-release"].Type != "" {
				t.Errorf("unpacked tree = %v", got)
			}
			fi, _ := os.Stat(p)
			if fi.Mode().Perm() != 0o755 {
				t.Errorf("rootfs mode = %v, want 0755", fi.Mode())
			}
			assertNoTmp(t, c)
			keys, err := c.Keys()
			if err != nil || len(keys) != 1 || keys[0] != testKey {
				t.Errorf("Keys() = %v, %v", keys, err)
			}
		})
	}
}

func TestEnsureDiffIDMismatch(t *testing.T) {
	c := newCache(t)
	b := mkLayer(t, reg("f", "x", 0o644))
	l := blobLayer("bad", b, gzipBytes(t, b), "", nil)
	l.DiffID = digestOf([]byte("something else"))
	_, err := c.Ensure(t.Context(), testKey, []Layer{l}, Options{})
	if !errors.Is(err, ErrDiffIDMismatch) || !strings.Contains(err.Error(), "layer sha256:bad") {
		t.Fatalf("Ensure error = %v, want a diffid mismatch naming layer sha256:bad", err)
	}
	if c.Has(testKey) {
		t.Errorf("rootfs published despite the mismatch")
	}
	assertNoTmp(t, c)
}

func TestEnsureBomb(t *testing.T) {
	big := mkLayer(t, reg("zeros", strings.Repeat("\x00", 1<<20), 0o644))
	for _, tc := range []struct {
		name string
		tarb []byte
	}{
		{"stream", big},
		{"size-header", headerOnly(t, tar.Header{Typeflag: tar.TypeReg, Name: "huge", Size: 1 << 40, Mode: 0o644})},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newCache(t)
			l := blobLayer("bomb", tc.tarb, gzipBytes(t, tc.tarb), "", nil)
			l.DiffID = ""
			_, err := c.Ensure(t.Context(), testKey, []Layer{l}, Options{MaxBytes: 64 << 10})
			want := "layer sha256:bomb: uncompressed layer size exceeds the limit of 64 KiB (XRUN_MAX_LAYER_SIZE): set XRUN_MAX_LAYER_SIZE higher"
			if err == nil || !strings.Contains(err.Error(), want) || !errors.Is(err, ErrTooLarge) {
				t.Fatalf("Ensure error = %v, want %q", err, want)
			}
			if c.Has(testKey) {
				t.Errorf("rootfs published")
			}
			assertNoTmp(t, c)
		})
	}
}

func TestEnsureConcurrent(t *testing.T) {
	c := newCache(t)
	var opens atomic.Int32
	b1 := mkLayer(t, reg("a", "a", 0o644), dirE("ro", 0o555), reg("ro/x", "x", 0o444))
	b2 := mkLayer(t, reg("b", "b", 0o644), reg("ro/y", "y", 0o444))
	slow := func(l Layer) Layer {
		open := l.Open
		l.Open = func() (io.ReadCloser, error) { time.Sleep(50 * time.Millisecond); return open() }
		return l
	}
	layers := []Layer{slow(blobLayer("1", b1, gzipBytes(t, b1), "", &opens)), slow(blobLayer("2", b2, zstdBytes(t, b2), "", &opens))}
	var wg sync.WaitGroup
	paths := make([]string, 8)
	errs := make([]error, 8)
	for i := range 8 {
		wg.Go(func() { paths[i], errs[i] = c.Ensure(context.Background(), testKey, layers, Options{}) })
	}
	wg.Wait()
	for i := range 8 {
		if errs[i] != nil || paths[i] != c.Path(testKey) {
			t.Errorf("Ensure #%d = %q, %v", i, paths[i], errs[i])
		}
	}
	if n := opens.Load(); n != 2 {
		t.Errorf("layers opened %d times, want 2 (one unpack)", n)
	}
	got := walkTree(t, c.Path(testKey))
	if got["ro/y"].Body != "y" || got["ro"].Mode != 0o555 {
		t.Errorf("tree = %v", got)
	}
	if err := c.Remove(testKey); err != nil {
		t.Errorf("Remove: %v", err)
	}
}

func TestEnsureFailurePublishesNothing(t *testing.T) {
	b := mkLayer(t, dirE("locked", 0o000), dirE("ro", 0o555), reg("ro/f", "f", 0o400))
	for _, tc := range []struct {
		name    string
		second  Layer
		wantErr string
	}{
		{"open fails", Layer{Digest: "sha256:broken", Open: func() (io.ReadCloser, error) { return nil, errors.New("boom") }}, "layer sha256:broken: open blob: boom"},
		{"truncated", blobLayer("trunc", b, gzipBytes(t, b)[:30], "", nil), "layer sha256:trunc"},
		{"unsafe entry", blobLayer("evil", mkLayer(t, sym("/", "/etc")), mkLayer(t, sym("/", "/etc")), "", nil), `layer sha256:evil: entry "/"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newCache(t)
			_, err := c.Ensure(t.Context(), testKey, []Layer{blobLayer("ok", b, b, "", nil), tc.second}, Options{})
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("Ensure error = %v, want it to contain %q", err, tc.wantErr)
			}
			if c.Has(testKey) {
				t.Errorf("published after failure")
			}
			assertNoTmp(t, c)
		})
	}
}

func TestEnsureCancelled(t *testing.T) {
	c := newCache(t)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	b := mkLayer(t, reg("f", "x", 0o644))
	if _, err := c.Ensure(ctx, testKey, []Layer{blobLayer("x", b, b, "", nil)}, Options{}); !errors.Is(err, context.Canceled) {
		t.Fatalf("Ensure error = %v, want context.Canceled", err)
	}
	assertNoTmp(t, c)
}

func TestEnsureRemovesStaleTmp(t *testing.T) {
	c := newCache(t)
	mk := func(name string) string {
		p := filepath.Join(c.Root, "rootfs", name)
		if err := os.MkdirAll(filepath.Join(p, "a", "locked"), 0o755); err != nil {
			t.Fatal(err)
		}
		os.Chmod(filepath.Join(p, "a", "locked"), 0)
		os.Chmod(filepath.Join(p, "a"), 0o555)
		return p
	}
	own := mk(tmpPrefix + testKey + "-123")
	other := mk(tmpPrefix + "feed" + "-456")
	busy := mk(tmpPrefix + "beef" + "-789")
	os.MkdirAll(filepath.Join(c.Root, "locks"), 0o700)
	lk, err := c.lock(t.Context(), "beef") // another unpack in progress
	if err != nil {
		t.Fatal(err)
	}
	defer lk.Unlock()
	b := mkLayer(t, reg("f", "x", 0o644))
	if _, err := c.Ensure(t.Context(), testKey, []Layer{blobLayer("x", b, b, "", nil)}, Options{}); err != nil {
		t.Fatal(err)
	}
	for p, wantGone := range map[string]bool{own: true, other: true, busy: false} {
		_, err := os.Lstat(p)
		if gone := errors.Is(err, os.ErrNotExist); gone != wantGone {
			t.Errorf("%s: gone = %v, want %v", filepath.Base(p), gone, wantGone)
		}
	}
	fsutil.RemoveAll(busy)
}

func TestCacheRemove(t *testing.T) {
	c := newCache(t)
	b := mkLayer(t, dirE("a", 0o755), dirE("a/locked", 0o000), reg("a/f", "f", 0o000), dirE("ro", 0o555), reg("ro/f", "f", 0o444), dirE("a/locked2", 0o000))
	if _, err := c.Ensure(t.Context(), testKey, []Layer{blobLayer("x", b, b, "", nil)}, Options{}); err != nil {
		t.Fatal(err)
	}
	if err := c.Remove(testKey); err != nil {
		t.Fatalf("Remove: %v", err)
	}
	if c.Has(testKey) {
		t.Errorf("still published")
	}
	if _, err := os.Lstat(c.Path(testKey)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Lstat after Remove: %v", err)
	}
	assertNoTmp(t, c)
	if err := c.Remove(testKey); !errors.Is(err, ErrNotFound) {
		t.Errorf("second Remove = %v, want ErrNotFound", err)
	}
}

func TestRemoveAll(t *testing.T) {
	base := t.TempDir()
	p := filepath.Join(base, "tree")
	for _, d := range []string{"a/b/c", "x/y", "z"} {
		os.MkdirAll(filepath.Join(p, d), 0o755)
	}
	os.WriteFile(filepath.Join(p, "a/b/c/f"), []byte("f"), 0)
	os.WriteFile(filepath.Join(base, "outside"), []byte("o"), 0o644)
	os.Symlink(filepath.Join(base), filepath.Join(p, "x/escape"))
	for _, d := range []string{"a/b/c", "a/b", "x/y", "z"} {
		os.Chmod(filepath.Join(p, d), 0)
	}
	os.Chmod(filepath.Join(p, "x"), 0o555)
	if err := fsutil.RemoveAll(p); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(p); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("tree still there: %v", err)
	}
	if b, err := os.ReadFile(filepath.Join(base, "outside")); string(b) != "o" {
		t.Errorf("outside file = %q, %v", b, err)
	}
	if err := fsutil.RemoveAll(p); err != nil {
		t.Errorf("RemoveAll of a missing path = %v", err)
	}
	for _, bad := range []string{"/", ".", ""} {
		if err := fsutil.RemoveAll(bad); err == nil {
			t.Errorf("fsutil.RemoveAll(%q) = nil, want refusal", bad)
		}
	}
}

func TestInvalidKeys(t *testing.T) {
	c := newCache(t)
	for _, k := range []string{"", "..", "a/b", "../x", "sha256:abc", "a-b", ".tmp", strings.Repeat("a", 201)} {
		if _, err := c.Ensure(t.Context(), k, nil, Options{}); !errors.Is(err, ErrInvalidKey) {
			t.Errorf("Ensure(%q) = %v, want ErrInvalidKey", k, err)
		}
		if c.Has(k) {
			t.Errorf("Has(%q) = true", k)
		}
		if err := c.Remove(k); !errors.Is(err, ErrInvalidKey) {
			t.Errorf("Remove(%q) = %v, want ErrInvalidKey", k, err)
		}
	}
}

// headerOnly returns a tar stream holding one header and no content: what a
// bomb announcing a huge (or sparse) file looks like before any data.
func headerOnly(t testing.TB, h tar.Header) []byte {
	var buf bytes.Buffer
	if err := tar.NewWriter(&buf).WriteHeader(&h); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}
