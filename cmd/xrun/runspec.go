package main

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/xrun-dev/xrun/pkg/sandbox"
)

// The parsers of run's flag values. Each checks its value completely, so a
// bad flag is refused before anything is pulled or started.

// parseVolume parses -v SRC:DST[:ro|rw]. SRC may be relative to cwd and
// must exist; DST must be absolute and not "/".
func parseVolume(spec, cwd string) (sandbox.Bind, error) {
	bad := func(why string) (sandbox.Bind, error) {
		return sandbox.Bind{}, fmt.Errorf("invalid -v %q: %s (use SRC:DST[:ro], DST absolute)", spec, why)
	}
	parts := strings.Split(spec, ":")
	if len(parts) < 2 || len(parts) > 3 {
		return bad("want SRC:DST or SRC:DST:ro")
	}
	src, dst := parts[0], parts[1]
	b := sandbox.Bind{}
	if len(parts) == 3 {
		switch parts[2] {
		case "ro":
			b.ReadOnly = true
		case "rw":
		default:
			return bad(fmt.Sprintf("unknown mode %q: ro or rw", parts[2]))
		}
	}
	if src == "" {
		return bad("empty source")
	}
	if !filepath.IsAbs(dst) {
		return bad("the destination must be an absolute path")
	}
	dst = filepath.Clean(dst)
	if dst == "/" {
		return bad("cannot bind over the container's root")
	}
	if !filepath.IsAbs(src) {
		src = filepath.Join(cwd, src)
	}
	src = filepath.Clean(src)
	if _, err := os.Stat(src); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return bad("the source " + src + " does not exist")
		}
		return bad(err.Error())
	}
	b.Source, b.Destination = src, dst
	return b, nil
}

// parseTmpfs parses --tmpfs DIR[:OPTIONS], OPTIONS comma-separated mount
// options as docker takes them (size=64m,mode=755,noexec).
func parseTmpfs(spec string) (sandbox.Tmpfs, error) {
	dir, opts, _ := strings.Cut(spec, ":")
	if !filepath.IsAbs(dir) || filepath.Clean(dir) == "/" {
		return sandbox.Tmpfs{}, fmt.Errorf("invalid --tmpfs %q: use an absolute directory other than /, with optional :OPTIONS", spec)
	}
	t := sandbox.Tmpfs{Destination: filepath.Clean(dir)}
	if opts != "" {
		for _, o := range strings.Split(opts, ",") {
			if o == "" {
				return sandbox.Tmpfs{}, fmt.Errorf("invalid --tmpfs %q: empty option", spec)
			}
			t.Options = append(t.Options, o)
		}
	}
	return t, nil
}

// parseEnvLine parses one -e value or env-file line: KEY=VALUE is taken as
// it is; KEY alone takes the value from lookup, and is dropped when lookup
// has none (as docker does).
func parseEnvLine(e string, lookup func(string) (string, bool)) (kv string, ok bool, err error) {
	k, _, hasValue := strings.Cut(e, "=")
	if k == "" || strings.ContainsAny(k, " \t\x00") {
		return "", false, fmt.Errorf("invalid variable %q: use KEY=VALUE or KEY", e)
	}
	if hasValue {
		return e, true, nil
	}
	v, set := lookup(k)
	if !set {
		return "", false, nil
	}
	return k + "=" + v, true, nil
}

// parseEnvFile reads a docker-style env file: one KEY=VALUE or KEY per
// line; blank lines and lines starting with # are skipped; values are taken
// literally (no quotes, no expansion).
func parseEnvFile(path string, lookup func(string) (string, bool)) ([]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("--env-file: %w", err)
	}
	defer f.Close()
	var env []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSuffix(sc.Text(), "\r")
		trimmed := strings.TrimLeft(line, " \t")
		if trimmed == "" || strings.HasPrefix(trimmed, "#") {
			continue
		}
		kv, ok, err := parseEnvLine(trimmed, lookup)
		if err != nil {
			return nil, fmt.Errorf("--env-file %s line %d: %w", path, n, err)
		}
		if ok {
			env = append(env, kv)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("--env-file %s: %w", path, err)
	}
	return env, nil
}
