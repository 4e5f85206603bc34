package main

import (
	"errors"
	"fmt"

	"github.com/urfave/cli/v2"

	"github.com/xrun-dev/xrun/pkg/engine"
	"github.com/xrun-dev/xrun/pkg/store"
)

func init() { register(pruneCommand) }

var pruneCommand = &cli.Command{
	Name:      "prune",
	Usage:     "free the cache space no image uses",
	ArgsUsage: " ",
	Description: `Removes the blobs and unpacked rootfs that no image of xrun images
references (what xrun rmi left), and what interrupted pulls left behind, then
says how much it freed. Safe while other xrun processes run: it waits for
pulls in progress and leaves a rootfs that a run uses.

Examples:
   xrun rmi debian:bookworm && xrun prune`,
	Flags: []cli.Flag{
		&cli.BoolFlag{Name: "quiet", Aliases: []string{"q"}, Usage: "print nothing but errors"},
	},
	Action: func(c *cli.Context) error {
		if c.NArg() != 0 {
			return errors.New("usage: xrun prune")
		}
		rep, err := store.Prune(c.Context, engine.DefaultCacheDir())
		if !c.Bool("quiet") {
			fmt.Fprintf(c.App.Writer, "freed %s: %d blobs, %d unpacked images, %d --accel toolchains\n", humanBytes(rep.Freed()), rep.Blobs, rep.Rootfs, rep.Accel)
			if len(rep.Busy) > 0 {
				fmt.Fprintf(c.App.Writer, "kept %d unpacked images in use by a running xrun; prune again later\n", len(rep.Busy))
			}
		}
		return err
	},
}
