package rootfs

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/xrun-dev/xrun/pkg/userns"
)

// TestMain lets the test binary serve as the helpers userns.Run starts
// (it re-executes /proc/self/exe, which is this binary in tests).
func TestMain(m *testing.M) {
	userns.ServeHelpers()
	if len(os.Args) > 1 {
		var err error
		switch os.Args[1] {
		case UnpackHelperCommand:
			err = UnpackHelper(context.Background(), os.Args[2:])
		case userns.RemoveHelperCommand:
			err = userns.RemoveHelper(os.Args[2:])
		default:
			os.Exit(m.Run())
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "xrun: %v\n", err)
			os.Exit(125)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

type tent struct {
	name     string
	typ      byte
	mode     int64
	uid, gid int
	body     string
}

func tarOf(t *testing.T, ents ...tent) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range ents {
		h := &tar.Header{Name: e.name, Typeflag: e.typ, Mode: e.mode, Uid: e.uid, Gid: e.gid, Size: int64(len(e.body))}
		if e.typ != tar.TypeReg {
			h.Size = 0
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		io.WriteString(tw, e.body)
	}
	tw.Close()
	return buf.Bytes()
}

func diffID(b []byte) string {
	s := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(s[:])
}

func layerOf(name string, b []byte) Layer {
	return Layer{Digest: "sha256:" + name, DiffID: diffID(b),
		Open: func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil }}
}

// needUserNSRoot skips unless the test runs as root, which maps ids in a
// user namespace without newuidmap (ids 0..65536 to themselves).
func needUserNSRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root (or a subordinate id range, tested by the integration tests)")
	}
}

func statOwner(t *testing.T, p string) (uid, gid, mode uint32, xattr string) {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Lstat(p, &st); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 64)
	if n, err := unix.Lgetxattr(p, "user.rootlesscontainers", buf); err == nil {
		xattr = fmt.Sprintf("%x", buf[:n])
	}
	return st.Uid, st.Gid, st.Mode & 0o7777, xattr
}

func TestUnpackInUserNS(t *testing.T) {
	needUserNSRoot(t)
	big := strings.Repeat("0123456789abcdef", 64<<10) // 1 MiB: several frames
	l1 := tarOf(t,
		tent{name: "home/", typ: tar.TypeDir, mode: 0o755},
		tent{name: "home/user/", typ: tar.TypeDir, mode: 0o700, uid: 1000, gid: 1000},
		tent{name: "home/user/f", typ: tar.TypeReg, mode: 0o600, uid: 1000, gid: 1000, body: "f"},
		tent{name: "usr/bin/sudo", typ: tar.TypeReg, mode: 0o4755, body: "sudo"},
		tent{name: "usr/bin/agent", typ: tar.TypeReg, mode: 0o2755, uid: 0, gid: 42, body: big},
		tent{name: "far", typ: tar.TypeReg, mode: 0o644, uid: 70000, gid: 70000, body: "x"},
		tent{name: "gone", typ: tar.TypeReg, mode: 0o644, uid: 1000, gid: 1000, body: "x"},
	)
	l2 := tarOf(t,
		tent{name: ".wh.gone", typ: tar.TypeReg, mode: 0o644},
		tent{name: "home/user/g", typ: tar.TypeReg, mode: 0o644, uid: 1001, gid: 1001, body: "g"},
	)
	c := NewCache(t.TempDir())
	dir, err := c.Ensure(t.Context(), "k", []Layer{layerOf("l1", l1), layerOf("l2", l2)}, Options{InUserNS: true})
	if err != nil {
		t.Fatal(err)
	}
	for p, want := range map[string]string{
		"home/user":     "1000:1000 700 ",
		"home/user/f":   "1000:1000 600 ",
		"home/user/g":   "1001:1001 644 ",
		"usr/bin/sudo":  "0:0 4755 ",
		"usr/bin/agent": "0:42 2755 ",
		"far":           "0:0 644 " + fmt.Sprintf("%x", []byte{0x08, 0xf0, 0xa2, 0x04, 0x10, 0xf0, 0xa2, 0x04}),
	} {
		u, g, m, x := statOwner(t, filepath.Join(dir, p))
		if got := fmt.Sprintf("%d:%d %o %s", u, g, m, x); got != want {
			t.Errorf("%s: %q, want %q", p, got, want)
		}
	}
	if _, err := os.Lstat(filepath.Join(dir, "gone")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("gone: %v", err)
	}
	if inf, err := c.Info("k"); err != nil || inf.Files != 6 || inf.Bytes != int64(len(big))+8 {
		t.Errorf("Info = %+v, %v", inf, err)
	}
	if err := c.Remove("k"); err != nil {
		t.Fatal(err)
	}
}

func TestUnpackInUserNSErrors(t *testing.T) {
	needUserNSRoot(t)
	good := tarOf(t, tent{name: "d/", typ: tar.TypeDir, mode: 0o555, uid: 1000, gid: 1000},
		tent{name: "d/f", typ: tar.TypeReg, mode: 0o400, uid: 1000, gid: 1000, body: "f"})
	bad := layerOf("bad", good)
	bad.DiffID = diffID([]byte("other"))
	failing := Layer{Digest: "sha256:dl", Open: func() (io.ReadCloser, error) {
		return io.NopCloser(io.MultiReader(bytes.NewReader(good[:700]), errReader{errors.New("connection reset")})), nil
	}}
	evil := layerOf("evil", tarOf(t, tent{name: "/", typ: tar.TypeSymlink}))
	for _, tc := range []struct {
		name   string
		second Layer
		is     error
		want   string
	}{
		{"diffid", bad, ErrDiffIDMismatch, "layer sha256:bad: diffid mismatch"},
		{"download fails", failing, nil, "layer sha256:dl: read blob: connection reset"},
		{"unsafe", evil, ErrUnsafeEntry, `layer sha256:evil: entry "/"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			_, err := unpackInUserNS(t.Context(), dir, []Layer{layerOf("ok", good), tc.second}, Options{})
			if err == nil || !strings.Contains(err.Error(), tc.want) || tc.is != nil && !errors.Is(err, tc.is) {
				t.Fatalf("error = %v, want %q (matching %v)", err, tc.want, tc.is)
			}
			if err := userns.RemoveTree(dir); err != nil {
				t.Errorf("RemoveTree: %v", err)
			}
		})
	}
	t.Run("cancelled", func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		blocked := Layer{Digest: "sha256:slow", Open: func() (io.ReadCloser, error) {
			return io.NopCloser(io.MultiReader(bytes.NewReader(good[:600]), blockingReader{ctx})), nil
		}}
		go func() { cancel() }()
		_, err := unpackInUserNS(ctx, t.TempDir(), []Layer{blocked}, Options{})
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("error = %v, want context.Canceled", err)
		}
	})
}

type errReader struct{ err error }

func (e errReader) Read([]byte) (int, error) { return 0, e.err }

type blockingReader struct{ ctx context.Context }

func (c blockingReader) Read([]byte) (int, error) { <-c.ctx.Done(); return 0, c.ctx.Err() }

// TestUnpackInUserNSNotServed: in a program that does not run the helper
// (another package's test binary), the unpacker is unavailable rather than
// re-executing a binary that would not understand the helper command.
func TestUnpackInUserNSNotServed(t *testing.T) {
	served = func() bool { return false }
	defer func() { served = userns.Served }()
	var opened bool
	l := Layer{Digest: "sha256:x", Open: func() (io.ReadCloser, error) { opened = true; return nil, io.EOF }}
	_, err := unpackInUserNS(t.Context(), t.TempDir(), []Layer{l}, Options{})
	if !errors.Is(err, ErrUnpackerUnavailable) || opened {
		t.Fatalf("error = %v (layer opened: %v), want ErrUnpackerUnavailable", err, opened)
	}
}

// TestUnpackResultErrors: what callers test an unpack error for survives
// the trip from the helper: sentinels, the errno and its path.
func TestUnpackResultErrors(t *testing.T) {
	orig := fmt.Errorf("layer sha256:x: entry %q: %w", "f", &os.PathError{Op: "write", Path: "f", Err: unix.ENOSPC})
	b, _ := json.Marshal(failure(orig))
	var res unpackResult
	if err := json.Unmarshal(b, &res); err != nil {
		t.Fatal(err)
	}
	err := res.err()
	var pe *os.PathError
	if err.Error() != orig.Error() || !errors.Is(err, syscall.ENOSPC) || !errors.As(err, &pe) || pe.Path != "f" || errors.Is(err, ErrTooLarge) {
		t.Errorf("after the trip: %v (path error %+v)", err, pe)
	}
	err = failure(fmt.Errorf("layer x: %w", ErrDiffIDMismatch)).err()
	if !errors.Is(err, ErrDiffIDMismatch) || errors.Is(err, syscall.ENOSPC) {
		t.Errorf("diffid: %v", err)
	}
}
