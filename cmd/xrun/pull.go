package main

import (
	"errors"
	"fmt"

	"github.com/urfave/cli/v2"

	"github.com/xrun-dev/xrun/pkg/engine"
	"github.com/xrun-dev/xrun/pkg/pull"
)

func init() { register(pullCommand) }

var pullCommand = &cli.Command{
	Name:      "pull",
	Usage:     "pull an image and unpack it into the cache, ready to run offline",
	ArgsUsage: "IMAGE",
	Description: `Examples:
   xrun pull --platform linux/arm64 debian:bookworm
   prepare: ; xrun pull --platform linux/riscv64 debian:sid   # in a Makefile, before make -j`,
	Flags: commonFlags(),
	Action: func(c *cli.Context) error {
		if c.NArg() != 1 {
			return errors.New("usage: xrun pull [--platform P] IMAGE")
		}
		policy, err := pull.ParsePolicy(c.String("pull"))
		if err != nil {
			return err
		}
		if c.String("pull") == "missing" && !c.IsSet("pull") {
			policy = pull.PullAlways
		}
		p, err := engine.Prepare(c.Context, engine.Options{
			Image:    c.Args().First(),
			Platform: c.String("platform"),
			Pull:     policy,
			Logger:   newLogger(c),
		})
		if err != nil {
			return err
		}
		if !c.Bool("quiet") {
			fmt.Fprintf(c.App.Writer, "%s %s %s\n", p.Image.Ref, pull.PlatformString(p.Image.Platform), p.Image.Digest)
		}
		return nil
	},
}
