// Package config finds and reads a project's .xrun.yaml, which gives the
// defaults of a run (image, platform, env, volumes, pull policy) and named
// targets, so that `xrun shell` and `xrun -- make check` need no flags.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"go.yaml.in/yaml/v3"
)

// FileName is the name of the project file, looked up from the current
// directory upwards like .git.
const FileName = ".xrun.yaml"

// Settings are the run defaults of the file or of one target. Empty fields
// are unset.
type Settings struct {
	Image    string   `yaml:"image"`
	Platform string   `yaml:"platform"`
	Pull     string   `yaml:"pull"`
	Env      []string `yaml:"env"`
	Volumes  []string `yaml:"volumes"`
	// Accel runs the image's compilers natively (--accel).
	Accel *bool `yaml:"accel"`
	// AdditionalCaches are read-only caches to run images from
	// (XRUN_ADDITIONAL_CACHES); only a trusted file may name them.
	AdditionalCaches []string `yaml:"additional_caches"`
}

// File is a parsed .xrun.yaml.
type File struct {
	// Path is the file's absolute path; relative volume sources are taken
	// relative to its directory.
	Path     string `yaml:"-"`
	Settings `yaml:",inline"`
	// Default names the target used when none is given.
	Default string `yaml:"default"`
	// Targets are named variants of the top-level settings.
	Targets map[string]Settings `yaml:"targets"`
	// Real is Path with symbolic links resolved, and Sum the hash of the
	// content read: the trust list's key.
	Real string   `yaml:"-"`
	Sum  [32]byte `yaml:"-"`
	// Trusted is set when the user trusts this content at this path (xrun
	// config trust): its volumes and env are then used as written.
	Trusted bool `yaml:"-"`
	// order keeps the targets as written, for --target all.
	order []string
	// root is the parsed document, for the lines of errors.
	root *yaml.Node
}

// ErrNoTarget is returned for a --target the file does not define.
var ErrNoTarget = errors.New("no such target")

// Load reads and checks the file at path, untrusted. Errors name the file
// and line. Discover and OpenFile are the loaders that judge the file.
func Load(path string) (*File, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, err
	}
	return parse(abs, b)
}

func parse(path string, b []byte) (*File, error) {
	f := &File{Path: path}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(f); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("%s", yamlError(path, err))
	}
	// A second decode into a node keeps the targets' order and positions.
	var root yaml.Node
	if err := yaml.Unmarshal(b, &root); err == nil && len(root.Content) == 1 {
		doc := root.Content[0]
		for i := 0; i+1 < len(doc.Content); i += 2 {
			if doc.Content[i].Value != "targets" {
				continue
			}
			t := doc.Content[i+1]
			for j := 0; j+1 < len(t.Content); j += 2 {
				f.order = append(f.order, t.Content[j].Value)
			}
		}
	}
	f.root = &root
	if err := f.check(&root); err != nil {
		return nil, err
	}
	return f, nil
}

// yamlError turns "yaml: line 3: ..." into "FILE:3: ...".
func yamlError(path string, err error) string {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	if rest, ok := strings.CutPrefix(msg, "unmarshal errors:\n"); ok {
		// One error per line; the first one is enough to act on.
		msg, _, _ = strings.Cut(strings.TrimSpace(rest), "\n")
	}
	if rest, ok := strings.CutPrefix(msg, "line "); ok {
		if n, tail, ok := strings.Cut(rest, ": "); ok {
			if i := strings.Index(tail, " in type config."); i >= 0 {
				tail = tail[:i]
			}
			return fmt.Sprintf("%s:%s: %s", path, n, tail)
		}
	}
	return fmt.Sprintf("%s: %s", path, msg)
}

// check validates values the YAML types cannot express.
func (f *File) check(root *yaml.Node) error {
	line := func(keys ...string) int { return findLine(root, keys...) }
	bad := func(n int, format string, args ...any) error {
		return fmt.Errorf("%s:%d: %s", f.Path, n, fmt.Sprintf(format, args...))
	}
	checkSettings := func(s Settings, at ...string) error {
		switch s.Pull {
		case "", "missing", "always", "never":
		default:
			return bad(line(append(at, "pull")...), "pull: %q is not missing, always or never", s.Pull)
		}
		for _, e := range s.Env {
			// KEY alone takes the user's value, as -e KEY does.
			if k, _, _ := strings.Cut(e, "="); k == "" || strings.ContainsAny(k, " \t\x00") {
				return bad(itemLine(root, e, append(at, "env")...), "env: %q is not KEY=VALUE or KEY", e)
			}
		}
		for _, v := range s.Volumes {
			if src, dst, _ := strings.Cut(v, ":"); src == "" || !strings.HasPrefix(dst, "/") {
				return bad(itemLine(root, v, append(at, "volumes")...), "volumes: %q is not SRC:/DST[:ro]", v)
			}
		}
		return nil
	}
	if err := checkSettings(f.Settings); err != nil {
		return err
	}
	for name, t := range f.Targets {
		if name == "all" {
			return bad(line("targets", name), `targets: "all" is reserved (--target all runs every target)`)
		}
		if err := checkSettings(t, "targets", name); err != nil {
			return err
		}
	}
	if f.Default != "" {
		if _, ok := f.Targets[f.Default]; !ok {
			return bad(line("default"), "default: no target named %q", f.Default)
		}
	}
	return nil
}

// findLine returns the line of the value at keys in a YAML document, or 1.
func findLine(root *yaml.Node, keys ...string) int {
	if root == nil || len(root.Content) == 0 {
		return 1
	}
	n := root.Content[0]
	line := 1
	for _, k := range keys {
		found := false
		for i := 0; i+1 < len(n.Content); i += 2 {
			if n.Content[i].Value == k {
				line = n.Content[i].Line
				n = n.Content[i+1]
				found = true
				break
			}
		}
		if !found {
			break
		}
	}
	return line
}

// itemLine returns the line of the entry item of the list at keys, or
// the line of the last key found.
func itemLine(root *yaml.Node, item string, keys ...string) int {
	line := findLine(root, keys...)
	if root == nil || len(root.Content) == 0 {
		return line
	}
	n := root.Content[0]
	for _, k := range keys {
		var next *yaml.Node
		for i := 0; i+1 < len(n.Content); i += 2 {
			if n.Content[i].Value == k {
				next = n.Content[i+1]
				break
			}
		}
		if next == nil {
			return line
		}
		n = next
	}
	for _, c := range n.Content {
		if c.Kind == yaml.ScalarNode && c.Value == item {
			return c.Line
		}
	}
	return line
}

// TargetNames returns the targets in the order the file lists them.
func (f *File) TargetNames() []string {
	names := slices.Clone(f.order)
	if len(names) != len(f.Targets) { // defensive: fall back to sorted keys
		names = names[:0]
		for k := range f.Targets {
			names = append(names, k)
		}
		slices.Sort(names)
	}
	return names
}

// Target returns the settings of target name merged over the file's
// top-level settings ("" means the file's default target, or the top level
// when it has none). Relative volume sources are made absolute against the
// file's directory. An untrusted file's volumes and env are checked (see
// checkEnv and volumes); env entries are returned as written (KEY alone is
// the caller's to look up, as for -e KEY).
func (f *File) Target(name string) (Settings, error) {
	if name == "" {
		name = f.Default
	}
	var t Settings
	if name != "" {
		var ok bool
		if t, ok = f.Targets[name]; !ok {
			return Settings{}, fmt.Errorf("%s: %w %q (it has: %s)", f.Path, ErrNoTarget, name, strings.Join(f.TargetNames(), ", "))
		}
	}
	if err := f.checkEnv(f.Env, "env"); err != nil {
		return Settings{}, err
	}
	if err := f.checkEnv(t.Env, "targets", name, "env"); err != nil {
		return Settings{}, err
	}
	top, err := f.volumes(f.Volumes, "volumes")
	if err != nil {
		return Settings{}, err
	}
	own, err := f.volumes(t.Volumes, "targets", name, "volumes")
	if err != nil {
		return Settings{}, err
	}
	s := merge(f.Settings, t)
	s.Volumes = append(top, own...)
	if len(s.AdditionalCaches) > 0 && !f.Trusted {
		return Settings{}, fmt.Errorf("%s: additional_caches makes runs trust the images in %s, which needs a trusted file: review the file, then run xrun config trust %s",
			f.Path, strings.Join(s.AdditionalCaches, ", "), f.Path)
	}
	return s, nil
}

// merge returns base with the fields set in over replacing it; env and
// volumes add up.
func merge(base, over Settings) Settings {
	if over.Image != "" {
		base.Image = over.Image
	}
	if over.Platform != "" {
		base.Platform = over.Platform
	}
	if over.Pull != "" {
		base.Pull = over.Pull
	}
	if over.Accel != nil {
		base.Accel = over.Accel
	}
	base.Env = append(slices.Clone(base.Env), over.Env...)
	base.Volumes = append(slices.Clone(base.Volumes), over.Volumes...)
	base.AdditionalCaches = append(slices.Clone(base.AdditionalCaches), over.AdditionalCaches...)
	return base
}
