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
	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/xrun-dev/xrun/pkg/accel"
	"github.com/xrun-dev/xrun/pkg/binfmt"
	"github.com/xrun-dev/xrun/pkg/cache"
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
	// Workdir, when set, is the working directory (-w), overriding BindCwd's
	// and the image's; it is created when missing.
	Workdir string
	// Volumes are host paths bound into the container (-v); Source and
	// Destination must be absolute.
	Volumes []sandbox.Bind
	// Tmpfs are tmpfs mounts (--tmpfs).
	Tmpfs []sandbox.Tmpfs
	// User runs the command as UID[:GID] or NAME[:GROUP] (--user), names
	// looked up in the image; "" uses the image's User, else root.
	User string
	// Entrypoint, when not nil, replaces the image's Entrypoint and drops
	// its Cmd, as docker's --entrypoint does; "" clears the Entrypoint.
	Entrypoint *string
	// Hostname inside the container ("" keeps the host's).
	Hostname string
	// Network is sandbox.NetworkHost (default) or sandbox.NetworkNone.
	Network string
	// ReadOnly makes the root filesystem read-only (--read-only).
	ReadOnly bool
	// Name keeps the container's changes under CacheDir/containers/<Name>
	// and reuses them in later runs with the same name and image (--name).
	Name string
	// Shell, with no Args, runs an interactive shell instead of the image's
	// Entrypoint and Cmd: the image's SHELL, else bash, else sh.
	Shell bool
	// Insecure lists registries that may be spoken to over plain HTTP
	// (--insecure-registry).
	Insecure []string
	// AdditionalCaches are read-only caches (XRUN_ADDITIONAL_CACHES) where
	// an image is looked for, with no network, before CacheDir and the
	// registry; one found there unpacked runs in place.
	AdditionalCaches []string
	// TTY gives the command a pseudo-terminal (-t).
	TTY bool
	// Interactive passes a terminal on Stdin to the command (-i; see
	// sandbox.Options.Interactive). Shell implies it.
	Interactive bool
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
	// Accel runs the image's compilers natively (--accel; pkg/accel):
	// when the image's toolchain cannot be accelerated, the run says why
	// and goes on emulated.
	Accel bool

	platform   *v1.Platform // Platform parsed by Check
	accelLayer string       // a tree to use as is (the self-check's)
}

// targetPlatform is the platform to pull: Platform as Check parsed it (or
// parsed now when Check was not called), else the host's.
func (o *Options) targetPlatform() (v1.Platform, error) {
	switch {
	case o.platform != nil:
		return *o.platform, nil
	case o.Platform != "":
		return pull.ParsePlatform(o.Platform)
	}
	return pull.HostPlatform(), nil
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

// Check validates, before anything is pulled or created, what a run's
// options ask of the sandbox and the registry: the platform (parsed here,
// once), the user spec, the container name, and a terminal on Stdin for
// TTY. The CLI calls it to fail before any work; Run relies on the sandbox
// to check the same again where it matters.
func (o *Options) Check() error {
	o.platform = nil
	if o.Platform != "" {
		p, err := pull.ParsePlatform(o.Platform)
		if err != nil {
			return err
		}
		o.platform = &p
	}
	if o.User != "" {
		if err := sandbox.CheckUserSpec(o.User); err != nil {
			return err
		}
	}
	if o.Name != "" {
		if err := sandbox.CheckName(o.Name); err != nil {
			return err
		}
	}
	if o.TTY {
		if f, ok := o.Stdin.(*os.File); !ok || !sandbox.IsTerminal(f) {
			return errors.New("-t needs standard input to be a terminal: drop -t when piping or in CI")
		}
	}
	return nil
}

// DefaultCacheDir is $XRUN_CACHE, else $XDG_CACHE_HOME/xrun, else
// ~/.cache/xrun. XRUN_CACHE is public and documented.
func DefaultCacheDir() string { return cache.DefaultDir() }

// Run prepares the image and runs the command. It returns
// *sandbox.ExitError for a non-zero exit of the command and
// *sandbox.CommandError when it could not be started.
func Run(ctx context.Context, o Options) error {
	o.fill()
	log := o.Logger
	// A named container is locked first: a second run of the same name
	// fails at once, before any pull.
	var ctr *sandbox.Container
	if o.Name != "" {
		c, err := sandbox.OpenContainer(o.CacheDir, o.Name)
		if err != nil {
			return err
		}
		defer c.Close()
		ctr = c
	}
	r, err := resolve(ctx, o, PullOptions{Insecure: o.Insecure})
	if err != nil {
		return err
	}
	// Decide the emulation before the download: a platform that cannot
	// run here fails now, not after pulling every layer.
	plat := r.img.Platform
	plan, err := decide(ctx, &o, plat.Architecture, plat.Variant)
	if err != nil {
		return err
	}
	logEmulation(log, plan)
	p, err := r.ensure(ctx)
	if err != nil {
		return err
	}
	// The run holds its rootfs (shared lock): rmi refuses it, prune skips it.
	defer p.Release()
	sopts, err := sandboxOptions(o, p, ctr, plan)
	if err != nil {
		return err
	}
	layer := o.accelLayer
	if layer == "" && o.Accel {
		l, release := accelerate(ctx, o, p, plan)
		defer release()
		layer = l
	}
	sopts.Layers = p.Layers
	if layer != "" {
		sopts.Layers = append([]string{layer}, p.Layers...)
		if log.Enabled(ctx, slog.LevelInfo) {
			sopts.Env = mergeEnv(sopts.Env, []string{accel.EnvVerbose + "=1"})
		}
	}
	t0 := time.Now()
	err = sandbox.Run(ctx, sopts)
	log.Debug("run done, container removed", "took", time.Since(t0).Round(time.Millisecond))
	return err
}

func logEmulation(log *slog.Logger, plan *binfmt.Plan) {
	if plan.NotNative != "" {
		log.Info("emulation", "strategy", plan.Strategy, "emulator", plan.Emulator, "not native", plan.NotNative)
	} else {
		log.Info("emulation", "strategy", plan.Strategy, "emulator", plan.Emulator)
	}
}

// sandboxOptions are the sandbox.Options of the run of o in the prepared
// image p (in the named container ctr when not nil) with the emulation
// plan: its command, user, environment, binds and working directory.
func sandboxOptions(o Options, p *Prepared, ctr *sandbox.Container, plan *binfmt.Plan) (sandbox.Options, error) {
	cfg := p.Image.Config.Config
	args, err := runArgs(o, cfg.Entrypoint, cfg.Cmd, cfg.Shell, p.Rootfs)
	if err != nil {
		return sandbox.Options{}, err
	}
	var upper, work string
	if ctr != nil {
		err := ctr.Attach(sandbox.ContainerMeta{
			Name: o.Name, Image: o.Image, Ref: p.Image.Ref,
			Platform: pull.PlatformString(p.Image.Platform), Digest: p.Image.Digest.String(),
		}, p.Rootfs)
		if err != nil {
			return sandbox.Options{}, err
		}
		upper, work = ctr.Upper, ctr.Work
	}
	usr, err := runUser(o.User, cfg.User, p.Rootfs, upper)
	if err != nil {
		return sandbox.Options{}, err
	}
	env := defaultEnv
	if usr.Home != "" {
		env = mergeEnv(defaultEnv, []string{"HOME=" + usr.Home})
	}
	sopts := sandbox.Options{
		Lower:     p.Rootfs,
		CacheDir:  o.CacheDir,
		Upper:     upper,
		Work:      work,
		Args:      args,
		Env:       mergeEnv(env, cfg.Env, o.Env),
		Cwd:       cfg.WorkingDir,
		Emulation: plan,
		TTY:       o.TTY,
		Hostname:  o.Hostname,
		Network:   o.Network,
		ReadOnly:  o.ReadOnly,
		Tmpfs:     o.Tmpfs,
		User:      usr,
		Stdin:     o.Stdin,
		Stdout:    o.Stdout,
		Stderr:    o.Stderr,
		Logger:    o.Logger,

		Interactive: o.Interactive || o.Shell,
	}
	if plan.Strategy == binfmt.Native {
		sopts.Emulation = nil
	}
	// When the run root in /tmp is not safe to use (e.g. another user
	// created it), runs keep their state in the cache instead.
	sopts.FallbackRunRoot = cache.RunDir(o.CacheDir)
	addBinds(&sopts, o, p.Rootfs)
	if o.Workdir != "" {
		sopts.Cwd = o.Workdir
	}
	return sopts, nil
}

// runArgs is the command of the run: o's (or the image's shell, with
// Shell) or the image's Entrypoint and Cmd, by docker's rules.
func runArgs(o Options, entrypoint, cmd, imageShell []string, rootfs string) ([]string, error) {
	args := command(entrypoint, cmd, o.Entrypoint, o.Args)
	if o.Shell {
		args = o.Args
		if len(args) == 0 {
			args = shell(rootfs, imageShell)
		}
	}
	if len(args) == 0 {
		if o.Entrypoint != nil {
			return nil, fmt.Errorf("no command: --entrypoint %q clears the image's Cmd: give a command after --", *o.Entrypoint)
		}
		return nil, fmt.Errorf("image %s has no Entrypoint or Cmd: give a command after --, e.g. xrun %s -- sh", o.Image, o.Image)
	}
	return args, nil
}

// runUser is the user the command runs as: spec (--user), else the
// image's User, looked up in the image (and the named container's upper).
func runUser(spec, imageUser, rootfs, upper string) (*sandbox.User, error) {
	userSpec := spec
	if userSpec == "" {
		userSpec = imageUser
	}
	usr, err := sandbox.ResolveUser(userSpec, rootfs, upper)
	if err != nil && spec == "" {
		err = fmt.Errorf("image's User: %w", err)
	}
	return usr, err
}

// addBinds adds the run's binds to sopts: the current directory (when it
// may be bound, as the working directory), the volumes, and a host
// program given as the command (runner mode).
func addBinds(sopts *sandbox.Options, o Options, rootfs string) {
	log := o.Logger
	if o.BindCwd != "" {
		reason := unbindable(o.BindCwd)
		if reason == "" && sandbox.Inside(o.BindCwd, o.CacheDir) {
			reason = "it is inside xrun's cache, which a container must not write"
		}
		if reason != "" {
			log.Info("not binding the current directory", "dir", o.BindCwd, "reason", reason)
		} else {
			sopts.Binds = append(sopts.Binds, sandbox.Bind{Source: o.BindCwd, Destination: o.BindCwd})
			sopts.Cwd = o.BindCwd
		}
	}
	sopts.Binds = append(sopts.Binds, o.Volumes...)
	args := sopts.Args
	if len(o.Args) > 0 && !o.Shell && args[0] == o.Args[0] {
		if b := programBind(args[0], sopts.Binds, rootfs); b != nil {
			log.Info("binding the program read-only at its own path", "path", b.Source)
			sopts.Binds = append(sopts.Binds, *b)
		}
	}
}

// command is what a run executes, with docker's rules: the image's
// Entrypoint followed by the arguments given, or by the image's Cmd when
// none are. An --entrypoint (ep != nil) replaces the image's Entrypoint and
// drops its Cmd; an empty one clears the Entrypoint.
func command(imgEntrypoint, imgCmd []string, ep *string, args []string) []string {
	entry := imgEntrypoint
	if ep != nil {
		entry, imgCmd = nil, nil
		if *ep != "" {
			entry = []string{*ep}
		}
	}
	out := append([]string{}, entry...)
	if len(args) > 0 {
		return append(out, args...)
	}
	return append(out, imgCmd...)
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

// kernelDirs are mount points the container gets from the kernel: never
// bind the current directory at or below them.
var kernelDirs = []string{"/dev", "/proc", "/sys"}

// systemDirs hold the image's own files. Binding the current directory at
// one of them, or at one of their direct children (/usr/lib, /var/lib,
// /etc/apt), would hide the image's files; deeper project directories such
// as /var/lib/jenkins/workspace/x or /usr/src/project are fine.
var systemDirs = []string{"/bin", "/boot", "/etc", "/lib", "/lib32", "/lib64", "/libx32", "/sbin", "/usr", "/var"}

// unbindable says why dir cannot be bound at its own path, or "".
func unbindable(dir string) string {
	if dir == "/" {
		return "it is the root directory"
	}
	for _, k := range kernelDirs {
		if dir == k || strings.HasPrefix(dir, k+"/") {
			return "it is inside " + k + ", which the container mounts itself"
		}
	}
	for _, s := range systemDirs {
		if dir == s || filepath.Dir(dir) == s {
			return "it would hide the image's own " + dir
		}
	}
	return ""
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

// Containers lists the named containers in cacheDir ("" for the default).
func Containers(cacheDir string) ([]sandbox.ContainerInfo, error) {
	if cacheDir == "" {
		cacheDir = DefaultCacheDir()
	}
	return sandbox.ListContainers(cacheDir)
}

// RemoveContainer removes the named container from cacheDir ("" for the
// default), including files that runs created under subordinate ids.
func RemoveContainer(cacheDir, name string) error {
	if cacheDir == "" {
		cacheDir = DefaultCacheDir()
	}
	return sandbox.RemoveContainer(cacheDir, name)
}
