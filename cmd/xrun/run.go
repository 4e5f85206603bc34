package main

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/xrun-dev/xrun/pkg/config"
	"github.com/xrun-dev/xrun/pkg/engine"
	"github.com/xrun-dev/xrun/pkg/pull"
	"github.com/xrun-dev/xrun/pkg/sandbox"
)

func init() { register(runCommand) }

var runCommand = &cli.Command{
	Name:      "run",
	Usage:     "run a command in an image (the default command)",
	ArgsUsage: "IMAGE [-- COMMAND [ARG...]]",
	Description: `Without COMMAND, runs the image's Entrypoint and Cmd.

Examples:
   xrun run --platform linux/riscv64 debian:sid -- make check
   xrun run --platform linux/arm/v7 alpine -- sh -c 'uname -m'`,
	Flags:  runFlags(),
	Action: runAction,
}

// commonFlags are the flags of every command that resolves an image.
func commonFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "platform", Usage: "image platform `OS/ARCH[/VARIANT]` (default: the host's)", EnvVars: []string{"XRUN_PLATFORM"}},
		&cli.StringFlag{Name: "pull", Value: "missing", Usage: "pull policy: `missing`, always or never"},
		&cli.BoolFlag{Name: "verbose", Aliases: []string{"v"}, Usage: "say what happens and how long each phase takes"},
		&cli.BoolFlag{Name: "debug", Usage: "say even more than --verbose"},
		&cli.BoolFlag{Name: "quiet", Aliases: []string{"q"}, Usage: "print nothing but errors"},
		insecureRegistryFlag(),
	}
}

func runFlags() []cli.Flag {
	flags := commonFlags()
	// -v is --volume here, as in docker; --verbose keeps its long form.
	for _, f := range flags {
		if b, ok := f.(*cli.BoolFlag); ok && b.Name == "verbose" {
			b.Aliases = nil
		}
	}
	return append(flags,
		&cli.StringSliceFlag{Name: "env", Aliases: []string{"e"}, Usage: "set `KEY=VALUE` in the container (KEY alone: take it from the host)"},
		&cli.StringSliceFlag{Name: "env-file", Usage: "read variables from `FILE` (KEY=VALUE or KEY lines; # comments); -e wins"},
		&cli.StringSliceFlag{Name: "volume", Aliases: []string{"v"}, Usage: "bind host path SRC (relative: to the current directory) at DST: `SRC:DST[:ro]`"},
		&cli.StringFlag{Name: "workdir", Aliases: []string{"w"}, Usage: "working directory `DIR` in the container (absolute; created if missing)"},
		&cli.StringFlag{Name: "user", Aliases: []string{"u"}, Usage: "run as `UID[:GID]` or NAME[:GROUP] of the image (other than root needs a subordinate id range)"},
		&cli.StringFlag{Name: "entrypoint", Usage: "replace the image's Entrypoint with `CMD` and drop its Cmd ('' clears it)"},
		&cli.StringFlag{Name: "hostname", Usage: "host name `NAME` in the container"},
		&cli.StringFlag{Name: "network", Aliases: []string{"net"}, Value: sandbox.NetworkHost, Usage: "`host` (the host's network) or none (loopback only)"},
		&cli.BoolFlag{Name: "read-only", Usage: "make the container's root filesystem read-only"},
		&cli.StringSliceFlag{Name: "tmpfs", Usage: "mount a tmpfs at `DIR[:OPTIONS]` (e.g. /run:size=64m)"},
		&cli.StringFlag{Name: "name", Usage: "keep the container's changes under `NAME` and reuse them in later runs (xrun ps, xrun rm)"},
		&cli.BoolFlag{Name: "rm", Usage: "remove the container's changes when it exits (the default; accepted for docker habits)"},
		&cli.BoolFlag{Name: "interactive", Aliases: []string{"i"}, Usage: "pass standard input to the command when it is a terminal (pipes and files always pass; a terminal without -i or -t gives /dev/null)"},
		&cli.BoolFlag{Name: "tty", Aliases: []string{"t"}, Usage: "give the command a pseudo-terminal (standard input must be a terminal)"},
		&cli.BoolFlag{Name: "no-cwd", Usage: "do not bind the current directory into the container"},
		&cli.StringFlag{Name: "emulator", Usage: "static qemu-user `PATH` to use for a foreign platform", EnvVars: []string{"XRUN_QEMU_PATH"}},
		targetFlag,
		&cli.BoolFlag{Name: "accel", Usage: "run the image's gcc/g++ compilers and binutils natively (same versions, identical output; Debian/Ubuntu images; README \"Native-speed builds\")", EnvVars: []string{"XRUN_ACCEL"}},
		&cli.BoolFlag{Name: "no-emulator-pull", Usage: "when no emulator is found, fail instead of installing one (xrun emulator install)"},
	)
}

// positional returns the arguments after the flags, keeping a leading "--"
// that the flag parser consumed: "xrun -- make" has no image, while
// "xrun make" names the image "make".
func positional(c *cli.Context) []string {
	rest := c.Args().Slice()
	raw, _ := c.App.Metadata["args"].([]string)
	if i := len(raw) - len(rest) - 1; i >= 0 && raw[i] == "--" {
		return append([]string{"--"}, rest...)
	}
	return rest
}

// splitArgs takes "[IMAGE] [--] CMD..." apart: a leading "--" means no
// image on the command line (it comes from .xrun.yaml or XRUN_IMAGE).
func splitArgs(args []string) (image string, cmd []string) {
	if len(args) == 0 {
		return "", nil
	}
	if args[0] == "--" {
		return "", args[1:]
	}
	image, cmd = args[0], args[1:]
	if len(cmd) > 0 && cmd[0] == "--" {
		cmd = cmd[1:]
	}
	return image, cmd
}

// target is one run of an invocation: the options of one .xrun.yaml
// target ("" when there are no targets).
type target struct {
	name string
	opts engine.Options
}

// runTargets turns the flags, .xrun.yaml and XRUN_* variables into the runs
// of this invocation: one, or one per target for --target all. Every flag
// and setting is checked before anything is pulled.
func runTargets(c *cli.Context) ([]target, error) {
	proj, err := loadProject(c)
	if err != nil {
		return nil, err
	}
	names, err := proj.targets(c.String("target"))
	if err != nil {
		return nil, err
	}
	var ts []target
	for _, name := range names {
		s, err := proj.settings(name)
		if err != nil {
			return nil, err
		}
		o, err := runOpts(c, s)
		if err != nil {
			if len(names) > 1 {
				err = fmt.Errorf("target %s: %w", name, err)
			}
			return nil, err
		}
		ts = append(ts, target{name: name, opts: o})
	}
	return ts, nil
}

// runOpts turns the flags of a run, over the project settings s, into
// engine options; it checks every flag before anything is pulled.
func runOpts(c *cli.Context, s config.Settings) (engine.Options, error) {
	image, cmd := splitArgs(positional(c))
	policy, err := checkRunFlags(c)
	if err != nil {
		return engine.Options{}, err
	}
	wd, err := os.Getwd()
	if err != nil {
		return engine.Options{}, fmt.Errorf("find the current directory: %w", err)
	}
	env, err := runEnv(c)
	if err != nil {
		return engine.Options{}, err
	}
	volumes, tmpfs, err := runMounts(c, s, wd)
	if err != nil {
		return engine.Options{}, err
	}
	workdir, network, err := checkContainerFlags(c)
	if err != nil {
		return engine.Options{}, err
	}
	var entrypoint *string
	if c.IsSet("entrypoint") {
		ep := c.String("entrypoint")
		entrypoint = &ep
	}
	o := engine.Options{
		Image:    image,
		Platform: c.String("platform"),
		Pull:     policy,
		Args:     cmd,
		Env:      env,
		Emulator: c.String("emulator"),
		TTY:      c.Bool("tty"),
		Insecure: c.StringSlice("insecure-registry"),

		Interactive: c.Bool("interactive"),

		Volumes:    volumes,
		Tmpfs:      tmpfs,
		Workdir:    workdir,
		User:       c.String("user"),
		Entrypoint: entrypoint,
		Hostname:   c.String("hostname"),
		Network:    network,
		ReadOnly:   c.Bool("read-only"),
		Name:       c.String("name"),
		Accel:      c.Bool("accel"),

		Stdin:  c.App.Reader,
		Stdout: c.App.Writer,
		Stderr: c.App.ErrWriter,
		Logger: newLogger(c),
	}
	if err := applySettings(c, s, &o); err != nil {
		return engine.Options{}, err
	}
	if err := emulationOpts(c, &o); err != nil {
		return engine.Options{}, err
	}
	if !c.Bool("no-cwd") {
		o.BindCwd = wd
	}
	// Everything the engine needs checked (platform, --user, --name, -t's
	// terminal), before anything is pulled.
	if err := o.Check(); err != nil {
		return engine.Options{}, err
	}
	return o, nil
}

// checkRunFlags checks the pull policy and the flag combinations, and
// returns the policy.
func checkRunFlags(c *cli.Context) (pull.Policy, error) {
	policy, err := pull.ParsePolicy(c.String("pull"))
	if err != nil {
		return policy, err
	}
	if c.Bool("rm") && c.IsSet("name") {
		return policy, errors.New("--rm and --name are mutually exclusive: --name keeps the container, --rm (the default) does not")
	}
	return policy, nil
}

// runEnv is the environment --env-file and -e give, in that order: a
// later definition wins.
func runEnv(c *cli.Context) ([]string, error) {
	var env []string
	for _, f := range c.StringSlice("env-file") {
		e, err := parseEnvFile(f, os.LookupEnv)
		if err != nil {
			return nil, err
		}
		env = append(env, e...)
	}
	for _, e := range c.StringSlice("env") {
		kv, ok, err := parseEnvLine(e, os.LookupEnv)
		if err != nil {
			return nil, fmt.Errorf("invalid -e %q: use KEY=VALUE or KEY", e)
		}
		if ok {
			env = append(env, kv)
		}
	}
	return env, nil
}

// runMounts are the volumes (the settings', then -v) and the --tmpfs
// mounts of a run; relative sources are relative to wd.
func runMounts(c *cli.Context, s config.Settings, wd string) ([]sandbox.Bind, []sandbox.Tmpfs, error) {
	var volumes []sandbox.Bind
	for _, v := range append(slices.Clone(s.Volumes), c.StringSlice("volume")...) {
		b, err := parseVolume(v, wd)
		if err != nil {
			return nil, nil, err
		}
		volumes = append(volumes, b)
	}
	var tmpfs []sandbox.Tmpfs
	for _, v := range c.StringSlice("tmpfs") {
		t, err := parseTmpfs(v)
		if err != nil {
			return nil, nil, err
		}
		tmpfs = append(tmpfs, t)
	}
	return volumes, tmpfs, nil
}

// checkContainerFlags checks -w and --network, and returns the working
// directory and the network (engine's Options.Check checks the rest).
func checkContainerFlags(c *cli.Context) (workdir, network string, err error) {
	workdir = c.String("workdir")
	if workdir != "" && !strings.HasPrefix(workdir, "/") {
		return "", "", fmt.Errorf("invalid -w %q: the working directory must be an absolute path", workdir)
	}
	network = c.String("network")
	if network != sandbox.NetworkHost && network != sandbox.NetworkNone {
		return "", "", fmt.Errorf("invalid --network %q: use host or none", network)
	}
	return workdir, network, nil
}

func runAction(c *cli.Context) error {
	if c.NArg() == 0 {
		return cli.ShowAppHelp(c)
	}
	ts, err := runTargets(c)
	if err != nil {
		return err
	}
	if len(ts) == 1 {
		return engine.Run(c.Context, ts[0].opts)
	}
	return runAll(c, ts)
}

// runAll runs the command once per target, in the order of .xrun.yaml,
// and reports each result on stderr. It returns the first failure, so the
// exit status is that target's.
func runAll(c *cli.Context, ts []target) error {
	var first error
	results := make([]string, len(ts))
	for i, t := range ts {
		fmt.Fprintf(c.App.ErrWriter, "xrun: target %s (%s %s)\n", t.name, t.opts.Platform, t.opts.Image)
		err := engine.Run(c.Context, t.opts)
		switch code := sandbox.ExitStatus(err); {
		case err == nil:
			results[i] = "ok"
		case code == 125:
			results[i] = "failed: " + err.Error()
		default:
			results[i] = fmt.Sprintf("exit %d", code)
		}
		if err != nil && first == nil {
			first = err
		}
		if c.Context.Err() != nil {
			break
		}
	}
	for i, t := range ts {
		if results[i] != "" {
			fmt.Fprintf(c.App.ErrWriter, "xrun: target %s: %s\n", t.name, results[i])
		}
	}
	if first != nil {
		return silentError{first}
	}
	return nil
}

// silentError is a failure already reported: Main exits with its status
// without printing it again.
type silentError struct{ error }

func (e silentError) Unwrap() error { return e.error }
