//go:build !urfave_cli_no_docs

package main

// The manual page generator needs urfave/cli's documentation code (and its
// markdown renderer), which the release build leaves out with the
// urfave_cli_no_docs tag: its package initialisers would run on every start
// of xrun and of the container's init. `make man` builds without the tag.

import (
	"fmt"

	"github.com/urfave/cli/v2"
)

func init() { register(manCommand) }

var manCommand = &cli.Command{
	Name:   "man",
	Usage:  "print the manual page (roff), generated from the commands and flags",
	Hidden: true,
	Action: func(c *cli.Context) error {
		s, err := c.App.ToMan()
		if err != nil {
			return fmt.Errorf("generate the manual page: %w", err)
		}
		_, err = fmt.Fprint(c.App.Writer, s)
		return err
	},
}
