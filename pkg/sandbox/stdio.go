package sandbox

import (
	"errors"
	"io"
	"log/slog"
	"os"
	"sync"

	"github.com/opencontainers/runc/libcontainer"
	"golang.org/x/sys/unix"
)

// The container never receives a file descriptor of a terminal unless it
// gets a pseudo-terminal of its own (-t).
//
// Handing it the user's terminal as it is (xrun did, without -t) gives it
// more than standard input and output:
//   - it runs in a session of its own, outside the terminal's job control, so
//     a background `xrun ... &` read what was typed at the foreground job (a
//     password for sudo or ssh) instead of being stopped with SIGTTIN;
//   - every fd of a terminal can read it, even stdout and stderr (a shell's
//     0, 1 and 2 are one read-write open file description), and /proc/self/fd
//     reopens it read-write, so passing only stdout is the same danger;
//   - with a terminal fd, ioctl(TIOCSTI) types commands into the user's
//     shell where the kernel allows it (dev.tty.legacy_tiocsti=1 and the
//     terminal being the caller's controlling terminal, which a session
//     leader without one can try to make it with TIOCSCTTY once the user's
//     session has let it go), and TCSETS changes the terminal's settings.
//
// So, without -t:
//   - Standard input that is a terminal is not passed at all unless -i asks
//     for it (docker and podman do the same: without -i a command gets
//     /dev/null, and what the user types ahead goes to the shell). With -i
//     (and for `xrun shell`), xrun itself reads the terminal and feeds a pipe:
//     xrun is in the terminal's session, so the kernel's job control applies
//     to it as to any program: in the background, its read stops it with
//     SIGTTIN ("Stopped (tty input)") before it takes any byte, and `fg`
//     resumes it. That is what docker's and podman's clients do with -i.
//   - Standard output and error that are terminals become pipes that xrun
//     copies to the terminal (one pipe when both are the same terminal, so
//     the order of their lines is kept). The command sees no terminal, as
//     with docker without -t: programs that colour their output only on a
//     terminal stop doing so (use -t, or their force-colour option).
//   - Pipes, files and sockets are passed as they are, as before: `echo x |
//     xrun IMAGE -- cat` and `xrun IMAGE -- make > log` need no -i, and cost
//     no copy (a deliberate difference from docker, for Makefiles and CI).
type stdioRelay struct {
	childEnds []*os.File     // the container's ends: closed here once it started
	ours      []*os.File     // our ends and /dev/null, closed by finish
	out       sync.WaitGroup // output copies, done when the container's writers are gone
	stop      *os.File       // written to (then closed) to stop the input relay
}

// setupStdio sets proc's standard streams from opts (TTY false).
func setupStdio(proc *libcontainer.Process, opts Options, log *slog.Logger) (*stdioRelay, error) {
	r := &stdioRelay{}
	proc.Stdin, proc.Stdout, proc.Stderr = opts.Stdin, opts.Stdout, opts.Stderr

	if in, ok := opts.Stdin.(*os.File); ok && IsTerminal(in) {
		if !opts.Interactive {
			null, err := os.Open(os.DevNull)
			if err != nil {
				return nil, err
			}
			r.ours = append(r.ours, null)
			proc.Stdin = null
			log.Info("standard input is a terminal: the command reads /dev/null (pass -i to give it your input, -t for a terminal)")
		} else {
			fd, err := rawFD(in)
			if err != nil {
				return nil, err
			}
			pr, pw, err := os.Pipe()
			if err != nil {
				return nil, err
			}
			sr, sw, err := os.Pipe()
			if err != nil {
				pr.Close()
				pw.Close()
				return nil, err
			}
			r.childEnds = append(r.childEnds, pr)
			r.stop = sw
			proc.Stdin = pr
			go func() {
				defer sr.Close()
				relayTerminalInput(fd, pw, int(sr.Fd()))
			}()
		}
	}

	outTTY, _ := opts.Stdout.(*os.File)
	errTTY, _ := opts.Stderr.(*os.File)
	if outTTY != nil && !IsTerminal(outTTY) {
		outTTY = nil
	}
	if errTTY != nil && !IsTerminal(errTTY) {
		errTTY = nil
	}
	relay := func(dst *os.File) (*os.File, error) {
		pr, pw, err := os.Pipe()
		if err != nil {
			return nil, err
		}
		r.childEnds = append(r.childEnds, pw)
		r.ours = append(r.ours, pr)
		r.out.Add(1)
		go func() {
			defer r.out.Done()
			_, _ = io.Copy(dst, pr)
		}()
		return pw, nil
	}
	var err error
	if outTTY != nil {
		if proc.Stdout, err = relay(outTTY); err != nil {
			r.abort()
			return nil, err
		}
	}
	if errTTY != nil {
		if outTTY != nil && sameFile(outTTY, errTTY) {
			proc.Stderr = proc.Stdout
		} else if proc.Stderr, err = relay(errTTY); err != nil {
			r.abort()
			return nil, err
		}
	}
	return r, nil
}

// started closes the container's ends of the pipes in xrun, so that the
// output copies end when the container's last writer is gone.
func (r *stdioRelay) started() {
	for _, f := range r.childEnds {
		f.Close()
	}
	r.childEnds = nil
}

// finish stops the input relay and waits for the output to be copied. The
// container has exited (its pid namespace is gone with its init, and with
// it every writer of the pipes).
func (r *stdioRelay) finish() {
	r.started()
	r.stopInput()
	r.out.Wait()
	for _, f := range r.ours {
		f.Close()
	}
	r.ours = nil
}

// abort undoes setupStdio when the container never started.
func (r *stdioRelay) abort() {
	r.started()
	r.stopInput()
	for _, f := range r.ours {
		f.Close() // the output copies see EOF or an error and end
	}
	r.ours = nil
}

func (r *stdioRelay) stopInput() {
	if r.stop != nil {
		_, _ = r.stop.Write([]byte{0})
		r.stop.Close()
		r.stop = nil
	}
}

// relayTerminalInput copies what is typed at the terminal fd to w until
// end of file (Ctrl-D), an error, or a byte on stop. It polls before each
// read so that it can be stopped, and never changes the terminal's file
// flags (its open file description is the shell's). A read in the
// background stops xrun with SIGTTIN before any byte is taken (see above);
// if SIGTTIN is ignored or xrun's process group is orphaned, the read fails
// with EIO and the command gets end of file.
func relayTerminalInput(fd int, w *os.File, stop int) {
	defer w.Close()
	buf := make([]byte, 32<<10)
	for {
		pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}, {Fd: int32(stop), Events: unix.POLLIN}}
		if _, err := unix.Poll(pfd, -1); err != nil {
			if errors.Is(err, unix.EINTR) {
				continue
			}
			return
		}
		if pfd[1].Revents != 0 {
			return
		}
		if pfd[0].Revents == 0 {
			continue
		}
		n, err := unix.Read(fd, buf)
		switch {
		case errors.Is(err, unix.EINTR) || errors.Is(err, unix.EAGAIN):
			continue
		case err != nil || n <= 0:
			return
		}
		if _, err := w.Write(buf[:n]); err != nil {
			return // the command closed its standard input
		}
	}
}

// rawFD returns f's descriptor without os.File.Fd's switch to blocking
// mode, which would change the flags of the terminal's open file
// description, shared with the user's shell.
func rawFD(f *os.File) (int, error) {
	sc, err := f.SyscallConn()
	if err != nil {
		return -1, err
	}
	fd := -1
	if err := sc.Control(func(u uintptr) { fd = int(u) }); err != nil {
		return -1, err
	}
	return fd, nil
}

// sameFile reports whether a and b are the same file (device and inode).
func sameFile(a, b *os.File) bool {
	sa, err1 := a.Stat()
	sb, err2 := b.Stat()
	return err1 == nil && err2 == nil && os.SameFile(sa, sb)
}
