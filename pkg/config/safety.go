package config

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

// A .xrun.yaml chooses the image, the environment and the binds of a run,
// so xrun uses one only when nobody but the user (or root) could have
// written it, as git does with safe.directory and direnv with its allow
// list:
//
//   - The search goes up from the current directory and stops at the
//     repository root (a directory holding .git) or $HOME: a file above
//     them belongs to somebody else's idea of a project.
//   - The nearest file is ignored (with a note) when it is not owned by the
//     user or root, when it or its directory can be written by group or
//     others, or when its directory is owned by another user. There is no
//     exception for sticky directories: the sticky bit stops others from
//     replacing the user's own /tmp/.xrun.yaml, but a file directly in a
//     shared directory is nobody's project and would apply to every
//     directory below it, other users' included; a user who wants it anyway
//     trusts it explicitly.
//   - An untrusted file (one the user has not trusted with xrun config
//     trust, or trusted and then edited) binds only paths inside its own
//     directory, symbolic links resolved, and may not copy the user's
//     environment into the container nor set loader or emulator variables
//     (see checkEnv). A trusted file is used as written, wherever it is.

// maxFileSize bounds what is read of a project file.
const maxFileSize = 1 << 20

// Policy decides whether a project file may be used.
type Policy struct {
	// UID is the user's: files must be owned by it or by root.
	UID int
	// Home stops the search ("" for none).
	Home string
	// Trust lists the trusted files (nil: none).
	Trust *TrustList
}

// Found is the outcome of a search for a project file.
type Found struct {
	// File is the file that applies, nil when none does.
	File *File
	// Ignored is the nearest file when it may not be used, and Why says
	// why ("owned by uid 1001, not by you or root").
	Ignored, Why string
}

// Discover finds the project file that applies in dir: the nearest one
// (see Find), when it is safe to use or trusted.
func Discover(dir string, p Policy) (Found, error) {
	path := Find(dir, p.Home)
	if path == "" {
		return Found{}, nil
	}
	f, why, err := open(path, p)
	if err != nil {
		return Found{}, err
	}
	if why != "" {
		return Found{Ignored: path, Why: why}, nil
	}
	return Found{File: f}, nil
}

// OpenFile reads a file the user named explicitly (XRUN_CONFIG). The same
// rules apply, but breaking them is an error rather than a note.
func OpenFile(path string, p Policy) (*File, error) {
	f, why, err := open(path, p)
	if err != nil {
		return nil, err
	}
	if why != "" {
		return nil, fmt.Errorf("%s is %s: move it to a directory only you can write, or if you trust it: run xrun config trust %s", path, why, path)
	}
	return f, nil
}

// Inspect reads the file at path for xrun config: its content hash and
// real path, and why it would be ignored ("" when it would not).
func Inspect(path string, uid int) (real string, sum [32]byte, why string, err error) {
	b, real, why, err := read(path, uid)
	if err != nil {
		return "", sum, "", err
	}
	return real, sha256.Sum256(b), why, nil
}

// RealPath returns path made absolute with symbolic links resolved, the
// key of the trust list; for a file that no longer exists, its directory's
// links are resolved.
func RealPath(path string) (string, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return "", err
	}
	if real, err := filepath.EvalSymlinks(abs); err == nil {
		return real, nil
	}
	if dir, err := filepath.EvalSymlinks(filepath.Dir(abs)); err == nil {
		return filepath.Join(dir, filepath.Base(abs)), nil
	}
	return abs, nil
}

// open reads and parses path; why is set (and the file nil) when the file
// may not be used.
func open(path string, p Policy) (f *File, why string, err error) {
	b, real, why, err := read(path, p.UID)
	if err != nil {
		return nil, "", err
	}
	sum := sha256.Sum256(b)
	trusted := p.Trust.Trusted(real, sum)
	if why != "" && !trusted {
		return nil, why, nil
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, "", err
	}
	if f, err = parse(abs, b); err != nil {
		return nil, "", err
	}
	f.Real, f.Sum, f.Trusted = real, sum, trusted
	return f, "", nil
}

// read returns the content of path (bounded), its real path, and why
// nobody but the user may have written it ("" when only the user or root
// could). The checks are made on the file that is read (fstat of the open
// descriptor), not on a name that could change in between.
func read(path string, uid int) (b []byte, real, why string, err error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, "", "", err
	}
	real, err = filepath.EvalSymlinks(abs)
	if err != nil {
		return nil, "", "", fmt.Errorf("read %s: %w", path, err)
	}
	// O_NONBLOCK: a FIFO planted as .xrun.yaml must not hang the open.
	fd, err := os.OpenFile(real, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, "", "", fmt.Errorf("read %s: %w", path, err)
	}
	defer fd.Close()
	fi, err := fd.Stat()
	if err != nil {
		return nil, "", "", fmt.Errorf("read %s: %w", path, err)
	}
	if !fi.Mode().IsRegular() {
		return nil, real, "not a regular file", nil
	}
	if why = unsafeReason(fi, uid, ""); why == "" {
		// The directory the file was found in, and the one it really is
		// in when it is a symbolic link.
		for _, d := range uniq(filepath.Dir(abs), filepath.Dir(real)) {
			di, err := os.Stat(d)
			if err != nil {
				return nil, "", "", fmt.Errorf("read %s: %w", path, err)
			}
			if why = unsafeReason(di, uid, d); why != "" {
				break
			}
		}
	}
	b, err = io.ReadAll(io.LimitReader(fd, maxFileSize+1))
	if err != nil {
		return nil, "", "", fmt.Errorf("read %s: %w", path, err)
	}
	if len(b) > maxFileSize {
		return nil, "", "", fmt.Errorf("%s is larger than %d bytes: fix or remove the file", path, maxFileSize)
	}
	return b, real, why, nil
}

// unsafeReason says why a file (dir == "") or the directory dir holding
// it could have been written by someone other than uid and root, or "".
func unsafeReason(fi fs.FileInfo, uid int, dir string) string {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return "of unknown owner"
	}
	what := ""
	if dir != "" {
		what = "in " + dir + ", which is "
	}
	if owner := int(st.Uid); owner != uid && owner != 0 {
		return fmt.Sprintf("%sowned by uid %d, not by you or root", what, owner)
	}
	if fi.Mode().Perm()&0o022 != 0 {
		mode := st.Mode & 0o7777
		return fmt.Sprintf("%swritable by others (mode %04o)", what, mode)
	}
	return ""
}

func uniq(a, b string) []string {
	if a == b {
		return []string{a}
	}
	return []string{a, b}
}

// Find returns the path of the nearest .xrun.yaml in dir or its parents,
// or "" when there is none. The search stops at the root of a repository
// (a directory holding .git) and at home: files above them are not looked
// at. Find does not judge the file (see Discover).
func Find(dir, home string) string {
	var homeFI fs.FileInfo
	if home != "" {
		homeFI, _ = os.Stat(home)
	}
	for {
		p := filepath.Join(dir, FileName)
		if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() {
			return p
		}
		if stop(dir, homeFI) {
			return ""
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return ""
		}
		dir = parent
	}
}

// stop reports whether the search ends at dir: a repository root or home.
func stop(dir string, home fs.FileInfo) bool {
	if _, err := os.Lstat(filepath.Join(dir, ".git")); err == nil {
		return true
	}
	if home == nil {
		return false
	}
	fi, err := os.Stat(dir)
	return err == nil && os.SameFile(fi, home)
}

// checkEnv refuses, in an untrusted file, the variables that reach beyond
// the container. A literal KEY=VALUE only changes the container, whose
// image the same file already chooses, so it is allowed. Two kinds are
// not: KEY alone copies the user's value into the container (tokens and
// keys in the environment would reach an image the file picked, on the
// host network), and LD_* and QEMU_* change how every program is loaded
// or emulated, including in an image the user names on the command line
// (QEMU_GDB even opens a debugger port on the host's network).
func (f *File) checkEnv(env []string, at ...string) error {
	if f.Trusted {
		return nil
	}
	for _, e := range env {
		k, _, hasValue := strings.Cut(e, "=")
		switch {
		case !hasValue:
			return fmt.Errorf("%s:%d: env: %s copies your environment's value into the container, which needs a trusted file: review the file, then run xrun config trust %s",
				f.Path, itemLine(f.root, e, at...), k, f.Path)
		case strings.HasPrefix(k, "LD_") || strings.HasPrefix(k, "QEMU_"):
			return fmt.Errorf("%s:%d: env: %s changes how programs are loaded or emulated, which needs a trusted file: review the file, then run xrun config trust %s",
				f.Path, itemLine(f.root, e, at...), k, f.Path)
		}
	}
	return nil
}

// volumes makes the sources of vols absolute (relative ones are relative
// to the file's directory). In an untrusted file each source must be
// inside that directory once symbolic links are resolved, and the resolved
// path is what gets bound.
func (f *File) volumes(vols []string, at ...string) ([]string, error) {
	dir := filepath.Dir(f.Path)
	realDir, err := filepath.EvalSymlinks(dir)
	if err != nil {
		realDir = dir
	}
	var out []string
	for _, v := range vols {
		src, rest, _ := strings.Cut(v, ":")
		if !filepath.IsAbs(src) {
			src = filepath.Join(dir, src)
		}
		src = filepath.Clean(src)
		if !f.Trusted {
			outside := !within(dir, src)
			if !outside {
				real, err := resolve(src)
				if err != nil {
					return nil, fmt.Errorf("%s:%d: volumes: %w", f.Path, itemLine(f.root, v, at...), err)
				}
				outside, src = !within(realDir, real), real
			}
			if outside {
				return nil, fmt.Errorf("%s:%d: volume %q binds %s, outside the project %s: review the file, then run xrun config trust %s",
					f.Path, itemLine(f.root, v, at...), v, src, dir, f.Path)
			}
		}
		out = append(out, src+":"+rest)
	}
	return out, nil
}

// resolve returns path with symbolic links resolved. For a path that does
// not exist yet, the links of its longest existing prefix are resolved (a
// missing source is refused by the run, but must not be judged by a name
// that a link could later send elsewhere); a dangling link is an error.
func resolve(path string) (string, error) {
	rest := ""
	for p := path; ; {
		real, err := filepath.EvalSymlinks(p)
		if err == nil {
			return filepath.Join(real, rest), nil
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return "", err
		}
		if fi, lerr := os.Lstat(p); lerr == nil && fi.Mode()&fs.ModeSymlink != 0 {
			return "", fmt.Errorf("%s is a symbolic link to nothing: fix or remove the link", p)
		}
		parent := filepath.Dir(p)
		if parent == p {
			return "", err
		}
		rest = filepath.Join(filepath.Base(p), rest)
		p = parent
	}
}

// within reports whether path is base or below it (both clean).
func within(base, path string) bool {
	return path == base || strings.HasPrefix(path, strings.TrimSuffix(base, "/")+"/")
}
