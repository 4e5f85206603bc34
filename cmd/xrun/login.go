package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/urfave/cli/v2"
	"golang.org/x/term"

	"github.com/xrun-dev/xrun/pkg/pull"
)

func init() {
	register(loginCommand)
	register(logoutCommand)
}

var loginCommand = &cli.Command{
	Name:      "login",
	Usage:     "save credentials for a registry (docker's config.json)",
	ArgsUsage: "REGISTRY",
	Description: `Checks the user name and password with the registry, then saves them as
docker login does: in ~/.docker/config.json ($DOCKER_CONFIG/config.json), mode
0600, or in the credential helper it names. xrun also reads podman's auth.json
($REGISTRY_AUTH_FILE, $XDG_RUNTIME_DIR/containers/auth.json,
~/.config/containers/auth.json).

Examples:
   xrun login -u me ghcr.io                                 # asks for the password
   echo "$TOKEN" | xrun login -u me --password-stdin ghcr.io   # in CI`,
	Flags: []cli.Flag{
		&cli.StringFlag{Name: "username", Aliases: []string{"u"}, Usage: "user `NAME` (asked for on a terminal when missing)"},
		&cli.BoolFlag{Name: "password-stdin", Usage: "read the password from standard input"},
		insecureRegistryFlag(),
	},
	Action: func(c *cli.Context) error {
		if c.NArg() != 1 {
			return errors.New("usage: xrun login [-u USER] [--password-stdin] REGISTRY")
		}
		user, pass := c.String("username"), ""
		in, isFile := c.App.Reader.(*os.File)
		tty := isFile && term.IsTerminal(int(in.Fd()))
		if c.Bool("password-stdin") {
			if user == "" {
				return errors.New("--password-stdin needs -u USER")
			}
			b, err := io.ReadAll(c.App.Reader)
			if err != nil {
				return fmt.Errorf("read the password from standard input: %w", err)
			}
			pass = strings.TrimRight(string(b), "\r\n")
		} else {
			if !tty {
				return errors.New("no terminal to ask for the password: use --password-stdin (e.g. echo \"$TOKEN\" | xrun login -u USER --password-stdin REGISTRY)")
			}
			if user == "" {
				fmt.Fprint(c.App.ErrWriter, "Username: ")
				line, err := bufio.NewReader(in).ReadString('\n')
				if err != nil {
					return fmt.Errorf("read the user name: %w", err)
				}
				user = strings.TrimSpace(line)
			}
			fmt.Fprint(c.App.ErrWriter, "Password: ")
			b, err := term.ReadPassword(int(in.Fd()))
			fmt.Fprintln(c.App.ErrWriter)
			if err != nil {
				return fmt.Errorf("read the password: %w", err)
			}
			pass = string(b)
		}
		if user == "" || pass == "" {
			return errors.New("login needs a user name and a password")
		}
		where, err := pull.Login(c.Context, c.Args().First(), user, pass,
			pull.WithInsecureRegistries(c.StringSlice("insecure-registry")...))
		if err != nil {
			return err
		}
		fmt.Fprintf(c.App.Writer, "login succeeded: credentials saved in %s\n", where)
		return nil
	},
}

var logoutCommand = &cli.Command{
	Name:      "logout",
	Usage:     "remove the saved credentials for a registry",
	ArgsUsage: "REGISTRY",
	Description: `Removes the credentials xrun login (or docker login) saved for REGISTRY.

Examples:
   xrun logout ghcr.io`,
	Action: func(c *cli.Context) error {
		if c.NArg() != 1 {
			return errors.New("usage: xrun logout REGISTRY")
		}
		where, removed, err := pull.Logout(c.Args().First())
		if err != nil {
			return err
		}
		if !removed {
			fmt.Fprintf(c.App.Writer, "not logged in to %s\n", c.Args().First())
			return nil
		}
		fmt.Fprintf(c.App.Writer, "removed the credentials for %s from %s\n", c.Args().First(), where)
		return nil
	},
}
