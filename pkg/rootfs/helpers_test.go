package rootfs

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/xrun-dev/xrun/pkg/fsutil"
)

// ent is one tar entry for mkLayer.
type ent struct {
	hdr  tar.Header
	body string
}

var t0 = time.Date(2021, 3, 4, 5, 6, 7, 0, time.UTC)

func reg(name, body string, mode int64) ent {
	return ent{hdr: tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: mode, Size: int64(len(body)), ModTime: t0}, body: body}
}
func dirE(name string, mode int64) ent {
	return ent{hdr: tar.Header{Typeflag: tar.TypeDir, Name: name, Mode: mode, ModTime: t0}}
}
func sym(name, target string) ent {
	return ent{hdr: tar.Header{Typeflag: tar.TypeSymlink, Name: name, Linkname: target, Mode: 0o777, ModTime: t0}}
}
func hard(name, target string) ent {
	return ent{hdr: tar.Header{Typeflag: tar.TypeLink, Name: name, Linkname: target, Mode: 0o644, ModTime: t0}}
}
func fifo(name string) ent {
	return ent{hdr: tar.Header{Typeflag: tar.TypeFifo, Name: name, Mode: 0o620, ModTime: t0}}
}
func chr(name string) ent {
	return ent{hdr: tar.Header{Typeflag: tar.TypeChar, Name: name, Mode: 0o666, Devmajor: 1, Devminor: 3, ModTime: t0}}
}

// wh is the whiteout of path p; opq the opaque marker of directory d.
func wh(p string) ent {
	d, b := filepath.Split(p)
	return reg(d+whiteoutPrefix+b, "", 0o600)
}
func opq(d string) ent { return reg(filepath.Join(d, opaqueMarker), "", 0o600) }

// at returns e with a modification time of t0 plus s seconds.
func (e ent) at(s int) ent { e.hdr.ModTime = t0.Add(time.Duration(s) * time.Second); return e }

// mkLayer builds an uncompressed tar in memory.
func mkLayer(t testing.TB, ents ...ent) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range ents {
		h := e.hdr
		if err := tw.WriteHeader(&h); err != nil {
			t.Fatalf("mkLayer: header %q: %v", h.Name, err)
		}
		if _, err := io.WriteString(tw, e.body); err != nil {
			t.Fatalf("mkLayer: body %q: %v", h.Name, err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func digestOf(b []byte) string {
	s := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(s[:])
}

// plainLayer wraps an uncompressed tar as a Layer whose Digest names it (by
// index) and whose DiffID is correct.
func plainLayer(i int, b []byte) Layer {
	return Layer{
		Digest:    "sha256:layer" + string(rune('0'+i)),
		DiffID:    digestOf(b),
		MediaType: "application/vnd.oci.image.layer.v1.tar",
		Open:      func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil },
	}
}

// newRoot returns an empty dir to unpack into, removed with the
// chmod-through remover before t.TempDir's own cleanup (which cannot
// remove 0555 dirs when unprivileged).
func newRoot(t testing.TB) (base, root string) {
	t.Helper()
	base = t.TempDir()
	root = filepath.Join(base, "root")
	if err := os.Mkdir(root, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := fsutil.RemoveAll(root); err != nil {
			t.Errorf("fsutil.RemoveAll(%s): %v", root, err)
		}
	})
	return base, root
}

// snapshot describes everything under base except root: the world outside
// the rootfs, which an unpack must never change.
func snapshot(t testing.TB, base, root string) map[string]string {
	t.Helper()
	m := map[string]string{}
	err := filepath.WalkDir(base, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p == root {
			return filepath.SkipDir
		}
		fi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		desc := fi.Mode().String() + " " + fi.ModTime().String()
		switch {
		case fi.Mode().IsRegular():
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			desc += " " + string(b)
		case fi.Mode()&fs.ModeSymlink != 0:
			l, _ := os.Readlink(p)
			desc += " -> " + l
		}
		m[p] = desc
		return nil
	})
	if err != nil {
		t.Fatalf("snapshot: %v", err)
	}
	return m
}

// node is what the fidelity tests compare for each path.
type node struct {
	Type  string
	Mode  fs.FileMode
	Size  int64
	Link  string
	Body  string
	Mtime int64 // unix seconds; 0 = not compared
}

const modeBits = fs.ModePerm | fs.ModeSetuid | fs.ModeSetgid | fs.ModeSticky

// walkTree reads the unpacked tree into nodes keyed by slash path.
func walkTree(t testing.TB, root string) map[string]node {
	t.Helper()
	m := map[string]node{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p == root {
			return nil
		}
		rel, _ := filepath.Rel(root, p)
		fi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		n := node{Mode: fi.Mode() & modeBits, Mtime: fi.ModTime().Unix()}
		switch {
		case fi.IsDir():
			n.Type = "dir"
		case fi.Mode().IsRegular():
			n.Type = "file"
			n.Size = fi.Size()
			b, err := os.ReadFile(p)
			if err != nil && fi.Mode()&0o400 != 0 {
				return err
			}
			n.Body = string(b)
		case fi.Mode()&fs.ModeSymlink != 0:
			n.Type = "symlink"
			n.Mode = 0
			n.Link, _ = os.Readlink(p)
		case fi.Mode()&fs.ModeNamedPipe != 0:
			n.Type = "fifo"
		default:
			n.Type = fi.Mode().Type().String()
		}
		m[filepath.ToSlash(rel)] = n
		return nil
	})
	if err != nil {
		t.Fatalf("walk %s: %v", root, err)
	}
	return m
}

func unpackAll(t testing.TB, root string, layers ...[]byte) error {
	t.Helper()
	ls := make([]Layer, len(layers))
	for i, b := range layers {
		ls[i] = plainLayer(i, b)
	}
	_, err := UnpackLayers(context.Background(), root, ls, Options{})
	return err
}

func bytesReader(b []byte) io.Reader { return bytes.NewReader(b) }

func testLogger(w io.Writer) *slog.Logger {
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
}
