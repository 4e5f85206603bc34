package rootfs

import (
	"archive/tar"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/sys/unix"
)

// expectUnion computes the expected tree of a layer stack independently of
// the unpacker, on an in-memory map: per layer, first the whiteouts and
// opaque markers delete lower entries, then the entries are applied in
// order. It supports no entry below a symlink (the fidelity layers have
// none; the malicious corpus covers those).
func expectUnion(layers [][]ent) map[string]node {
	m := map[string]node{}
	delTree := func(p string) {
		for k := range m {
			if k == p || strings.HasPrefix(k, p+"/") {
				delete(m, k)
			}
		}
	}
	for _, es := range layers {
		for _, e := range es {
			rel := cleanRel(e.hdr.Name)
			dir, base := splitRel(rel)
			switch {
			case base == opaqueMarker:
				if dir == "" {
					clear(m)
				} else {
					for k := range m {
						if strings.HasPrefix(k, dir+"/") {
							delete(m, k)
						}
					}
				}
			case strings.HasPrefix(base, whiteoutPrefix):
				delTree(joinRel(dir, strings.TrimPrefix(base, whiteoutPrefix)))
			}
		}
		for _, e := range es {
			h := e.hdr
			rel := cleanRel(h.Name)
			dir, base := splitRel(rel)
			if rel == "" || strings.HasPrefix(base, whiteoutPrefix) || h.Typeflag == tar.TypeChar || h.Typeflag == tar.TypeBlock {
				continue
			}
			for d := dir; d != ""; d, _ = splitRel(d) {
				if _, ok := m[d]; !ok {
					m[d] = node{Type: "dir", Mode: 0o755}
				}
			}
			mode := fs.FileMode(h.Mode & 0o777)
			if h.Mode&0o4000 != 0 {
				mode |= fs.ModeSetuid
			}
			if h.Mode&0o2000 != 0 {
				mode |= fs.ModeSetgid
			}
			if h.Mode&0o1000 != 0 {
				mode |= fs.ModeSticky
			}
			n := node{Mode: mode, Mtime: h.ModTime.Unix()}
			switch h.Typeflag {
			case tar.TypeDir:
				n.Type = "dir"
				if old, ok := m[rel]; ok && old.Type == "dir" {
					m[rel] = n
					continue
				}
			case tar.TypeReg:
				n.Type, n.Size, n.Body = "file", int64(len(e.body)), e.body
			case tar.TypeSymlink:
				n.Type, n.Mode, n.Link = "symlink", 0, h.Linkname
			case tar.TypeFifo:
				n.Type = "fifo"
			case tar.TypeLink:
				n = m[cleanRel(h.Linkname)]
			}
			delTree(rel)
			m[rel] = n
		}
	}
	return m
}

// fidelityLayers exercises whiteouts, opaque dirs (marker before and after
// the layer's own entries), file<->dir replacement, hardlinks (same layer
// and to a lower layer), symlinks, special modes, mtimes and fifos.
var fidelityLayers = [][]ent{
	{
		dirE("etc", 0o755).at(1),
		reg("etc/passwd", "root:x:0:0::/root:/bin/sh\n", 0o644).at(2),
		reg("etc/shadow", "root:*:1::::::\n", 0o640).at(3),
		dirE("usr/bin", 0o755).at(4), // implicit usr
		reg("usr/bin/su", "su-binary", 0o4755).at(5),
		reg("usr/bin/wall", "wall-binary", 0o2755).at(6),
		hard("usr/bin/sudo", "usr/bin/su"),
		dirE("tmp", 0o1777).at(7),
		dirE("ro", 0o555).at(8),
		reg("ro/a", "a", 0o444).at(9),
		dirE("usr/lib", 0o755).at(10),
		reg("usr/lib/libc.so", "libc", 0o755).at(11),
		sym("lib64", "usr/lib").at(12),
		sym("abs", "/etc/passwd").at(13),
		dirE("olddir", 0o755).at(14),
		reg("olddir/x", "x", 0o644).at(15),
		reg("oldfile", "old", 0o600).at(16),
		dirE("opq", 0o755).at(17),
		reg("opq/lower1", "l1", 0o644).at(18),
		reg("opq/sub/lower2", "l2", 0o644).at(19),
		dirE("opq2", 0o755).at(20),
		reg("opq2/lower", "l", 0o644).at(21),
		dirE("wh", 0o711).at(22),
		reg("wh/gone", "gone", 0o644).at(23),
		reg("wh/keep", "keep", 0o644).at(24),
		dirE("wh/gonedir", 0o500).at(25),
		reg("wh/gonedir/f", "f", 0o400).at(26),
		fifo("run/fifo").at(27),
		chr("dev/null"),
		reg("sgid/file", "f", 0o644).at(28),
	},
	{
		reg("opq/new", "n", 0o644).at(100),
		dirE("opq/sub", 0o750).at(101),
		reg("opq/sub/new2", "n2", 0o644).at(102),
		opq("opq"), // after the layer's own entries: they must survive
		opq("opq2"),
		reg("opq2/new", "n", 0o644).at(103),
		wh("wh/gone"),
		wh("wh/gonedir"),
		reg("olddir", "now a file", 0o644).at(104),
		dirE("oldfile", 0o700).at(105),
		reg("oldfile/inner", "inner", 0o644).at(106),
		hard("hl", "etc/passwd"),
		reg("ro/b", "b", 0o444).at(107),
		dirE("etc", 0o750).at(108),
		sym("rel", "../etc/passwd").at(109),
		reg("usr/bin/wall", "new-wall", 0o2711).at(110),
		dirE("./", 0o751).at(111),
	},
	{
		wh("usr/lib"),
		reg("lib64", "no longer a link", 0o644).at(200),
		wh("sgid"),
		dirE("sgid", 0o2775).at(201),
		reg("sgid/new", "n", 0o664).at(202),
	},
}

func TestUnpackFidelity(t *testing.T) {
	for _, sj := range []bool{false, true} {
		t.Run(map[bool]string{false: "openat2", true: "securejoin"}[sj], func(t *testing.T) {
			forceSecureJoin = sj
			t.Cleanup(func() { forceSecureJoin = false })
			_, root := newRoot(t)
			var layers [][]byte
			for _, es := range fidelityLayers {
				layers = append(layers, mkLayer(t, es...))
			}
			if err := unpackAll(t, root, layers...); err != nil {
				t.Fatal(err)
			}
			want := expectUnion(fidelityLayers)
			got := walkTree(t, root)
			for p, n := range want {
				if g, ok := got[p]; ok && n.Mtime == 0 {
					g.Mtime = 0
					got[p] = g
				}
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("unpacked tree differs from the expected union (-want +got):\n%s", diff)
			}
			fi, err := os.Stat(root)
			if err != nil || fi.Mode()&modeBits != 0o751 || fi.ModTime().Unix() != t0.Add(111e9).Unix() {
				t.Errorf("root mode/mtime = %v %v, want 0751 %v", fi.Mode(), fi.ModTime(), t0.Add(111e9))
			}
			same := func(a, b string) {
				fa, _ := os.Stat(filepath.Join(root, a))
				fb, _ := os.Stat(filepath.Join(root, b))
				if fa == nil || fb == nil || !os.SameFile(fa, fb) {
					t.Errorf("%s and %s are not the same file", a, b)
				}
			}
			same("hl", "etc/passwd")
			same("usr/bin/sudo", "usr/bin/su")
		})
	}
}

func TestUnpackStatsAndDevices(t *testing.T) {
	_, root := newRoot(t)
	var logged strings.Builder
	st, err := Unpack(t.Context(), root, bytesReader(mkLayer(t,
		chr("dev/null"), chr("dev/zero"), chr("dev/tty"),
		ent{hdr: tar.Header{Typeflag: tar.TypeBlock, Name: "dev/sda", Mode: 0o660}},
		reg("f", "abc", 0o644), fifo("p"),
	)), Options{Logger: testLogger(&logged)})
	if err != nil {
		t.Fatal(err)
	}
	want := Stats{Files: 1, Fifos: 1, SkippedDevices: 4, Bytes: 3}
	if diff := cmp.Diff(want, st); diff != "" {
		t.Errorf("Stats (-want +got):\n%s", diff)
	}
	if n := strings.Count(logged.String(), "device"); n != 1 {
		t.Errorf("log mentions devices %d times, want one summary line:\n%s", n, logged.String())
	}
	if _, err := os.Lstat(filepath.Join(root, "dev/null")); err == nil {
		t.Errorf("dev/null was created")
	}
}

func TestUnpackXattrs(t *testing.T) {
	_, root := newRoot(t)
	if err := unix.Setxattr(root, "user.probe", []byte("x"), 0); err != nil {
		t.Skipf("user xattrs not supported on %s: %v", root, err)
	}
	f := reg("f", "x", 0o444)
	f.hdr.PAXRecords = map[string]string{"SCHILY.xattr.user.comment": "hello", "SCHILY.xattr.security.capability": "nope"}
	f.hdr.Uid, f.hdr.Gid = 1000, 100
	d := dirE("d", 0o555)
	d.hdr.PAXRecords = map[string]string{"SCHILY.xattr.user.dir": "yes"}
	if _, err := Unpack(t.Context(), root, bytesReader(mkLayer(t, f, d, reg("root-owned", "", 0o644))), Options{}); err != nil {
		t.Fatal(err)
	}
	get := func(p, name string) string {
		buf := make([]byte, 256)
		n, err := unix.Lgetxattr(filepath.Join(root, p), name, buf)
		if err != nil {
			return "error: " + err.Error()
		}
		return string(buf[:n])
	}
	for _, c := range []struct{ path, name, want string }{
		{"f", "user.comment", "hello"},
		{"f", rootlessXattr, string(encodeRootless(1000, 100))},
		{"d", "user.dir", "yes"},
		{"root-owned", rootlessXattr, "error: no data available"},
	} {
		if got := get(c.path, c.name); got != c.want {
			t.Errorf("xattr %s of %s = %q, want %q", c.name, c.path, got, c.want)
		}
	}
	if got := encodeRootless(1000, 100); string(got) != "\x08\xe8\x07\x10\x64" {
		t.Errorf("encodeRootless(1000, 100) = %x", got)
	}
}

// TestUnpackOpaqueOrder checks that an opaque marker spares the layer's own
// entries whatever their position in the tar.
func TestUnpackOpaqueOrder(t *testing.T) {
	lower := []ent{reg("d/old", "o", 0o644), reg("d/sub/old", "o", 0o644), reg("keep", "k", 0o644)}
	upper := []ent{reg("d/new", "n", 0o644), dirE("d/sub", 0o755), reg("d/sub/new", "n", 0o644), reg("d/x/y", "y", 0o644)}
	for pos := 0; pos <= len(upper); pos++ {
		layer := append(append(append([]ent{}, upper[:pos]...), opq("d")), upper[pos:]...)
		_, root := newRoot(t)
		if err := unpackAll(t, root, mkLayer(t, lower...), mkLayer(t, layer...)); err != nil {
			t.Fatal(err)
		}
		var got []string
		for p := range walkTree(t, root) {
			got = append(got, p)
		}
		sort.Strings(got)
		want := []string{"d", "d/new", "d/sub", "d/sub/new", "d/x", "d/x/y", "keep"}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("marker at %d: tree (-want +got):\n%s", pos, diff)
		}
	}
}

// TestUnpackWhiteoutOrder: a whiteout spares what the same layer writes.
func TestUnpackWhiteoutOrder(t *testing.T) {
	lower := []ent{reg("a", "lower", 0o644), reg("d/old", "o", 0o644)}
	upper := []ent{reg("a", "upper", 0o644), reg("d/new", "n", 0o644)}
	for _, whFirst := range []bool{true, false} {
		layer := append([]ent{}, upper...)
		if whFirst {
			layer = append([]ent{wh("a"), wh("d")}, layer...)
		} else {
			layer = append(layer, wh("a"), wh("d"))
		}
		_, root := newRoot(t)
		if err := unpackAll(t, root, mkLayer(t, lower...), mkLayer(t, layer...)); err != nil {
			t.Fatal(err)
		}
		got := walkTree(t, root)
		if got["a"].Body != "upper" || got["d/new"].Body != "n" || got["d/old"].Type != "" {
			t.Errorf("whiteout first=%v: tree = %v", whFirst, got)
		}
	}
}

func TestCleanRel(t *testing.T) {
	for in, want := range map[string]string{
		"": "", ".": "", "/": "", "./": "", "..": "", "../../etc/x": "etc/x", "/etc/x": "etc/x",
		"a/../../b": "b", "a//b/./c/": "a/b/c", "./usr/bin": "usr/bin",
	} {
		if got := cleanRel(in); got != want {
			t.Errorf("cleanRel(%q) = %q, want %q", in, got, want)
		}
		if path.IsAbs(cleanRel(in)) {
			t.Errorf("cleanRel(%q) is absolute", in)
		}
	}
}
