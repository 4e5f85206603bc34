//go:build integration

package integration

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/containerd/console"

	"github.com/xrun-dev/xrun/internal/testutil"
)

// The attacks of issue 13 item 4: the user's terminal used to be handed to
// the container as it was when xrun ran without -t. The container runs in a
// session of its own, outside the terminal's job control, so a background
// `xrun ... &` read what the user typed at the foreground job; and any
// terminal descriptor lets a program try ioctl(TIOCSTI) to type commands into
// the user's shell.

// ttySession is a victim's bash running a script on a real pseudo-terminal,
// as the session leader with the terminal as its controlling terminal: what
// a login shell in a terminal emulator is.
type ttySession struct {
	t      *testing.T
	master console.Console
	out    *ptyOutput
	cmd    *exec.Cmd
	done   chan error
	at     int
}

func startTTYSession(t *testing.T, u *testUser, dir, script string) *ttySession {
	t.Helper()
	master, slavePath, err := console.NewPty()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { master.Close() })
	// The terminal belongs to its user, as a login session's does (so that
	// /proc/self/fd reopens of it work as they would there).
	if os.Geteuid() == 0 {
		if err := os.Chown(slavePath, u.uid, u.gid); err != nil {
			t.Fatal(err)
		}
	}
	slave, err := os.OpenFile(slavePath, os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer slave.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	t.Cleanup(cancel)
	cmd := userCommand(ctx, u, dir, []string{"TERM=xterm"}, "/bin/bash", "-c", script)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = slave, slave, slave
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	s := &ttySession{t: t, master: master, out: &ptyOutput{}, cmd: cmd, done: make(chan error, 1)}
	go func() { _, _ = ioCopy(s.out, master) }()
	go func() { s.done <- cmd.Wait() }()
	return s
}

func (s *ttySession) waitFor(want string) { s.t.Helper(); s.at = s.out.waitFor(s.t, s.at, want) }

func (s *ttySession) send(text string) {
	s.t.Helper()
	if _, err := s.master.Write([]byte(text)); err != nil {
		s.t.Fatal(err)
	}
}

func (s *ttySession) wait() {
	s.t.Helper()
	select {
	case err := <-s.done:
		if err != nil {
			s.t.Errorf("the session's script failed: %v; terminal:\n%s", err, s.out.String())
		}
	case <-time.After(2 * time.Minute):
		s.t.Fatalf("the session's script did not end; terminal:\n%s", s.out.String())
	}
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

func hostPlatform(t *testing.T) string {
	p := "linux/" + runtime.GOARCH
	if _, ok := platformByNameOK(p); !ok {
		testutil.SkipOrFail(t, "no test image for the host's platform %s", p)
	}
	return p
}

func platformByNameOK(name string) (testPlatform, bool) {
	for _, p := range platforms {
		if p.Name == name {
			return p, true
		}
	}
	return testPlatform{}, false
}

// TestSecurityTTYBackgroundRead: the victim starts xrun in the background of
// a terminal session (a job of its shell, as `xrun ... &` at a prompt), and
// the container waits for a line on its standard input. The victim then
// types a password for the foreground job. The container must not get it:
// without -i it reads /dev/null (as docker's does); with -i xrun, a member
// of the terminal's session, is stopped by the kernel's job control
// (SIGTTIN) instead of reading, and `fg` then gives it the terminal, so what
// is typed afterwards reaches the container.
//
// On the code before the fix both cases fail: the container, holding the
// terminal outside its session, reads the password.
func TestSecurityTTYBackgroundRead(t *testing.T) {
	needImages(t)
	u := needUser(t, noSubUserName)
	plat := hostPlatform(t)
	img := h.reg.ref(busyboxRepo)
	// Pull first: the timing below is the run's only.
	if _, _, code := run(t, opts{user: u}, "pull", "--platform", plat, img); code != 0 {
		t.Fatalf("pull: status %d", code)
	}
	const password = "hunter2-secret"
	for _, tc := range []struct {
		name        string
		flag        string
		interactive bool
	}{
		{"without -i", "", false},
		{"with -i", "-i", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := workDir(t, u)
			// The job is in the background of a shell with job control,
			// its standard streams the terminal, as at an interactive prompt.
			tail := "wait\necho SCRIPT-DONE"
			if tc.interactive {
				tail = "jobs > jobs.txt\necho FG-NOW\nfg\necho SCRIPT-DONE"
			}
			script := fmt.Sprintf(`set -m
%s %s --platform %s %s -- sh -c 'touch ready; read x; echo "got:$x" > got' &
while [ ! -e ready ]; do sleep 0.1; done
sleep 0.5
echo WAITING-FOR-PASSWORD
sleep 2
read -r -t 8 pw
echo "shell:$pw" > shell
%s
`, h.xrun, tc.flag, plat, img, tail)
			s := startTTYSession(t, u, dir, script)
			s.waitFor("WAITING-FOR-PASSWORD")
			// What the user types for the foreground job.
			s.send(password + "\r")
			if tc.interactive {
				s.waitFor("FG-NOW")
				time.Sleep(500 * time.Millisecond)
				s.send("typed-after-fg\r")
			}
			s.waitFor("SCRIPT-DONE")
			s.wait()

			got, shell := readFile(t, filepath.Join(dir, "got")), readFile(t, filepath.Join(dir, "shell"))
			t.Logf("container: %q; foreground: %q; terminal:\n%s", got, shell, s.out.String())
			if strings.Contains(got, password) {
				t.Errorf("the background container read the password typed for the foreground job: %q", got)
			}
			if shell != "shell:"+password {
				t.Errorf("the foreground job read %q, want the password", shell)
			}
			if !tc.interactive && got != "got:" {
				t.Errorf("without -i the container read %q from a terminal, want end of file (/dev/null)", got)
			}
			if tc.interactive {
				if jobs := readFile(t, filepath.Join(dir, "jobs.txt")); !strings.Contains(jobs, "Stopped") {
					t.Errorf("with -i in the background, xrun was not stopped by job control: jobs said %q", jobs)
				}
				if got != "got:typed-after-fg" {
					t.Errorf("with -i after fg the container read %q, want what was typed then", got)
				}
			}
		})
	}
}

// TestSecurityTTYInject: a container run in the foreground of a terminal
// session, without -t, looks for a terminal among its descriptors and tries
// to type a command into the user's shell with TIOCSTI (directly, through a
// read-write reopen of /proc/self/fd/N, and after setsid + TIOCSCTTY). No
// terminal descriptor may reach it, and nothing it does may reach the
// shell's input.
//
// On the code before the fix the container had the terminal on fds 0, 1 and
// 2; the kernel refused TIOCSTI (EPERM: the container is outside the
// terminal's session, which keeps it as controlling terminal) even with
// dev.tty.legacy_tiocsti=1, so only the "terminals" check fails there.
func TestSecurityTTYInject(t *testing.T) {
	needImages(t)
	u := needUser(t, noSubUserName)
	plat := hostPlatform(t)
	img := h.reg.ref(busyboxRepo)
	if b, err := os.ReadFile("/proc/sys/dev/tty/legacy_tiocsti"); err == nil {
		t.Logf("dev.tty.legacy_tiocsti = %s", strings.TrimSpace(string(b)))
	}
	if _, _, code := run(t, opts{user: u}, "pull", "--platform", plat, img); code != 0 {
		t.Fatalf("pull: status %d", code)
	}
	dir := workDir(t, u)
	inj := filepath.Join(dir, "tiocsti")
	goBin, err := exec.LookPath("go")
	if err != nil {
		goBin = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	build := exec.Command(goBin, "build", "-trimpath", "-o", inj, ".")
	build.Dir = filepath.Join("testdata", "tiocsti")
	build.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+runtime.GOARCH)
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build the injector: %v: %s", err, out)
	}
	if err := os.Chmod(inj, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, flag := range []string{"", "-i"} {
		t.Run("flag "+flag, func(t *testing.T) {
			os.Remove(filepath.Join(dir, "after"))
			script := fmt.Sprintf(`%s %s --platform %s %s -- ./tiocsti 'echo INJECTED-BY-CONTAINER\n'
echo "xrun-status:$?"
read -r -t 3 line
echo "after:$line" > after
echo SCRIPT-DONE
`, h.xrun, flag, plat, img)
			s := startTTYSession(t, u, dir, script)
			s.waitFor("xrun-status:")
			s.waitFor("SCRIPT-DONE")
			s.wait()
			term := s.out.String()
			t.Logf("terminal:\n%s", term)
			if !strings.Contains(term, "xrun-status:0") {
				t.Errorf("the injector did not run (see the terminal above)")
			}
			if !strings.Contains(term, "terminals: none") {
				t.Errorf("a terminal descriptor reached the container (see its report above)")
			}
			if after := readFile(t, filepath.Join(dir, "after")); strings.Contains(after, "INJECTED") {
				t.Errorf("the container typed into the user's shell: it read %q", after)
			}
			if _, err := os.Stat(filepath.Join(dir, "INJECTED-BY-CONTAINER")); err == nil {
				t.Errorf("an injected command ran")
			}
		})
	}
}
