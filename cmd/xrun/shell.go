package main

import (
	"errors"
	"os"

	"github.com/urfave/cli/v2"

	"github.com/xrun-dev/xrun/pkg/engine"
	"github.com/xrun-dev/xrun/pkg/sandbox"
)

func init() { register(shellCommand) }

var shellCommand = &cli.Command{
	Name:      "shell",
	Usage:     "start an interactive shell in an image",
	ArgsUsage: "IMAGE [-- COMMAND [ARG...]]",
	Description: `Runs the image's SHELL, else bash, else sh, with a pseudo-terminal when
standard input and output are terminals. The current directory is bound and is
the working directory; "exit N" gives exit status N.

Examples:
   xrun shell --platform linux/arm64 debian:bookworm
   xrun shell --platform linux/riscv64 debian:sid -- bash -l`,
	Flags: runFlags(),
	Action: func(c *cli.Context) error {
		ts, err := runTargets(c)
		if err != nil {
			return err
		}
		if len(ts) != 1 {
			return errors.New("xrun shell runs one shell: pick a target with --target NAME")
		}
		o := ts[0].opts
		o.Shell = true
		if !c.IsSet("tty") {
			in, okIn := c.App.Reader.(*os.File)
			out, okOut := c.App.Writer.(*os.File)
			o.TTY = okIn && okOut && sandbox.IsTerminal(in) && sandbox.IsTerminal(out)
		}
		return engine.Run(c.Context, o)
	},
}
