//go:build integration

package integration

import (
	"bytes"
	"crypto/rand"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/xrun-dev/xrun/internal/testutil"
)

// testUsers are the roles every platform test runs as: a user with a
// subordinate id range (full 65536 map) and one without (single-uid map).
var testUsers = []string{subUserName, noSubUserName}

func subtestName(p testPlatform) string { return strings.ReplaceAll(p.Name, "/", "-") }

// needRun checks everything an xrun run of platform p as user needs.
func needRun(t *testing.T, user string, p testPlatform) *testUser {
	t.Helper()
	needXrun(t)
	needImages(t)
	needQemu(t, p)
	if !p.Native() {
		needBinfmtNS(t)
	}
	return needUser(t, user)
}

// wantXrunError checks xrun's own failure: exit 125 and a single stderr
// line "xrun: ..." containing each of wants (case-insensitive).
func wantXrunError(t *testing.T, stderr string, code int, wants ...string) {
	t.Helper()
	if code != 125 {
		t.Errorf("exit code %d, want 125 (xrun's own failure)", code)
	}
	msg := strings.TrimSuffix(stderr, "\n")
	if !strings.HasPrefix(msg, "xrun: ") {
		t.Errorf("stderr %q does not start with %q", stderr, "xrun: ")
	}
	if strings.Contains(msg, "\n") {
		t.Errorf("stderr has %d lines, want one: %q", strings.Count(msg, "\n")+1, stderr)
	}
	for _, w := range wants {
		if !strings.Contains(strings.ToLower(msg), strings.ToLower(w)) {
			t.Errorf("stderr %q does not mention %q", stderr, w)
		}
	}
}

// TestPlatforms runs the busybox image on every platform as both users:
// uname, exit codes, stdin, working directory.
func TestPlatforms(t *testing.T) {
	for _, user := range testUsers {
		t.Run(user, func(t *testing.T) {
			for _, p := range platforms {
				t.Run(subtestName(p), func(t *testing.T) {
					u := needRun(t, user, p)
					testPlatform1(t, u, p)
				})
			}
		})
	}
}

func testPlatform1(t *testing.T, u *testUser, p testPlatform) {
	img := h.reg.ref(busyboxRepo)
	xrun := func(t *testing.T, o opts, cmd ...string) (string, string, int) {
		t.Helper()
		o.user = u
		return run(t, o, append([]string{"--platform", p.Name, img, "--"}, cmd...)...)
	}

	// The first run pulls and unpacks; later ones use the cache.
	t.Run("uname", func(t *testing.T) {
		out, _, code := xrun(t, opts{}, "uname", "-m")
		if code != 0 || out != p.Uname()+"\n" {
			t.Fatalf("uname -m: %q, exit %d; want %q, exit 0", out, code, p.Uname()+"\n")
		}
	})

	t.Run("exit-codes", func(t *testing.T) {
		for _, c := range []struct {
			script string
			want   int
		}{
			{"exit 0", 0},
			{"exit 3", 3},
			{"exit 255", 255},
			{"kill -TERM $$", 128 + int(syscall.SIGTERM)},
			{"kill -KILL $$", 128 + int(syscall.SIGKILL)},
		} {
			if _, _, code := xrun(t, opts{}, "sh", "-c", c.script); code != c.want {
				t.Errorf("sh -c %q: exit %d, want %d", c.script, code, c.want)
			}
		}
		if _, _, code := xrun(t, opts{}, "true"); code != 0 {
			t.Errorf("true: exit %d", code)
		}
		if _, _, code := xrun(t, opts{}, "false"); code != 1 {
			t.Errorf("false: exit %d, want 1", code)
		}
	})

	// busybox's shell runs applets by exec'ing /proc/self/exe with
	// argv[0] = the applet name: under emulation that needs binfmt_misc's
	// P flag (preserve argv[0]), else "cat FILE" runs FILE as a script.
	t.Run("sh-runs-applets", func(t *testing.T) {
		out, _, code := xrun(t, opts{}, "sh", "-c", "cat /etc/group; echo hi | cat")
		if want := "root:x:0:\nhi\n"; code != 0 || out != want {
			t.Errorf("got %q exit %d, want %q exit 0 (argv[0] lost? binfmt handler without the P flag)", out, code, want)
		}
	})

	t.Run("stdin", func(t *testing.T) {
		in := make([]byte, 1<<20)
		if _, err := rand.Read(in); err != nil {
			t.Fatal(err)
		}
		out, _, code := xrun(t, opts{stdin: in}, "cat")
		if code != 0 {
			t.Errorf("cat: exit %d", code)
		}
		if !bytes.Equal([]byte(out), in) {
			i := 0
			for i < len(out) && i < len(in) && out[i] == in[i] {
				i++
			}
			t.Errorf("cat: stdout (%d bytes) differs from stdin (%d bytes) at offset %d", len(out), len(in), i)
		}
	})

	t.Run("cwd", func(t *testing.T) {
		dir := workDir(t, u)
		out, _, code := xrun(t, opts{dir: dir}, "pwd")
		if code != 0 || out != dir+"\n" {
			t.Errorf("pwd: %q, exit %d; want %q", out, code, dir+"\n")
		}
		if _, _, code := xrun(t, opts{dir: dir}, "touch", "created-by-xrun"); code != 0 {
			t.Fatalf("touch: exit %d", code)
		}
		fi, err := os.Lstat(filepath.Join(dir, "created-by-xrun"))
		if err != nil {
			t.Fatalf("file created in the container's cwd is not in the host dir: %v", err)
		}
		if st := fi.Sys().(*syscall.Stat_t); int(st.Uid) != u.uid || int(st.Gid) != u.gid {
			t.Errorf("created-by-xrun owned by %d:%d, want the user's %d:%d", st.Uid, st.Gid, u.uid, u.gid)
		}
	})
}

// TestCommandErrors: 127 for a command that does not exist, 126 for one
// that is not executable.
func TestCommandErrors(t *testing.T) {
	for _, pn := range []string{"linux/amd64", "linux/arm64"} {
		p := platformByName(pn)
		t.Run(subtestName(p), func(t *testing.T) {
			u := needRun(t, subUserName, p)
			img := h.reg.ref(busyboxRepo)
			if _, _, code := run(t, opts{user: u}, "--platform", p.Name, img, "--", "/no/such/command"); code != 127 {
				t.Errorf("missing command: exit %d, want 127", code)
			}
			if _, _, code := run(t, opts{user: u}, "--platform", p.Name, img, "--", "/etc/passwd"); code != 126 {
				t.Errorf("non-executable command: exit %d, want 126", code)
			}
		})
	}
}

// TestErrors: xrun's own failures exit 125 with one "xrun: " line.
func TestErrors(t *testing.T) {
	needXrun(t)
	needImages(t)
	u := needUser(t, subUserName)
	img := h.reg.ref(busyboxRepo)

	t.Run("unknown-image", func(t *testing.T) {
		_, stderr, code := run(t, opts{user: u}, "--platform", "linux/arm64", h.reg.ref("nope:latest"), "--", "true")
		wantXrunError(t, stderr, code, "not found")
	})
	t.Run("unknown-tag", func(t *testing.T) {
		_, stderr, code := run(t, opts{user: u}, "--platform", "linux/arm64", h.reg.ref("xrun-test/busybox:nope"), "--", "true")
		wantXrunError(t, stderr, code, "not found")
	})
	t.Run("platform-not-in-index", func(t *testing.T) {
		_, stderr, code := run(t, opts{user: u}, "--platform", "linux/mips64le", img, "--", "true")
		// The message lists what the index has.
		wantXrunError(t, stderr, code, "linux/mips64le", "linux/arm64", "linux/riscv64")
	})
	t.Run("unknown-platform", func(t *testing.T) {
		_, stderr, code := run(t, opts{user: u}, "--platform", "linux/foo", img, "--", "true")
		wantXrunError(t, stderr, code, "linux/foo")
	})
	t.Run("unreachable-registry", func(t *testing.T) {
		port, err := freePort()
		if err != nil {
			t.Fatal(err)
		}
		ref := fmt.Sprintf("127.0.0.1:%d/xrun-test/busybox:latest", port)
		_, stderr, code := run(t, opts{user: u}, "--platform", "linux/arm64", ref, "--", "true")
		wantXrunError(t, stderr, code)
	})
}

// TestLayers: whiteouts and opaque directories of a two-layer Docker image,
// selected by --platform linux/arm64 for an index entry linux/arm64/v8.
// Commands are given by path so that this does not depend on the shell
// running applets by name (see the sh-runs-applets subtest).
func TestLayers(t *testing.T) {
	for _, pn := range []string{"linux/amd64", "linux/arm64"} {
		p := platformByName(pn)
		t.Run(subtestName(p), func(t *testing.T) {
			u := needRun(t, subUserName, p)
			out, _, code := run(t, opts{user: u}, "--platform", p.Name, h.reg.ref(layersRepo), "--",
				"sh", "-c", "test ! -e /etc/removed-by-layer2 && /bin/cat /etc/added-by-layer2 && /bin/ls /data && /bin/uname -m")
			if want := "layer2\nnew\n" + p.Uname() + "\n"; code != 0 || out != want {
				t.Errorf("got %q exit %d, want %q exit 0", out, code, want)
			}
		})
	}
}

// procInfo is a process seen in /proc.
type procInfo struct {
	pid     int
	uid     int
	cmdline []string
}

// userProcs lists the processes whose real uid is u's or in u's subordinate
// range and whose command line has an argument "sleep" (or ending in
// "/sleep") followed later by arg.
func userProcs(u *testUser, arg string) []procInfo {
	ents, _ := os.ReadDir("/proc")
	var ps []procInfo
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		status, err := os.ReadFile(filepath.Join("/proc", e.Name(), "status"))
		if err != nil {
			continue
		}
		uid := -1
		for _, line := range strings.Split(string(status), "\n") {
			if f := strings.Fields(line); len(f) > 1 && f[0] == "Uid:" {
				uid, _ = strconv.Atoi(f[1])
			}
		}
		if uid != u.uid && !(u.subIDs && uid >= u.subStart && uid < u.subStart+u.subCount) {
			continue
		}
		raw, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil || len(raw) == 0 {
			continue
		}
		args := strings.Split(strings.TrimSuffix(string(raw), "\x00"), "\x00")
		i := slices.IndexFunc(args, func(a string) bool { return a == "sleep" || strings.HasSuffix(a, "/sleep") })
		if i >= 0 && slices.Contains(args[i+1:], arg) {
			ps = append(ps, procInfo{pid: pid, uid: uid, cmdline: args})
		}
	}
	return ps
}

// startXrun starts xrun in the background as o.user. Its stderr goes to a
// file (not a pipe, so that Wait returns when xrun exits even if an orphan
// holds the pipe); stderr() reads it.
func startXrun(t *testing.T, o opts, args ...string) (cmd *exec.Cmd, stderr func() string) {
	t.Helper()
	needXrun(t)
	if o.dir == "" {
		o.dir = o.user.home
	}
	f, err := os.CreateTemp(h.base, "stderr-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	cmd = userCommand(t.Context(), o.user, o.dir, o.env, append([]string{h.xrun}, args...)...)
	cmd.Stderr = f
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Logf("started pid %d: %s", cmd.Process.Pid, shortArgv(cmd.Args[slices.Index(cmd.Args, h.xrun):]))
	return cmd, func() string {
		b, _ := os.ReadFile(f.Name())
		return string(b)
	}
}

// waitForSleep waits (up to a minute) until a container's "sleep ARG" is
// running as u, other than xrun itself.
func waitForSleep(t *testing.T, u *testUser, xrunPid int, arg string) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for time.Now().Before(deadline) {
		for _, p := range userProcs(u, arg) {
			if p.pid != xrunPid {
				return
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("no process of %s runs sleep %s after a minute", u, arg)
}

// killLeftovers kills (by pid) container processes that survived, so
// that one failure does not leak into the next tests.
func killLeftovers(u *testUser, arg string) {
	for _, p := range userProcs(u, arg) {
		_ = syscall.Kill(p.pid, syscall.SIGKILL)
	}
}

// TestSignals: SIGTERM to xrun reaches the (emulated) command, which exits
// 143; after kill -9 of xrun no container process lives on.
func TestSignals(t *testing.T) {
	p := platformByName("linux/arm64")
	for _, user := range testUsers {
		t.Run(user, func(t *testing.T) {
			u := needRun(t, user, p)
			img := h.reg.ref(busyboxRepo)
			// Warm the cache so the timings below do not include a pull.
			if _, _, code := run(t, opts{user: u}, "--platform", p.Name, img, "--", "true"); code != 0 {
				t.Fatalf("warm-up run: exit %d", code)
			}

			t.Run("SIGTERM", func(t *testing.T) {
				const arg = "100"
				t.Cleanup(func() { killLeftovers(u, arg) })
				cmd, stderr := startXrun(t, opts{user: u}, "--platform", p.Name, img, "--", "sleep", arg)
				waitForSleep(t, u, cmd.Process.Pid, arg)
				time.Sleep(time.Second)
				if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
					t.Fatal(err)
				}
				sent := time.Now()
				done := make(chan error, 1)
				go func() { done <- cmd.Wait() }()
				select {
				case <-done:
					t.Logf("xrun ended %v after SIGTERM: %v", time.Since(sent).Round(time.Millisecond), cmd.ProcessState)
				case <-time.After(5 * time.Second):
					_ = cmd.Process.Kill()
					<-done
					t.Fatalf("xrun still running 5s after SIGTERM (an emulated PID 1 ignores it?); stderr %q", stderr())
				}
				// xrun forwards the signal and exits with the command's
				// status; dying of SIGTERM itself would orphan the command.
				ws := cmd.ProcessState.Sys().(syscall.WaitStatus)
				switch {
				case ws.Signaled():
					t.Errorf("xrun itself was killed by %v instead of forwarding it", ws.Signal())
				case ws.ExitStatus() != 143:
					t.Errorf("after SIGTERM: exit %d, want 143; stderr %q", ws.ExitStatus(), stderr())
				}
				time.Sleep(500 * time.Millisecond)
				for _, p := range userProcs(u, arg) {
					t.Errorf("pid %d (uid %d) %q still runs after xrun exited", p.pid, p.uid, p.cmdline)
				}
			})

			t.Run("SIGKILL-no-orphans", func(t *testing.T) {
				const arg = "101"
				t.Cleanup(func() { killLeftovers(u, arg) })
				cmd, _ := startXrun(t, opts{user: u}, "--platform", p.Name, img, "--", "sleep", arg)
				waitForSleep(t, u, cmd.Process.Pid, arg)
				time.Sleep(time.Second)
				if err := cmd.Process.Kill(); err != nil {
					t.Fatal(err)
				}
				_ = cmd.Wait()
				var left []procInfo
				for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
					if left = userProcs(u, arg); len(left) == 0 {
						return
					}
				}
				for _, p := range left {
					t.Errorf("pid %d (uid %d) %q survives kill -9 of xrun by 2s", p.pid, p.uid, p.cmdline)
				}
			})
		})
	}
}

// binfmtEntries lists the host's binfmt_misc handlers.
func binfmtEntries(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names
}

// TestNoHostBinfmt: running foreign platforms registers nothing in the
// host's binfmt_misc. As root, an unmounted host instance is mounted for
// the test so that there is something to look at.
func TestNoHostBinfmt(t *testing.T) {
	needXrun(t)
	needImages(t)
	u := needUser(t, subUserName)
	const dir = "/proc/sys/fs/binfmt_misc"
	if _, err := os.Stat(filepath.Join(dir, "status")); err != nil {
		if os.Geteuid() != 0 {
			t.Logf("%s is not mounted and the test is not root: comparing an empty directory", dir)
		} else {
			if err := syscall.Mount("binfmt_misc", dir, "binfmt_misc", 0, ""); err != nil {
				testutil.SkipOrFail(t, "mount binfmt_misc on %s: %v", dir, err)
			}
			t.Cleanup(func() {
				if err := syscall.Unmount(dir, 0); err != nil {
					t.Errorf("unmount %s: %v", dir, err)
				}
			})
		}
	}
	before := binfmtEntries(t, dir)
	for _, p := range platforms {
		if p.Native() {
			continue
		}
		needQemu(t, p)
		out, _, code := run(t, opts{user: u}, "--platform", p.Name, h.reg.ref(busyboxRepo), "--", "uname", "-m")
		if code != 0 || out != p.Uname()+"\n" {
			t.Errorf("%s: uname -m %q, exit %d", p.Name, out, code)
		}
	}
	after := binfmtEntries(t, dir)
	if !slices.Equal(before, after) {
		t.Errorf("host binfmt_misc changed: before %q, after %q", before, after)
	}
}

// TestOffline: with the registry gone, a cached image still runs; an
// uncached one fails cleanly. Uses its own registry so that stopping it
// does not affect the other tests.
func TestOffline(t *testing.T) {
	p := platformByName("linux/arm64")
	u := needRun(t, subUserName, p)
	reg, err := startRegistry(filepath.Join(h.base, "registry-offline"))
	if err != nil {
		t.Fatal(err)
	}
	defer reg.Stop()
	if err := h.images.Push(reg.addr); err != nil {
		t.Fatal(err)
	}
	cache := filepath.Join(h.base, "cache-offline")
	if err := mkdirOwned(cache, u); err != nil {
		t.Fatal(err)
	}
	env := []string{"XRUN_CACHE=" + cache}
	img := reg.ref(busyboxRepo)
	uname := func(extra ...string) (string, string, int) {
		args := append([]string{"--platform", p.Name}, extra...)
		return run(t, opts{user: u, env: env}, append(args, img, "--", "uname", "-m")...)
	}

	if out, _, code := uname(); code != 0 || out != "aarch64\n" {
		t.Fatalf("online run: %q exit %d", out, code)
	}
	reg.Stop()

	if out, _, code := uname(); code != 0 || out != "aarch64\n" {
		t.Errorf("offline run, default pull policy: %q exit %d; want aarch64, 0", out, code)
	}
	if out, _, code := uname("--pull", "never"); code != 0 || out != "aarch64\n" {
		t.Errorf("offline run, --pull never: %q exit %d; want aarch64, 0", out, code)
	}
	t.Run("pull-always", func(t *testing.T) {
		_, stderr, code := uname("--pull", "always")
		wantXrunError(t, stderr, code)
	})
	t.Run("not-cached", func(t *testing.T) {
		_, stderr, code := run(t, opts{user: u, env: env}, "--platform", "linux/s390x", img, "--", "true")
		wantXrunError(t, stderr, code)
	})
}
