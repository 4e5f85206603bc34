// Command minibox is a tiny multi-call binary for xrun's integration tests on
// architectures that Debian bookworm has no busybox-static for (riscv64). The
// test harness cross-compiles it with CGO_ENABLED=0 and installs it as
// /bin/minibox with symlinks named after the applets.
//
// Applets: uname, cat, sh, touch, true, false, echo, sleep, kill, id, ls, env, pwd.
// "sh -c SCRIPT" understands only what the tests use: commands separated by
// ";", pipelines "A | B" (blank-separated "|"), "$$" for the shell's pid, and
// the builtin exit.
package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

var applets map[string]func(args []string) int

func init() {
	applets = map[string]func(args []string) int{
		"cat":   cat,
		"echo":  echo,
		"env":   env,
		"false": func([]string) int { return 1 },
		"id":    id,
		"kill":  kill,
		"ls":    ls,
		"pwd":   pwd,
		"sh":    sh,
		"sleep": sleep,
		"touch": touch,
		"true":  func([]string) int { return 0 },
		"uname": uname,
	}
}

func main() {
	args := os.Args
	name := filepath.Base(args[0])
	if strings.HasPrefix(name, "minibox") {
		if len(args) < 2 {
			fmt.Fprintln(os.Stderr, "usage: minibox APPLET [ARGS...]")
			os.Exit(2)
		}
		args = args[1:]
		name = filepath.Base(args[0])
	}
	os.Exit(runApplet(name, args[1:]))
}

func runApplet(name string, args []string) int {
	f, ok := applets[name]
	if !ok {
		fmt.Fprintf(os.Stderr, "minibox: %s: applet not found\n", name)
		return 127
	}
	return f(args)
}

func fail(applet string, err error) int {
	fmt.Fprintf(os.Stderr, "%s: %v\n", applet, err)
	return 1
}

func cstr[T int8 | uint8](b []T) string {
	var s strings.Builder
	for _, c := range b {
		if c == 0 {
			break
		}
		s.WriteByte(byte(c))
	}
	return s.String()
}

func uname(args []string) int {
	var u syscall.Utsname
	if err := syscall.Uname(&u); err != nil {
		return fail("uname", err)
	}
	fields := map[byte]string{
		's': cstr(u.Sysname[:]), 'n': cstr(u.Nodename[:]), 'r': cstr(u.Release[:]),
		'v': cstr(u.Version[:]), 'm': cstr(u.Machine[:]),
	}
	flags := ""
	for _, a := range args {
		if a == "-a" {
			flags = "snrvm"
			continue
		}
		flags += strings.TrimPrefix(a, "-")
	}
	if flags == "" {
		flags = "s"
	}
	var out []string
	for i := 0; i < len(flags); i++ {
		v, ok := fields[flags[i]]
		if !ok {
			fmt.Fprintf(os.Stderr, "uname: unknown option -%c\n", flags[i])
			return 1
		}
		out = append(out, v)
	}
	fmt.Println(strings.Join(out, " "))
	return 0
}

func cat(args []string) int {
	w := bufio.NewWriterSize(os.Stdout, 64<<10)
	defer w.Flush()
	if len(args) == 0 {
		args = []string{"-"}
	}
	for _, a := range args {
		var r io.Reader = os.Stdin
		if a != "-" {
			f, err := os.Open(a)
			if err != nil {
				return fail("cat", err)
			}
			defer f.Close()
			r = f
		}
		if _, err := io.Copy(w, r); err != nil {
			return fail("cat", err)
		}
	}
	if err := w.Flush(); err != nil {
		return fail("cat", err)
	}
	return 0
}

func echo(args []string) int {
	fmt.Println(strings.Join(args, " "))
	return 0
}

func env([]string) int {
	for _, e := range os.Environ() {
		fmt.Println(e)
	}
	return 0
}

func id(args []string) int {
	switch {
	case len(args) > 0 && args[0] == "-u":
		fmt.Println(os.Getuid())
	case len(args) > 0 && args[0] == "-g":
		fmt.Println(os.Getgid())
	default:
		fmt.Printf("uid=%d gid=%d\n", os.Getuid(), os.Getgid())
	}
	return 0
}

func ls(args []string) int {
	if len(args) == 0 {
		args = []string{"."}
	}
	for _, a := range args {
		ents, err := os.ReadDir(a)
		if err != nil {
			return fail("ls", err)
		}
		for _, e := range ents {
			fmt.Println(e.Name())
		}
	}
	return 0
}

func pwd([]string) int {
	d, err := os.Getwd()
	if err != nil {
		return fail("pwd", err)
	}
	fmt.Println(d)
	return 0
}

func sleep(args []string) int {
	if len(args) != 1 {
		fmt.Fprintln(os.Stderr, "usage: sleep SECONDS")
		return 1
	}
	s, err := strconv.ParseFloat(args[0], 64)
	if err != nil {
		return fail("sleep", err)
	}
	time.Sleep(time.Duration(s * float64(time.Second)))
	return 0
}

func touch(args []string) int {
	now := time.Now()
	for _, a := range args {
		f, err := os.OpenFile(a, os.O_CREATE|os.O_WRONLY, 0o644)
		if err != nil {
			return fail("touch", err)
		}
		f.Close()
		if err := os.Chtimes(a, now, now); err != nil {
			return fail("touch", err)
		}
	}
	return 0
}

var signals = map[string]syscall.Signal{
	"HUP": syscall.SIGHUP, "INT": syscall.SIGINT, "QUIT": syscall.SIGQUIT,
	"KILL": syscall.SIGKILL, "USR1": syscall.SIGUSR1, "USR2": syscall.SIGUSR2,
	"TERM": syscall.SIGTERM,
}

func kill(args []string) int {
	sig := syscall.SIGTERM
	if len(args) > 0 && strings.HasPrefix(args[0], "-") {
		s := strings.TrimPrefix(strings.TrimPrefix(args[0], "-"), "SIG")
		if n, err := strconv.Atoi(s); err == nil {
			sig = syscall.Signal(n)
		} else if v, ok := signals[s]; ok {
			sig = v
		} else {
			fmt.Fprintf(os.Stderr, "kill: unknown signal %s\n", args[0])
			return 1
		}
		args = args[1:]
	}
	rc := 0
	for _, a := range args {
		pid, err := strconv.Atoi(a)
		if err != nil {
			rc = fail("kill", err)
			continue
		}
		if err := syscall.Kill(pid, sig); err != nil {
			rc = fail("kill", err)
		}
	}
	// Killing ourselves: give the signal time to arrive before returning.
	time.Sleep(10 * time.Millisecond)
	return rc
}

// sh runs "sh -c SCRIPT": commands separated by ";" or newlines, words split
// on blanks, "$$" replaced by the pid. exit is a builtin; everything else runs
// as an applet in this process.
func sh(args []string) int {
	if len(args) < 2 || args[0] != "-c" {
		fmt.Fprintln(os.Stderr, "minibox sh: only 'sh -c SCRIPT' is supported")
		return 2
	}
	script := strings.ReplaceAll(args[1], "$$", strconv.Itoa(os.Getpid()))
	rc := 0
	for _, line := range strings.FieldsFunc(script, func(r rune) bool { return r == ';' || r == '\n' }) {
		words := strings.Fields(line)
		for i, w := range words {
			words[i] = strings.Trim(w, `'"`)
		}
		if len(words) == 0 {
			continue
		}
		if words[0] == "exit" {
			if len(words) > 1 {
				n, err := strconv.Atoi(words[1])
				if err != nil {
					return fail("sh", err)
				}
				return n
			}
			return rc
		}
		if slices.Contains(words, "|") {
			rc = pipeline(words)
			continue
		}
		rc = runApplet(words[0], words[1:])
	}
	return rc
}

// pipeline runs "A ARGS | B ARGS | ..." as child processes, each one
// /proc/self/exe with argv[0] = the applet name (like busybox's shell, so
// that it depends on the emulator keeping argv[0]). It returns the status
// of the last command.
func pipeline(words []string) int {
	var stages [][]string
	start := 0
	for i, w := range words {
		if w == "|" {
			stages = append(stages, words[start:i])
			start = i + 1
		}
	}
	stages = append(stages, words[start:])
	var cmds []*exec.Cmd
	var stdin io.Reader = os.Stdin
	for i, st := range stages {
		if len(st) == 0 {
			fmt.Fprintln(os.Stderr, "sh: syntax error near |")
			return 2
		}
		c := exec.Command("/proc/self/exe", st[1:]...)
		c.Args[0] = st[0]
		c.Stdin, c.Stderr = stdin, os.Stderr
		if i == len(stages)-1 {
			c.Stdout = os.Stdout
		} else {
			r, err := c.StdoutPipe()
			if err != nil {
				return fail("sh", err)
			}
			stdin = r
		}
		if err := c.Start(); err != nil {
			return fail("sh", err)
		}
		cmds = append(cmds, c)
	}
	rc := 0
	for _, c := range cmds {
		rc = 0
		if err := c.Wait(); err != nil {
			rc = 1
			if ee, ok := err.(*exec.ExitError); ok {
				rc = ee.ExitCode()
				if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
					rc = 128 + int(ws.Signal())
				}
			}
		}
	}
	return rc
}
