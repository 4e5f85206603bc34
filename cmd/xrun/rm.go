package main

import (
	"errors"
	"fmt"

	"github.com/urfave/cli/v2"

	"github.com/xrun-dev/xrun/pkg/engine"
	"github.com/xrun-dev/xrun/pkg/sandbox"
)

func init() { register(rmCommand) }

var rmCommand = &cli.Command{
	Name:      "rm",
	Usage:     "remove named containers",
	ArgsUsage: "NAME...",
	Description: `Removes containers kept with --name, including files their runs created as
other users (apt's _apt, useradd, chown), which are owned by your subordinate
ids on the host. A container in use by a run is not removed.

Examples:
   xrun rm arm64-dev
   xrun rm $(xrun ps -q)`,
	Flags: []cli.Flag{
		&cli.BoolFlag{Name: "force", Aliases: []string{"f"}, Usage: "do not fail for names that have no container"},
	},
	Action: func(c *cli.Context) error {
		if c.NArg() == 0 {
			return errors.New("usage: xrun rm NAME...")
		}
		var failed []error
		for _, name := range c.Args().Slice() {
			err := engine.RemoveContainer("", name)
			if err == nil || c.Bool("force") && errors.Is(err, sandbox.ErrNoContainer) {
				continue
			}
			failed = append(failed, err)
		}
		switch len(failed) {
		case 0:
			return nil
		case 1:
			return failed[0]
		}
		return fmt.Errorf("%w (and %d more)", failed[0], len(failed)-1)
	},
}
