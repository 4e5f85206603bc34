package sandbox

import (
	"fmt"
	"path/filepath"
	"slices"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// A container must never write what later runs trust: xrun's cache (the
// unpacked rootfs of every image, the emulators, the blobs) and its run root
// (libcontainer's state). A bound directory can expose them: the current
// directory when it is $HOME, or a volume such as -v $HOME:$HOME. Wherever a
// bind holds one of them, an empty read-only tmpfs is mounted over it inside
// the container, after the binds (libcontainer mounts in order, and resolves
// each destination inside the container, so the mask lands on the bound
// directory's copy of the path). A bind whose source is inside one of them
// is refused unless it is read-only.

// maskOptions are those of the empty read-only tmpfs over a protected
// directory.
var maskOptions = []string{"ro", "nosuid", "nodev", "noexec", "mode=0755", "size=4k"}

// protected is a host directory no bind may expose writable.
type protected struct {
	dir  string
	what string // for errors: "xrun's cache"
}

// protectMounts returns the masks binds need so that none exposes one of
// the directories in prot, or an error for a writable bind of one of them
// or of a path inside one.
func protectMounts(binds []Bind, prot []protected) ([]specs.Mount, error) {
	var masks []specs.Mount
	for i, b := range binds {
		src := realPath(b.Source)
		for _, p := range prot {
			if p.dir == "" {
				continue
			}
			rp := realPath(p.dir)
			if _, ok := within(rp, src); ok {
				if b.ReadOnly {
					continue
				}
				return nil, fmt.Errorf("cannot bind %s: it is inside %s %s, which a container must not write: add :ro to bind it read-only", b.Source, p.what, p.dir)
			}
			if rel, ok := within(src, rp); ok {
				dst := filepath.Join(b.Destination, rel)
				// A later bind over dst (or a parent) hides what this one
				// exposes there; masking it would create a directory in
				// that bind's source. Its own exposure is checked in turn.
				shadowed := slices.ContainsFunc(binds[i+1:], func(l Bind) bool {
					_, ok := within(filepath.Clean(l.Destination), dst)
					return ok
				})
				if !shadowed && !slices.ContainsFunc(masks, func(m specs.Mount) bool { return m.Destination == dst }) {
					masks = append(masks, specs.Mount{Source: "tmpfs", Destination: dst, Type: "tmpfs", Options: maskOptions})
				}
			}
		}
	}
	return masks, nil
}

// Inside reports whether path is dir or below it, after resolving symbolic
// links in both (a path that does not exist is taken as it is).
func Inside(path, dir string) bool {
	_, ok := within(realPath(dir), realPath(path))
	return ok
}

// within returns path relative to dir when path is dir or below it; both
// are clean absolute paths.
func within(dir, path string) (string, bool) {
	rel, err := filepath.Rel(dir, path)
	if err != nil || rel == ".." || strings.HasPrefix(rel, "../") {
		return "", false
	}
	return rel, true
}

// realPath is p absolute, cleaned and with its symbolic links resolved as
// far as it exists.
func realPath(p string) string {
	p, err := filepath.Abs(p)
	if err != nil {
		return filepath.Clean(p)
	}
	if r, err := filepath.EvalSymlinks(p); err == nil {
		return r
	}
	// Resolve the longest existing parent: a protected directory that does
	// not exist yet may sit below a symbolic link.
	dir, rest := filepath.Dir(p), filepath.Base(p)
	for dir != "/" {
		if r, err := filepath.EvalSymlinks(dir); err == nil {
			return filepath.Join(r, rest)
		}
		dir, rest = filepath.Dir(dir), filepath.Join(filepath.Base(dir), rest)
	}
	return p
}
