package accel

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	securejoin "github.com/cyphar/filepath-securejoin"
)

// Pkg is an installed Debian package: its name and version.
type Pkg struct {
	Name    string `json:"name"`
	Version string `json:"version"`
}

// Upstream is the upstream part of the version: no epoch, no Debian
// revision ("4:12.2.0-14+deb12u1" -> "12.2.0").
func (p Pkg) Upstream() string { return upstream(p.Version) }

func upstream(v string) string {
	if i := strings.IndexByte(v, ':'); i >= 0 {
		v = v[i+1:]
	}
	if i := strings.LastIndexByte(v, '-'); i >= 0 {
		v = v[:i]
	}
	return v
}

func (p Pkg) String() string { return p.Name + " " + p.Version }

// Toolchain is what an image's own files say of its GNU C/C++ toolchain.
type Toolchain struct {
	// Distro and Codename are os-release's ID and VERSION_CODENAME
	// ("debian", "bookworm").
	Distro   string `json:"distro"`
	Codename string `json:"codename"`
	// DebArch is the image's dpkg architecture ("arm64"), Triplet its
	// GNU triplet ("aarch64-linux-gnu").
	DebArch string `json:"deb_arch"`
	Triplet string `json:"triplet"`
	// Major is gcc's major version ("12"): the compiler lives in
	// /usr/lib/gcc/<Triplet>/<Major>.
	Major string `json:"major"`
	// CPP owns cc1, CXX cc1plus (empty without g++), GCC collect2,
	// Binutils the assembler.
	CPP      Pkg `json:"cpp"`
	CXX      Pkg `json:"cxx"`
	GCC      Pkg `json:"gcc"`
	Binutils Pkg `json:"binutils"`
}

// GCCDir is the image's compiler directory, /usr/lib/gcc/<triplet>/<major>.
func (t *Toolchain) GCCDir() string { return "/usr/lib/gcc/" + t.Triplet + "/" + t.Major }

// CrossPackages are the Debian packages of the cross toolchain for the
// host that match t: the same names with the target triplet appended
// (cpp-12 -> cpp-12-aarch64-linux-gnu), and binutils-<triplet>.
func (t *Toolchain) CrossPackages() []string {
	sfx := "-" + strings.ReplaceAll(t.Triplet, "_", "-")
	p := []string{t.CPP.Name + sfx, t.GCC.Name + sfx, "binutils" + sfx}
	if t.CXX.Name != "" {
		p = append(p, t.CXX.Name+sfx)
	}
	return p
}

// debTriplets maps Debian architectures to their GNU triplets (multiarch
// names), for the architectures xrun runs.
var debTriplets = map[string]string{
	"amd64":    "x86_64-linux-gnu",
	"arm64":    "aarch64-linux-gnu",
	"armhf":    "arm-linux-gnueabihf",
	"armel":    "arm-linux-gnueabi",
	"i386":     "i386-linux-gnu",
	"ppc64el":  "powerpc64le-linux-gnu",
	"s390x":    "s390x-linux-gnu",
	"riscv64":  "riscv64-linux-gnu",
	"mips64el": "mips64el-linux-gnuabi64",
}

// DebArch is the Debian architecture of an OCI architecture and variant
// ("arm64" for arm64, "armhf" for arm/v7), or "".
func DebArch(arch, variant string) string {
	switch arch {
	case "arm":
		if variant == "v7" || variant == "" {
			return "armhf"
		}
		return "armel"
	case "ppc64le":
		return "ppc64el"
	case "386":
		return "i386"
	case "amd64", "arm64", "s390x", "riscv64", "mips64le":
		if arch == "mips64le" {
			return "mips64el"
		}
		return arch
	}
	return ""
}

// Triplet is the GNU triplet of a Debian architecture, or "".
func Triplet(debArch string) string { return debTriplets[debArch] }

// Refusal is why a toolchain cannot be accelerated: the run goes on
// emulated, and the reason is said in one line.
type Refusal struct{ Reason string }

func (r *Refusal) Error() string { return r.Reason }

func refuse(format string, a ...any) error { return &Refusal{Reason: fmt.Sprintf(format, a...)} }

// IsRefusal reports whether err is a Refusal (a property of the image or
// the archive, not a failure to retry).
func IsRefusal(err error) bool {
	var r *Refusal
	return errors.As(err, &r)
}

// Inspect reads the toolchain of the image unpacked at rootfs, whose
// platform has Debian architecture debArch. It returns a *Refusal when
// the image is not a dpkg-based distribution or has no gcc.
func Inspect(rootfs, debArch string) (*Toolchain, error) {
	triplet := Triplet(debArch)
	if triplet == "" {
		return nil, refuse("no Debian architecture known for this platform")
	}
	osr, err := readOSRelease(rootfs)
	if err != nil {
		return nil, refuse("the image has no /etc/os-release: --accel knows Debian and Ubuntu images only")
	}
	t := &Toolchain{Distro: osr["ID"], Codename: osr["VERSION_CODENAME"], DebArch: debArch, Triplet: triplet}
	if t.Distro != "debian" && t.Distro != "ubuntu" {
		return nil, refuse("the image is %s, not Debian or Ubuntu: --accel takes the native toolchain from Debian's and Ubuntu's cross packages", osr["ID"])
	}
	if t.Codename == "" {
		return nil, refuse("the image's /etc/os-release names no VERSION_CODENAME (a testing or sid image?): no release to take cross packages from")
	}
	status, err := readStatus(rootfs)
	if err != nil {
		return nil, refuse("the image has no dpkg database (%v)", err)
	}
	if t.Major, err = gccMajor(rootfs, triplet); err != nil {
		return nil, err
	}
	dir := t.GCCDir()
	owners, err := owners(rootfs, dir+"/cc1", dir+"/cc1plus", dir+"/collect2", "/usr/bin/"+triplet+"-as")
	if err != nil {
		return nil, err
	}
	pkg := func(path string) Pkg {
		name := owners[path]
		return Pkg{Name: name, Version: status[name]}
	}
	t.CPP, t.CXX, t.GCC, t.Binutils = pkg(dir+"/cc1"), pkg(dir+"/cc1plus"), pkg(dir+"/collect2"), pkg("/usr/bin/"+triplet+"-as")
	switch {
	case t.CPP.Version == "":
		return nil, refuse("no installed package owns %s/cc1 in the image's dpkg database", dir)
	case t.GCC.Version == "":
		return nil, refuse("no installed package owns %s/collect2 (gcc-%s is not installed)", dir, t.Major)
	case t.Binutils.Version == "":
		return nil, refuse("no installed package owns /usr/bin/%s-as (binutils is not installed)", triplet)
	}
	return t, nil
}

// readOSRelease parses the image's os-release (KEY=VALUE lines, values
// optionally quoted).
func readOSRelease(rootfs string) (map[string]string, error) {
	var b []byte
	var err error
	for _, p := range []string{"/etc/os-release", "/usr/lib/os-release"} {
		if b, err = readIn(rootfs, p); err == nil {
			break
		}
	}
	if err != nil {
		return nil, err
	}
	m := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		k, v, ok := strings.Cut(strings.TrimSpace(sc.Text()), "=")
		if !ok || strings.HasPrefix(k, "#") {
			continue
		}
		if uq, err := strconv.Unquote(v); err == nil {
			v = uq
		} else {
			v = strings.Trim(v, `'"`)
		}
		m[k] = v
	}
	return m, nil
}

// readIn reads the file at path inside rootfs, following symlinks only
// within it.
func readIn(rootfs, path string) ([]byte, error) {
	p, err := securejoin.SecureJoin(rootfs, path)
	if err != nil {
		return nil, err
	}
	return os.ReadFile(p)
}

// readStatus returns the versions of the installed packages in the
// image's /var/lib/dpkg/status (name without :arch -> version).
func readStatus(rootfs string) (map[string]string, error) {
	b, err := readIn(rootfs, "/var/lib/dpkg/status")
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	for _, para := range bytes.Split(b, []byte("\n\n")) {
		f := fields(para)
		if f["Package"] != "" && strings.HasSuffix(f["Status"], " installed") && !strings.Contains(f["Status"], "not-installed") {
			out[f["Package"]] = f["Version"]
		}
	}
	return out, nil
}

// fields parses one deb822 paragraph's single-line fields.
func fields(para []byte) map[string]string {
	m := map[string]string{}
	for _, line := range strings.Split(string(para), "\n") {
		if line == "" || line[0] == ' ' || line[0] == '\t' {
			continue
		}
		if k, v, ok := strings.Cut(line, ":"); ok {
			m[k] = strings.TrimSpace(v)
		}
	}
	return m
}

// gccMajor is the major version of the image's gcc: the one /usr/bin/gcc
// points to (gcc -> gcc-12), else the highest /usr/lib/gcc/<triplet>/N
// with a cc1.
func gccMajor(rootfs, triplet string) (string, error) {
	if p, err := securejoin.SecureJoin(rootfs, "/usr/bin"); err == nil {
		if l, err := os.Readlink(filepath.Join(p, "gcc")); err == nil {
			l = filepath.Base(l)
			if m, ok := strings.CutPrefix(l, "gcc-"); ok {
				if _, err := os.Stat(filepath.Join(rootfs, "usr/lib/gcc", triplet, m, "cc1")); err == nil {
					return m, nil
				}
			}
			if m, ok := strings.CutPrefix(l, triplet+"-gcc-"); ok {
				if _, err := os.Stat(filepath.Join(rootfs, "usr/lib/gcc", triplet, m, "cc1")); err == nil {
					return m, nil
				}
			}
		}
	}
	base, err := securejoin.SecureJoin(rootfs, "/usr/lib/gcc/"+triplet)
	if err != nil {
		return "", err
	}
	ents, _ := os.ReadDir(base)
	var majors []int
	for _, e := range ents {
		n, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if fi, err := os.Lstat(filepath.Join(base, e.Name(), "cc1")); err == nil && fi.Mode().IsRegular() {
			majors = append(majors, n)
		}
	}
	if len(majors) == 0 {
		return "", refuse("the image has no gcc (no /usr/lib/gcc/%s/*/cc1): nothing to accelerate; install gcc in the image", triplet)
	}
	sort.Ints(majors)
	return strconv.Itoa(majors[len(majors)-1]), nil
}

// owners finds, in the image's /var/lib/dpkg/info/*.list, the package that
// owns each of paths (package name without :arch; "" when none does).
func owners(rootfs string, paths ...string) (map[string]string, error) {
	dir, err := securejoin.SecureJoin(rootfs, "/var/lib/dpkg/info")
	if err != nil {
		return nil, err
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, refuse("the image has no dpkg file lists (%v)", err)
	}
	want := map[string]bool{}
	for _, p := range paths {
		want[p] = true
	}
	out := map[string]string{}
	for _, e := range ents {
		name, ok := strings.CutSuffix(e.Name(), ".list")
		if !ok || !e.Type().IsRegular() {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			if errors.Is(err, fs.ErrPermission) {
				continue
			}
			return nil, err
		}
		pkg, _, _ := strings.Cut(name, ":")
		for _, line := range strings.Split(string(b), "\n") {
			if want[line] {
				out[line] = pkg
			}
		}
		if len(out) == len(want) {
			break
		}
	}
	return out, nil
}

// SameRelease checks that the image unpacked at rootfs is t's distribution
// and release (the native container the cross packages come from).
func SameRelease(rootfs string, t *Toolchain) error {
	osr, err := readOSRelease(rootfs)
	if err != nil {
		return fmt.Errorf("no os-release: %w", err)
	}
	if osr["ID"] != t.Distro || osr["VERSION_CODENAME"] != t.Codename {
		return fmt.Errorf("it is %s %s, not %s %s", osr["ID"], osr["VERSION_CODENAME"], t.Distro, t.Codename)
	}
	return nil
}
