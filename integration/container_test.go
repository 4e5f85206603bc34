//go:build integration

package integration

import (
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Tests of the container options (issue 5): run flags, the exit-code table,
// named containers with xrun ps and xrun rm, and --user against the id map.
// Each runs as both test users, on the native platform and on an emulated
// one.

// flagPlatforms are a native and an emulated platform.
var flagPlatforms = []string{"linux/amd64", "linux/arm64"}

// forUsersAndPlatforms runs f for every test user and flagPlatforms.
func forUsersAndPlatforms(t *testing.T, f func(t *testing.T, u *testUser, p testPlatform)) {
	for _, user := range testUsers {
		t.Run(user, func(t *testing.T) {
			for _, name := range flagPlatforms {
				p := platformByName(name)
				t.Run(subtestName(p), func(t *testing.T) {
					u := needRun(t, user, p)
					f(t, u, p)
				})
			}
		})
	}
}

// mkdirAs creates dir (and parents) owned by u.
func mkdirAs(t *testing.T, u *testUser, dir string) {
	t.Helper()
	if err := mkdirOwned(dir, u); err != nil {
		t.Fatal(err)
	}
}

// writeAs writes a file owned by u.
func writeAs(t *testing.T, u *testUser, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	if os.Geteuid() == 0 {
		if err := os.Chown(path, u.uid, u.gid); err != nil {
			t.Fatal(err)
		}
	}
}

// TestExitCodeTable checks the README's exit codes: the command's own (0,
// 3), 125 for xrun's failures, 126 and 127 when the command cannot start,
// and, when xrun receives SIGINT or SIGTERM, which it forwards, 128+N or
// the status of a command that traps the signal.
func TestExitCodeTable(t *testing.T) {
	sleepArg := 300
	forUsersAndPlatforms(t, func(t *testing.T, u *testUser, p testPlatform) {
		img := h.reg.ref(busyboxRepo)
		base := []string{"--platform", p.Name, img, "--"}
		for _, tc := range []struct {
			name string
			args []string
			want int
		}{
			{"0", append(slices.Clone(base), "true"), 0},
			{"3", append(slices.Clone(base), "sh", "-c", "exit 3"), 3},
			{"125", append([]string{"--user", "nosuchuser"}, append(slices.Clone(base), "true")...), 125},
			{"126", append(slices.Clone(base), "/etc/passwd"), 126},
			{"127", append(slices.Clone(base), "nosuchcommand"), 127},
		} {
			t.Run(tc.name, func(t *testing.T) {
				_, stderr, code := run(t, opts{user: u}, tc.args...)
				if code != tc.want {
					t.Errorf("exit %d, want %d (stderr %q)", code, tc.want, stderr)
				}
				if tc.want == 125 {
					wantXrunError(t, stderr, code, "nosuchuser")
				}
			})
		}
		// A command that traps the signal decides the status: xrun must
		// return it, as docker and podman do, not 128+N.
		type sigCase struct {
			sig  syscall.Signal
			trap bool
		}
		for _, sc := range []sigCase{{syscall.SIGINT, false}, {syscall.SIGTERM, false}, {syscall.SIGINT, true}, {syscall.SIGTERM, true}} {
			sig := sc.sig
			sleepArg++
			arg := strconv.Itoa(sleepArg)
			name, want := sig.String(), 128+int(sig)
			command := []string{"sleep", arg}
			if sc.trap {
				name, want = "trap-"+name, 3
				command = []string{"sh", "-c", "trap 'exit 3' INT TERM; sleep " + arg + " & wait"}
			}
			t.Run(name, func(t *testing.T) {
				t.Cleanup(func() { killLeftovers(u, arg) })
				cmd, stderr := startXrun(t, opts{user: u}, append(slices.Clone(base), command...)...)
				waitForSleep(t, u, cmd.Process.Pid, arg)
				time.Sleep(300 * time.Millisecond)
				if err := cmd.Process.Signal(sig); err != nil {
					t.Fatal(err)
				}
				done := make(chan error, 1)
				go func() { done <- cmd.Wait() }()
				select {
				case <-done:
				case <-time.After(10 * time.Second):
					_ = cmd.Process.Kill()
					<-done
					t.Fatalf("xrun still running 10s after %v; stderr %q", sig, stderr())
				}
				ws := cmd.ProcessState.Sys().(syscall.WaitStatus)
				if ws.Signaled() || ws.ExitStatus() != want {
					t.Errorf("after %v: %v, want exit %d; stderr %q", sig, cmd.ProcessState, want, stderr())
				}
			})
		}
	})
}

// envMap parses `env` output.
func envMap(out string) map[string]string {
	m := map[string]string{}
	for _, l := range strings.Split(out, "\n") {
		if k, v, ok := strings.Cut(l, "="); ok {
			m[k] = v
		}
	}
	return m
}

// TestRunFlags checks each run flag as both users, native and emulated.
func TestRunFlags(t *testing.T) {
	forUsersAndPlatforms(t, func(t *testing.T, u *testUser, p testPlatform) {
		img := h.reg.ref(busyboxRepo)
		xrun := func(t *testing.T, o opts, flags []string, cmd ...string) (string, string, int) {
			t.Helper()
			o.user = u
			args := append(append([]string{"--platform", p.Name}, flags...), img, "--")
			return run(t, o, append(args, cmd...)...)
		}

		t.Run("env", func(t *testing.T) {
			dir := workDir(t, u)
			writeAs(t, u, filepath.Join(dir, "vars.env"), "# comment\nA=from-file\nC=x,y z\n\nFROMHOST\n")
			out, _, code := xrun(t, opts{dir: dir, env: []string{"FROMHOST=host-value", "B=b-host"}},
				[]string{"--env-file", "vars.env", "-e", "A=from-flag", "-e", "B", "-e", "D=1,2"}, "env")
			m := envMap(out)
			for k, want := range map[string]string{"A": "from-flag", "B": "b-host", "C": "x,y z", "D": "1,2", "FROMHOST": "host-value"} {
				if m[k] != want {
					t.Errorf("%s=%q, want %q", k, m[k], want)
				}
			}
			if code != 0 {
				t.Errorf("exit %d", code)
			}
		})

		t.Run("volume", func(t *testing.T) {
			dir := workDir(t, u)
			mkdirAs(t, u, filepath.Join(dir, "data"))
			writeAs(t, u, filepath.Join(dir, "data", "f"), "host\n")
			out, _, code := xrun(t, opts{dir: dir}, []string{"--no-cwd", "-v", "data:/mnt/rw", "-v", dir + "/data:/mnt/ro:ro"},
				"sh", "-c", "cat /mnt/ro/f; echo new > /mnt/rw/g && echo rw-ok; echo x > /mnt/ro/h && echo ro-written; true")
			if code != 0 || out != "host\nrw-ok\n" {
				t.Errorf("got %q exit %d, want %q (a ro bind refuses writes)", out, code, "host\nrw-ok\n")
			}
			if b, err := os.ReadFile(filepath.Join(dir, "data", "g")); err != nil || string(b) != "new\n" {
				t.Errorf("file written through the rw bind: %q, %v", b, err)
			}
			if _, err := os.Stat(filepath.Join(dir, "data", "h")); err == nil {
				t.Error("a file was written through the ro bind")
			}
			_, stderr, code := xrun(t, opts{dir: dir}, []string{"-v", "missing:/x"}, "true")
			wantXrunError(t, stderr, code, "does not exist")
		})

		t.Run("workdir", func(t *testing.T) {
			out, _, code := xrun(t, opts{}, []string{"-w", "/var/build"}, "pwd")
			if code != 0 || out != "/var/build\n" {
				t.Errorf("-w /var/build: pwd = %q exit %d", out, code)
			}
			_, stderr, code := xrun(t, opts{}, []string{"-w", "rel"}, "pwd")
			wantXrunError(t, stderr, code, "absolute")
		})

		t.Run("user", func(t *testing.T) {
			if !u.subIDs {
				_, stderr, code := xrun(t, opts{}, []string{"--user", "xrunuser"}, "id")
				wantXrunError(t, stderr, code, "subordinate id range")
				out, _, code := xrun(t, opts{}, []string{"--user", "root"}, "id", "-u")
				if code != 0 || out != "0\n" {
					t.Errorf("--user root: %q exit %d", out, code)
				}
				return
			}
			// busybox's id lists groups only beyond the primary one: root's
			// group must not be left as a supplementary group.
			out, _, code := xrun(t, opts{}, []string{"--user", "xrunuser"}, "sh", "-c", "id; echo $HOME")
			if want := "uid=1000(xrunuser) gid=1000\n/home/xrunuser\n"; code != 0 || out != want {
				t.Errorf("--user xrunuser: %q exit %d, want %q", out, code, want)
			}
			out, _, code = xrun(t, opts{}, []string{"--user", "1234:5678"}, "id")
			if want := "uid=1234 gid=5678\n"; code != 0 || out != want {
				t.Errorf("--user 1234:5678: %q exit %d, want %q", out, code, want)
			}
			_, _, code = xrun(t, opts{}, []string{"--user", "xrunuser"}, "touch", "/etc/x")
			if code == 0 {
				t.Error("--user xrunuser could write to /etc")
			}
			_, stderr, code := xrun(t, opts{}, []string{"--user", "nosuchuser"}, "id")
			wantXrunError(t, stderr, code, "nosuchuser")
		})

		t.Run("entrypoint", func(t *testing.T) {
			out, _, code := xrun(t, opts{}, []string{"--entrypoint", "/bin/echo"}, "hi", "there")
			if code != 0 || out != "hi there\n" {
				t.Errorf("--entrypoint /bin/echo: %q exit %d", out, code)
			}
			out, _, code = xrun(t, opts{}, []string{"--entrypoint", ""}, "echo", "x")
			if code != 0 || out != "x\n" {
				t.Errorf("--entrypoint '': %q exit %d", out, code)
			}
			// --entrypoint drops the image's Cmd (/bin/sh): nothing to run.
			_, stderr, code := run(t, opts{user: u}, "--platform", p.Name, "--entrypoint", "", img)
			wantXrunError(t, stderr, code, "--entrypoint")
		})

		t.Run("hostname", func(t *testing.T) {
			out, _, code := xrun(t, opts{}, []string{"--hostname", "xbox"}, "uname", "-n")
			if code != 0 || out != "xbox\n" {
				t.Errorf("--hostname xbox: uname -n = %q exit %d", out, code)
			}
		})

		t.Run("network", func(t *testing.T) {
			ifaces := func(out string) []string {
				var names []string
				for _, l := range strings.Split(out, "\n") {
					if name, _, ok := strings.Cut(l, ":"); ok && !strings.Contains(name, "|") {
						names = append(names, strings.TrimSpace(name))
					}
				}
				return names
			}
			out, _, code := xrun(t, opts{}, []string{"--network", "none"}, "cat", "/proc/net/dev")
			if got := ifaces(out); code != 0 || !slices.Equal(got, []string{"lo"}) {
				t.Errorf("--network none: interfaces %q exit %d, want only lo", got, code)
			}
			out, _, code = xrun(t, opts{}, []string{"--network", "host"}, "cat", "/proc/net/dev")
			host, _ := os.ReadFile("/proc/net/dev")
			if got, want := ifaces(out), ifaces(string(host)); code != 0 || !slices.Equal(got, want) {
				t.Errorf("--network host: interfaces %q exit %d, want the host's %q", got, code, want)
			}
			_, stderr, code := xrun(t, opts{}, []string{"--network", "bridge"}, "true")
			wantXrunError(t, stderr, code, "--network")
		})

		t.Run("read-only", func(t *testing.T) {
			out, _, code := xrun(t, opts{}, []string{"--read-only"}, "sh", "-c", "touch /etc/x && echo wrote; touch /tmp/x && echo wrote-tmp; true")
			if code != 0 || out != "" {
				t.Errorf("--read-only: %q exit %d, want no writes", out, code)
			}
			out, _, code = xrun(t, opts{}, []string{"--read-only", "--tmpfs", "/tmp", "--tmpfs", "/scratch:size=1m,mode=700"},
				"sh", "-c", "touch /tmp/x && echo tmp-ok; touch /scratch/y && echo scratch-ok; cat /proc/mounts")
			if code != 0 || !strings.HasPrefix(out, "tmp-ok\nscratch-ok\n") {
				t.Errorf("--read-only --tmpfs: %q exit %d", out, code)
			}
			if !strings.Contains(out, "tmpfs /scratch tmpfs rw,nosuid,nodev,relatime,size=1024k,mode=700") {
				t.Errorf("--tmpfs /scratch:size=1m,mode=700: not in /proc/mounts:\n%s", out)
			}
		})

		t.Run("rm", func(t *testing.T) {
			if _, _, code := xrun(t, opts{}, []string{"--rm"}, "true"); code != 0 {
				t.Errorf("--rm: exit %d", code)
			}
			_, stderr, code := xrun(t, opts{}, []string{"--rm", "--name", "x"}, "true")
			wantXrunError(t, stderr, code, "--rm and --name are mutually exclusive")
			_, stderr, code = xrun(t, opts{}, []string{"-t"}, "true")
			wantXrunError(t, stderr, code, "-t needs standard input to be a terminal")
		})
	})
}

// TestNamedContainer: --name keeps the upper layer across runs of the same
// image, refuses another image and a second concurrent run, survives a kill
// -9 of its run; xrun ps lists it and xrun rm removes it, also files owned
// by subordinate ids.
func TestNamedContainer(t *testing.T) {
	p := platformByName("linux/arm64")
	for i, user := range testUsers {
		t.Run(user, func(t *testing.T) {
			u := needRun(t, user, p)
			img := h.reg.ref(busyboxRepo)
			name := "named-" + user
			xrun := func(t *testing.T, args ...string) (string, string, int) {
				t.Helper()
				return run(t, opts{user: u}, args...)
			}
			named := func(cmd ...string) []string {
				return append([]string{"--platform", p.Name, "--name", name, img, "--"}, cmd...)
			}
			t.Cleanup(func() { xrun(t, "rm", "-f", name) })

			script := "echo kept > /etc/kept"
			if u.subIDs {
				script += "; mkdir -p /home/bob && echo b > /home/bob/f && chown -R 1000:1000 /home/bob && chmod 700 /home/bob"
			}
			if _, _, code := xrun(t, named("sh", "-c", script)...); code != 0 {
				t.Fatalf("first run: exit %d", code)
			}
			if out, _, code := xrun(t, named("cat", "/etc/kept")...); code != 0 || out != "kept\n" {
				t.Errorf("second run: /etc/kept = %q exit %d, want kept", out, code)
			}
			if _, _, code := xrun(t, "--platform", p.Name, img, "--", "cat", "/etc/kept"); code == 0 {
				t.Error("a run without --name sees the named container's file")
			}
			_, stderr, code := xrun(t, "--platform", p.Name, "--name", name, h.reg.ref(layersRepo), "--", "true")
			wantXrunError(t, stderr, code, "was created from", "xrun rm "+name)

			out, _, code := xrun(t, "ps")
			if code != 0 || !strings.Contains(out, name) || !strings.Contains(out, img) || !strings.Contains(out, p.Name) {
				t.Errorf("xrun ps: %q exit %d, want %s with its image and platform", out, code, name)
			}

			// A second run of the name while one runs is refused; so is rm.
			arg := strconv.Itoa(400 + i)
			t.Cleanup(func() { killLeftovers(u, arg) })
			cmd, _ := startXrun(t, opts{user: u}, named("sleep", arg)...)
			waitForSleep(t, u, cmd.Process.Pid, arg)
			_, stderr, code = xrun(t, named("true")...)
			wantXrunError(t, stderr, code, "in use")
			_, stderr, code = xrun(t, "rm", name)
			wantXrunError(t, stderr, code, "in use")
			if out, _, _ := xrun(t, "ps"); !strings.Contains(out, "running") {
				t.Errorf("xrun ps during a run: %q, want it shown as running", out)
			}
			// kill -9 of that run releases the name; the container is intact.
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
			for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline) && len(userProcs(u, arg)) > 0; {
				time.Sleep(100 * time.Millisecond)
			}
			if out, _, code := xrun(t, named("cat", "/etc/kept")...); code != 0 || out != "kept\n" {
				t.Errorf("after kill -9 of a run: /etc/kept = %q exit %d", out, code)
			}

			if _, stderr, code := xrun(t, "rm", name); code != 0 {
				t.Fatalf("xrun rm %s: exit %d: %s", name, code, stderr)
			}
			if _, err := os.Lstat(filepath.Join(u.cache, "containers", name)); err == nil {
				t.Errorf("xrun rm left %s", filepath.Join(u.cache, "containers", name))
			}
			if out, _, _ := xrun(t, "ps", "-q"); strings.Contains(out, name) {
				t.Errorf("xrun ps -q after rm: %q", out)
			}
			_, stderr, code = xrun(t, "rm", name)
			wantXrunError(t, stderr, code, "no such container")
			if _, _, code := xrun(t, "rm", "-f", name); code != 0 {
				t.Errorf("xrun rm -f of a missing name: exit %d", code)
			}
		})
	}
}

// TestAptWithoutSubIDs: with a single-id map, a container that has /etc/apt
// gets an apt configuration that keeps apt from switching to _apt, and -v
// says so; with a subordinate range it does not.
func TestAptWithoutSubIDs(t *testing.T) {
	p := platformByName("linux/arm64")
	for _, user := range testUsers {
		t.Run(user, func(t *testing.T) {
			u := needRun(t, user, p)
			img := h.reg.ref(busyboxRepo)
			name := "apt-" + user
			t.Cleanup(func() { run(t, opts{user: u}, "rm", "-f", name) })
			args := func(flags []string, cmd ...string) []string {
				return append(append(append([]string{"--platform", p.Name, "--name", name}, flags...), img, "--"), cmd...)
			}
			// The test image has no apt: give the named container an /etc/apt.
			if _, _, code := run(t, opts{user: u}, args(nil, "sh", "-c", "mkdir -p /etc/apt")...); code != 0 {
				t.Fatalf("mkdir /etc/apt: exit %d", code)
			}
			out, stderr, code := run(t, opts{user: u}, args([]string{"--verbose"}, "cat", "/etc/apt/apt.conf.d/00xrun-sandbox")...)
			if u.subIDs {
				if code == 0 {
					t.Errorf("with a subordinate range, the apt sandbox was disabled: %q", out)
				}
				return
			}
			if code != 0 || !strings.Contains(out, `APT::Sandbox::User "root";`) {
				t.Errorf("apt config: %q exit %d", out, code)
			}
			if !strings.Contains(stderr, "subordinate id range") {
				t.Errorf("--verbose does not explain the apt setting: %q", stderr)
			}
		})
	}
}
