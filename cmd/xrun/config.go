package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/urfave/cli/v2"

	"github.com/xrun-dev/xrun/pkg/config"
	"github.com/xrun-dev/xrun/pkg/engine"
	"github.com/xrun-dev/xrun/pkg/pull"
)

// targetFlag selects a target of .xrun.yaml; "all" runs every target.
var targetFlag = &cli.StringFlag{
	Name:    "target",
	Usage:   "use target `NAME` of .xrun.yaml (all: run the command once per target)",
	EnvVars: []string{"XRUN_TARGET"},
}

// project is the .xrun.yaml that applies to a run, if any.
type project struct {
	file *config.File // nil without a file
}

// policy returns the rules a project file is judged by: the user's id,
// $HOME (where the search stops) and the user's trust list.
func policy() (config.Policy, error) {
	p := config.Policy{UID: os.Geteuid(), Home: os.Getenv("HOME")}
	path, err := config.TrustListPath()
	if err != nil {
		return p, nil // no home, no list: nothing is trusted
	}
	if p.Trust, err = config.LoadTrustList(path, p.UID); err != nil {
		return p, err
	}
	return p, nil
}

// loadProject finds and reads the .xrun.yaml that applies in the current
// directory (XRUN_CONFIG names a file explicitly). A file that is not
// safe to use is ignored with a note on stderr (not with --quiet);
// --verbose says which file is used.
func loadProject(c *cli.Context) (*project, error) {
	log := newLogger(c)
	pol, err := policy()
	if err != nil {
		return nil, err
	}
	if path := os.Getenv("XRUN_CONFIG"); path != "" {
		f, err := config.OpenFile(path, pol)
		if err != nil {
			return nil, err
		}
		log.Info("config file", "path", f.Path, "from", "XRUN_CONFIG", "trusted", f.Trusted)
		return &project{file: f}, nil
	}
	wd, err := os.Getwd()
	if err != nil {
		return nil, fmt.Errorf("find the current directory: %w", err)
	}
	found, err := config.Discover(wd, pol)
	if err != nil {
		return nil, err
	}
	switch {
	case found.Ignored != "":
		log.Info("config file ignored", "path", found.Ignored, "reason", found.Why)
		if !c.Bool("quiet") {
			fmt.Fprintf(c.App.ErrWriter, "xrun: ignoring %s: it is %s; if you trust it: xrun config trust %s\n", found.Ignored, found.Why, found.Ignored)
		}
	case found.File != nil:
		log.Info("config file", "path", found.File.Path, "trusted", found.File.Trusted)
	default:
		log.Info("config file", "path", "none", "searched from", wd)
	}
	return &project{file: found.File}, nil
}

// targets returns the names a run covers: the one asked for, or every
// target of the file for "all".
func (p *project) targets(name string) ([]string, error) {
	if name != "all" {
		return []string{name}, nil
	}
	if p.file == nil || len(p.file.Targets) == 0 {
		return nil, errors.New("--target all needs targets in .xrun.yaml")
	}
	return p.file.TargetNames(), nil
}

// settings returns the file's settings for target, overridden by the
// XRUN_IMAGE, XRUN_PLATFORM and XRUN_PULL variables. Flags override both;
// the caller applies them.
func (p *project) settings(target string) (config.Settings, error) {
	var s config.Settings
	if p.file != nil {
		var err error
		if s, err = p.file.Target(target); err != nil {
			return s, err
		}
	} else if target != "" {
		return s, fmt.Errorf("--target %s: no %s found in this directory or its parents", target, config.FileName)
	}
	for _, o := range []struct {
		env string
		dst *string
	}{{"XRUN_IMAGE", &s.Image}, {"XRUN_PLATFORM", &s.Platform}, {"XRUN_PULL", &s.Pull}} {
		if v := os.Getenv(o.env); v != "" {
			*o.dst = v
		}
	}
	return s, nil
}

// applySettings fills what the flags left unset in o from s: the image
// (when the command line names none), platform, pull policy, and adds the
// file's env before the -e flags.
func applySettings(c *cli.Context, s config.Settings, o *engine.Options) error {
	if o.Image == "" {
		if s.Image == "" {
			return errors.New("no image given: name one (xrun IMAGE -- CMD) or set image in " + config.FileName)
		}
		o.Image = s.Image
	}
	if c.String("platform") == "" && s.Platform != "" {
		o.Platform = s.Platform // checked by Options.Check
	}
	extra, err := engine.AdditionalCaches(os.Getenv(engine.EnvAdditionalCaches))
	if err != nil {
		return err
	}
	for _, d := range s.AdditionalCaches {
		if !filepath.IsAbs(d) {
			return fmt.Errorf("%s: additional_caches: %q is not an absolute path: give absolute directories", config.FileName, d)
		}
	}
	o.AdditionalCaches = append(extra, s.AdditionalCaches...)
	if !c.IsSet("accel") && s.Accel != nil {
		o.Accel = *s.Accel
	}
	if !c.IsSet("pull") && s.Pull != "" {
		p, err := pull.ParsePolicy(s.Pull)
		if err != nil {
			return err
		}
		o.Pull = p
	}
	// KEY alone takes the value of the user's environment, and is dropped
	// when unset: the meaning of -e KEY.
	var env []string
	for _, e := range s.Env {
		kv, ok, err := parseEnvLine(e, os.LookupEnv)
		if err != nil {
			return fmt.Errorf("%s: %w", config.FileName, err)
		}
		if ok {
			env = append(env, kv)
		}
	}
	o.Env = append(env, o.Env...)
	return nil
}
