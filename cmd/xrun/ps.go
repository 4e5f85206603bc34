package main

import (
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/xrun-dev/xrun/pkg/engine"
)

func init() { register(psCommand) }

var psCommand = &cli.Command{
	Name:  "ps",
	Usage: "list the named containers (xrun --name NAME ...)",
	Description: `Lists the containers kept with --name: their image, platform, the disk space
of what their runs wrote, and when they were last used.

Examples:
   xrun ps
   xrun rm $(xrun ps -q)      # remove them all`,
	Flags: []cli.Flag{
		&cli.BoolFlag{Name: "quiet", Aliases: []string{"q"}, Usage: "print only the names"},
	},
	Action: func(c *cli.Context) error {
		if c.NArg() != 0 {
			return fmt.Errorf("usage: xrun ps [-q]")
		}
		cs, err := engine.Containers("")
		if err != nil {
			return err
		}
		if c.Bool("quiet") {
			for _, ci := range cs {
				fmt.Fprintln(c.App.Writer, ci.Name)
			}
			return nil
		}
		tw := tabwriter.NewWriter(c.App.Writer, 0, 8, 2, ' ', 0)
		fmt.Fprintln(tw, "NAME\tIMAGE\tPLATFORM\tSIZE\tLAST USED")
		for _, ci := range cs {
			last := "-"
			if !ci.LastUsed.IsZero() {
				last = ago(time.Since(ci.LastUsed))
			}
			if ci.InUse {
				last = "running"
			}
			img := ci.Image
			if img == "" {
				img = "? (no metadata)"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", ci.Name, img, orDash(ci.Platform), humanSize(ci.Size), last)
		}
		return tw.Flush()
	},
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// humanSize prints a byte count as docker does: 0B, 4.1kB, 12MB, 1.5GB.
func humanSize(n int64) string {
	const unit = 1000
	if n < unit {
		return fmt.Sprintf("%dB", n)
	}
	f := float64(n)
	for _, u := range []string{"kB", "MB", "GB", "TB"} {
		f /= unit
		if f < unit {
			if f < 10 {
				return fmt.Sprintf("%.1f%s", f, u)
			}
			return fmt.Sprintf("%.0f%s", f, u)
		}
	}
	return fmt.Sprintf("%.0fPB", f/unit)
}

// ago prints a duration as "5 seconds ago", "3 minutes ago", "2 days ago".
func ago(d time.Duration) string {
	plural := func(n int, u string) string {
		if n == 1 {
			return fmt.Sprintf("1 %s ago", u)
		}
		return fmt.Sprintf("%d %ss ago", n, u)
	}
	switch {
	case d < time.Minute:
		return plural(max(int(d.Seconds()), 0), "second")
	case d < time.Hour:
		return plural(int(d.Minutes()), "minute")
	case d < 48*time.Hour:
		return plural(int(d.Hours()), "hour")
	}
	return plural(int(d.Hours()/24), "day")
}
