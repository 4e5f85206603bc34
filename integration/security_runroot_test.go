//go:build integration

package integration

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/xrun-dev/xrun/internal/testutil"
)

// Issue 13 item 1: with XDG_RUNTIME_DIR unset the run root is the
// predictable $TMPDIR/xrun-<uid>. Another local user who creates it first
// must not get anything run, signalled or trusted by the victim's xrun.
//
// The tests give the victim a private TMPDIR that plays /tmp (root-owned,
// mode 1777), so that the attack does not touch the real /tmp/xrun-<uid>
// of concurrent test runs; xrun derives the path from $TMPDIR exactly as
// from /tmp. The harness runs xrun with `env -i`, so XDG_RUNTIME_DIR is
// unset.

// nativePlatform is a test platform the host runs without emulation.
func nativePlatform(t *testing.T) testPlatform {
	t.Helper()
	for _, p := range platforms {
		if p.Native() {
			return p
		}
	}
	t.Skip("no test platform is native on this host")
	return testPlatform{}
}

// sharedTmp creates a directory like /tmp: owned by root, mode 1777.
func sharedTmp(t *testing.T) string {
	t.Helper()
	d, err := os.MkdirTemp(h.base, "tmp-")
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Chmod(d, 0o1777); err != nil {
		t.Fatal(err)
	}
	return d
}

// startAs starts argv as u in the background; the returned function kills
// it (if still running) and waits for it. As root the command goes through
// setpriv and env, which exec: its pid is argv[0]'s.
func startAs(t *testing.T, u *testUser, env []string, stdout *bytes.Buffer, argv ...string) (*exec.Cmd, func()) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	cmd := userCommand(ctx, u, u.home, env, argv...)
	if stdout != nil {
		cmd.Stdout = stdout
	}
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatal(err)
	}
	stop := func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		cancel()
	}
	return cmd, stop
}

// alive reports whether pid exists and is not a zombie.
func alive(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i > 0 && len(s) > i+2 && s[i+2] != 'Z'
}

// delegatedCgroup creates a cgroup owned by u (as systemd delegates one to
// a user) in the hierarchy that libcontainer's cgroup manager signals
// through: devices on cgroup v1, the unified one on v2. It returns its
// path and the cgroup_paths key of libcontainer's state.json.
func delegatedCgroup(t *testing.T, u *testUser) (dir, key string) {
	t.Helper()
	if os.Geteuid() != 0 {
		testutil.SkipOrFail(t, "creating a cgroup for the victim needs root")
	}
	root, key := "/sys/fs/cgroup/devices", "devices"
	if _, err := os.Stat(filepath.Join(root, "cgroup.procs")); err != nil {
		root, key = "/sys/fs/cgroup", ""
	}
	dir, err := os.MkdirTemp(root, "xrun-it-")
	if err != nil {
		testutil.SkipOrFail(t, "cannot create a cgroup: %v", err)
	}
	t.Cleanup(func() {
		for i := 0; i < 50; i++ {
			if os.Remove(dir) == nil {
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
		t.Logf("cgroup %s not removed", dir)
	})
	ents, _ := os.ReadDir(dir)
	for _, e := range append(ents, nil) {
		p := dir
		if e != nil {
			p = filepath.Join(dir, e.Name())
		}
		_ = os.Chown(p, u.uid, u.gid)
	}
	return dir, key
}

// plantedState is a libcontainer state.json for a container "xrun-evil"
// whose init is gone: Destroy would run its poststop hook (sh -c hook)
// and, as it has no pid namespace of its own, SIGKILL every process of the
// cgroups in cgroupPaths ("null": the root of every hierarchy, that is every
// process of the victim).
func plantedState(hook, cgroupPaths string, ownPidNS bool) string {
	ns := "[]"
	if ownPidNS {
		ns = `[{"type":"NEWPID"}]`
	}
	return fmt.Sprintf(`{"id":"xrun-evil","init_process_pid":0,"init_process_start":1,
"created":"2020-01-01T00:00:00Z","cgroup_paths":%s,
"config":{"rootfs":"/","namespaces":%s,"cgroups":{"path":"","rootless":true},
"hooks":{"poststop":[{"path":"/bin/sh","args":["sh","-c",%q]}]}}}`, cgroupPaths, ns, hook)
}

func TestSecurityRunRootPlantedState(t *testing.T) {
	p := nativePlatform(t)
	victim := needRun(t, subUserName, p)
	attacker := needUser(t, noSubUserName)
	img := h.reg.ref(busyboxRepo)

	for _, tc := range []struct {
		name string
		// kill: the planted state names a cgroup holding the victim's
		// bystander process. An attacker names the root cgroup ("cgroup
		// path empty": cgroup_paths null) and hits every process of the
		// victim; the test names a cgroup of its own so that, run against
		// an xrun that has the bug, it kills only its own bystander and no
		// other process of the shared test user.
		kill bool
	}{{"poststop-hook", false}, {"kill-cgroup", true}} {
		t.Run(tc.name, func(t *testing.T) {
			tmp := sharedTmp(t)
			root := filepath.Join(tmp, fmt.Sprintf("xrun-%d", victim.uid))
			marker := filepath.Join(tmp, "pwned")

			// The victim's bystander: a process it runs outside xrun.
			bystander, stopBystander := startAs(t, victim, nil, nil, "/bin/sleep", "300")
			defer stopBystander()
			sleepPid := bystander.Process.Pid

			paths := "{}"
			if tc.kill {
				cg, key := delegatedCgroup(t, victim)
				if err := os.WriteFile(filepath.Join(cg, "cgroup.procs"), []byte(strconv.Itoa(sleepPid)), 0); err != nil {
					t.Fatalf("move the bystander into %s: %v", cg, err)
				}
				paths = fmt.Sprintf(`{%q:%q}`, key, cg)
			}

			// The attacker, unprivileged, plants the state before the
			// victim's first run, world-writable so that the victim's runs
			// keep working and nothing looks wrong.
			state := plantedState("touch "+marker, paths, !tc.kill)
			plant := fmt.Sprintf(`set -e
umask 0
mkdir -p %[1]s/state/xrun-evil %[1]s/xrun-evil
cat > %[1]s/state/xrun-evil/state.json
chmod 0777 %[1]s %[1]s/state %[1]s/state/xrun-evil %[1]s/xrun-evil
touch -d '2020-01-01' %[1]s/xrun-evil %[1]s/state/xrun-evil`, root)
			if _, stderr, code := runAs(t, opts{user: attacker, stdin: []byte(state)}, "/bin/sh", "-c", plant); code != 0 {
				t.Fatalf("the attacker could not plant the state: %s", stderr)
			}

			stdout, stderr, code := run(t, opts{user: victim, env: []string{"TMPDIR=" + tmp}},
				"--platform", p.Name, img, "--", "echo", "victim-ran")
			if code != 0 || stdout != "victim-ran\n" {
				t.Errorf("victim's run: exit %d, stdout %q, stderr %q; want 0 and victim-ran", code, stdout, stderr)
			}
			if _, err := os.Lstat(marker); err == nil {
				t.Error("the planted poststop hook ran as the victim")
			}
			if !alive(sleepPid) {
				t.Error("the victim's bystander process was killed through the planted state")
			}
			if !strings.Contains(stderr, root) || !strings.Contains(stderr, fmt.Sprintf("owned by uid %d, not you", attacker.uid)) {
				t.Errorf("no warning naming %s and its owner: %q", root, stderr)
			}
			// Nothing of the attacker's was used or touched.
			if _, err := os.Stat(filepath.Join(root, "state", "xrun-evil", "state.json")); err != nil {
				t.Errorf("the planted state was touched: %v", err)
			}
			ents, _ := os.ReadDir(root)
			for _, e := range ents {
				if e.Name() != "state" && e.Name() != "xrun-evil" {
					t.Errorf("the victim's run used the attacker's directory: %s", e.Name())
				}
			}
			// The fallback in the cache is the victim's own, private.
			fi, err := os.Lstat(filepath.Join(victim.cache, "run"))
			if err != nil {
				t.Fatal(err)
			}
			if st := fi.Sys().(*syscall.Stat_t); int(st.Uid) != victim.uid || fi.Mode().Perm() != 0o700 || !fi.IsDir() {
				t.Errorf("%s/run: %v owned by %d, want a 0700 directory of the victim", victim.cache, fi.Mode(), st.Uid)
			}
		})
	}
}

// TestSecurityRunRootSymlink: the attacker makes the run root a symlink to
// a directory of theirs; the victim's run must not follow it.
func TestSecurityRunRootSymlink(t *testing.T) {
	p := nativePlatform(t)
	victim := needRun(t, subUserName, p)
	attacker := needUser(t, noSubUserName)
	tmp := sharedTmp(t)
	root := filepath.Join(tmp, fmt.Sprintf("xrun-%d", victim.uid))
	trap := filepath.Join(tmp, "trap")
	if _, stderr, code := runAs(t, opts{user: attacker}, "/bin/sh", "-c",
		fmt.Sprintf("mkdir -m 0777 %s && ln -s %s %s", trap, trap, root)); code != 0 {
		t.Fatalf("the attacker could not plant the symlink: %s", stderr)
	}
	stdout, stderr, code := run(t, opts{user: victim, env: []string{"TMPDIR=" + tmp}},
		"--platform", p.Name, h.reg.ref(busyboxRepo), "--", "echo", "victim-ran")
	if code != 0 || stdout != "victim-ran\n" {
		t.Errorf("victim's run: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	if !strings.Contains(stderr, "is a symlink") {
		t.Errorf("no warning about the symlink: %q", stderr)
	}
	if ents, _ := os.ReadDir(trap); len(ents) != 0 {
		t.Errorf("the victim's run wrote into the attacker's directory: %v", ents)
	}
}

// TestSecurityRunRootConcurrent: a run must never collect the state of a
// live run, however old its directory looks (make -j), and must collect
// what a run killed with SIGKILL left.
func TestSecurityRunRootConcurrent(t *testing.T) {
	p := nativePlatform(t)
	u := needRun(t, subUserName, p)
	img := h.reg.ref(busyboxRepo)
	tmp := sharedTmp(t)
	env := []string{"TMPDIR=" + tmp}
	root := filepath.Join(tmp, fmt.Sprintf("xrun-%d", u.uid))

	// runDirs lists the run directories (and, for older xrun versions,
	// libcontainer state directories) under the run root.
	runDirs := func() []string {
		var out []string
		for _, pat := range []string{"xrun-*", "state/xrun-*"} {
			m, _ := filepath.Glob(filepath.Join(root, pat))
			out = append(out, m...)
		}
		return out
	}
	waitRunDir := func(what string, except map[string]bool) []string {
		t.Helper()
		for i := 0; i < 300; i++ {
			var fresh []string
			for _, d := range runDirs() {
				if !except[d] {
					fresh = append(fresh, d)
				}
			}
			if len(fresh) > 0 {
				time.Sleep(500 * time.Millisecond) // let its container start
				return fresh
			}
			time.Sleep(100 * time.Millisecond)
		}
		t.Fatalf("%s: no run directory appeared under %s", what, root)
		return nil
	}
	// makeOld makes dirs look an hour old, past any grace period for runs
	// that are still being set up.
	makeOld := func(dirs []string) {
		old := time.Now().Add(-time.Hour)
		for _, d := range dirs {
			if err := os.Chtimes(d, old, old); err != nil {
				t.Fatal(err)
			}
		}
	}

	// A long run, and short ones started at once while it runs (make -j):
	// each collects stale state while the others create theirs.
	var outA bytes.Buffer
	a, stopA := startAs(t, u, env, &outA, h.xrun, "--platform", p.Name, img, "--", "sh", "-c", "sleep 5; echo A-done")
	defer stopA()
	dirsA := waitRunDir("run A", nil)
	makeOld(dirsA)
	var wg sync.WaitGroup
	for i := 0; i < 3; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			want := fmt.Sprintf("B%d-done\n", i)
			stdout, stderr, code := run(t, opts{user: u, env: env}, "--platform", p.Name, img, "--", "echo", strings.TrimSpace(want))
			if code != 0 || stdout != want {
				t.Errorf("run B%d: exit %d, stdout %q, stderr %q", i, code, stdout, stderr)
			}
		}()
	}
	wg.Wait()
	for _, d := range dirsA {
		if _, err := os.Lstat(d); err != nil {
			t.Errorf("run B collected the state of live run A: %v", err)
		}
	}
	if err := a.Wait(); err != nil || outA.String() != "A-done\n" {
		t.Errorf("run A: %v, stdout %q", err, outA.String())
	}
	if left := runDirs(); len(left) != 0 {
		t.Errorf("runs A and B left %v", left)
	}

	// A run killed with SIGKILL leaves its directory: the next run removes it.
	c, stopC := startAs(t, u, env, nil, h.xrun, "--platform", p.Name, img, "--", "sleep", "60")
	defer stopC()
	dirsC := waitRunDir("run C", nil)
	_ = c.Process.Kill()
	_ = c.Wait()
	makeOld(dirsC)
	if stdout, stderr, code := run(t, opts{user: u, env: env}, "--platform", p.Name, img, "--", "echo", "D-done"); code != 0 || stdout != "D-done\n" {
		t.Errorf("run D: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	if left := runDirs(); len(left) != 0 {
		t.Errorf("the remains of killed run C were not collected: %v", left)
	}
}
