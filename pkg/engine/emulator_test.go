package engine

import (
	"archive/tar"
	"bytes"
	"context"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/klauspost/compress/gzip"

	"github.com/xrun-dev/xrun/pkg/binfmt"
)

type tarEntry struct {
	name, link string
	typ        byte
	body       []byte
}

// writeLayer writes a gzip tar layer blob and returns its path.
func writeLayer(t *testing.T, dir string, entries ...tarEntry) string {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	for _, e := range entries {
		typ := e.typ
		if typ == 0 {
			typ = tar.TypeReg
		}
		hdr := &tar.Header{Name: e.name, Typeflag: typ, Mode: 0o755, Linkname: e.link, Size: int64(len(e.body))}
		if typ != tar.TypeReg {
			hdr.Size = 0
		}
		if err := tw.WriteHeader(hdr); err != nil {
			t.Fatal(err)
		}
		if typ == tar.TypeReg {
			tw.Write(e.body)
		}
	}
	tw.Close()
	zw.Close()
	f, err := os.CreateTemp(dir, "layer-")
	if err != nil {
		t.Fatal(err)
	}
	f.Write(buf.Bytes())
	f.Close()
	return f.Name()
}

func TestExtractEmulators(t *testing.T) {
	dir := t.TempDir()
	static, err := binfmt.TestProgram(runtime.GOARCH) // a static ELF for this host
	if err != nil {
		t.Skip(err)
	}
	other := "arm64"
	if runtime.GOARCH == "arm64" {
		other = "amd64"
	}
	foreign, _ := binfmt.TestProgram(other)
	dynamic, err := os.ReadFile("/bin/sh") // dynamically linked on every distribution
	if err != nil {
		t.Skip(err)
	}
	l1 := writeLayer(t, dir,
		tarEntry{name: "usr/", typ: tar.TypeDir},
		tarEntry{name: "./usr/bin/qemu-aarch64-static", body: static},
		tarEntry{name: "usr/bin/qemu-riscv64", body: static},          // tonistiigi/binfmt's name
		tarEntry{name: "usr/bin/qemu-s390x-static", body: static},     // removed by layer 2
		tarEntry{name: "usr/bin/qemu-ppc64le-static", body: dynamic},  // refused: dynamic
		tarEntry{name: "usr/bin/qemu-mips64el-static", body: foreign}, // refused: not for this host
		tarEntry{name: "usr/local/bin/qemu-arm-static", body: static},
		tarEntry{name: "opt/qemu-loongarch64-static", body: static}, // not a searched dir
		tarEntry{name: "usr/local/bin/qemu-mipsel-static", body: static},
	)
	l2 := writeLayer(t, dir,
		tarEntry{name: "usr/bin/.wh.qemu-s390x-static"},
		tarEntry{name: "usr/local/bin/.wh..wh..opq"}, // drops arm and mipsel
		tarEntry{name: "usr/local/bin/qemu-arm-static", body: static},
	)
	tmp := t.TempDir()
	found, err := extractEmulators(context.Background(), []string{l1, l2}, tmp)
	if err != nil {
		t.Fatal(err)
	}
	host, _ := binfmt.Lookup(runtime.GOARCH)
	var usable, refused []string
	for name, f := range found {
		if unusableEmulator(f, host) == "" {
			usable = append(usable, name)
		} else {
			refused = append(refused, name)
		}
	}
	sort.Strings(usable)
	sort.Strings(refused)
	if d := cmp.Diff([]string{"aarch64", "arm", "riscv64"}, usable); d != "" {
		t.Errorf("usable emulators (-want +got):\n%s", d)
	}
	if d := cmp.Diff([]string{"mips64el", "ppc64le"}, refused); d != "" {
		t.Errorf("refused emulators (-want +got):\n%s", d)
	}
	if b, err := os.ReadFile(filepath.Clean(found["riscv64"])); err != nil || !bytes.Equal(b, static) {
		t.Errorf("extracted riscv64 emulator differs: %v", err)
	}
}

func TestInstallEmulatorsNeedsDigest(t *testing.T) {
	_, err := InstallEmulators(context.Background(), InstallOptions{CacheDir: t.TempDir(), Image: "127.0.0.1:1/qemu:latest"})
	if err == nil || !bytes.Contains([]byte(err.Error()), []byte("must be pinned by digest")) {
		t.Errorf("InstallEmulators(tag) error = %v, want a digest demand", err)
	}
}
