package accel

import (
	"bytes"
	"fmt"
	"regexp"
)

// includePairs are the built-in include directories of Debian's cross
// cc1/cc1plus for triplet and gcc major version, and the native
// compiler's directories that replace them (never longer: patched in
// place, NUL-padded). Debian's cross compiler also never searches
// /usr/local/include; the wrapper covers that (see Config.LocalInclude).
func includePairs(triplet, major string) [][2]string {
	x := "/usr/lib/gcc-cross/" + triplet + "/" + major
	n := "/usr/lib/gcc/" + triplet + "/" + major
	up := "/../../../../" + triplet + "/include"
	return [][2]string{
		{x + "/include", n + "/include"},
		{x + "/include-fixed", n + "/include-fixed"},
		{x + up, n + up},
		{x + up + "/c++/" + major, "/usr/include/c++/" + major},
		{x + up + "/c++/" + major + "/" + triplet, "/usr/include/" + triplet + "/c++/" + major},
		{x + up + "/c++/" + major + "/backward", "/usr/include/c++/" + major + "/backward"},
	}
}

// PatchIncludes rewrites the built-in include directories of a cross cc1
// or cc1plus (its bytes) to the native compiler's. Every pair must be
// found: a cross compiler whose strings differ is not the one this was
// made for.
func PatchIncludes(b []byte, triplet, major string) ([]byte, error) {
	out := bytes.Clone(b)
	found := 0
	for _, p := range includePairs(triplet, major) {
		old, nw := []byte("\x00"+p[0]+"\x00"), make([]byte, len(p[0])+2)
		if len(p[1]) > len(p[0]) {
			return nil, fmt.Errorf("patch include directory %s: %s is longer", p[0], p[1])
		}
		copy(nw[1:], p[1])
		n := bytes.Count(out, old)
		out = bytes.ReplaceAll(out, old, nw)
		if n > 0 {
			found++
		}
	}
	// The first two (gcc's own headers) are what every compile needs.
	if found < 2 {
		return nil, refuse("the cross cc1 does not have Debian's cross include directories (/usr/lib/gcc-cross/%s/%s/include): not a Debian cross compiler xrun knows", triplet, major)
	}
	return out, nil
}

var pkgVersionRE = regexp.MustCompile(`\x00(\((?:Debian|Ubuntu)[^)\x00]{1,80}\) )\x00`)

// PkgVersion is the package version string compiled into a cc1, as cc1
// writes it into .ident ("(Debian 12.2.0-14) "), or "".
func PkgVersion(cc1 []byte) string {
	m := pkgVersionRE.FindSubmatch(cc1)
	if m == nil {
		return ""
	}
	return string(m[1])
}
