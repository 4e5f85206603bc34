package main

import (
	"github.com/urfave/cli/v2"

	"github.com/xrun-dev/xrun/pkg/sandbox"
)

func init() {
	register(unpackHelperCommand)
	// This binary runs the helpers that sandbox re-executes it as (the
	// removal helper is registered in rm.go).
	sandbox.ServeHelpers()
}

// unpackHelperCommand is the re-executed xrun that unpacks an image's
// layers from inside a user namespace, so that files keep their owners
// (see sandbox.UnpackInUserNS).
var unpackHelperCommand = &cli.Command{
	Name:            sandbox.UnpackHelperCommand,
	Hidden:          true,
	SkipFlagParsing: true,
	Action: func(c *cli.Context) error {
		return sandbox.UnpackHelper(c.Context, c.Args().Slice())
	},
}
