package sandbox

import (
	"errors"
	"fmt"
	"io"
	"os"
	"sync"

	"github.com/containerd/console"
	"github.com/opencontainers/runc/libcontainer"
	"golang.org/x/sys/unix"
)

// ttySession is a pseudo-terminal between the user's terminal and the
// command: libcontainer's init creates the pty inside the container and
// passes its master back over a socket; xrun puts the user's terminal in
// raw mode and copies bytes both ways.
type ttySession struct {
	host    console.Console
	sock    *os.File // our end of the console socket
	child   *os.File // the end passed to init
	master  *console.EpollConsole
	epoller *console.Epoller
	wg      sync.WaitGroup
}

// newTTY prepares proc to get a pty. host must be a terminal.
func newTTY(proc *libcontainer.Process, host *os.File) (*ttySession, error) {
	hc, err := console.ConsoleFromFile(host)
	if err != nil {
		return nil, fmt.Errorf("use %s as a terminal: %w", host.Name(), err)
	}
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("console socket: %w", err)
	}
	t := &ttySession{
		host:  hc,
		sock:  os.NewFile(uintptr(fds[0]), "console-socket"),
		child: os.NewFile(uintptr(fds[1]), "console-socket-child"),
	}
	proc.ConsoleSocket = t.child
	if ws, err := hc.Size(); err == nil {
		proc.ConsoleWidth, proc.ConsoleHeight = ws.Width, ws.Height
	}
	return t, nil
}

// attach receives the pty master once the container has started and starts
// copying between it and stdin/stdout.
func (t *ttySession) attach(stdin io.Reader, stdout io.Writer) error {
	_ = t.child.Close()
	f, err := recvFile(t.sock)
	if err != nil {
		return fmt.Errorf("receive the container's terminal: %w", err)
	}
	c, err := console.ConsoleFromFile(f)
	if err != nil {
		return err
	}
	// The host terminal translates \n itself: without this every line
	// would end in \r\r\n.
	if err := console.ClearONLCR(c.Fd()); err != nil {
		return err
	}
	t.epoller, err = console.NewEpoller()
	if err != nil {
		return err
	}
	t.master, err = t.epoller.Add(c)
	if err != nil {
		return err
	}
	go func() { _ = t.epoller.Wait() }()
	go func() { _, _ = io.Copy(t.master, stdin) }()
	t.wg.Add(1)
	go func() {
		defer t.wg.Done()
		_, _ = io.Copy(stdout, t.master)
	}()
	return t.host.SetRaw()
}

// resize follows the host terminal's size (on SIGWINCH).
func (t *ttySession) resize() {
	if t.master != nil {
		_ = t.master.ResizeFrom(t.host)
	}
}

// close drains the output and restores the host terminal.
func (t *ttySession) close() {
	if t.master != nil && t.epoller != nil {
		_ = t.master.Shutdown(t.epoller.CloseConsole)
		t.wg.Wait()
		_ = t.master.Close()
	}
	_ = t.sock.Close()
	_ = t.child.Close()
	_ = t.host.Reset()
}

// recvFile receives one file descriptor sent with SCM_RIGHTS.
func recvFile(sock *os.File) (*os.File, error) {
	name := make([]byte, 4096)
	oob := make([]byte, unix.CmsgSpace(4))
	n, oobn, _, _, err := unix.Recvmsg(int(sock.Fd()), name, oob, 0)
	if err != nil {
		return nil, err
	}
	msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
	if err != nil {
		return nil, err
	}
	if len(msgs) != 1 {
		return nil, errors.New("no file descriptor received")
	}
	fds, err := unix.ParseUnixRights(&msgs[0])
	if err != nil {
		return nil, err
	}
	if len(fds) != 1 {
		return nil, errors.New("expected one file descriptor")
	}
	return os.NewFile(uintptr(fds[0]), string(name[:n])), nil
}

// IsTerminal reports whether f is a terminal.
func IsTerminal(f *os.File) bool {
	fd, err := rawFD(f)
	if err != nil {
		return false
	}
	_, err = unix.IoctlGetTermios(fd, unix.TCGETS)
	return err == nil
}
