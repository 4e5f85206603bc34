package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"text/tabwriter"

	"github.com/urfave/cli/v2"

	"github.com/xrun-dev/xrun/pkg/binfmt"
	"github.com/xrun-dev/xrun/pkg/engine"
	"github.com/xrun-dev/xrun/pkg/pull"
)

func init() { register(emulatorCommand) }

// Environment variables for tests and troubleshooting (documented in the
// README's development section, not in --help).
const (
	// envStrategy forces an emulation strategy: auto (default), native,
	// namespaced or host-handler.
	envStrategy = "XRUN_BINFMT_STRATEGY"
	// envSystemDirs replaces the system directories searched for qemu
	// (/usr/libexec/qemu-binfmt, /usr/bin, /usr/local/bin) with a
	// colon-separated list; "" or "none" searches none.
	envSystemDirs = "XRUN_QEMU_SYSTEM_DIRS"
)

var emulatorCommand = &cli.Command{
	Name:  "emulator",
	Usage: "install or list the static qemu-user emulators xrun uses",
	Description: `xrun finds static qemu-user emulators on the system (qemu-user-static) and,
when there are none, installs them into its cache from an OCI image pinned by
digest. Installed emulators live in <cache>/emulators/<host arch>/ and are
used when the system has none.

Examples:
   xrun emulator list
   xrun emulator install
   xrun emulator install --image registry.example/mirror/binfmt@sha256:...`,
	Subcommands: []*cli.Command{
		{
			Name:      "install",
			Usage:     "install static qemu-user emulators for this host into the cache",
			ArgsUsage: " ",
			Description: `Pulls the host platform's variant of the emulator image and copies its
static qemu-ARCH binaries to <cache>/emulators/<host arch>/qemu-ARCH-static.

Examples:
   xrun emulator install
   setup: ; xrun emulator install --image $(MIRROR)/binfmt@sha256:...   # in a Makefile`,
			Flags: []cli.Flag{
				&cli.StringFlag{Name: "image", Usage: "emulator image `REF@sha256:DIGEST` (default: " + engine.DefaultEmulatorImage + ")", EnvVars: []string{engine.EnvEmulatorImage}},
				&cli.BoolFlag{Name: "verbose", Aliases: []string{"v"}, Usage: "say what happens"},
				&cli.BoolFlag{Name: "debug", Usage: "say even more than -v"},
				&cli.BoolFlag{Name: "quiet", Aliases: []string{"q"}, Usage: "print nothing but errors"},
			},
			Action: func(c *cli.Context) error {
				if c.NArg() != 0 {
					return errors.New("usage: xrun emulator install [--image REF@sha256:DIGEST]")
				}
				cache := engine.DefaultCacheDir()
				src, err := engine.InstallEmulators(c.Context, engine.InstallOptions{
					CacheDir: cache,
					Image:    c.String("image"),
					Pull:     pull.PullMissing,
					Logger:   newLogger(c),
				})
				if err != nil {
					return err
				}
				if !c.Bool("quiet") {
					fmt.Fprintf(c.App.Writer, "installed %s in %s from %s\n",
						strings.Join(src.Installed, " "), engine.EmulatorDir(cache), src.Image)
				}
				return nil
			},
		},
		{
			Name:      "list",
			Usage:     "show which emulator each platform would use, and from where",
			ArgsUsage: " ",
			Flags: []cli.Flag{
				&cli.StringFlag{Name: "emulator", Usage: "static qemu-user `PATH` (file or directory) to consider first", EnvVars: []string{binfmt.EnvQemuPath}},
			},
			Action: func(c *cli.Context) error {
				bo, err := binfmtEnvOptions()
				if err != nil {
					return err
				}
				cache := engine.DefaultCacheDir()
				bo.Emulator = c.String("emulator")
				bo = engine.CacheBinfmtOptions(bo, cache)
				return listEmulators(c, bo, cache)
			},
		},
	},
}

func listEmulators(c *cli.Context, bo binfmt.Options, cache string) error {
	w := tabwriter.NewWriter(c.App.Writer, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "PLATFORM\tEMULATOR\tFROM")
	for _, a := range binfmt.Arches {
		plat := "linux/" + a.GOARCH
		o := bo
		o.Force = ""
		plan, err := binfmt.Decide(a.GOARCH, "", o)
		if err == nil && plan.Strategy == binfmt.Native {
			fmt.Fprintf(w, "%s\t-\tnative\n", plat)
			continue
		}
		e, err := binfmt.FindEmulator(a.GOARCH, bo)
		if err != nil {
			what := "none"
			if errors.Is(err, binfmt.ErrDynamicEmulator) {
				what = "dynamic only"
			}
			fmt.Fprintf(w, "%s\t-\t%s\n", plat, what)
			continue
		}
		fmt.Fprintf(w, "%s\t%s\t%s\n", plat, e.Path, e.Source)
	}
	if err := w.Flush(); err != nil {
		return err
	}
	if src := engine.ReadEmulatorSource(cache); src != nil {
		fmt.Fprintf(c.App.Writer, "\ninstalled in %s from %s (%s)\n", engine.EmulatorDir(cache), src.Image, src.Digest)
	} else {
		fmt.Fprintf(c.App.Writer, "\nnothing installed in %s (xrun emulator install)\n", engine.EmulatorDir(cache))
	}
	hs, mounted, disabled, err := binfmt.HostEntries("")
	switch {
	case err != nil:
		fmt.Fprintf(c.App.Writer, "host handlers: %v\n", err)
	case !mounted:
		fmt.Fprintln(c.App.Writer, "host handlers: none (/proc/sys/fs/binfmt_misc is not mounted)")
	case disabled:
		fmt.Fprintln(c.App.Writer, "host handlers: binfmt_misc is disabled on the host")
	default:
		for _, h := range hs {
			if h.Arch == nil {
				continue
			}
			state := ""
			if !h.Enabled {
				state = ", disabled"
			}
			if h.Unusable != "" {
				state += ", unusable: " + h.Unusable
			}
			fmt.Fprintf(c.App.Writer, "host handler %s: linux/%s via %s (flags %q%s)\n", h.Name, h.Arch.GOARCH, h.Interpreter, h.Flags, state)
		}
	}
	return nil
}

// binfmtEnvOptions reads the troubleshooting variables XRUN_BINFMT_STRATEGY
// and XRUN_QEMU_SYSTEM_DIRS into binfmt.Options.
func binfmtEnvOptions() (binfmt.Options, error) {
	var bo binfmt.Options
	s, err := binfmt.ParseStrategy(os.Getenv(envStrategy))
	if err != nil {
		return bo, fmt.Errorf("%s: %w", envStrategy, err)
	}
	bo.Force = s
	if v, ok := os.LookupEnv(envSystemDirs); ok {
		bo.SystemDirs = []string{}
		if v != "none" {
			for _, d := range filepath.SplitList(v) {
				if d != "" {
					bo.SystemDirs = append(bo.SystemDirs, d)
				}
			}
		}
	}
	return bo, nil
}

// emulationOpts sets the emulation options of a run from its flags and the
// troubleshooting variables.
func emulationOpts(c *cli.Context, o *engine.Options) error {
	bo, err := binfmtEnvOptions()
	if err != nil {
		return err
	}
	o.Binfmt = bo
	o.NoEmulatorPull = c.Bool("no-emulator-pull")
	return nil
}

// hostPlatform is the host's platform, for messages.
func hostPlatform() string { return "linux/" + runtime.GOARCH }
