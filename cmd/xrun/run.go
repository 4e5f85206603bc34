package main

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/urfave/cli/v2"

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
		&cli.BoolFlag{Name: "debug", Usage: "say even more than -v"},
		&cli.BoolFlag{Name: "quiet", Aliases: []string{"q"}, Usage: "print nothing but errors"},
	}
}

func runFlags() []cli.Flag {
	return append(commonFlags(),
		&cli.StringSliceFlag{Name: "env", Aliases: []string{"e"}, Usage: "set `KEY=VALUE` in the container (KEY alone: take it from the host)"},
		&cli.BoolFlag{Name: "interactive", Aliases: []string{"i"}, Usage: "keep standard input open (always the case; accepted for docker habits)"},
		&cli.BoolFlag{Name: "tty", Aliases: []string{"t"}, Usage: "give the command a pseudo-terminal (standard input must be a terminal)"},
		&cli.BoolFlag{Name: "no-cwd", Usage: "do not bind the current directory into the container"},
		&cli.StringFlag{Name: "emulator", Usage: "static qemu-user `PATH` to use for a foreign platform", EnvVars: []string{"XRUN_QEMU_PATH"}},
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

// splitArgs takes "IMAGE [--] CMD..." apart.
func splitArgs(args []string) (image string, cmd []string, err error) {
	if len(args) == 0 || args[0] == "--" {
		return "", nil, errors.New("no image given: usage: xrun [options] IMAGE [-- COMMAND [ARG...]]")
	}
	image, cmd = args[0], args[1:]
	if len(cmd) > 0 && cmd[0] == "--" {
		cmd = cmd[1:]
	}
	return image, cmd, nil
}

// runOpts turns the flags of a run into engine options; it checks every
// flag before anything is pulled.
func runOpts(c *cli.Context) (engine.Options, error) {
	image, cmd, err := splitArgs(positional(c))
	if err != nil {
		return engine.Options{}, err
	}
	policy, err := pull.ParsePolicy(c.String("pull"))
	if err != nil {
		return engine.Options{}, err
	}
	if p := c.String("platform"); p != "" {
		if _, err := pull.ParsePlatform(p); err != nil {
			return engine.Options{}, err
		}
	}
	if c.Bool("tty") {
		if f, ok := c.App.Reader.(*os.File); !ok || !sandbox.IsTerminal(f) {
			return engine.Options{}, errors.New("-t needs standard input to be a terminal: drop -t when piping or in CI")
		}
	}
	var env []string
	for _, e := range c.StringSlice("env") {
		if e == "" || e[0] == '=' {
			return engine.Options{}, fmt.Errorf("invalid -e %q: use KEY=VALUE or KEY", e)
		}
		if !strings.Contains(e, "=") {
			v, set := os.LookupEnv(e)
			if !set {
				continue
			}
			e += "=" + v
		}
		env = append(env, e)
	}
	o := engine.Options{
		Image:    image,
		Platform: c.String("platform"),
		Pull:     policy,
		Args:     cmd,
		Env:      env,
		Emulator: c.String("emulator"),
		TTY:      c.Bool("tty"),
		Stdin:    c.App.Reader,
		Stdout:   c.App.Writer,
		Stderr:   c.App.ErrWriter,
		Logger:   newLogger(c),
	}
	if err := emulationOpts(c, &o); err != nil {
		return engine.Options{}, err
	}
	if !c.Bool("no-cwd") {
		wd, err := os.Getwd()
		if err != nil {
			return engine.Options{}, fmt.Errorf("find the current directory: %w", err)
		}
		o.BindCwd = wd
	}
	return o, nil
}

func runAction(c *cli.Context) error {
	if c.NArg() == 0 {
		return cli.ShowAppHelp(c)
	}
	o, err := runOpts(c)
	if err != nil {
		return err
	}
	return engine.Run(c.Context, o)
}
