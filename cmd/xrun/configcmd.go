package main

import (
	"errors"
	"fmt"
	"os"

	"github.com/urfave/cli/v2"

	"github.com/xrun-dev/xrun/pkg/config"
)

func init() { register(configCommand) }

var configCommand = &cli.Command{
	Name:  "config",
	Usage: "show which .xrun.yaml applies here; trust or untrust one",
	Description: `xrun looks for .xrun.yaml from the current directory upwards, stopping at the
repository root (a directory holding .git) or $HOME. It ignores, with a note,
a file that someone other than you or root could have written (its owner, or
a group- or world-writable file or directory, /tmp included).

Until you trust a file, its volumes must stay inside its directory and its
env may not copy your variables (KEY alone) nor set LD_* or QEMU_*. Trust is
remembered per path and content (sha256) in $XDG_CONFIG_HOME/xrun/trusted
(~/.config/xrun/trusted): editing the file withdraws it.

Examples:
   xrun config show
   xrun config trust              # the file that applies here
   xrun config untrust ~/src/proj/.xrun.yaml`,
	Subcommands: []*cli.Command{
		{
			Name:      "show",
			Usage:     "print the .xrun.yaml that applies here and whether it is trusted",
			ArgsUsage: " ",
			Action:    configShow,
		},
		{
			Name:      "trust",
			Usage:     "trust FILE (default: the .xrun.yaml that applies here) as it is now",
			ArgsUsage: "[FILE]",
			Action:    configTrust,
		},
		{
			Name:      "untrust",
			Usage:     "stop trusting FILE (default: the .xrun.yaml that applies here)",
			ArgsUsage: "[FILE]",
			Action:    configUntrust,
		},
	},
}

// configFileArg returns the file a config subcommand acts on: its argument,
// else XRUN_CONFIG, else the nearest .xrun.yaml (even one that is ignored:
// show says why, and trust refuses it unless named).
func configFileArg(c *cli.Context, pol config.Policy) (path string, named bool, err error) {
	switch {
	case c.NArg() > 1:
		return "", false, fmt.Errorf("usage: xrun config %s [FILE]", c.Command.Name)
	case c.NArg() == 1:
		return c.Args().First(), true, nil
	case os.Getenv("XRUN_CONFIG") != "":
		return os.Getenv("XRUN_CONFIG"), true, nil
	}
	wd, err := os.Getwd()
	if err != nil {
		return "", false, fmt.Errorf("find the current directory: %w", err)
	}
	return config.Find(wd, pol.Home), false, nil
}

func configShow(c *cli.Context) error {
	pol, err := policy()
	if err != nil {
		return err
	}
	path, _, err := configFileArg(c, pol)
	if err != nil {
		return err
	}
	w := c.App.Writer
	if path == "" {
		fmt.Fprintf(w, "no %s applies here (the search stops at the repository root or $HOME)\n", config.FileName)
		return nil
	}
	real, sum, why, err := config.Inspect(path, pol.UID)
	if err != nil {
		return err
	}
	trusted := pol.Trust.Trusted(real, sum)
	fmt.Fprintf(w, "file: %s\n", path)
	switch {
	case trusted:
		fmt.Fprintf(w, "trusted: yes (used as written)\n")
	case pol.Trust.Known(real):
		fmt.Fprintf(w, "trusted: no, it changed since it was trusted (volumes stay inside its directory; env may not copy your variables nor set LD_*, QEMU_*)\n")
	default:
		fmt.Fprintf(w, "trusted: no (volumes stay inside its directory; env may not copy your variables nor set LD_*, QEMU_*)\n")
	}
	if why != "" && !trusted {
		fmt.Fprintf(w, "ignored: it is %s\n", why)
	}
	fmt.Fprintf(w, "trust list: %s\n", pol.Trust.Path())
	return nil
}

// trustTarget is the policy and the file that config trust or untrust
// (c.Command.Name) acts on; named as for configFileArg.
func trustTarget(c *cli.Context) (pol config.Policy, path string, named bool, err error) {
	if pol, err = policy(); err != nil {
		return pol, "", false, err
	}
	if path, named, err = configFileArg(c, pol); err != nil {
		return pol, "", false, err
	}
	if path == "" {
		verb := c.Command.Name
		return pol, "", false, fmt.Errorf("no .xrun.yaml applies here: name the file to %s (xrun config %s FILE)", verb, verb)
	}
	return pol, path, named, nil
}

func configTrust(c *cli.Context) error {
	pol, path, named, err := trustTarget(c)
	if err != nil {
		return err
	}
	real, sum, why, err := config.Inspect(path, pol.UID)
	if err != nil {
		return err
	}
	if why != "" && !named {
		// Never trust a file someone else planted by just typing
		// "xrun config trust" in a directory below it.
		return fmt.Errorf("%s is %s: name it to trust it anyway (xrun config trust %s)", path, why, path)
	}
	if pol.Trust == nil {
		return errors.New("find the trust list of .xrun.yaml files: set HOME or XDG_CONFIG_HOME")
	}
	// The content is checked before it is trusted: a malformed file would
	// fail every run anyway.
	if _, err := config.Load(real); err != nil {
		return err
	}
	if err := config.EditTrustList(pol.Trust.Path(), pol.UID, func(l *config.TrustList) error {
		return l.Add(real, sum)
	}); err != nil {
		return err
	}
	fmt.Fprintf(c.App.Writer, "trusted %s (sha256 %x); editing it withdraws the trust\n", real, sum)
	return nil
}

func configUntrust(c *cli.Context) error {
	pol, path, _, err := trustTarget(c)
	if err != nil {
		return err
	}
	if pol.Trust == nil {
		return nil // no list: nothing is trusted
	}
	real, err := config.RealPath(path)
	if err != nil {
		return err
	}
	if !pol.Trust.Known(real) {
		fmt.Fprintf(c.App.Writer, "%s was not trusted\n", real)
		return nil
	}
	if err := config.EditTrustList(pol.Trust.Path(), pol.UID, func(l *config.TrustList) error {
		l.Remove(real)
		return nil
	}); err != nil {
		return err
	}
	fmt.Fprintf(c.App.Writer, "untrusted %s\n", real)
	return nil
}
