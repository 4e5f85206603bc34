// Command xrun runs and builds software for other CPU architectures in
// rootless containers: no daemon, no root, no host set-up.
package main

import (
	"path/filepath"

	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"

	"github.com/xrun-dev/xrun/pkg/accel"

	"github.com/urfave/cli/v2"

	"github.com/xrun-dev/xrun/pkg/sandbox"
)

// version is set by the Makefile (-X main.version=...).
var version = "dev"

func main() {
	// The tree of --accel links the image's cc1 and cc1plus to a copy of
	// xrun: called by those names, it is the compiler wrapper.
	if accel.IsWrapperName(filepath.Base(os.Args[0])) {
		accel.WrapperMain()
	}
	os.Exit(Main(context.Background(), os.Args, os.Stdin, os.Stdout, os.Stderr))
}

// Main runs the CLI with args (args[0] is the program name) and returns the
// process exit status. It prints xrun's own errors as one line on stderr.
func Main(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	// Until the command runs (the sandbox forwards signals to it from
	// then on), SIGINT/SIGTERM cancel the pull or unpack in progress.
	sigc := make(chan os.Signal, 1)
	signal.Notify(sigc, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sigc)
	go func() {
		select {
		case s := <-sigc:
			cancel(signalError{s.(syscall.Signal)})
		case <-ctx.Done():
		}
	}()

	app := newApp(stdin, stdout, stderr)
	app.Metadata = map[string]any{"args": args}
	err := app.RunContext(ctx, args)
	// The command's own status passes through silently, even when a signal
	// arrived: once the command runs, the sandbox forwards SIGINT/SIGTERM
	// to it and the command decides how to end (a trap may exit 3), as with
	// docker and podman.
	var ee *sandbox.ExitError
	if err == nil || errors.As(err, &ee) {
		return sandbox.ExitStatus(err)
	}
	var se signalError
	if errors.As(context.Cause(ctx), &se) {
		return 128 + int(se.sig)
	}
	return reportError(stderr, err)
}

// reportError prints xrun's own error err once, on one line with its hint,
// and returns the exit status it calls for.
func reportError(stderr io.Writer, err error) int {
	var reported silentError
	if !errors.As(err, &reported) {
		fmt.Fprintf(stderr, "xrun: %s\n", message(cliWording(err)))
	}
	return sandbox.ExitStatus(err)
}

type signalError struct{ sig syscall.Signal }

func (e signalError) Error() string { return "interrupted by " + e.sig.String() }

func newApp(stdin io.Reader, stdout, stderr io.Writer) *cli.App {
	// --version has no short form: -v is --volume for runs, as in docker.
	cli.VersionFlag = &cli.BoolFlag{Name: "version", Usage: "print the version"}
	app := &cli.App{
		Name:      "xrun",
		Usage:     "run and build software for other CPU architectures, rootless",
		UsageText: "xrun [options] IMAGE [-- COMMAND [ARG...]]\nxrun COMMAND [options] [ARGS...]",
		Version:   version,
		Description: `xrun pulls IMAGE for --platform, unpacks it into a cache, and runs COMMAND
in it in new user, mount and pid namespaces, with qemu-user emulation when the
platform is foreign. The current directory is bound at the same path and is
the working directory. No root, no daemon, nothing registered on the host.

Examples:
   xrun --platform linux/arm64 debian:bookworm -- uname -m
   ARM64 = xrun --platform linux/arm64 debian:bookworm --      # in a Makefile
   check-arm64: ; $(ARM64) make check`,
		Flags:                  runFlags(),
		Action:                 runAction,
		Reader:                 stdin,
		Writer:                 stdout,
		ErrWriter:              stderr,
		HideHelpCommand:        true,
		EnableBashCompletion:   true,
		UseShortOptionHandling: true,
		// -e CFLAGS=-O2,-g and --tmpfs /run:size=1m,mode=755 are one value
		// each: repeated flags, never comma-split.
		DisableSliceFlagSeparator: true,
		// Exit codes are ours to return (see Main), never os.Exit inside
		// Run, which would skip deferred clean-up.
		ExitErrHandler: func(*cli.Context, error) {},
		Commands:       commands(),
	}
	return app
}

// newLogger returns the logger -v/--debug ask for: nothing by default.
func newLogger(c *cli.Context) *slog.Logger {
	level := slog.LevelWarn
	switch {
	case c.Bool("debug"):
		level = slog.LevelDebug
	case c.Bool("verbose"):
		level = slog.LevelInfo
	case c.Bool("quiet"):
		level = slog.LevelError + 1
	}
	h := slog.NewTextHandler(c.App.ErrWriter, &slog.HandlerOptions{
		Level: level,
		ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
			if a.Key == slog.TimeKey && len(groups) == 0 {
				return slog.Attr{}
			}
			return a
		},
	})
	return slog.New(h).With("prog", "xrun")
}

// registered holds the subcommands; each command's file adds itself in an
// init function, so commands can be added without touching this file.
var registered []*cli.Command

func register(c *cli.Command) { registered = append(registered, c) }

// commands returns the subcommands sorted by name, as --help lists them.
func commands() []*cli.Command {
	cs := slices.Clone(registered)
	slices.SortFunc(cs, func(a, b *cli.Command) int { return strings.Compare(a.Name, b.Name) })
	return cs
}
