//go:build integration

package integration

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// cacheHome is a fresh home of u laid out as a real user's: HOME, a cache
// at the default place (~/.cache/xrun, through XRUN_CACHE so that the
// harness's own cache is not used) and a run root under
// XDG_RUNTIME_DIR=~/run, so that both are inside the directory a run
// started from HOME binds.
type cacheHome struct {
	home, cache, runtime string
	env                  []string
}

func newCacheHome(t *testing.T, u *testUser) cacheHome {
	t.Helper()
	home := workDir(t, u) // 0755, owned by u: a world-traversable home
	c := cacheHome{home: home, cache: filepath.Join(home, ".cache", "xrun"), runtime: filepath.Join(home, "run")}
	for _, d := range []string{filepath.Join(home, ".cache"), c.runtime} {
		if err := mkdirOwned(d, u); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chmod(c.runtime, 0o700); err != nil {
		t.Fatal(err)
	}
	c.env = []string{"HOME=" + home, "XRUN_CACHE=" + c.cache, "XDG_RUNTIME_DIR=" + c.runtime}
	return c
}

// rootfsFile returns the one cached rootfs's path of rel and its content.
func (c cacheHome) rootfsFile(t *testing.T, rel string) (string, string) {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(c.cache, "rootfs", "*", rel))
	if err != nil || len(m) != 1 {
		t.Fatalf("cached %s: %v %v, want one", rel, m, err)
	}
	b, err := os.ReadFile(m[0])
	if err != nil {
		t.Fatal(err)
	}
	return m[0], string(b)
}

// TestCacheNotWritableFromContainer is the attack of issue 13 item 3: a
// container started from HOME (the current directory is bound read-write at
// its own path) or given a volume that holds the cache or the run root
// tries to rewrite the cached rootfs (which every later run trusts), plant
// a file in the cache, and plant a file in the run root. Afterwards the
// cached rootfs must be unchanged and the next run must see the image's
// own /etc/passwd.
func TestCacheNotWritableFromContainer(t *testing.T) {
	for _, user := range testUsers {
		t.Run(user, func(t *testing.T) { testCacheNotWritable(t, user) })
	}
}

func testCacheNotWritable(t *testing.T, user string) {
	p := platformByName("linux/amd64")
	u := needRun(t, user, p)
	c := newCacheHome(t, u)
	img := h.reg.ref(busyboxRepo)
	xrun := func(t *testing.T, dir string, args ...string) (string, string, int) {
		t.Helper()
		return run(t, opts{user: u, dir: dir, env: c.env}, append([]string{"--platform", p.Name}, args...)...)
	}
	if _, _, code := xrun(t, c.home, "pull", img); code != 0 {
		t.Fatalf("pull: exit %d", code)
	}
	passwd, orig := c.rootfsFile(t, "etc/passwd")
	runRoot := filepath.Join(c.runtime, "xrun")

	// attack writes through the container's view of the cache at cache
	// and of the run root at runRoot.
	attack := func(cache, runRoot string) string {
		return strings.NewReplacer("CACHE", cache, "RUNROOT", runRoot).Replace(
			`for f in CACHE/rootfs/*/etc/passwd; do echo pwned > "$f"; done; ` +
				`echo pwned > CACHE/planted; mkdir -p RUNROOT/planted; ` +
				`ls -la CACHE CACHE/rootfs RUNROOT; true`)
	}
	other := workDir(t, u)
	cases := []struct {
		name       string
		dir        string   // where xrun is started
		args       []string // before the image
		cache, run string   // the cache and run root as the container sees them
	}{
		{"cwd is HOME", c.home, nil, c.cache, runRoot},
		{"-v HOME:HOME", other, []string{"-v", c.home + ":" + c.home}, c.cache, runRoot},
		{"-v HOME:/h", other, []string{"-v", c.home + ":/h"}, "/h/.cache/xrun", "/h/run/xrun"},
		{"-v HOME/.cache:/c", other, []string{"-v", filepath.Join(c.home, ".cache") + ":/c"}, "/c/xrun", "/nonexistent"},
		{"-v HOME:HOME:ro", other, []string{"-v", c.home + ":" + c.home + ":ro"}, c.cache, runRoot},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			args := append(append([]string{}, tc.args...), img, "--", "sh", "-c", attack(tc.cache, tc.run))
			xrun(t, tc.dir, args...)
			stdout, _, code := xrun(t, other, "--pull=never", img, "--", "cat", "/etc/passwd")
			if code != 0 || stdout != orig {
				t.Errorf("next run: /etc/passwd %q (exit %d), want the image's %q", stdout, code, orig)
			}
			if _, got := c.rootfsFile(t, "etc/passwd"); got != orig {
				t.Errorf("the container rewrote the cached %s: %q (was %q)", passwd, got, orig)
				if err := os.WriteFile(passwd, []byte(orig), 0o644); err != nil { // for the next case
					t.Fatal(err)
				}
			}
			for _, f := range []string{filepath.Join(c.cache, "planted"), filepath.Join(runRoot, "planted")} {
				if _, err := os.Lstat(f); err == nil {
					t.Errorf("the container planted %s", f)
					_ = os.RemoveAll(f)
				}
			}
		})
	}

	// A volume inside the cache is refused unless read-only; a current
	// directory inside it is not bound.
	t.Run("-v CACHE/rootfs:/r", func(t *testing.T) {
		_, stderr, code := xrun(t, other, "-v", filepath.Join(c.cache, "rootfs")+":/r", img, "--", "sh", "-c", "for f in /r/*/etc/passwd; do echo pwned > $f; done")
		wantXrunError(t, stderr, code, "cache", ":ro")
		if _, got := c.rootfsFile(t, "etc/passwd"); got != orig {
			t.Errorf("the container rewrote the cached %s: %q", passwd, got)
			_ = os.WriteFile(passwd, []byte(orig), 0o644)
		}
		stdout, _, code := xrun(t, other, "-v", filepath.Join(c.cache, "rootfs")+":/r:ro", img, "--", "sh", "-c", "cat /r/*/etc/passwd")
		if code != 0 || stdout != orig {
			t.Errorf("read-only volume of the cache: %q (exit %d), want %q", stdout, code, orig)
		}
	})
	t.Run("cwd inside the cache", func(t *testing.T) {
		xrun(t, filepath.Dir(passwd), img, "--", "sh", "-c", "echo pwned > "+passwd+"; echo pwned > passwd")
		if _, got := c.rootfsFile(t, "etc/passwd"); got != orig {
			t.Errorf("the container rewrote the cached %s: %q", passwd, got)
			_ = os.WriteFile(passwd, []byte(orig), 0o644)
		}
	})
}

// TestCacheNotReadableByOthers is the attack of issue 13 item 8: another
// local user reads the layers of the images the victim pulled (possibly
// private ones) through a world-traversable home. The victim's cache must
// be private (0700) whether xrun creates it or finds one an older xrun
// left at the default path with mode 0755.
func TestCacheNotReadableByOthers(t *testing.T) {
	p := platformByName("linux/amd64")
	victim := needRun(t, subUserName, p)
	attacker := needUser(t, noSubUserName)
	img := h.reg.ref(busyboxRepo)
	for _, tc := range []struct {
		name     string
		existing bool // an older xrun's cache (0755 dirs) is already there
	}{{"new cache", false}, {"cache of an older xrun", true}} {
		t.Run(tc.name, func(t *testing.T) {
			c := newCacheHome(t, victim)
			if err := os.Chmod(c.home, 0o711); err != nil {
				t.Fatal(err)
			}
			env := c.env
			if tc.existing {
				for _, d := range []string{c.cache, filepath.Join(c.cache, "blobs"), filepath.Join(c.cache, "locks")} {
					if err := mkdirOwned(d, victim); err != nil { // 0755, as older versions made them
						t.Fatal(err)
					}
				}
				// The default path: XRUN_CACHE unset, XDG_CACHE_HOME unset.
				env = append(env, "XRUN_CACHE=")
			}
			if _, _, code := run(t, opts{user: victim, dir: c.home, env: env}, "pull", "--platform", p.Name, img); code != 0 {
				t.Fatalf("pull: exit %d", code)
			}
			blobs, _ := filepath.Glob(filepath.Join(c.cache, "blobs", "sha256", "*"))
			if len(blobs) == 0 {
				t.Fatalf("no blobs in %s", c.cache)
			}
			if st, err := os.Stat(c.cache); err != nil || st.Mode().Perm()&0o077 != 0 {
				t.Errorf("cache %s: %v %v, want no access for others", c.cache, st.Mode(), err)
			}
			script := `ls ` + filepath.Join(c.cache, "blobs", "sha256") + `; for f in ` + strings.Join(blobs, " ") +
				`; do cat "$f" > /dev/null && echo "read $f"; done; true`
			stdout, stderr, _ := runAs(t, opts{user: attacker, dir: "/"}, "/bin/sh", "-c", script)
			if strings.Contains(stdout, "read ") || strings.Contains(stdout, filepath.Base(blobs[0])) {
				t.Errorf("user %s read %s's cache:\n%s%s", attacker, victim, stdout, stderr)
			}
		})
	}
}
