// Package engine carries out one xrun invocation: it resolves and pulls the
// image, unpacks its rootfs into the cache, decides how its architecture
// runs, and runs the command in the sandbox. The CLI only parses flags.
package engine

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	securejoin "github.com/cyphar/filepath-securejoin"

	"github.com/xrun-dev/xrun/pkg/binfmt"
	"github.com/xrun-dev/xrun/pkg/pull"
	"github.com/xrun-dev/xrun/pkg/sandbox"
)

// Options describe one run. Zero values have the documented defaults.
type Options struct {
	// CacheDir is the cache root (default: DefaultCacheDir()).
	CacheDir string
	// Image is the reference as the user typed it.
	Image string
	// Platform is OS/ARCH[/VARIANT]; "" means the host's.
	Platform string
	// Pull is the pull policy (default pull.PullMissing).
	Pull pull.Policy
	// Args replaces the image's Cmd (after its Entrypoint); empty runs
	// Entrypoint+Cmd.
	Args []string
	// Env is added to the image's Env (KEY=VALUE, later wins).
	Env []string
	// BindCwd is a host directory bound at the same path and used as the
	// working directory ("" keeps the image's WorkingDir).
	BindCwd string
	// Shell, with no Args, runs an interactive shell instead of the image's
	// Entrypoint and Cmd: the image's SHELL, else bash, else sh.
	Shell bool
	// TTY gives the command a pseudo-terminal (-t).
	TTY bool
	// Emulator overrides emulator discovery (--emulator).
	Emulator string
	// NoEmulatorPull: when no emulator is found, fail instead of
	// installing one from EmulatorImage() (--no-emulator-pull).
	NoEmulatorPull bool
	// Binfmt holds further binfmt.Decide settings (forced strategy, search
	// dirs); Emulator, InstalledDir and Logger are set from the above.
	Binfmt binfmt.Options
	Stdin  io.Reader
	Stdout io.Writer
	Stderr io.Writer
	Logger *slog.Logger
}

func (o *Options) fill() {
	if o.CacheDir == "" {
		o.CacheDir = DefaultCacheDir()
	}
	if o.Pull == "" {
		o.Pull = pull.PullMissing
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
}

// DefaultCacheDir is $XRUN_CACHE, else $XDG_CACHE_HOME/xrun, else
// ~/.cache/xrun. XRUN_CACHE is public and documented.
func DefaultCacheDir() string {
	if d := os.Getenv("XRUN_CACHE"); d != "" {
		return d
	}
	if d := os.Getenv("XDG_CACHE_HOME"); d != "" {
		return filepath.Join(d, "xrun")
	}
	if h, err := os.UserHomeDir(); err == nil {
		return filepath.Join(h, ".cache", "xrun")
	}
	return filepath.Join(os.TempDir(), fmt.Sprintf("xrun-cache-%d", os.Getuid()))
}

// Run prepares the image and runs the command. It returns
// *sandbox.ExitError for a non-zero exit of the command and
// *sandbox.CommandError when it could not be started.
func Run(ctx context.Context, o Options) error {
	o.fill()
	log := o.Logger
	p, err := Prepare(ctx, o)
	if err != nil {
		return err
	}
	cfg := p.Image.Config.Config
	args := append(append([]string{}, cfg.Entrypoint...), o.Args...)
	switch {
	case o.Shell:
		args = o.Args
		if len(args) == 0 {
			args = shell(p.Rootfs, cfg.Shell)
		}
	case len(o.Args) == 0:
		args = append(args, cfg.Cmd...)
	}
	if len(args) == 0 {
		return fmt.Errorf("image %s has no Entrypoint or Cmd: give a command after --, e.g. xrun %s -- sh", o.Image, o.Image)
	}

	plan, err := decide(ctx, &o, p.Image.Platform.Architecture, p.Image.Platform.Variant)
	if err != nil {
		return err
	}
	log.Info("emulation", "strategy", plan.Strategy, "emulator", plan.Emulator)

	sopts := sandbox.Options{
		Lower:     p.Rootfs,
		Args:      args,
		Env:       mergeEnv(defaultEnv, cfg.Env, o.Env),
		Cwd:       cfg.WorkingDir,
		Emulation: plan,
		TTY:       o.TTY,
		Stdin:     o.Stdin,
		Stdout:    o.Stdout,
		Stderr:    o.Stderr,
		Logger:    log,
	}
	if plan.Strategy == binfmt.Native {
		sopts.Emulation = nil
	}
	if o.BindCwd != "" {
		if reason := unbindable(o.BindCwd); reason != "" {
			log.Info("not binding the current directory", "dir", o.BindCwd, "reason", reason)
		} else {
			sopts.Binds = append(sopts.Binds, sandbox.Bind{Source: o.BindCwd, Destination: o.BindCwd})
			sopts.Cwd = o.BindCwd
		}
	}
	t0 := time.Now()
	err = sandbox.Run(ctx, sopts)
	log.Info("ran", "took", time.Since(t0).Round(time.Millisecond))
	return err
}

var defaultEnv = []string{
	"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
	"HOME=/root",
}

// mergeEnv merges KEY=VALUE lists; a later list overrides an earlier one.
func mergeEnv(lists ...[]string) []string {
	idx := map[string]int{}
	var out []string
	for _, l := range lists {
		for _, kv := range l {
			k, _, _ := strings.Cut(kv, "=")
			if i, ok := idx[k]; ok {
				out[i] = kv
				continue
			}
			idx[k] = len(out)
			out = append(out, kv)
		}
	}
	return out
}

// systemDirs are paths where binding the host's directory over the image's
// would replace the image's own system files.
var systemDirs = []string{"/bin", "/boot", "/dev", "/etc", "/lib", "/lib32", "/lib64", "/libx32", "/proc", "/sbin", "/sys", "/usr", "/var"}

// unbindable says why dir cannot be bound at its own path, or "".
func unbindable(dir string) string {
	if dir == "/" {
		return "it is the root directory"
	}
	for _, s := range systemDirs {
		if dir == s || strings.HasPrefix(dir, s+"/") {
			return "it is inside " + s + ", which the image provides"
		}
	}
	return ""
}

// ExitCode maps an error from Run to xrun's exit status: the command's own
// code, 126/127 when it could not be started, 125 for xrun's own failures.
func ExitCode(err error) int {
	var ee *sandbox.ExitError
	var ce *sandbox.CommandError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ee):
		return ee.Code
	case errors.As(err, &ce):
		return ce.Code
	}
	return 125
}

// shell picks the interactive shell of an image: its SHELL, else the first
// of bash and sh that exists in the rootfs.
func shell(root string, imageShell []string) []string {
	if len(imageShell) > 0 {
		return imageShell
	}
	for _, sh := range []string{"/bin/bash", "/usr/bin/bash"} {
		p, err := securejoin.SecureJoin(root, sh)
		if err != nil {
			continue
		}
		if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() {
			return []string{sh}
		}
	}
	return []string{"/bin/sh"}
}
