package main

import (
	"errors"
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/xrun-dev/xrun/pkg/engine"
	"github.com/xrun-dev/xrun/pkg/store"
)

func init() { register(imagesCommand) }

var imagesCommand = &cli.Command{
	Name:      "images",
	Usage:     "list the images in the cache",
	ArgsUsage: " ",
	Description: `One line per image and platform pulled: reference, platform, manifest
digest, size (unpacked; compressed when not unpacked) and when it last ran.

Examples:
   xrun images
   xrun images -q        # digests only`,
	Flags: []cli.Flag{
		&cli.BoolFlag{Name: "quiet", Aliases: []string{"q"}, Usage: "print only the digests"},
		&cli.BoolFlag{Name: "no-trunc", Usage: "print whole digests"},
	},
	Action: func(c *cli.Context) error {
		if c.NArg() != 0 {
			return errors.New("usage: xrun images [-q] [--no-trunc]")
		}
		ims, err := store.Images(engine.DefaultCacheDir())
		if err != nil {
			return err
		}
		if c.Bool("quiet") {
			for _, im := range ims {
				fmt.Fprintln(c.App.Writer, im.Digest)
			}
			return nil
		}
		tw := tabwriter.NewWriter(c.App.Writer, 0, 4, 3, ' ', 0)
		fmt.Fprintln(tw, "REFERENCE\tPLATFORM\tDIGEST\tSIZE\tLAST USED")
		now := time.Now()
		for _, im := range ims {
			plat := im.Platform
			if im.Selected != "" && im.Selected != im.Platform {
				plat += " (" + im.Selected + ")"
			}
			d := im.Digest.String()
			if !c.Bool("no-trunc") {
				d = d[:len("sha256:")+12]
			}
			size := humanBytes(im.Size)
			if !im.Unpacked {
				size += " (not unpacked)"
			}
			if im.AccelBytes > 0 {
				size += " + accel " + humanBytes(im.AccelBytes)
			}
			used := "never"
			if !im.LastUsed.IsZero() {
				used = usedAgo(now, im.LastUsed)
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", im.Ref, plat, d, size, used)
		}
		return tw.Flush()
	},
}

// humanBytes prints n as 12.3 MB (powers of 1000, as docker does).
func humanBytes(n int64) string {
	const unit = 1000
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	f, units := float64(n), []string{"kB", "MB", "GB", "TB", "PB"}
	i := -1
	for f >= unit && i < len(units)-1 {
		f /= unit
		i++
	}
	return fmt.Sprintf("%.1f %s", f, units[i])
}

// usedAgo prints how long before now t was, coarsely.
func usedAgo(now, t time.Time) string {
	d := now.Sub(t)
	switch {
	case d < time.Minute:
		return "just now"
	case d < time.Hour:
		return fmt.Sprintf("%d minutes ago", int(d/time.Minute))
	case d < 48*time.Hour:
		return fmt.Sprintf("%d hours ago", int(d/time.Hour))
	default:
		return fmt.Sprintf("%d days ago", int(d/(24*time.Hour)))
	}
}
