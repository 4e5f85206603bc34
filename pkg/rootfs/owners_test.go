package rootfs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/xrun-dev/xrun/internal/testutil"
	"github.com/xrun-dev/xrun/pkg/fsutil"
	"github.com/xrun-dev/xrun/pkg/userns"
)

// owned returns e with owner uid:gid.
func owned(e ent, uid, gid int) ent { e.hdr.Uid, e.hdr.Gid = uid, gid; return e }

// ownersLayers are two layers whose entries have owners: layer 2 re-declares
// d (as root) and removes gone with a whiteout.
func ownersLayers(t testing.TB) [][]byte {
	return [][]byte{
		mkLayer(t,
			owned(dirE("d", 0o2775), 1000, 1000),
			owned(reg("d/f", "f", 0o640), 1000, 1001),
			owned(reg("suid", "s", 0o4755), 0, 0),
			owned(reg("suid-user", "s", 0o6755), 1000, 1000),
			owned(sym("link", "d/f"), 1000, 1000),
			owned(fifo("pipe"), 1000, 1000),
			owned(reg("far", "x", 0o644), 70000, 70001),
			owned(dirE("redeclared", 0o755), 1000, 1000),
			owned(reg("gone", "x", 0o644), 1000, 1000),
			owned(reg("ro", "x", 0o400), 1000, 1000),
		),
		mkLayer(t,
			owned(dirE("redeclared", 0o755), 0, 0),
			wh("gone"),
			owned(reg("d/new", "n", 0o644), 1002, 1002),
		),
	}
}

type ownerInfo struct {
	UID, GID uint32
	Mode     uint32
	Xattr    string // user.rootlesscontainers, "" if none
}

func ownersOf(t testing.TB, root string, paths ...string) map[string]ownerInfo {
	t.Helper()
	m := map[string]ownerInfo{}
	for _, p := range paths {
		var st unix.Stat_t
		if err := unix.Lstat(filepath.Join(root, p), &st); err != nil {
			t.Fatalf("lstat %s: %v", p, err)
		}
		buf := make([]byte, 64)
		n, err := unix.Lgetxattr(filepath.Join(root, p), rootlessXattr, buf)
		x := ""
		if err == nil {
			x = fmt.Sprintf("%x", buf[:n])
		}
		m[p] = ownerInfo{st.Uid, st.Gid, st.Mode & 0o7777, x}
	}
	return m
}

var ownerPaths = []string{"d", "d/f", "d/new", "suid", "suid-user", "link", "pipe", "far", "redeclared", "ro"}

func xattrHex(uid, gid uint32) string { return fmt.Sprintf("%x", encodeRootless(uid, gid)) }

// TestUnpackChown applies owners with Options.Chown. As root every id is
// applied; unprivileged (TestUnprivileged re-runs it as uid 65534), chown
// is refused (EPERM), which must not fail the unpack: owners are recorded
// in the xattr as without Chown.
func TestUnpackChown(t *testing.T) {
	_, root := newRoot(t)
	xattrs := unix.Setxattr(root, "user.probe", []byte("x"), 0) == nil
	ls := ownersLayers(t)
	layers := []Layer{plainLayer(0, ls[0]), plainLayer(1, ls[1])}
	if _, err := UnpackLayers(t.Context(), root, layers, Options{Chown: true}); err != nil {
		t.Fatal(err)
	}
	got := ownersOf(t, root, ownerPaths...)
	if os.Geteuid() == 0 {
		want := map[string]ownerInfo{
			"d":          {1000, 1000, 0o2775, ""},
			"d/f":        {1000, 1001, 0o640, ""},
			"d/new":      {1002, 1002, 0o644, ""},
			"suid":       {0, 0, 0o4755, ""},
			"suid-user":  {1000, 1000, 0o6755, ""},
			"link":       {1000, 1000, 0o777, ""},
			"pipe":       {1000, 1000, 0o620, ""},
			"far":        {70000, 70001, 0o644, ""},
			"redeclared": {0, 0, 0o755, ""},
			"ro":         {1000, 1000, 0o400, ""},
		}
		for p, w := range want {
			if got[p] != w {
				t.Errorf("%s: got %+v, want %+v", p, got[p], w)
			}
		}
		return
	}
	// Unprivileged: everything is ours, the owners are in the xattr.
	uid, gid := uint32(os.Geteuid()), uint32(os.Getegid())
	for p, w := range map[string]string{
		"d": xattrHex(1000, 1000), "d/f": xattrHex(1000, 1001), "d/new": xattrHex(1002, 1002),
		"suid": "", "suid-user": xattrHex(1000, 1000), "far": xattrHex(70000, 70001),
		"redeclared": "", "ro": xattrHex(1000, 1000),
	} {
		g := got[p]
		if g.UID != uid || g.GID != gid {
			t.Errorf("%s: owner %d:%d, want %d:%d", p, g.UID, g.GID, uid, gid)
		}
		if xattrs && g.Xattr != w {
			t.Errorf("%s: xattr %q, want %q", p, g.Xattr, w)
		}
	}
	if got["suid-user"].Mode != 0o6755 || got["d"].Mode != 0o2775 {
		t.Errorf("modes: suid-user %o, d %o", got["suid-user"].Mode, got["d"].Mode)
	}
}

// TestUnpackChownUnmapped unpacks with Chown in a user namespace that maps
// ids 0..65536 to themselves (as xrun's helper does with a subordinate
// range): ids beyond are not mapped, chown fails with EINVAL, and the
// owner is recorded in the xattr instead. Needs root (to write the maps).
func TestUnpackChownUnmapped(t *testing.T) {
	if dir := os.Getenv("XRUN_TEST_CHOWN_CHILD"); dir != "" {
		ls := ownersLayers(t)
		st, err := UnpackLayers(context.Background(), dir, []Layer{plainLayer(0, ls[0]), plainLayer(1, ls[1])}, Options{Chown: true})
		if err != nil {
			t.Fatal(err)
		}
		json.NewEncoder(os.Stdout).Encode(st)
		return
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root to map ids in a user namespace")
	}
	_, root := newRoot(t)
	if err := unix.Setxattr(root, "user.probe", []byte("x"), 0); err != nil {
		t.Skipf("user xattrs not supported on %s: %v", root, err)
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.CommandContext(t.Context(), exe, "-test.run=^TestUnpackChownUnmapped$", "-test.count=1")
	cmd.Env = append(os.Environ(), "XRUN_TEST_CHOWN_CHILD="+root)
	m := []syscall.SysProcIDMap{{ContainerID: 0, HostID: 0, Size: 65537}}
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWUSER, UidMappings: m, GidMappings: m}
	if out, err := cmd.CombinedOutput(); err != nil {
		testutil.SkipOrFail(t, "%s", fmt.Sprintf("unpack in a user namespace: %v\n%s", err, out))
	}
	got := ownersOf(t, root, ownerPaths...)
	for p, w := range map[string]ownerInfo{
		"d/f":       {1000, 1001, 0o640, ""},
		"suid-user": {1000, 1000, 0o6755, ""},
		"far":       {0, 0, 0o644, xattrHex(70000, 70001)},
	} {
		if got[p] != w {
			t.Errorf("%s: got %+v, want %+v", p, got[p], w)
		}
	}
}

// TestUnpackRedeclaredDirXattr: a directory whose owner layer 1 recorded
// and layer 2 re-declares as root loses the stale xattr.
func TestUnpackRedeclaredDirXattr(t *testing.T) {
	_, root := newRoot(t)
	if err := unix.Setxattr(root, "user.probe", []byte("x"), 0); err != nil {
		t.Skipf("user xattrs not supported on %s: %v", root, err)
	}
	ls := ownersLayers(t)
	if err := unpackAll(t, root, ls...); err != nil {
		t.Fatal(err)
	}
	got := ownersOf(t, root, "redeclared", "d")
	if got["redeclared"].Xattr != "" {
		t.Errorf("redeclared: stale xattr %q", got["redeclared"].Xattr)
	}
	if got["d"].Xattr != xattrHex(1000, 1000) {
		t.Errorf("d: xattr %q", got["d"].Xattr)
	}
}

// TestEnsureUnpacker: with InUserNS, Ensure fills the temp dir with its unpacker,
// publishes what it wrote and its stats, and falls back to the in-process
// unpacker when it is unavailable.
func TestEnsureUnpacker(t *testing.T) {
	b := mkLayer(t, reg("f", "in-process\n", 0o644))
	t.Run("used", func(t *testing.T) {
		c := newCache(t)
		var calls atomic.Int32
		un := func(ctx context.Context, dir string, layers []Layer, opts Options) (Stats, error) {
			calls.Add(1)
			if !strings.HasPrefix(filepath.Base(dir), tmpPrefix+testKey+"-") || opts.MaxBytes != DefaultMaxBytes || len(layers) != 1 {
				return Stats{}, fmt.Errorf("unexpected call: %s %d %d", dir, opts.MaxBytes, len(layers))
			}
			return Stats{Files: 1, Bytes: 9}, os.WriteFile(filepath.Join(dir, "f"), []byte("unpacker\n"), 0o644)
		}
		dir, err := c.Ensure(t.Context(), testKey, []Layer{blobLayer("x", b, b, "", nil)}, Options{InUserNS: true, unpacker: un})
		if err != nil {
			t.Fatal(err)
		}
		if got, _ := os.ReadFile(filepath.Join(dir, "f")); string(got) != "unpacker\n" || calls.Load() != 1 {
			t.Errorf("f = %q after %d calls", got, calls.Load())
		}
		if inf, err := c.Info(testKey); err != nil || inf.Files != 1 || inf.Bytes != 9 {
			t.Errorf("Info = %+v, %v", inf, err)
		}
		assertNoTmp(t, c)
	})
	t.Run("unavailable", func(t *testing.T) {
		c := newCache(t)
		var opens atomic.Int32
		un := func(context.Context, string, []Layer, Options) (Stats, error) {
			return Stats{}, fmt.Errorf("%w: no range", ErrUnpackerUnavailable)
		}
		dir, err := c.Ensure(t.Context(), testKey, []Layer{blobLayer("x", b, b, "", &opens)}, Options{InUserNS: true, unpacker: un})
		if err != nil {
			t.Fatal(err)
		}
		if got, _ := os.ReadFile(filepath.Join(dir, "f")); string(got) != "in-process\n" || opens.Load() != 1 {
			t.Errorf("f = %q, layer opened %d times", got, opens.Load())
		}
	})
}

// TestEnsureUnpackerFails: a failing unpacker publishes nothing and leaves
// no temp dir; what RemoveAll is refused (files of subordinate ids) goes to
// the cache's removal in a user namespace, in Ensure's clean-up and in Remove.
func TestEnsureUnpackerFails(t *testing.T) {
	b := mkLayer(t, reg("f", "x", 0o644))
	boom := errors.New("boom")
	c := newCache(t)
	var removed []string
	c.removeInNS = func(dir string) error {
		removed = append(removed, filepath.Base(dir))
		return fsutil.RemoveAll(dir)
	}
	// RemoveAll refuses trees holding a file named "foreign", as it would
	// one owned by a subordinate id.
	orig := removeAll
	removeAll = func(p string) error {
		if _, err := os.Lstat(filepath.Join(p, "foreign")); err == nil {
			return &os.PathError{Op: "remove", Path: p, Err: unix.EACCES}
		}
		return orig(p)
	}
	t.Cleanup(func() { removeAll = orig })
	un := func(ctx context.Context, dir string, layers []Layer, opts Options) (Stats, error) {
		os.WriteFile(filepath.Join(dir, "foreign"), []byte("x"), 0o644)
		return Stats{}, boom
	}
	_, err := c.Ensure(t.Context(), testKey, []Layer{blobLayer("x", b, b, "", nil)}, Options{InUserNS: true, unpacker: un})
	if !errors.Is(err, boom) {
		t.Fatalf("Ensure error = %v, want boom", err)
	}
	if c.Has(testKey) {
		t.Errorf("published after failure")
	}
	assertNoTmp(t, c)
	if len(removed) != 1 || !strings.HasPrefix(removed[0], tmpPrefix+testKey+"-") {
		t.Errorf("namespace removals: %q", removed)
	}

	// Published, then removed: the removal in a namespace finishes the job.
	removed = nil
	un = func(ctx context.Context, dir string, layers []Layer, opts Options) (Stats, error) {
		return Stats{}, os.WriteFile(filepath.Join(dir, "foreign"), []byte("x"), 0o644)
	}
	if _, err := c.Ensure(t.Context(), testKey, []Layer{blobLayer("x", b, b, "", nil)}, Options{InUserNS: true, unpacker: un}); err != nil {
		t.Fatal(err)
	}
	if err := c.Remove(testKey); err != nil {
		t.Fatalf("Remove: %v", err)
	}
	if c.Has(testKey) || len(removed) != 1 {
		t.Errorf("after Remove: published %v, namespace removals %q", c.Has(testKey), removed)
	}
	assertNoTmp(t, c)

	// When that removal fails too, the refusal is the error.
	c.removeInNS = func(string) error { return userns.ErrNotServed }
	if _, err := c.Ensure(t.Context(), testKey, []Layer{blobLayer("x", b, b, "", nil)}, Options{InUserNS: true, unpacker: un}); err != nil {
		t.Fatal(err)
	}
	if err := c.Remove(testKey); !errors.Is(err, os.ErrPermission) {
		t.Errorf("Remove without a namespace = %v, want a permission error", err)
	}
	removeAll = orig
	c.CleanTemp()
	assertNoTmp(t, c)
}
