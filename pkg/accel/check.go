package accel

import (
	"os"
	"regexp"
	"strings"

	securejoin "github.com/cyphar/filepath-securejoin"
)

// crossRevision is the Debian revision suffix of cross packages built
// from a native source version ("12.2.0-14cross1" -> "12.2.0-14").
var crossRevision = regexp.MustCompile(`cross\d+$`)

// Match compares the image's toolchain t (rootfs: the image) with the
// cross packages downloaded for the host (debs: package name -> version)
// and unpacked at src. Upstream versions must be equal; Debian revisions
// may differ only by changelog entries whose effect is known (Rules). Any
// other difference is a Refusal.
func Match(t *Toolchain, rootfs, src string, debs map[string]string) (Rules, error) {
	cross := t.CrossPackages()
	pairs := []struct {
		img   Pkg
		cross string
	}{{t.CPP, cross[0]}, {t.GCC, cross[1]}, {t.Binutils, cross[2]}}
	if t.CXX.Name != "" {
		pairs = append(pairs, struct {
			img   Pkg
			cross string
		}{t.CXX, cross[3]})
	}
	for _, p := range pairs {
		v, ok := debs[p.cross]
		if !ok {
			return Rules{}, refuse("%s %s has no cross package %s for this host in %s %s: running emulated",
				p.img.Name, p.img.Version, p.cross, t.Distro, t.Codename)
		}
		if upstream(v) != p.img.Upstream() {
			return Rules{}, refuse("the image's %s is %s but %s %s's cross package %s is %s: no native compiler of the same version; running emulated",
				p.img.Name, p.img.Version, t.Distro, t.Codename, p.cross, v)
		}
	}
	// The compiler (cc1 and its siblings come from one source package):
	// what the image's revision changed that the cross one lacks.
	rules, err := revisionRules(t.CPP, cross[0], debs[cross[0]], rootfs, src, t.Triplet)
	if err != nil {
		return Rules{}, err
	}
	// binutils: the same version, or the same changelog.
	if bv := debs[cross[2]]; bv != t.Binutils.Version {
		r, err := revisionRules(t.Binutils, cross[2], bv, rootfs, src, t.Triplet)
		if err != nil {
			return Rules{}, err
		}
		if len(r.Why) > 0 || r.SSPEmulated {
			return Rules{}, refuse("the image's %s %s differs from the cross %s %s: running emulated", t.Binutils.Name, t.Binutils.Version, cross[2], bv)
		}
	}
	return rules, nil
}

// revisionRules compares the changelog of the image's package img with
// that of the cross package crossName (version crossVersion).
func revisionRules(img Pkg, crossName, crossVersion, rootfs, src, triplet string) (Rules, error) {
	base := crossRevision.ReplaceAllString(crossVersion, "")
	ic, ierr := readChangelog(rootfs, img.Name)
	cc, cerr := readChangelog(src, crossName)
	if ierr != nil || cerr != nil {
		if img.Version == base || img.Version == crossVersion {
			return Rules{}, nil // same source revision: nothing to compare
		}
		return Rules{}, refuse("the image's %s %s and the cross %s %s differ and no changelog says how (%s): running emulated",
			img.Name, img.Version, crossName, crossVersion, firstErr(ierr, cerr))
	}
	if extra := Delta(cc, ic); len(extra) > 0 {
		return Rules{}, refuse("the cross %s %s has a change the image's %s %s lacks (%s %s): running emulated",
			crossName, crossVersion, img.Name, img.Version, extra[0].Version, firstLine(extra[0].Text))
	}
	return RulesFor(img.Name, Delta(ic, cc), triplet)
}

func firstErr(errs ...error) error {
	for _, e := range errs {
		if e != nil {
			return e
		}
	}
	return nil
}

// readChangelog reads /usr/share/doc/<pkg>/changelog.Debian.gz under root
// (following symlinks inside root: Debian links some doc directories to
// their -base package's).
func readChangelog(root, pkg string) ([]Entry, error) {
	var last error
	for _, name := range []string{"changelog.Debian.gz", "changelog.Debian"} {
		p, err := securejoin.SecureJoin(root, "/usr/share/doc/"+pkg+"/"+name)
		if err != nil {
			return nil, err
		}
		f, err := os.Open(p)
		if err != nil {
			last = err
			continue
		}
		defer f.Close()
		return ParseChangelog(f)
	}
	return nil, last
}

// sspDefault reports whether the distribution's gcc turns the stack
// protector on by default (Ubuntu's does, -fstack-protector-strong;
// Debian's does not).
func sspDefault(t *Toolchain) bool { return strings.EqualFold(t.Distro, "ubuntu") }
