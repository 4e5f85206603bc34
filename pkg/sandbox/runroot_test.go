package sandbox

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/xrun-dev/xrun/pkg/fsutil"
)

// stickyTmp is a directory like /tmp: world-writable and sticky.
func stickyTmp(t *testing.T) string {
	t.Helper()
	d := t.TempDir()
	if err := unix.Chmod(d, 0o1777); err != nil {
		t.Fatal(err)
	}
	return d
}

func TestEnsureRunRootCreates(t *testing.T) {
	tmp := stickyTmp(t)
	dir := filepath.Join(tmp, "xrun-1")
	old := unix.Umask(0o277) // a strict umask leaves the owner without w and x
	err := ensureRunRoot(dir)
	unix.Umask(old)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Lstat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !fi.IsDir() || fi.Mode().Perm() != 0o700 {
		t.Errorf("created %v, want a 0700 directory", fi.Mode())
	}
	// Existing and fine: accepted as is.
	if err := ensureRunRoot(dir); err != nil {
		t.Error(err)
	}
	// A missing parent (a fresh cache) is created, private.
	nested := filepath.Join(t.TempDir(), "cache", "xrun", "run")
	if err := ensureRunRoot(nested); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(filepath.Dir(nested)); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("parent: %v %v", fi.Mode(), err)
	}
}

func TestEnsureRunRootRefuses(t *testing.T) {
	for _, tc := range []struct {
		name  string
		root  bool // needs root (chown)
		plant func(t *testing.T, tmp, dir string)
		want  string
	}{{
		name: "symlink to a directory of the user",
		plant: func(t *testing.T, tmp, dir string) {
			target := filepath.Join(tmp, "target")
			must(t, os.Mkdir(target, 0o700))
			must(t, os.Symlink(target, dir))
		},
		want: "is a symlink",
	}, {
		name: "dangling symlink",
		plant: func(t *testing.T, tmp, dir string) {
			must(t, os.Symlink(filepath.Join(tmp, "nowhere"), dir))
		},
		want: "is a symlink",
	}, {
		name: "mode 0777",
		plant: func(t *testing.T, tmp, dir string) {
			must(t, os.Mkdir(dir, 0o700))
			must(t, os.Chmod(dir, 0o777))
		},
		want: "has mode 0777",
	}, {
		name: "group-readable",
		plant: func(t *testing.T, tmp, dir string) {
			must(t, os.Mkdir(dir, 0o700))
			must(t, os.Chmod(dir, 0o750))
		},
		want: "has mode 0750",
	}, {
		name: "a file",
		plant: func(t *testing.T, tmp, dir string) {
			must(t, os.WriteFile(dir, nil, 0o600))
		},
		want: "is not a directory",
	}, {
		name: "owned by another user",
		root: true,
		plant: func(t *testing.T, tmp, dir string) {
			must(t, os.Mkdir(dir, 0o700))
			must(t, os.Chown(dir, 4242, 4242))
		},
		want: "is owned by uid 4242, not you",
	}, {
		name: "another user's symlink",
		root: true,
		plant: func(t *testing.T, tmp, dir string) {
			must(t, os.Symlink(tmp, dir))
			must(t, os.Lchown(dir, 4242, 4242))
		},
		want: "is a symlink (owned by uid 4242)",
	}} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.root && os.Geteuid() != 0 {
				t.Skip("needs root to plant another user's file")
			}
			tmp := stickyTmp(t)
			dir := filepath.Join(tmp, "xrun-1")
			tc.plant(t, tmp, dir)
			before, _ := os.Lstat(dir)
			err := ensureRunRoot(dir)
			var unsafe *unsafeRunRoot
			if !errors.As(err, &unsafe) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("ensureRunRoot = %v, want an unsafe-run-root error with %q", err, tc.want)
			}
			// Never repaired: what someone else planted stays as it was.
			after, _ := os.Lstat(dir)
			if before.Mode() != after.Mode() {
				t.Errorf("mode changed from %v to %v", before.Mode(), after.Mode())
			}
		})
	}
}

func TestEnsureRunRootParent(t *testing.T) {
	// A world-writable parent without the sticky bit: anyone could rename
	// the run root away and put their own in its place.
	open := t.TempDir()
	must(t, os.Chmod(open, 0o777))
	if err := ensureRunRoot(filepath.Join(open, "xrun-1")); err == nil || !strings.Contains(err.Error(), "not sticky") {
		t.Errorf("non-sticky world-writable parent: %v", err)
	}
	if os.Geteuid() != 0 {
		return
	}
	// A parent owned by another user (TMPDIR or XRUN_CACHE pointing into
	// someone else's directory).
	theirs := t.TempDir()
	must(t, os.Chown(theirs, 4242, 4242))
	if err := ensureRunRoot(filepath.Join(theirs, "run")); err == nil || !strings.Contains(err.Error(), "owned by uid 4242") {
		t.Errorf("parent owned by another user: %v", err)
	}
}

func TestResolveRunRoot(t *testing.T) {
	tmp := stickyTmp(t)
	t.Setenv("XDG_RUNTIME_DIR", "")
	t.Setenv("TMPDIR", tmp)
	fallback := filepath.Join(t.TempDir(), "cache", "run")
	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))

	got, err := resolveRunRoot("", fallback, log)
	if want := filepath.Join(tmp, fmt.Sprintf("xrun-%d", os.Getuid())); err != nil || got != want {
		t.Fatalf("resolveRunRoot = %q, %v; want %q", got, err, want)
	}
	// Made unsafe (here by its mode; by another user's ownership in the
	// integration tests): the cache's run root, with a warning.
	must(t, os.Chmod(got, 0o777))
	got, err = resolveRunRoot("", fallback, log)
	if err != nil || got != fallback {
		t.Fatalf("unsafe default: resolveRunRoot = %q, %v; want %q", got, err, fallback)
	}
	if !strings.Contains(logs.String(), "level=WARN") || !strings.Contains(logs.String(), fallback) {
		t.Errorf("no warning: %s", logs.String())
	}
	// No fallback, or an unsafe one: an error that says what to do.
	if _, err := resolveRunRoot("", "", log); err == nil || !strings.Contains(err.Error(), "no safe run directory") {
		t.Errorf("no fallback: %v", err)
	}
	must(t, os.Chmod(fallback, 0o755))
	if _, err := resolveRunRoot("", fallback, log); err == nil || !strings.Contains(err.Error(), ": set XDG_RUNTIME_DIR") {
		t.Errorf("unsafe fallback: %v", err)
	}
	// An explicit run root is used only when safe.
	if _, err := resolveRunRoot(filepath.Join(tmp, fmt.Sprintf("xrun-%d", os.Getuid())), fallback, log); err == nil {
		t.Error("unsafe explicit run root accepted")
	}
}

// age makes path look last modified d ago.
func age(t *testing.T, path string, d time.Duration) {
	t.Helper()
	old := time.Now().Add(-d)
	must(t, os.Chtimes(path, old, old))
}

func TestCollectStale(t *testing.T) {
	root := t.TempDir()
	log := slog.New(slog.DiscardHandler)

	// A live run: its directory is locked (by this process, through
	// another open file description, as another xrun would).
	_, live, lock, err := createRunDir(root)
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Unlock()
	must(t, os.MkdirAll(filepath.Join(live, stateDir, filepath.Base(live)), 0o711))
	age(t, live, time.Hour)

	// A run killed with SIGKILL: unlocked, with libcontainer state whose
	// hooks must not run.
	marker := filepath.Join(t.TempDir(), "hook-ran")
	dead := filepath.Join(root, "xrun-dead")
	writeState(t, filepath.Join(dead, stateDir, "xrun-dead"), 0, marker)
	must(t, os.MkdirAll(filepath.Join(dead, rootfsDir), 0o700))
	must(t, os.Chmod(filepath.Join(dead, rootfsDir), 0o500))
	age(t, dead, time.Hour)

	// A run that has just created its directory and not locked it yet.
	young := filepath.Join(root, "xrun-young")
	must(t, os.Mkdir(young, 0o700))

	// Older xrun layout: state in <root>/state/<id>; one init alive (this
	// process), one gone.
	oldLive := filepath.Join(root, stateDir, "xrun-oldlive")
	writeState(t, oldLive, os.Getpid(), marker)
	must(t, os.Mkdir(filepath.Join(root, "xrun-oldlive"), 0o700))
	age(t, filepath.Join(root, "xrun-oldlive"), time.Hour)
	age(t, oldLive, time.Hour)
	oldDead := filepath.Join(root, stateDir, "xrun-olddead")
	writeState(t, oldDead, deadPid(t), marker)
	age(t, oldDead, time.Hour)

	// A symlink with a run's name, to a directory that must survive.
	outside := t.TempDir()
	must(t, os.WriteFile(filepath.Join(outside, "keep"), nil, 0o600))
	must(t, os.Symlink(outside, filepath.Join(root, "xrun-link")))

	collectStale(root, log)

	for path, want := range map[string]bool{
		live: true, dead: false, young: true,
		oldLive: true, filepath.Join(root, "xrun-oldlive"): true, oldDead: false,
		filepath.Join(root, "xrun-link"): false, filepath.Join(outside, "keep"): true,
	} {
		_, err := os.Lstat(path)
		if got := err == nil; got != want {
			t.Errorf("%s: exists = %v, want %v", path, got, want)
		}
	}
	if _, err := os.Stat(marker); err == nil {
		t.Error("a hook of the stale state ran")
	}
}

func TestCreateRunDirAfterCollect(t *testing.T) {
	// A collector may lock and remove a run directory between its mkdir and
	// its lock: the run then sees it gone and makes another.
	root := t.TempDir()
	id, dir, lock, err := createRunDir(root)
	if err != nil {
		t.Fatal(err)
	}
	lock.Unlock()
	f, err := lockDir(dir, true) // the collector's lock
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan *fsutil.Lock)
	go func() {
		l, err := lockDir(dir, false) // the run, blocked
		if err != nil {
			l = nil
		}
		done <- l
	}()
	time.Sleep(50 * time.Millisecond)
	must(t, os.RemoveAll(dir))
	f.Unlock()
	l := <-done
	if l == nil {
		t.Skip("the run's open lost the race to the removal")
	}
	defer l.Unlock()
	var st unix.Stat_t
	must(t, unix.Fstat(int(l.Fd()), &st))
	if st.Nlink != 0 {
		t.Errorf("removed directory %s (%s) has %d links: createRunDir would keep it", dir, id, st.Nlink)
	}
}

// writeState writes a libcontainer state.json in dir naming pid as its init
// and a poststop hook that creates marker.
func writeState(t *testing.T, dir string, pid int, marker string) {
	t.Helper()
	must(t, os.MkdirAll(dir, 0o711))
	s := fmt.Sprintf(`{"id":%q,"init_process_pid":%d,"init_process_start":1,"created":"2020-01-01T00:00:00Z",
		"config":{"rootfs":"/","cgroups":{"path":"","rootless":true},
		"hooks":{"poststop":[{"path":"/bin/sh","args":["sh","-c","touch %s"]}]}}}`, filepath.Base(dir), pid, marker)
	must(t, os.WriteFile(filepath.Join(dir, "state.json"), []byte(s), 0o600))
}

// deadPid is the pid of a process that has exited.
func deadPid(t *testing.T) int {
	t.Helper()
	p, err := os.StartProcess("/bin/true", []string{"true"}, &os.ProcAttr{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Wait(); err != nil {
		t.Fatal(err)
	}
	return p.Pid
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func TestCollectStaleScratch(t *testing.T) {
	// Upper layers on disk (kernels before 6.6) of runs killed with
	// SIGKILL are collected; a live run's (locked) and a young one are not.
	cacheDir := t.TempDir()
	log := slog.New(slog.NewTextHandler(&bytes.Buffer{}, nil))
	live := diskScratch(cacheDir, "/run/xrun-live")
	lock, err := makeDiskScratch(live)
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Unlock()
	must(t, os.MkdirAll(filepath.Join(live, "upper", "etc"), 0o755))
	age(t, live, time.Hour)
	dead := diskScratch(cacheDir, "/run/xrun-dead")
	must(t, os.MkdirAll(filepath.Join(dead, "upper", "etc"), 0o755))
	must(t, os.WriteFile(filepath.Join(dead, "upper", "etc", "f"), nil, 0o600))
	age(t, dead, time.Hour)
	young := diskScratch(cacheDir, "/run/xrun-young")
	must(t, os.Mkdir(young, 0o700))
	other := filepath.Join(filepath.Dir(live), "not-a-scratch")
	must(t, os.Mkdir(other, 0o700))
	age(t, other, time.Hour)

	collectStaleScratch(cacheDir, log)

	for path, want := range map[string]bool{live: true, dead: false, young: true, other: true} {
		_, err := os.Lstat(path)
		if got := err == nil; got != want {
			t.Errorf("%s: exists = %v, want %v", path, got, want)
		}
	}
	removeDiskScratch(live, lock, log)
	if _, err := os.Lstat(live); err == nil {
		t.Error("removeDiskScratch left the directory")
	}
}
