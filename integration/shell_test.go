//go:build integration

package integration

import (
	"context"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/containerd/console"
)

// ptyOutput collects what a pty master prints.
type ptyOutput struct {
	mu  sync.Mutex
	buf strings.Builder
}

func (p *ptyOutput) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.buf.Write(b)
}

func (p *ptyOutput) String() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.buf.String()
}

// waitFor waits until the output after offset from contains want, and
// returns the offset after it.
func (p *ptyOutput) waitFor(t *testing.T, from int, want string) int {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		s := p.String()
		if i := strings.Index(s[from:], want); i >= 0 {
			return from + i + len(want)
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("the terminal never showed %q; it shows:\n%s", want, p.String()[from:])
	return 0
}

// TestShellPTY drives `xrun shell` on a real pseudo-terminal, as a person
// at a terminal would, on an emulated arm64 image: the shell gets a tty,
// line editing input, Ctrl-C interrupts the foreground job (not the shell),
// a window resize reaches the container, and `exit 3` is xrun's status.
func TestShellPTY(t *testing.T) {
	needImages(t)
	needQemu(t, platformByName("linux/arm64"))
	needBinfmtNS(t)
	u := needUser(t, subUserName)
	dir := workDir(t, u)

	master, slavePath, err := console.NewPty()
	if err != nil {
		t.Fatal(err)
	}
	defer master.Close()
	if err := master.Resize(console.WinSize{Height: 30, Width: 100}); err != nil {
		t.Fatal(err)
	}
	slave, err := os.OpenFile(slavePath, os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer slave.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := userCommand(ctx, u, dir, []string{"TERM=xterm"}, h.xrun, "shell", "--platform", "linux/arm64", h.reg.ref(busyboxRepo))
	cmd.Stdin, cmd.Stdout, cmd.Stderr = slave, slave, slave
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	slave.Close()
	var out ptyOutput
	go func() { _, _ = ioCopy(&out, master) }()
	send := func(s string) {
		if _, err := master.Write([]byte(s)); err != nil {
			t.Fatal(err)
		}
	}

	at := out.waitFor(t, 0, "# ") // the prompt
	send("uname -m; tty; stty size\r")
	at = out.waitFor(t, at, "aarch64")
	at = out.waitFor(t, at, "/dev/pts/")
	at = out.waitFor(t, at, "30 100")

	// Ctrl-C goes to the foreground job; the shell survives it.
	send("sleep 100\r")
	time.Sleep(500 * time.Millisecond)
	send("\x03")
	send("echo still-$((40+2))\r")
	at = out.waitFor(t, at, "still-42")

	// The container follows the terminal's size.
	if err := master.Resize(console.WinSize{Height: 20, Width: 70}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	send("stty size\r")
	at = out.waitFor(t, at, "20 70")

	send("exit 3\r")
	err = cmd.Wait()
	if code := exitCode(t, err); code != 3 {
		t.Errorf("xrun shell after exit 3: status %d, want 3; terminal:\n%s", code, out.String())
	}
	// Without a terminal nothing adds \r: checked by every piped test; here
	// the terminal's own \r\n is expected and the output must not double it.
	if strings.Contains(out.String(), "\r\r\n") {
		t.Errorf("the terminal output has doubled carriage returns:\n%q", out.String())
	}
	_ = at
}

func ioCopy(w *ptyOutput, r console.Console) (int64, error) {
	buf := make([]byte, 4096)
	var n int64
	for {
		k, err := r.Read(buf)
		if k > 0 {
			_, _ = w.Write(buf[:k])
			n += int64(k)
		}
		if err != nil {
			return n, err
		}
	}
}

// TestRootfsUnchanged removes /usr, /bin and more inside a run and checks that the
// cached image is untouched: the next run still has them.
func TestRootfsUnchanged(t *testing.T) {
	needImages(t)
	for _, user := range testUsers {
		t.Run(user, func(t *testing.T) {
			u := needUser(t, user)
			img := h.reg.ref(busyboxRepo)
			_, _, code := run(t, opts{user: u}, "--no-cwd", "--platform", "linux/amd64", img, "--", "/bin/busybox", "rm", "-rf", "/usr", "/bin", "/etc/passwd")
			if code != 0 {
				t.Fatalf("rm -rf /usr /bin /etc/passwd inside a run: status %d", code)
			}
			out, _, code := run(t, opts{user: u}, "--platform", "linux/amd64", img, "--", "sh", "-c", "ls /bin/sh /etc/passwd")
			if code != 0 || out != "/bin/sh\n/etc/passwd\n" {
				t.Errorf("after rm -rf in an earlier run: %d, %q; want the image intact", code, out)
			}
		})
	}
}
