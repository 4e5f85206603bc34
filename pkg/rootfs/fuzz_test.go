package rootfs

import (
	"archive/tar"
	"bytes"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// fuzzBase is applied before the fuzzed layer: symlinks pointing out of the
// root (absolute, relative, to "/"), a read-only dir, and files to hardlink.
func fuzzBase(base string) []ent {
	return []ent{
		sym("l", base), sym("up", "../../../.."), sym("abs", "/"), sym("s", base+"/sentinel"),
		dirE("ro", 0o555), reg("ro/f", "f", 0o444), reg("etc/passwd", "root", 0o644), dirE("d", 0o755),
	}
}

const seedBase = "/SEEDBASE" // replaced by the real temp dir in each run

// FuzzUnpack builds a valid tar from a compact entry list (so mutations
// change names, link targets, types and modes instead of breaking tar
// checksums), unpacks it over fuzzBase, and checks that nothing outside the
// root changes and nothing panics. Seeds: the malicious corpus and the
// fidelity layers.
//
//	go test -fuzz=FuzzUnpack -fuzztime=20s ./pkg/rootfs/
//
// Run it as an unprivileged user when you can: a containment bug would then
// hit only what that user may write. FuzzTarStream fuzzes raw tar bytes.
func FuzzUnpack(f *testing.F) {
	for _, tc := range malCases {
		for _, es := range tc.layers(seedBase) {
			f.Add(encodeEntries(es))
		}
	}
	for _, es := range fidelityLayers {
		f.Add(encodeEntries(es))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		fuzzOne(t, func(base string) []byte {
			// Seeds name the placeholder base: point them at this run's real one.
			data := bytes.ReplaceAll(data, []byte(seedBase), []byte(base))
			b, err := buildTar(decodeEntries(data))
			if err != nil {
				t.Skipf("not representable as a tar: %v", err)
			}
			return b
		})
	})
}

var fuzzTypes = []byte{tar.TypeReg, tar.TypeDir, tar.TypeSymlink, tar.TypeLink, tar.TypeFifo, tar.TypeChar, tar.TypeBlock, 'Z'}

// encodeEntries writes one record per entry: type, mode (2 bytes), then
// name NUL linkname NUL body, records separated by newlines.
func encodeEntries(es []ent) []byte {
	var b []byte
	for _, e := range es {
		t := byte(0)
		for i, ft := range fuzzTypes {
			if ft == e.hdr.Typeflag {
				t = byte(i)
			}
		}
		b = append(b, t, byte(e.hdr.Mode>>8), byte(e.hdr.Mode))
		b = append(b, e.hdr.Name+"\x00"+e.hdr.Linkname+"\x00"+e.body+"\n"...)
	}
	return b
}

func decodeEntries(data []byte) []ent {
	var es []ent
	for rec := range bytes.SplitSeq(data, []byte("\n")) {
		if len(rec) < 3 {
			continue
		}
		fields := strings.SplitN(string(rec[3:]), "\x00", 3)
		for len(fields) < 3 {
			fields = append(fields, "")
		}
		h := tar.Header{
			Typeflag: fuzzTypes[int(rec[0])%len(fuzzTypes)],
			Mode:     int64(rec[1])<<8 | int64(rec[2]),
			Name:     fields[0], Linkname: fields[1], ModTime: t0,
		}
		body := ""
		if h.Typeflag == tar.TypeReg {
			body = fields[2]
			h.Size = int64(len(body))
		}
		es = append(es, ent{hdr: h, body: body})
	}
	return es
}

// FuzzTarStream feeds raw bytes to Unpack as a tar stream (tar parsing
// errors, truncation, PAX records) with the same outside-the-root check.
func FuzzTarStream(f *testing.F) {
	for _, tc := range malCases {
		for _, es := range tc.layers(seedBase) {
			f.Add(mkLayer(f, es...))
		}
	}
	for _, es := range fidelityLayers {
		f.Add(mkLayer(f, es...))
	}
	scratch := f.TempDir() // for inputs whose first header does not parse
	f.Fuzz(func(t *testing.T, data []byte) {
		if _, err := tar.NewReader(bytes.NewReader(data)).Next(); err != nil {
			// Nothing can be written: skip the per-run set-up, which keeps
			// the minimizer (many such inputs) fast. Unpack must still not panic.
			if _, err := Unpack(t.Context(), scratch, bytes.NewReader(data), Options{MaxBytes: 1 << 20}); err == nil {
				if ents, _ := os.ReadDir(scratch); len(ents) != 0 {
					t.Fatalf("unparsable tar wrote %v", ents)
				}
			}
			return
		}
		fuzzOne(t, func(string) []byte { return data })
	})
}

// fuzzOne unpacks layer(base) over fuzzBase in a fresh temp dir and fails if
// anything outside the root changed.
func fuzzOne(t *testing.T, layer func(base string) []byte) {
	{
		done := make(chan struct{})
		t.Cleanup(func() { close(done) }) // registered first: runs after the other cleanups
		go func() {
			select {
			case <-done:
			case <-time.After(10 * time.Second):
				panic("FuzzUnpack: one input took more than 10s") // reported with the input, unlike a hang
			}
		}()
		base, root := newRoot(t)
		if err := os.WriteFile(filepath.Join(base, "sentinel"), []byte("sentinel"), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Mkdir(filepath.Join(base, "outside"), 0o755); err != nil {
			t.Fatal(err)
		}
		data := layer(base)
		before := snapshot(t, base, root)
		if err := unpackAll(t, root, mkLayer(t, fuzzBase(base)...)); err != nil {
			t.Fatalf("base layer: %v", err)
		}
		Unpack(t.Context(), root, bytes.NewReader(data), Options{MaxBytes: 1 << 20}) // errors are fine
		if diff := cmp.Diff(before, snapshot(t, base, root)); diff != "" {
			t.Fatalf("outside of the root changed (-before +after):\n%s", diff)
		}
	}
}

// buildTar is mkLayer without testing.TB: fuzzed headers may be unwritable.
func buildTar(es []ent) ([]byte, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range es {
		h := e.hdr
		if err := tw.WriteHeader(&h); err != nil {
			return nil, err
		}
		if _, err := io.WriteString(tw, e.body); err != nil {
			return nil, err
		}
	}
	err := tw.Close()
	return buf.Bytes(), err
}
