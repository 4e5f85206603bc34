package rootfs

import (
	"errors"
	"fmt"
	"runtime"
	"strings"
	"testing"
)

// TestLimits unpacks synthetic images that exceed each limit, with small
// limits set through Options and through the environment: each fails with
// a one-line error naming the limit and the variable that raises it, and
// nothing is published.
func TestLimits(t *testing.T) {
	kib := strings.Repeat("x", 1024)
	var files, dirs, deep []ent
	for i := range 40 {
		files = append(files, reg(fmt.Sprintf("f%d", i), "", 0o644))
		dirs = append(dirs, dirE(fmt.Sprintf("d%d/", i), 0o755))
	}
	// One entry whose parent creates 40 implicit directories.
	deep = append(deep, reg(strings.Repeat("d/", 40)+"f", "", 0o644))
	small := func(name string, n int) []byte {
		return mkLayer(t, reg(name, strings.Repeat(kib, n), 0o644))
	}
	for _, tc := range []struct {
		name   string
		layers [][]byte
		opts   Options
		env    map[string]string
		want   string
	}{
		{
			name:   "layer size",
			layers: [][]byte{small("a", 8)},
			opts:   Options{MaxBytes: 4 << 10},
			want:   "layer sha256:layer0: uncompressed layer size exceeds the limit of 4 KiB (XRUN_MAX_LAYER_SIZE): set XRUN_MAX_LAYER_SIZE higher",
		},
		{
			name: "image size across layers",
			// Each layer is under the per-layer limit; together they are not.
			layers: [][]byte{small("a", 6), small("b", 6), small("c", 6)},
			opts:   Options{MaxBytes: 8 << 10, MaxTotalBytes: 16 << 10},
			want:   "layer sha256:layer2: uncompressed image size (all layers) exceeds the limit of 16 KiB (XRUN_MAX_IMAGE_SIZE): set XRUN_MAX_IMAGE_SIZE higher",
		},
		{
			name:   "image size from the environment",
			layers: [][]byte{small("a", 6), small("b", 6)},
			env:    map[string]string{EnvMaxImageSize: "10K"},
			want:   "uncompressed image size (all layers) exceeds the limit of 10 KiB (XRUN_MAX_IMAGE_SIZE)",
		},
		{
			name:   "entries across layers",
			layers: [][]byte{mkLayer(t, files[:20]...), mkLayer(t, files[20:]...)},
			opts:   Options{MaxEntries: 30},
			want:   "layer sha256:layer1: number of entries in the image (files, directories, links) exceeds the limit of 30 (XRUN_MAX_IMAGE_ENTRIES): set XRUN_MAX_IMAGE_ENTRIES higher",
		},
		{
			name:   "entries from the environment",
			layers: [][]byte{mkLayer(t, files...)},
			env:    map[string]string{EnvMaxImageEntries: "10"},
			want:   "exceeds the limit of 10 (XRUN_MAX_IMAGE_ENTRIES)",
		},
		{
			name:   "directories",
			layers: [][]byte{mkLayer(t, dirs...)},
			opts:   Options{MaxDirs: 10},
			want:   "number of directories in the image exceeds the limit of 10 (XRUN_MAX_IMAGE_DIRS): set XRUN_MAX_IMAGE_DIRS higher",
		},
		{
			name:   "implicit directories",
			layers: [][]byte{mkLayer(t, deep...)},
			env:    map[string]string{EnvMaxImageDirs: "10"},
			want:   "number of directories in the image exceeds the limit of 10 (XRUN_MAX_IMAGE_DIRS)",
		},
		{
			name:   "malformed variable",
			layers: [][]byte{small("a", 1)},
			env:    map[string]string{EnvMaxImageSize: "lots"},
			want:   `invalid XRUN_MAX_IMAGE_SIZE="lots": use a positive number such as 512G`,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			c := newCache(t)
			var ls []Layer
			for i, b := range tc.layers {
				ls = append(ls, plainLayer(i, b))
			}
			_, err := c.Ensure(t.Context(), testKey, ls, tc.opts)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Ensure error = %v, want %q", err, tc.want)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("error has several lines: %q", err)
			}
			if !strings.HasPrefix(tc.want, "invalid") && !errors.Is(err, ErrTooLarge) {
				t.Errorf("error %v does not match ErrTooLarge", err)
			}
			if c.Has(testKey) {
				t.Errorf("rootfs published")
			}
			assertNoTmp(t, c)
		})
	}
	// Just under every limit works.
	t.Run("under the limits", func(t *testing.T) {
		c := newCache(t)
		ls := []Layer{plainLayer(0, mkLayer(t, dirs[:10]...)), plainLayer(1, small("a", 4))}
		if _, err := c.Ensure(t.Context(), testKey, ls, Options{MaxBytes: 7 << 10, MaxTotalBytes: 14 << 10, MaxEntries: 11, MaxDirs: 11}); err != nil {
			t.Fatal(err)
		}
	})
}

func TestParseSize(t *testing.T) {
	for in, want := range map[string]int64{
		"0": 0, "512": 512, "4K": 4 << 10, "4k": 4 << 10, "4KiB": 4 << 10, "4KB": 4 << 10,
		"3M": 3 << 20, "64G": 64 << 30, "2T": 2 << 40, " 1g ": 1 << 30,
	} {
		if got, err := ParseSize(in); err != nil || got != want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "G", "-1", "1.5G", "lots", "99999999999T"} {
		if _, err := ParseSize(in); err == nil {
			t.Errorf("ParseSize(%q): no error", in)
		}
	}
	for n, want := range map[int64]string{512: "512 bytes", 4 << 10: "4 KiB", 64 << 30: "64 GiB", 3 << 19: "1.5 MiB"} {
		if got := HumanSize(n); got != want {
			t.Errorf("HumanSize(%d) = %q, want %q", n, got, want)
		}
	}
}

// TestDirMemory measures the unpacker's live heap per directory (paths of
// 40 bytes): 302 bytes before its bookkeeping was made compact, 214 after.
// The limits' documentation (XRUN_MAX_IMAGE_DIRS) says about 220 bytes.
func TestDirMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("unpacks 10000 directories")
	}
	const n = 10000
	ents := make([]ent, 0, n)
	for i := range n {
		ents = append(ents, dirE(fmt.Sprintf("usr/share/some/where/dir-%06d/", i), 0o755))
	}
	layer := mkLayer(t, ents...)
	_, root := newRoot(t)
	opts, err := Options{}.fill()
	if err != nil {
		t.Fatal(err)
	}
	u, err := newUnpacker(root, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer u.close()
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	if err := u.apply(t.Context(), bytesReader(layer), &limitReader{ctx: t.Context(), r: bytesReader(nil), max: 1}); err != nil {
		t.Fatal(err)
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	runtime.KeepAlive(ents)
	runtime.KeepAlive(layer)
	per := (int64(after.HeapAlloc) - int64(before.HeapAlloc)) / n
	t.Logf("%d bytes of heap per directory (pending %d, added %d, fixed %d)", per, len(u.pending), len(u.added), len(u.fixed))
	if per > 280 {
		t.Errorf("%d bytes per directory, want at most 280", per)
	}
}
