//go:build integration

package integration

import (
	"encoding/hex"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"

	"golang.org/x/sys/unix"
)

// Issue 3: an image whose files have owners other than root keeps them
// when the user has a subordinate id range (unpacked in a user namespace
// with a run's mapping), and is owned by the user with the owners recorded
// in the user.rootlesscontainers xattr otherwise. Either way the cache
// works, and xrun rmi and prune remove the rootfs.

var ownersImage struct {
	once sync.Once
	ref  string
	err  error
}

// needOwnersImage pushes testimage.OwnersRepo (owners.go there) once and returns its reference.
func needOwnersImage(t *testing.T) string {
	t.Helper()
	needImages(t)
	ownersImage.once.Do(func() { ownersImage.ref, ownersImage.err = h.images.PushOwners(h.reg.addr) })
	if ownersImage.err != nil {
		t.Fatalf("push the owners image: %v", ownersImage.err)
	}
	return ownersImage.ref
}

// ownersCache is a fresh XRUN_CACHE owned by u, so that this test's rootfs
// is the only one in it.
func ownersCache(t *testing.T, u *testUser) (dir string, env []string) {
	t.Helper()
	d, err := os.MkdirTemp(h.base, "owners-cache-")
	if err != nil {
		t.Fatal(err)
	}
	if err := mkdirOwned(d, u); err != nil {
		t.Fatal(err)
	}
	return d, []string{"XRUN_CACHE=" + d}
}

func parseLs(t *testing.T, out string) map[string]string {
	t.Helper()
	m := map[string]string{}
	for l := range strings.Lines(out) {
		f := strings.Fields(l)
		if len(f) < 5 {
			continue
		}
		m[f[len(f)-1]] = f[0] + " " + f[2] + " " + f[3]
	}
	return m
}

// rootfsDir returns the only unpacked rootfs of cache.
func rootfsDir(t *testing.T, cache string) string {
	t.Helper()
	var dirs []string
	ents, _ := os.ReadDir(filepath.Join(cache, "rootfs"))
	for _, e := range ents {
		if e.IsDir() && !strings.HasPrefix(e.Name(), ".") {
			dirs = append(dirs, filepath.Join(cache, "rootfs", e.Name()))
		}
	}
	if len(dirs) != 1 {
		t.Fatalf("unpacked rootfs in %s: %q, want one", cache, dirs)
	}
	return dirs[0]
}

// hostOwner returns "UID:GID MODE XATTR" of p on the host (XATTR: the hex
// of user.rootlesscontainers, "-" if none).
func hostOwner(t *testing.T, p string) string {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Lstat(p, &st); err != nil {
		t.Fatalf("lstat %s: %v", p, err)
	}
	x := "-"
	buf := make([]byte, 64)
	if n, err := unix.Lgetxattr(p, "user.rootlesscontainers", buf); err == nil {
		x = hex.EncodeToString(buf[:n])
	}
	return strings.Join([]string{itoa(st.Uid) + ":" + itoa(st.Gid), octal(st.Mode & 0o7777), x}, " ")
}

func itoa(n uint32) string  { return strconv.FormatUint(uint64(n), 10) }
func octal(n uint32) string { return strconv.FormatUint(uint64(n), 8) }

// rootlessXattr is the hex of the rootlesscontainers protobuf for uid:gid.
func rootlessXattr(uid, gid uint64) string {
	var b []byte
	put := func(tag byte, v uint64) {
		if v == 0 {
			return
		}
		b = append(b, tag)
		for v >= 0x80 {
			b = append(b, byte(v)|0x80)
			v >>= 7
		}
		b = append(b, byte(v))
	}
	put(0x08, uid)
	put(0x10, gid)
	return hex.EncodeToString(b)
}

var ownerPaths = []string{
	"/home/xrunuser", "/home/xrunuser/notes", "/usr/bin/setuid-root", "/usr/bin/setgid-staff",
	"/opt/ro", "/opt/ro/ro-file", "/var/spool/private", "/var/far",
}

// inImage lists the owners seen inside a container, and checks what the
// top layer deleted and added.
func inImage(t *testing.T, o opts, ref string) map[string]string {
	t.Helper()
	script := "ls -lnd " + strings.Join(ownerPaths, " ") +
		" && cat /etc/added && ! ls /etc/removed 2>/dev/null && ! ls /home/xrunuser/gone 2>/dev/null"
	stdout, _, code := run(t, o, ref, "--", "sh", "-c", script)
	if code != 0 {
		t.Fatalf("listing the image's owners failed: exit %d", code)
	}
	if !strings.Contains(stdout, "layer3\n") {
		t.Errorf("/etc/added of the top layer is missing: %q", stdout)
	}
	return parseLs(t, stdout)
}

func checkLs(t *testing.T, got, want map[string]string) {
	t.Helper()
	for p, w := range want {
		if got[p] != w {
			t.Errorf("inside, %s: %q, want %q", p, got[p], w)
		}
	}
}

// removeImage checks that xrun rmi, then (for a rootfs no record refers
// to) xrun prune, remove the rootfs as the user.
func removeImage(t *testing.T, o opts, cache, ref string) {
	t.Helper()
	dir := rootfsDir(t, cache)
	if _, _, code := run(t, o, "rmi", ref); code != 0 {
		t.Fatalf("xrun rmi failed: exit %d", code)
	}
	if _, err := os.Lstat(dir); !os.IsNotExist(err) {
		t.Errorf("after xrun rmi, %s: %v (want it gone)", dir, err)
	}
	// Unpack it again, then forget its record: prune must remove it.
	if _, _, code := run(t, o, "pull", ref); code != 0 {
		t.Fatalf("xrun pull failed: exit %d", code)
	}
	dir = rootfsDir(t, cache)
	idx, _ := filepath.Glob(filepath.Join(cache, "index", "*"))
	for _, p := range idx {
		os.RemoveAll(p)
	}
	if _, _, code := run(t, o, "prune"); code != 0 {
		t.Fatalf("xrun prune failed: exit %d", code)
	}
	if _, err := os.Lstat(dir); !os.IsNotExist(err) {
		t.Errorf("after xrun prune, %s: %v (want it gone)", dir, err)
	}
	ents, _ := os.ReadDir(filepath.Join(cache, "rootfs"))
	for _, e := range ents {
		if e.IsDir() {
			t.Errorf("left in the rootfs cache: %s", e.Name())
		}
	}
}

func TestOwnersWithSubIDs(t *testing.T) {
	u := needUser(t, subUserName)
	ref := needOwnersImage(t)
	cache, env := ownersCache(t, u)
	o := opts{user: u, env: env}
	if _, _, code := run(t, o, "pull", ref); code != 0 {
		t.Fatalf("xrun pull failed: exit %d", code)
	}
	checkLs(t, inImage(t, o, ref), map[string]string{
		"/home/xrunuser":        "drwxr-x--- 1000 1000",
		"/home/xrunuser/notes":  "-rw-r----- 1000 1000",
		"/usr/bin/setuid-root":  "-rwsr-xr-x 0 0",
		"/usr/bin/setgid-staff": "-rwxr-sr-x 0 50",
		"/opt/ro":               "dr-xr-xr-x 1000 1000",
		"/opt/ro/ro-file":       "-r--r--r-- 1000 1000",
		"/var/spool/private":    "drwx------ 100 101",
		"/var/far":              "-rw-r--r-- 0 0", // beyond the mapped ids: the user's, recorded
	})
	// The owners are real: user 1000 reads its 0640 file and writes in its home.
	if stdout, _, code := run(t, o, "--user", "1000:1000", ref, "--", "sh", "-c",
		"cat /home/xrunuser/notes && touch /home/xrunuser/new && id -u"); code != 0 || stdout != "notes\n1000\n" {
		t.Errorf("as user 1000 in the container: exit %d, %q", code, stdout)
	}

	// On the host: id N of the image is subordinate id START+N-1.
	subG, _, okG := subRange("/etc/subgid", u.name, u.uid)
	if !okG {
		t.Fatalf("%s has no subgid range", u.name)
	}
	sub := func(id, start int) string { return itoa(uint32(start + id - 1)) }
	dir := rootfsDir(t, cache)
	user := itoa(uint32(u.uid)) + ":" + itoa(uint32(u.gid))
	for p, want := range map[string]string{
		"home/xrunuser/notes":  sub(1000, u.subStart) + ":" + sub(1000, subG) + " 640 -",
		"usr/bin/setuid-root":  user + " 4755 -",
		"usr/bin/setgid-staff": itoa(uint32(u.uid)) + ":" + sub(50, subG) + " 2755 -",
		"opt/ro":               sub(1000, u.subStart) + ":" + sub(1000, subG) + " 555 -",
		"var/spool/private":    sub(100, u.subStart) + ":" + sub(101, subG) + " 700 -",
		"var/far":              user + " 644 " + rootlessXattr(100000, 100000),
	} {
		if got := hostOwner(t, filepath.Join(dir, p)); got != want {
			t.Errorf("on the host, %s: %q, want %q", p, got, want)
		}
	}
	removeImage(t, o, cache, ref)
}

func TestOwnersWithoutSubIDs(t *testing.T) {
	u := needUser(t, noSubUserName)
	ref := needOwnersImage(t)
	cache, env := ownersCache(t, u)
	o := opts{user: u, env: env}
	checkLs(t, inImage(t, o, ref), map[string]string{
		"/home/xrunuser":        "drwxr-x--- 0 0",
		"/home/xrunuser/notes":  "-rw-r----- 0 0",
		"/usr/bin/setuid-root":  "-rwsr-xr-x 0 0",
		"/usr/bin/setgid-staff": "-rwxr-sr-x 0 0",
		"/opt/ro":               "dr-xr-xr-x 0 0",
		"/var/spool/private":    "drwx------ 0 0",
	})
	dir := rootfsDir(t, cache)
	user := itoa(uint32(u.uid)) + ":" + itoa(uint32(u.gid))
	for p, want := range map[string]string{
		"home/xrunuser/notes":  user + " 640 " + rootlessXattr(1000, 1000),
		"usr/bin/setuid-root":  user + " 4755 -",
		"usr/bin/setgid-staff": user + " 2755 " + rootlessXattr(0, 50),
		"var/spool/private":    user + " 700 " + rootlessXattr(100, 101),
		"var/far":              user + " 644 " + rootlessXattr(100000, 100000),
	} {
		if got := hostOwner(t, filepath.Join(dir, p)); got != want {
			t.Errorf("on the host, %s: %q, want %q", p, got, want)
		}
	}
	// The cache works: a second run uses it.
	if stdout, _, code := run(t, o, "--pull", "never", ref, "--", "cat", "/home/xrunuser/notes"); code != 0 || stdout != "notes\n" {
		t.Errorf("cached run: exit %d, %q", code, stdout)
	}
	removeImage(t, o, cache, ref)
}
