package main

import (
	"errors"
	"fmt"
	"io"
	"strings"

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
   check-env: ; xrun doctor -q --platform linux/arm64   # in a Makefile
   xrun doctor --platform linux/arm64 --accel debian:bookworm-gcc

With --accel IMAGE, checks the native toolchain of --accel for that image
instead: the image's and the cross packages' versions, what their Debian
revisions change and which compiles therefore stay emulated, and a
self-check run now that compares, byte for byte, what the emulated and the
native toolchains produce. Exit status 1 when the image cannot be
accelerated or an output differs.`,
	Flags: []cli.Flag{
		&cli.StringSliceFlag{Name: "platform", Usage: "platform `OS/ARCH[/VARIANT]` to check (repeatable; default: all)", EnvVars: []string{"XRUN_PLATFORM"}},
		&cli.StringFlag{Name: "emulator", Usage: "static qemu-user `PATH` a run would be given", EnvVars: []string{"XRUN_QEMU_PATH"}},
		&cli.BoolFlag{Name: "verbose", Aliases: []string{"v"}, Usage: "log what the smoke tests do"},
		&cli.BoolFlag{Name: "debug", Usage: "say even more than -v"},
		&cli.BoolFlag{Name: "quiet", Aliases: []string{"q"}, Usage: "print only the problems"},
		&cli.StringFlag{Name: "accel", Usage: "check --accel for `IMAGE` (with --platform): versions, rules, and a self-check comparing the native and emulated toolchains' outputs"},
		&cli.StringSliceFlag{Name: "insecure-registry", Usage: "with --accel: registry `HOST[:PORT]` that may be spoken to over plain HTTP"},
	},
	Action: func(c *cli.Context) error {
		if c.String("accel") != "" {
			return doctorAccel(c)
		}
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
		reportMirrors(out)
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

// doctorAccel is doctor --accel IMAGE.
func doctorAccel(c *cli.Context) error {
	plats := c.StringSlice("platform")
	if len(plats) > 1 {
		return errors.New("doctor --accel checks one platform: give --platform once")
	}
	o := engine.Options{Image: c.String("accel"), Insecure: c.StringSlice("insecure-registry"), Logger: newLogger(c), Stderr: c.App.ErrWriter}
	if len(plats) == 1 {
		o.Platform = plats[0]
	}
	if err := o.Check(); err != nil {
		return err
	}
	rep, err := engine.CheckAccel(c.Context, o)
	if err != nil {
		return err
	}
	w := c.App.Writer
	fmt.Fprintf(w, "image     %s (%s) %s\n", rep.Ref, rep.Platform, rep.Digest)
	st := rep.State
	if st.Refused != "" {
		fmt.Fprintf(w, "FAIL      refused: %s\n", st.Refused)
		return &sandbox.ExitError{Code: 1}
	}
	t := st.Tool
	fmt.Fprintf(w, "toolchain %s %s: %s, %s, %s", t.Distro, t.Codename, t.CPP, t.GCC, t.Binutils)
	if t.CXX.Name != "" {
		fmt.Fprintf(w, ", %s", t.CXX)
	}
	fmt.Fprintln(w)
	for _, n := range t.CrossPackages() {
		fmt.Fprintf(w, "cross     %s %s\n", n, st.Cross[n])
	}
	for _, why := range st.Rules.Why {
		fmt.Fprintf(w, "rule      runs emulated: %s\n", why)
	}
	fmt.Fprintf(w, "prepared  %s in %v\n", st.Prepared.Local().Format("2006-01-02 15:04"), st.Took)
	for _, n := range st.Native {
		fmt.Fprintf(w, "native    %s\n", n)
	}
	for _, n := range rep.Same {
		fmt.Fprintf(w, "ok        self-check: %s identical\n", n)
	}
	for _, n := range rep.Differ {
		fmt.Fprintf(w, "FAIL      self-check: %s differs\n", n)
	}
	if len(rep.Differ) > 0 {
		fmt.Fprintf(c.App.ErrWriter, "xrun: doctor: --accel: %d self-check output(s) differ: the image's compiles run emulated\n", len(rep.Differ))
		return &sandbox.ExitError{Code: 1}
	}
	return nil
}

// reportMirrors prints the registry mirror configuration (registries.conf)
// that pulls use. A file that does not parse fails every pull: shown as a
// failure line.
func reportMirrors(w io.Writer) {
	m := pull.DescribeMirrors()
	switch {
	case m.Err != nil:
		fmt.Fprintf(w, "FAIL  registry mirrors: %v\n", m.Err)
		return
	case len(m.Files) == 0:
		fmt.Fprintln(w, "info  registry mirrors: none (no registries.conf)")
		return
	case len(m.Entries) == 0:
		fmt.Fprintf(w, "info  registry mirrors: none ([[registry]] entries) in %s\n", strings.Join(m.Files, ", "))
		return
	}
	fmt.Fprintf(w, "info  registry mirrors: from %s\n", strings.Join(m.Files, ", "))
	for _, e := range m.Entries {
		fmt.Fprintf(w, "      %s\n", e)
	}
	for _, u := range m.Unknown {
		fmt.Fprintf(w, "warn  registry mirrors: unknown key %s (ignored)\n", u)
	}
}
