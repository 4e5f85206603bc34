package accel

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// Dir is where the tree's own files live inside the container.
const Dir = "/.xrun-accel"

// ConfigPath is the wrapper's configuration inside the container.
const ConfigPath = Dir + "/accel.json"

// Wrapped are the image's programs the wrapper stands in for.
var Wrapped = []string{"cc1", "cc1plus"}

// Config is what the wrapper reads at each call (written by Assemble).
type Config struct {
	Format int `json:"format"`
	// Native and Emulated map a wrapped program's name to the native
	// (patched cross) binary and to the image's own, both container paths.
	Native   map[string]string `json:"native"`
	Emulated map[string]string `json:"emulated"`
	// IdentFrom and IdentTo: the .ident line prefix the native cc1 writes
	// and the image's (they differ in the package revision only).
	IdentFrom string `json:"ident_from,omitempty"`
	IdentTo   string `json:"ident_to,omitempty"`
	Rules
	// SSPDefault: the image's gcc enables the stack protector by default
	// (Ubuntu), so it is in effect unless -fno-stack-protector.
	SSPDefault bool `json:"ssp_default,omitempty"`
	// LocalInclude are include directories the native compiler searches
	// and the cross one does not: a compile runs emulated when one of
	// them has entries.
	LocalInclude []string `json:"local_include,omitempty"`
}

// FormatVersion changes when Config or the tree's layout does; a tree of
// another format is made again.
const FormatVersion = 1

// EnvSwitch, set to 0 in the container's environment, makes every compile
// run the image's own compiler (an escape hatch per command).
const EnvSwitch = "XRUN_ACCEL"

// EnvVerbose, set to 1, makes the wrapper say on stderr which compiler ran
// and why (xrun --verbose sets it).
const EnvVerbose = "XRUN_ACCEL_VERBOSE"

// IsWrapperName reports whether a program called name (argv[0]'s base)
// is the wrapper.
func IsWrapperName(name string) bool {
	for _, w := range Wrapped {
		if name == w {
			return true
		}
	}
	return false
}

// Decide says whether a call of the wrapped compiler with args may run the
// native one (reason "") or must run the image's, and why.
func Decide(cfg *Config, args []string, getenv func(string) string, nonEmpty func(string) bool) string {
	if getenv(EnvSwitch) == "0" {
		return EnvSwitch + "=0"
	}
	// The stack protector and stack clash protection (both on by default
	// in Ubuntu's gcc, both in Debian's dpkg-buildflags).
	ssp, clash := cfg.SSPDefault, cfg.SSPDefault
	for _, a := range args {
		switch {
		case a == "-v" || a == "--version" || a == "-version" || strings.HasPrefix(a, "--help"):
			// The banner and the checksum are the cross compiler's.
			return a
		case strings.HasPrefix(a, "-fplugin"):
			return "plugins are built for the image's compiler (" + a + ")"
		case strings.HasPrefix(a, "-flto") && a != "-flto=0":
			return "LTO bytecode (" + a + ")"
		case strings.HasPrefix(a, "--output-pch"):
			return "precompiled header"
		case strings.HasSuffix(a, "=native"):
			return a
		case a == "-fno-stack-protector":
			ssp = false
		case strings.HasPrefix(a, "-fstack-protector"):
			ssp = true
		case a == "-fstack-clash-protection":
			clash = true
		case a == "-fno-stack-clash-protection":
			clash = false
		}
	}
	if ssp && cfg.SSPEmulated {
		return "stack protector: " + strings.Join(cfg.Why, "; ")
	}
	if clash && cfg.SSPEmulated {
		return "stack clash protection: " + strings.Join(cfg.Why, "; ")
	}
	for _, d := range cfg.LocalInclude {
		if nonEmpty(d) {
			return d + " is not empty and the cross compiler does not search it"
		}
	}
	return ""
}

// dirNonEmpty reports whether the directory d has an entry.
func dirNonEmpty(d string) bool {
	f, err := os.Open(d)
	if err != nil {
		return false
	}
	defer f.Close()
	names, _ := f.Readdirnames(1)
	return len(names) > 0
}

// WrapperMain is the wrapper: xrun runs it when called as cc1 or cc1plus
// (the tree links those names to a copy of xrun). It never returns.
func WrapperMain() {
	name := filepath.Base(os.Args[0])
	code, err := wrap(name, os.Args[1:])
	if err != nil {
		fmt.Fprintf(os.Stderr, "xrun accel: %s: %v\n", name, err)
		if code == 0 {
			code = 127
		}
	}
	os.Exit(code)
}

func wrap(name string, args []string) (int, error) {
	b, err := os.ReadFile(ConfigPath)
	if err != nil {
		return 127, err
	}
	var cfg Config
	if err := json.Unmarshal(b, &cfg); err != nil {
		return 127, fmt.Errorf("%s: %w", ConfigPath, err)
	}
	verbose := os.Getenv(EnvVerbose) == "1"
	if cfg.Native[name] == "" {
		return 127, fmt.Errorf("%s has no %s", ConfigPath, name)
	}
	why := Decide(&cfg, args, os.Getenv, dirNonEmpty)
	if why != "" {
		if verbose {
			fmt.Fprintf(os.Stderr, "xrun accel: %s: emulated (%s)\n", name, why)
		}
		emu := cfg.Emulated[name]
		err := syscall.Exec(emu, append([]string{emu}, args...), os.Environ())
		return 127, fmt.Errorf("exec %s: %w", emu, err)
	}
	t0 := time.Now()
	code, err := runNative(&cfg, cfg.Native[name], args)
	if verbose && err == nil {
		fmt.Fprintf(os.Stderr, "xrun accel: %s: native (%v)\n", name, time.Since(t0).Round(time.Millisecond))
	}
	return code, err
}

// runNative runs the native compiler as a child and gives the assembly it
// wrote the image's .ident. A signal that kills the child kills the
// wrapper the same way, so that the driver reports it as it would.
func runNative(cfg *Config, bin string, args []string) (int, error) {
	out := outputFile(args)
	cmd := exec.Command(bin, args...)
	cmd.Args[0] = bin
	cmd.Stdin, cmd.Stderr = os.Stdin, os.Stderr
	rewrite := cfg.IdentFrom != "" && cfg.IdentFrom != cfg.IdentTo
	var pipe io.ReadCloser
	if rewrite && (out == "" || out == "-") {
		p, err := cmd.StdoutPipe()
		if err != nil {
			return 127, err
		}
		pipe = p
	} else {
		cmd.Stdout = os.Stdout
	}
	signal.Ignore(syscall.SIGINT, syscall.SIGQUIT, syscall.SIGTERM, syscall.SIGHUP)
	if err := cmd.Start(); err != nil {
		return 127, err
	}
	var copyErr error
	if pipe != nil {
		copyErr = filterIdent(os.Stdout, pipe, cfg.IdentFrom, cfg.IdentTo)
	}
	err := cmd.Wait()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		if st, ok := ee.Sys().(syscall.WaitStatus); ok && st.Signaled() {
			signal.Reset()
			_ = syscall.Kill(os.Getpid(), st.Signal())
			return 128 + int(st.Signal()), nil
		}
		return ee.ExitCode(), nil
	} else if err != nil {
		return 127, err
	}
	if copyErr != nil {
		return 1, copyErr
	}
	if rewrite && out != "" && out != "-" && out != "/dev/null" {
		if err := rewriteIdent(out, cfg.IdentFrom, cfg.IdentTo); err != nil {
			return 1, err
		}
	}
	return 0, nil
}

// outputFile is the argument of cc1's last -o ("" when none).
func outputFile(args []string) string {
	out := ""
	for i := 0; i+1 < len(args); i++ {
		if args[i] == "-o" {
			out = args[i+1]
		}
	}
	return out
}

// identLine is the .ident directive line of the assembly cc1 writes for
// a package version prefix (`\t.ident\t"GCC: (Debian 12.2.0-14) `).
func identLine(pkgVersion string) string { return "\t.ident\t\"GCC: " + pkgVersion }

// rewriteIdent replaces, in the assembly file path, the .ident line's
// prefix from by to. cc1 writes .ident near the end.
func rewriteIdent(path, from, to string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	i := bytes.LastIndex(b, []byte("\n"+from))
	if i < 0 {
		return nil
	}
	var nb bytes.Buffer
	nb.Grow(len(b) + len(to) - len(from))
	nb.Write(b[:i+1])
	nb.WriteString(to)
	nb.Write(b[i+1+len(from):])
	return os.WriteFile(path, nb.Bytes(), 0o644)
}

// filterIdent copies r to w, replacing the .ident line prefix from by to.
func filterIdent(w io.Writer, r io.Reader, from, to string) error {
	br := bufio.NewReaderSize(r, 64<<10)
	bw := bufio.NewWriterSize(w, 64<<10)
	start := true // at the start of a line
	for {
		line, err := br.ReadSlice('\n')
		chunk := line
		if start && bytes.HasPrefix(line, []byte(from)) {
			chunk = append([]byte(to), line[len(from):]...)
		}
		if _, werr := bw.Write(chunk); werr != nil {
			return werr
		}
		start = err == nil
		switch {
		case errors.Is(err, bufio.ErrBufferFull):
		case err == io.EOF:
			return bw.Flush()
		case err != nil:
			return err
		}
	}
}
