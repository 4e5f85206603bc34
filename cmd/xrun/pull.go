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
	Description: `Layers download in parallel and unpack as they arrive; on a terminal,
progress bars show on stderr (-q: none). Prints REF PLATFORM DIGEST.

Examples:
   xrun pull --platform linux/arm64 debian:bookworm
   xrun pull --insecure-registry 10.0.0.5:5000 --platform riscv64 10.0.0.5:5000/sid
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
		p, err := engine.PrepareWith(c.Context, engine.Options{
			Image:    c.Args().First(),
			Platform: c.String("platform"),
			Pull:     policy,
			Stderr:   c.App.ErrWriter,
			Logger:   newLogger(c),
		}, engine.PullOptions{Insecure: c.StringSlice("insecure-registry"), PullOnly: true})
		if err != nil {
			return err
		}
		if !c.Bool("quiet") {
			fmt.Fprintf(c.App.Writer, "%s %s %s\n", p.Image.Ref, pull.PlatformString(p.Image.Platform), p.Image.Digest)
		}
		return nil
	},
}

// insecureRegistryFlag is --insecure-registry, shared by every command that
// talks to registries.
func insecureRegistryFlag() cli.Flag {
	return &cli.StringSliceFlag{
		Name:    "insecure-registry",
		Usage:   "allow plain HTTP (and unverified TLS) to `REGISTRY` (host[:port]); repeatable. Loopback registries always may",
		EnvVars: []string{pull.EnvInsecureRegistries},
	}
}
