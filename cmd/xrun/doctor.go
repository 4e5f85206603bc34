package main

import (
	"errors"
	"fmt"

	"github.com/urfave/cli/v2"

	"github.com/xrun-dev/xrun/pkg/doctor"
	"github.com/xrun-dev/xrun/pkg/engine"
	"github.com/xrun-dev/xrun/pkg/pull"
	"github.com/xrun-dev/xrun/pkg/sandbox"
)

func init() { register(doctorCommand) }

var doctorCommand = &cli.Command{
	Name:      "doctor",
	Usage:     "check that this machine can run foreign platforms, and say how to fix what is missing",
	ArgsUsage: " ",
	Description: `Checks the kernel (binfmt_misc per user namespace), user namespaces and
what blocks them (sysctls; Ubuntu's AppArmor restriction, with a profile for
xrun to paste; a container's seccomp profile or masked /proc, with the docker,
podman and Kubernetes settings), subordinate ids and newuidmap, rootless
overlayfs, the emulators found (version, static or not), the host's binfmt
handlers, the cache, and (for information) whether shared memory may use
huge pages, which makes each run's start faster; then runs a tiny test
program of each platform in a real container. Each problem comes with the
command that fixes it on this machine. Exit status: 0 when everything needed works, 1 otherwise.

Without --platform every architecture xrun knows is checked, and a missing
emulator is only a warning unless no foreign platform can run at all.

Examples:
   xrun doctor
   xrun doctor --platform linux/riscv64
   check-env: ; xrun doctor -q --platform linux/arm64   # in a Makefile`,
	Flags: []cli.Flag{
		&cli.StringSliceFlag{Name: "platform", Usage: "platform `OS/ARCH[/VARIANT]` to check (repeatable; default: all)", EnvVars: []string{"XRUN_PLATFORM"}},
		&cli.StringFlag{Name: "emulator", Usage: "static qemu-user `PATH` a run would be given", EnvVars: []string{"XRUN_QEMU_PATH"}},
		&cli.BoolFlag{Name: "verbose", Aliases: []string{"v"}, Usage: "log what the smoke tests do"},
		&cli.BoolFlag{Name: "debug", Usage: "say even more than -v"},
		&cli.BoolFlag{Name: "quiet", Aliases: []string{"q"}, Usage: "print only the problems"},
	},
	Action: func(c *cli.Context) error {
		if c.NArg() != 0 {
			return errors.New("usage: xrun doctor [--platform OS/ARCH[/VARIANT]]...")
		}
		var plats []doctor.Platform
		for _, s := range c.StringSlice("platform") {
			p, err := pull.ParsePlatform(s)
			if err != nil {
				return err
			}
			if p.OS != "linux" {
				return fmt.Errorf("xrun runs linux images only, not %s", s)
			}
			plats = append(plats, doctor.Platform{GOARCH: p.Architecture, Variant: p.Variant})
		}
		bo, err := binfmtEnvOptions()
		if err != nil {
			return err
		}
		cache := engine.DefaultCacheDir()
		bo.Emulator = c.String("emulator")
		bo = engine.CacheBinfmtOptions(bo, cache)
		out := c.App.Writer
		if c.Bool("quiet") {
			out = &problemsOnly{w: out}
		}
		fmt.Fprintf(out, "xrun %s on %s\n", version, hostPlatform())
		r := doctor.Run(c.Context, doctor.Options{
			Platforms: plats,
			CacheDir:  cache,
			Binfmt:    bo,
			Out:       out,
			Logger:    newLogger(c),
		})
		failed := r.Failed()
		if len(failed) == 0 {
			if !c.Bool("quiet") {
				fmt.Fprintln(out, "\nxrun can run what was checked.")
			}
			return nil
		}
		names := ""
		for i, f := range failed {
			if i > 0 {
				names += ", "
			}
			names += f.Name
		}
		fmt.Fprintf(c.App.ErrWriter, "xrun: doctor: %d problem(s): %s (each fix is above)\n", len(failed), names)
		// Exit 1 without a second message (ExitError is passed through silently).
		return &sandbox.ExitError{Code: 1}
	},
}

// problemsOnly passes on the report lines of warnings and failures (and
// their fix lines) only, for -q.
type problemsOnly struct {
	w    interface{ Write([]byte) (int, error) }
	keep bool
}

func (p *problemsOnly) Write(b []byte) (int, error) {
	s := string(b)
	switch {
	case len(s) >= 4 && (s[:4] == "warn" || s[:4] == "FAIL"):
		p.keep = true
	case len(s) >= 6 && s[:6] == "      ":
	default:
		p.keep = false
	}
	if p.keep {
		return p.w.Write(b)
	}
	return len(b), nil
}
