package config

import (
	"crypto/sha256"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// fakeInfo is a FileInfo with the owner and mode a test wants.
type fakeInfo struct {
	mode fs.FileMode
	st   syscall.Stat_t
}

func (f fakeInfo) Name() string       { return "x" }
func (f fakeInfo) Size() int64        { return 0 }
func (f fakeInfo) Mode() fs.FileMode  { return f.mode }
func (f fakeInfo) ModTime() time.Time { return time.Time{} }
func (f fakeInfo) IsDir() bool        { return f.mode.IsDir() }
func (f fakeInfo) Sys() any           { return &f.st }

func info(uid uint32, perm uint32, dir bool) fakeInfo {
	m := fs.FileMode(perm & 0o777)
	if perm&0o1000 != 0 {
		m |= fs.ModeSticky
	}
	if dir {
		m |= fs.ModeDir
	}
	return fakeInfo{mode: m, st: syscall.Stat_t{Uid: uid, Mode: perm}}
}

func TestUnsafeReason(t *testing.T) {
	const me, other = 1000, 1001
	for _, tc := range []struct {
		name string
		fi   fakeInfo
		dir  string
		want string // substring; "" means safe
	}{
		{"mine", info(me, 0o644, false), "", ""},
		{"root's", info(0, 0o644, false), "", ""},
		{"mine, read-only", info(me, 0o400, false), "", ""},
		{"another user's", info(other, 0o644, false), "", "owned by uid 1001, not by you or root"},
		{"group-writable", info(me, 0o664, false), "", "writable by others (mode 0664)"},
		{"world-writable", info(me, 0o646, false), "", "writable by others (mode 0646)"},
		{"root's but world-writable", info(0, 0o666, false), "", "writable by others"},
		{"my directory", info(me, 0o755, true), "/p", ""},
		{"root's directory", info(0, 0o755, true), "/p", ""},
		{"another user's directory", info(other, 0o755, true), "/p", "in /p, which is owned by uid 1001"},
		{"/tmp: sticky is no exception", info(0, 0o1777, true), "/tmp", "in /tmp, which is writable by others (mode 1777)"},
		{"my sticky directory", info(me, 0o1777, true), "/t", "writable by others"},
		{"group-writable directory", info(me, 0o2775, true), "/g", "in /g, which is writable by others (mode 2775)"},
	} {
		got := unsafeReason(tc.fi, me, tc.dir)
		if tc.want == "" && got != "" || tc.want != "" && !strings.Contains(got, tc.want) {
			t.Errorf("%s: unsafeReason = %q, want %q", tc.name, got, tc.want)
		}
	}
}

func mkdir(t *testing.T, parts ...string) string {
	t.Helper()
	d := filepath.Join(parts...)
	if err := os.MkdirAll(d, 0o755); err != nil {
		t.Fatal(err)
	}
	return d
}

// TestFindStops checks that the search ends at a repository root and at
// home, and never reads a file above them.
func TestFindStops(t *testing.T) {
	root := t.TempDir()
	above := write(t, root, "image: above\n")
	repo := mkdir(t, root, "repo")
	sub := mkdir(t, repo, "src", "lib")
	if got := Find(sub, ""); got != above {
		t.Fatalf("without .git: Find = %q, want %q", got, above)
	}
	mkdir(t, repo, ".git")
	if got := Find(sub, ""); got != "" {
		t.Errorf("Find stopped at no repository root: got %q", got)
	}
	inRepo := write(t, repo, "image: repo\n")
	if got := Find(sub, ""); got != inRepo {
		t.Errorf("Find = %q, want the repository's %q", got, inRepo)
	}
	// A .git file (a worktree or submodule) is a repository root too.
	wt := mkdir(t, root, "wt")
	if err := os.WriteFile(filepath.Join(wt, ".git"), []byte("gitdir: /elsewhere\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if got := Find(mkdir(t, wt, "x"), ""); got != "" {
		t.Errorf("Find above a .git file = %q, want \"\"", got)
	}
	// Home stops the search, whichever way it is spelled.
	home := mkdir(t, root, "home")
	link := filepath.Join(root, "home-link")
	if err := os.Symlink(home, link); err != nil {
		t.Fatal(err)
	}
	proj := mkdir(t, home, "proj", "deep")
	for _, h := range []string{home, link, home + "/"} {
		if got := Find(proj, h); got != "" {
			t.Errorf("Find with home %q = %q, want \"\" (the file above home)", h, got)
		}
	}
	inHome := write(t, home, "image: home\n")
	if got := Find(proj, home); got != inHome {
		t.Errorf("Find = %q, want the file in home %q", got, inHome)
	}
}

// TestDiscoverIgnores checks, on real files, that a file others could
// have written is ignored with the reason, and used once trusted.
func TestDiscoverIgnores(t *testing.T) {
	uid := os.Geteuid()
	pol := Policy{UID: uid}
	const attack = "image: evil\nvolumes: [/:/host]\nenv: [LD_PRELOAD=/x.so]\n"

	// A shared directory like /tmp: world-writable and sticky.
	shared := mkdir(t, t.TempDir(), "shared")
	if err := syscall.Chmod(shared, 0o1777); err != nil {
		t.Fatal(err)
	}
	p := write(t, shared, attack)
	work := mkdir(t, shared, "work")
	found, err := Discover(work, pol)
	if err != nil || found.File != nil || found.Ignored != p || !strings.Contains(found.Why, "writable by others (mode 1777)") {
		t.Errorf("file in a sticky shared directory: Discover = %+v, %v; want it ignored", found, err)
	}

	// A world-writable file in a private directory.
	dir := t.TempDir()
	p2 := write(t, dir, "image: x\n")
	if err := os.Chmod(p2, 0o666); err != nil {
		t.Fatal(err)
	}
	if found, err := Discover(dir, pol); err != nil || found.File != nil || !strings.Contains(found.Why, "writable by others (mode 0666)") {
		t.Errorf("world-writable file: Discover = %+v, %v; want it ignored", found, err)
	}

	// Trusted (path and content), the shared file is used.
	list, err := LoadTrustList(filepath.Join(t.TempDir(), "trusted"), uid)
	if err != nil {
		t.Fatal(err)
	}
	real, _ := filepath.EvalSymlinks(p)
	if err := list.Add(real, sha256.Sum256([]byte(attack))); err != nil {
		t.Fatal(err)
	}
	pol.Trust = list
	if found, err := Discover(work, pol); err != nil || found.File == nil || !found.File.Trusted {
		t.Errorf("trusted file in a shared directory: Discover = %+v, %v; want it used, trusted", found, err)
	}
	// ... and ignored again once someone edits it.
	if err := os.WriteFile(p, []byte(attack+"# edited\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if found, err := Discover(work, pol); err != nil || found.File != nil || found.Ignored != p {
		t.Errorf("edited trusted file: Discover = %+v, %v; want it ignored", found, err)
	}

	// Another user's file (needs root to make one).
	if uid != 0 {
		t.Log("not root: cannot chown a file to another user; the owner rule is covered by TestUnsafeReason")
		return
	}
	dir = t.TempDir()
	p3 := write(t, dir, "image: x\n")
	if err := os.Chown(p3, 4242, 4242); err != nil {
		t.Fatal(err)
	}
	if found, err := Discover(dir, Policy{UID: 1000}); err != nil || found.File != nil || !strings.Contains(found.Why, "owned by uid 4242") {
		t.Errorf("another user's file: Discover = %+v, %v; want it ignored", found, err)
	}
	// The directory is root's and the file the user's: fine.
	if err := os.Chown(p3, 1000, 1000); err != nil {
		t.Fatal(err)
	}
	if found, err := Discover(dir, Policy{UID: 1000}); err != nil || found.File == nil {
		t.Errorf("the user's file in root's directory: Discover = %+v, %v; want it used", found, err)
	}
	// A file of the user's in another user's directory.
	if err := os.Chown(dir, 4242, 4242); err != nil {
		t.Fatal(err)
	}
	if found, err := Discover(dir, Policy{UID: 1000}); err != nil || found.File != nil || !strings.Contains(found.Why, "which is owned by uid 4242") {
		t.Errorf("a file in another user's directory: Discover = %+v, %v; want it ignored", found, err)
	}
}

// TestDiscoverFIFO checks that a FIFO named .xrun.yaml does not hang the
// search (it is not a regular file, so it is not a candidate).
func TestDiscoverFIFO(t *testing.T) {
	dir := t.TempDir()
	if err := syscall.Mkfifo(filepath.Join(dir, FileName), 0o644); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if found, err := Discover(dir, Policy{UID: os.Geteuid(), Home: dir}); err != nil || found.File != nil {
			t.Errorf("Discover with a FIFO = %+v, %v", found, err)
		}
		if _, err := OpenFile(filepath.Join(dir, FileName), Policy{UID: os.Geteuid()}); err == nil || !strings.Contains(err.Error(), "not a regular file") {
			t.Errorf("OpenFile of a FIFO: %v, want not a regular file", err)
		}
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Discover hangs on a FIFO")
	}
}

func TestTrustList(t *testing.T) {
	uid := os.Geteuid()
	path := filepath.Join(t.TempDir(), "xrun", "trusted")
	l, err := LoadTrustList(path, uid)
	if err != nil {
		t.Fatal(err)
	}
	a, b := sha256.Sum256([]byte("a")), sha256.Sum256([]byte("b"))
	if l.Trusted("/p/.xrun.yaml", a) {
		t.Error("empty list trusts a file")
	}
	if err := l.Add("/p/.xrun.yaml", a); err != nil {
		t.Fatal(err)
	}
	if err := l.Add("/q r/.xrun.yaml", b); err != nil {
		t.Fatal(err)
	}
	if err := l.Add("relative/.xrun.yaml", b); err == nil {
		t.Error("Add of a relative path succeeded")
	}
	if err := l.Save(); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("trust list mode = %v, %v; want 0600", fi.Mode(), err)
	}
	if fi, err := os.Stat(filepath.Dir(path)); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("trust list directory mode = %v, %v; want 0700", fi.Mode(), err)
	}
	l, err = LoadTrustList(path, uid)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		path string
		sum  [32]byte
		want bool
	}{
		{"/p/.xrun.yaml", a, true},
		{"/p/.xrun.yaml", b, false}, // edited: the hash differs
		{"/q r/.xrun.yaml", b, true},
		{"/other/.xrun.yaml", a, false}, // same content elsewhere
	} {
		if got := l.Trusted(tc.path, tc.sum); got != tc.want {
			t.Errorf("Trusted(%q, %x...) = %v, want %v", tc.path, tc.sum[:4], got, tc.want)
		}
	}
	if !l.Remove("/p/.xrun.yaml") || l.Remove("/p/.xrun.yaml") {
		t.Error("Remove: want true, then false")
	}
	if err := l.Save(); err != nil {
		t.Fatal(err)
	}
	if l, _ = LoadTrustList(path, uid); l.Trusted("/p/.xrun.yaml", a) || !l.Trusted("/q r/.xrun.yaml", b) {
		t.Error("after Remove and Save: wrong entries")
	}
	// Nothing left behind by the atomic writes.
	if ents, _ := os.ReadDir(filepath.Dir(path)); len(ents) != 1 {
		t.Errorf("trust list directory holds %d entries, want 1", len(ents))
	}
	// Concurrent edits under the lock lose nothing.
	done := make(chan error)
	for i := range 8 {
		go func() {
			done <- EditTrustList(path, uid, func(l *TrustList) error {
				return l.Add(fmt.Sprintf("/c/%d/.xrun.yaml", i), a)
			})
		}()
	}
	for range 8 {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
	l, _ = LoadTrustList(path, uid)
	for i := range 8 {
		if !l.Trusted(fmt.Sprintf("/c/%d/.xrun.yaml", i), a) {
			t.Errorf("concurrent EditTrustList lost entry %d", i)
		}
	}
	// A list others can write is refused, not used.
	if err := os.Chmod(path, 0o666); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadTrustList(path, uid); err == nil || !strings.Contains(err.Error(), "not a file only you can write") {
		t.Errorf("world-writable trust list: %v, want an error", err)
	}
	if _, err := LoadTrustList(path, uid+1); err == nil {
		t.Error("another user's trust list: no error")
	}
}

// TestUntrustedVolumes checks that an untrusted file binds only inside its
// directory, symbolic links resolved, and a trusted one as written.
func TestUntrustedVolumes(t *testing.T) {
	base := t.TempDir()
	proj := mkdir(t, base, "proj")
	mkdir(t, proj, "cache")
	secret := mkdir(t, base, "secret")
	for name, target := range map[string]string{"out": secret, "in": filepath.Join(proj, "cache"), "rel-out": "../secret", "dangling": filepath.Join(secret, "later")} {
		if err := os.Symlink(target, filepath.Join(proj, name)); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		vol  string
		want string // the bound source, or "!" + part of the error
	}{
		{"cache:/c", proj + "/cache:/c"},
		{"./cache:/c:ro", proj + "/cache:/c:ro"},
		{".:/src", proj + ":/src"},
		{proj + "/cache:/c", proj + "/cache:/c"},
		{"missing:/m", proj + "/missing:/m"}, // the run refuses it later
		{"in:/c", proj + "/cache:/c"},        // a link inside: bound resolved
		{"../secret:/s", "!binds " + secret + ", outside the project " + proj},
		{"../..:/h", "!outside the project"},
		{"cache/../../secret:/s", "!outside the project"},
		{secret + ":/s", "!outside the project"},
		{"/:/host", "!outside the project"},
		{"out:/s", "!binds " + secret + ", outside the project"},
		{"rel-out/x:/s", "!binds " + secret + "/x, outside the project"}, // missing, below a link out
		{"dangling:/d", "!dangling is a symbolic link to nothing: fix or remove the link"},
	} {
		p := write(t, proj, "image: x\nvolumes:\n  - "+tc.vol+"\n")
		f, err := Load(p)
		if err != nil {
			t.Fatal(err)
		}
		s, err := f.Target("")
		switch {
		case strings.HasPrefix(tc.want, "!"):
			want := p + ":3: volume"
			fix := "review the file, then run xrun config trust " + p
			if strings.Contains(tc.want, "symbolic link") {
				fix = "fix or remove the link"
			}
			if err == nil || !strings.HasPrefix(err.Error(), want) || !strings.Contains(err.Error(), tc.want[1:]) ||
				!strings.HasSuffix(err.Error(), fix) {
				t.Errorf("untrusted volume %q: %v; want an error starting %q, containing %q and naming the fix", tc.vol, err, want, tc.want[1:])
			}
		case err != nil:
			t.Errorf("untrusted volume %q: %v", tc.vol, err)
		case len(s.Volumes) != 1 || s.Volumes[0] != tc.want:
			t.Errorf("untrusted volume %q = %q, want %q", tc.vol, s.Volumes, tc.want)
		}
		// Trusted, every one is used as written (made absolute).
		f.Trusted = true
		if s, err := f.Target(""); err != nil || len(s.Volumes) != 1 {
			t.Errorf("trusted volume %q: %v, %v", tc.vol, s.Volumes, err)
		}
	}

	// A target's volumes are checked too, with the target's line.
	p := write(t, proj, "image: x\ntargets:\n  a:\n    volumes: [cache:/c]\n  b:\n    volumes:\n      - ../secret:/s\n")
	f, err := Load(p)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Target("a"); err != nil {
		t.Errorf("target a: %v", err)
	}
	if _, err := f.Target("b"); err == nil || !strings.HasPrefix(err.Error(), p+":7: ") {
		t.Errorf("target b: %v, want an error at line 7", err)
	}
}

func TestUntrustedEnv(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		env  string
		want string // "" allowed, else part of the error
	}{
		{"CC=gcc", ""},
		{"PATH=/opt/bin:/usr/bin", ""},
		{"EMPTY=", ""},
		{"HOME_TOKEN", "env: HOME_TOKEN copies your environment's value into the container, which needs a trusted file"},
		{"LD_PRELOAD=/x.so", "env: LD_PRELOAD changes how programs are loaded or emulated"},
		{"LD_LIBRARY_PATH=/x", "env: LD_LIBRARY_PATH changes how"},
		{"QEMU_GDB=1234", "env: QEMU_GDB changes how"},
	} {
		p := write(t, dir, "image: x\nenv:\n  - A=1\n  - "+tc.env+"\n")
		f, err := Load(p)
		if err != nil {
			t.Fatal(err)
		}
		_, err = f.Target("")
		if tc.want == "" {
			if err != nil {
				t.Errorf("env %q, untrusted: %v", tc.env, err)
			}
		} else if err == nil || !strings.HasPrefix(err.Error(), p+":4: "+tc.want) || !strings.HasSuffix(err.Error(), "run xrun config trust "+p) {
			t.Errorf("env %q, untrusted: %v; want %q at line 4 with the fix", tc.env, err, tc.want)
		}
		f.Trusted = true
		if s, err := f.Target(""); err != nil || len(s.Env) != 2 || s.Env[1] != tc.env {
			t.Errorf("env %q, trusted: %v, %v; want it as written", tc.env, s.Env, err)
		}
	}
}
