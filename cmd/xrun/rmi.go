package main

import (
	"errors"
	"fmt"

	"github.com/urfave/cli/v2"

	"github.com/xrun-dev/xrun/pkg/engine"
	"github.com/xrun-dev/xrun/pkg/pull"
	"github.com/xrun-dev/xrun/pkg/store"
)

func init() { register(rmiCommand) }

var rmiCommand = &cli.Command{
	Name:      "rmi",
	Usage:     "remove images from the cache",
	ArgsUsage: "IMAGE...",
	Description: `Removes the image's record and its unpacked rootfs, for every platform
pulled or only --platform. IMAGE is a reference as for pull, or a digest (or
its first 12 hex digits, as xrun images shows). Blobs are freed by xrun prune.
An image that a running xrun uses is not removed.

Examples:
   xrun rmi debian:bookworm
   xrun rmi --platform linux/arm64 debian:bookworm && xrun prune`,
	Flags: []cli.Flag{
		&cli.StringFlag{Name: "platform", Usage: "remove only `OS/ARCH[/VARIANT]`", EnvVars: []string{"XRUN_PLATFORM"}},
		&cli.BoolFlag{Name: "quiet", Aliases: []string{"q"}, Usage: "print nothing but errors"},
	},
	Action: func(c *cli.Context) error {
		if c.NArg() == 0 {
			return errors.New("usage: xrun rmi [--platform P] IMAGE...")
		}
		platform := c.String("platform")
		if platform != "" {
			p, err := pull.ParsePlatform(platform)
			if err != nil {
				return err
			}
			platform = pull.PlatformString(p)
		}
		var errs []error
		for _, ref := range c.Args().Slice() {
			removed, err := store.Remove(engine.DefaultCacheDir(), ref, platform)
			if !c.Bool("quiet") {
				for _, im := range removed {
					fmt.Fprintf(c.App.Writer, "removed %s %s %s\n", im.Ref, im.Platform, im.Digest)
				}
			}
			if err != nil {
				errs = append(errs, err)
			}
		}
		return errors.Join(errs...)
	},
}
