package sandbox

import (
	"bufio"
	"io"
	"log/slog"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/containerd/console"
	"github.com/opencontainers/runc/libcontainer"
)

// TestSetupStdio: no terminal descriptor is given to the container without
// -t. A terminal on stdin becomes /dev/null, or with -i a pipe fed by xrun;
// a terminal on stdout/stderr becomes one pipe copied to it; pipes pass as
// they are.
func TestSetupStdio(t *testing.T) {
	master, slavePath, err := console.NewPty()
	if err != nil {
		t.Skipf("no pty: %v", err)
	}
	defer master.Close()
	slave, err := os.OpenFile(slavePath, os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer slave.Close()
	log := slog.New(slog.DiscardHandler)

	notTTY := func(name string, v any) {
		t.Helper()
		f, ok := v.(*os.File)
		if !ok {
			t.Fatalf("%s is %T, want an *os.File", name, v)
		}
		if IsTerminal(f) {
			t.Errorf("%s is a terminal", name)
		}
	}

	// Without -i.
	proc := &libcontainer.Process{}
	r, err := setupStdio(proc, Options{Stdin: slave, Stdout: slave, Stderr: slave}, log)
	if err != nil {
		t.Fatal(err)
	}
	notTTY("stdin", proc.Stdin)
	notTTY("stdout", proc.Stdout)
	if in := proc.Stdin.(*os.File); in.Name() != os.DevNull {
		t.Errorf("stdin is %s, want %s", in.Name(), os.DevNull)
	}
	if proc.Stderr != proc.Stdout {
		t.Errorf("stdout and stderr on one terminal got different pipes")
	}
	// What the container writes reaches the terminal.
	w := proc.Stdout.(*os.File)
	if _, err := w.Write([]byte("to-the-terminal\n")); err != nil {
		t.Fatal(err)
	}
	r.finish()
	line, err := bufio.NewReader(master).ReadString('\n')
	if err != nil || line != "to-the-terminal\r\n" {
		t.Errorf("the terminal shows %q, %v", line, err)
	}

	// With -i: a pipe that xrun feeds from the terminal.
	proc = &libcontainer.Process{}
	r, err = setupStdio(proc, Options{Stdin: slave, Stdout: slave, Stderr: slave, Interactive: true}, log)
	if err != nil {
		t.Fatal(err)
	}
	notTTY("stdin", proc.Stdin)
	in := proc.Stdin.(*os.File)
	if _, err := master.Write([]byte("typed\n")); err != nil {
		t.Fatal(err)
	}
	got := make(chan string, 1)
	go func() {
		l, _ := bufio.NewReader(in).ReadString('\n')
		got <- l
	}()
	select {
	case l := <-got:
		if l != "typed\n" {
			t.Errorf("the command read %q, want what was typed", l)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("what was typed never reached the command")
	}
	r.finish()

	// Pipes are passed as they are.
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer pr.Close()
	defer pw.Close()
	proc = &libcontainer.Process{}
	if _, err := setupStdio(proc, Options{Stdin: pr, Stdout: pw, Stderr: io.Discard}, log); err != nil {
		t.Fatal(err)
	}
	if proc.Stdin != pr || proc.Stdout != pw {
		t.Errorf("pipes were not passed as they are")
	}
}
