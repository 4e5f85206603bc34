package accel

import (
	"debug/elf"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"

	securejoin "github.com/cyphar/filepath-securejoin"
)

// Assembly is what Assemble needs.
type Assembly struct {
	// Toolchain is the image's (Inspect), Rules what Match found.
	Toolchain *Toolchain
	Rules     Rules
	// Image is the image's rootfs, Src the cross packages and the host's
	// runtime libraries unpacked (dpkg-deb -x) into one directory.
	Image, Src string
	// Dst is the tree to write (the overlay layer); it must not exist.
	Dst string
	// HostTriplet is the host's multiarch triplet ("x86_64-linux-gnu").
	HostTriplet string
	// Wrapper is the wrapper binary to install (a copy of xrun, which runs
	// WrapperMain when called as cc1 or cc1plus).
	Wrapper string
}

// binutilsTools are the binutils programs run natively when the image has
// them as regular files.
var binutilsTools = []string{"as", "ld.bfd", "ar", "ranlib", "nm", "objcopy", "objdump", "strip", "readelf", "size", "strings", "addr2line", "c++filt", "elfedit"}

// gccHelpers are the compiler's helper programs and plugin run natively
// (the gcc/g++ drivers stay the image's: their specs, -v and -print-* are
// the image's by construction; lto1 too, LTO compiles run emulated).
var gccHelpers = []string{"collect2", "lto-wrapper", "liblto_plugin.so"}

// Tree describes an assembled tree: its wrapper configuration and the
// container paths of what runs natively.
type Tree struct {
	Config Config   `json:"config"`
	Native []string `json:"native"`
}

// Assemble writes the tree for a.Toolchain into a.Dst: every file at the
// container path it takes over (through the image's own symlinked
// directories), the patched cross cc1/cc1plus and the image's own under
// /.xrun-accel, the loader and the libraries the native programs need.
func Assemble(a Assembly) (*Tree, error) {
	t := a.Toolchain
	if err := os.Mkdir(a.Dst, 0o755); err != nil {
		return nil, err
	}
	w := &writer{a: a}
	tr := &Tree{Config: Config{
		Format: FormatVersion, Native: map[string]string{}, Emulated: map[string]string{},
		Rules: a.Rules, SSPDefault: sspDefault(t),
		LocalInclude: []string{"/usr/local/include/" + t.Triplet, "/usr/local/include"},
	}}
	gccDir, crossDir := t.GCCDir(), "/usr/lib/gcc-cross/"+t.Triplet+"/"+t.Major
	if err := w.copyFile(a.Wrapper, Dir+"/bin/xrun-accel", 0o755); err != nil {
		return nil, fmt.Errorf("install the wrapper: %w", err)
	}
	var elfs []string // tree paths of native ELF files
	for _, name := range Wrapped {
		img, err := w.imageFile(gccDir + "/" + name)
		if err != nil {
			if name == "cc1" {
				return nil, err
			}
			continue // no g++
		}
		b, err := w.srcBytes(crossDir + "/" + name)
		if err != nil {
			return nil, refuse("the cross package has no %s/%s", crossDir, name)
		}
		pb, err := PatchIncludes(b, t.Triplet, t.Major)
		if err != nil {
			return nil, err
		}
		if err := w.writeFile(Dir+"/native/"+name, pb, 0o755); err != nil {
			return nil, err
		}
		if err := w.linkOrCopy(img, Dir+"/emu/"+name); err != nil {
			return nil, err
		}
		if name == "cc1" {
			ib, err := os.ReadFile(img)
			if err != nil {
				return nil, err
			}
			from, to := PkgVersion(pb), PkgVersion(ib)
			if from == "" || to == "" {
				return nil, refuse("cannot find the package version string in cc1: not a Debian or Ubuntu gcc xrun knows")
			}
			tr.Config.IdentFrom, tr.Config.IdentTo = identLine(from), identLine(to)
		}
		if err := w.symlink(Dir+"/bin/xrun-accel", gccDir+"/"+name); err != nil {
			return nil, err
		}
		tr.Config.Native[name] = Dir + "/native/" + name
		tr.Config.Emulated[name] = Dir + "/emu/" + name
		elfs = append(elfs, Dir+"/native/"+name)
		tr.Native = append(tr.Native, gccDir+"/"+name)
	}
	type pair struct{ src, dst string }
	var more []pair
	for _, h := range gccHelpers {
		more = append(more, pair{crossDir + "/" + h, gccDir + "/" + h})
	}
	for _, b := range binutilsTools {
		p := "/usr/bin/" + t.Triplet + "-" + b
		more = append(more, pair{p, p})
	}
	for _, p := range more {
		if !w.imageHasRegular(p.dst) {
			continue
		}
		src, err := w.srcPath(p.src)
		if err != nil {
			continue
		}
		if err := w.copyFile(src, p.dst, 0o755); err != nil {
			return nil, err
		}
		elfs = append(elfs, p.dst)
		tr.Native = append(tr.Native, p.dst)
	}
	if err := w.closure(elfs); err != nil {
		return nil, err
	}
	cb, err := json.MarshalIndent(tr.Config, "", "  ")
	if err != nil {
		return nil, err
	}
	if err := w.writeFile(ConfigPath, append(cb, '\n'), 0o644); err != nil {
		return nil, err
	}
	sort.Strings(tr.Native)
	return tr, nil
}

// writer places files into the tree at container paths.
type writer struct{ a Assembly }

// inImage is where the container path p is in the image once the image's
// symlinked directories are followed (/lib64/x -> /usr/lib64/x when the
// image links /lib64 to usr/lib64), so that the tree's file lands where the
// image's would be.
func (w *writer) inImage(p string) (string, error) {
	dir, err := securejoin.SecureJoin(w.a.Image, path.Dir(p))
	if err != nil {
		return "", err
	}
	rel, err := filepath.Rel(w.a.Image, dir)
	if err != nil || strings.HasPrefix(rel, "..") {
		return "", fmt.Errorf("%s resolves outside the image", p)
	}
	return filepath.Join(w.a.Dst, rel, path.Base(p)), nil
}

func (w *writer) imageFile(p string) (string, error) {
	f, err := securejoin.SecureJoin(w.a.Image, p)
	if err != nil {
		return "", err
	}
	if _, err := os.Stat(f); err != nil {
		return "", err
	}
	return f, nil
}

func (w *writer) imageHasRegular(p string) bool {
	dir, err := securejoin.SecureJoin(w.a.Image, path.Dir(p))
	if err != nil {
		return false
	}
	fi, err := os.Lstat(filepath.Join(dir, path.Base(p)))
	return err == nil && fi.Mode().IsRegular()
}

func (w *writer) srcPath(p string) (string, error) {
	f, err := securejoin.SecureJoin(w.a.Src, p)
	if err != nil {
		return "", err
	}
	fi, err := os.Stat(f)
	if err != nil {
		return "", err
	}
	if !fi.Mode().IsRegular() {
		return "", fmt.Errorf("%s is not a file", p)
	}
	return f, nil
}

func (w *writer) srcBytes(p string) ([]byte, error) {
	f, err := w.srcPath(p)
	if err != nil {
		return nil, err
	}
	return os.ReadFile(f)
}

func (w *writer) target(p string) (string, error) {
	dst, err := w.inImage(p)
	if err != nil {
		return "", err
	}
	return dst, os.MkdirAll(filepath.Dir(dst), 0o755)
}

func (w *writer) writeFile(p string, b []byte, mode os.FileMode) error {
	dst, err := w.target(p)
	if err != nil {
		return err
	}
	return os.WriteFile(dst, b, mode)
}

func (w *writer) copyFile(src, p string, mode os.FileMode) error {
	dst, err := w.target(p)
	if err != nil {
		return err
	}
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, mode)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return fmt.Errorf("copy %s: %w", src, err)
	}
	return out.Close()
}

// linkOrCopy puts the image's file src at p: a hard link when the cache
// allows it (the same file system, owned by the user), else a copy.
func (w *writer) linkOrCopy(src, p string) error {
	dst, err := w.target(p)
	if err != nil {
		return err
	}
	if os.Link(src, dst) == nil {
		return nil
	}
	return w.copyFile(src, p, 0o755)
}

func (w *writer) symlink(target, p string) error {
	dst, err := w.target(p)
	if err != nil {
		return err
	}
	return os.Symlink(target, dst)
}

// closure adds the program interpreter and every shared library the
// native ELF files (tree container paths) need, from the host's runtime
// library packages in Src, at the host's multiarch directory.
func (w *writer) closure(elfs []string) error {
	ht := w.a.HostTriplet
	libDirs := []string{"/lib/" + ht, "/usr/lib/" + ht}
	done := map[string]bool{}
	queue := []string{}
	var interp string
	for _, p := range elfs {
		f, err := w.inImage(p)
		if err != nil {
			return err
		}
		queue = append(queue, f)
	}
	for len(queue) > 0 {
		f := queue[0]
		queue = queue[1:]
		ef, err := elf.Open(f)
		if err != nil {
			return fmt.Errorf("read %s: %w", f, err)
		}
		libs, err := ef.ImportedLibraries()
		for _, prog := range ef.Progs {
			if prog.Type == elf.PT_INTERP {
				b, _ := io.ReadAll(prog.Open())
				interp = strings.TrimRight(string(b), "\x00")
			}
		}
		ef.Close()
		if err != nil {
			return fmt.Errorf("read %s: %w", f, err)
		}
		for _, l := range libs {
			if done[l] {
				continue
			}
			done[l] = true
			src := ""
			for _, d := range libDirs {
				if s, err := w.srcPath(d + "/" + l); err == nil {
					src = s
					break
				}
			}
			if src == "" {
				return fmt.Errorf("the native toolchain needs %s, which the downloaded packages do not have", l)
			}
			dst := "/usr/lib/" + ht + "/" + l
			if err := w.copyFile(src, dst, 0o644); err != nil {
				return err
			}
			t, _ := w.inImage(dst)
			queue = append(queue, t)
		}
	}
	if interp == "" {
		return errors.New("the native toolchain has no program interpreter")
	}
	src, err := w.srcPath(interp)
	if err != nil {
		return fmt.Errorf("the program interpreter %s is not in the downloaded packages: %w", interp, err)
	}
	return w.copyFile(src, interp, 0o755)
}
