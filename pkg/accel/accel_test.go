package accel

import (
	"bytes"
	"compress/gzip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/xrun-dev/xrun/internal/testutil"
)

const clBase = `gcc-12 (12.2.0-14) unstable; urgency=medium

  * Update to git 20230108 from the gcc-12 branch.

 -- Matthias Klose <doko@debian.org>  Sun, 08 Jan 2023 11:46:36 +0100

gcc-12 (12.2.0-13) unstable; urgency=medium

  * Fix something.

 -- Matthias Klose <doko@debian.org>  Sat, 07 Jan 2023 11:46:36 +0100
`

const clCVE = `gcc-12 (12.2.0-14+deb12u1) bookworm; urgency=medium

  * Fix -fstack-protector handling of overflows on AArch64 (CVE-2023-4039).

 -- Matthias Klose <doko@debian.org>  Tue, 12 Sep 2023 10:20:36 +0200

`

const clOther = `gcc-12 (12.2.0-14+deb12u2) bookworm; urgency=medium

  * Fix wrong code with -O3 on loops.

 -- Someone <x@debian.org>  Tue, 12 Sep 2024 10:20:36 +0200

`

func gz(t *testing.T, s string) []byte {
	t.Helper()
	var b bytes.Buffer
	w := gzip.NewWriter(&b)
	w.Write([]byte(s))
	w.Close()
	return b.Bytes()
}

func parse(t *testing.T, s string) []Entry {
	t.Helper()
	e, err := ParseChangelog(bytes.NewReader(gz(t, s)))
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func TestChangelogDeltaRules(t *testing.T) {
	cross := parse(t, clBase)
	if len(cross) != 2 || cross[0].Version != "12.2.0-14" || !strings.Contains(cross[0].Text, "git 20230108") {
		t.Fatalf("parsed %+v", cross)
	}
	// Same entries: nothing to do.
	if d := Delta(parse(t, clBase), cross); len(d) != 0 {
		t.Errorf("delta of identical changelogs: %+v", d)
	}
	// The bookworm security update: known, stack protector runs emulated
	// on aarch64 only.
	img := parse(t, clCVE+clBase)
	d := Delta(img, cross)
	if len(d) != 1 || d[0].Version != "12.2.0-14+deb12u1" {
		t.Fatalf("delta: %+v", d)
	}
	r, err := RulesFor("gcc-12", d, "aarch64-linux-gnu")
	if err != nil || !r.SSPEmulated || len(r.Why) != 1 || !strings.Contains(r.Why[0], "CVE-2023-4039") {
		t.Errorf("aarch64 rules: %+v, %v", r, err)
	}
	// Another target: the entry is not the measured one there.
	if _, err := RulesFor("gcc-12", d, "powerpc64le-linux-gnu"); !IsRefusal(err) {
		t.Errorf("ppc64el with the aarch64 fix: %v, want a refusal", err)
	}
	// An unknown entry refuses, naming it.
	_, err = RulesFor("gcc-12", Delta(parse(t, clOther+clCVE+clBase), cross), "aarch64-linux-gnu")
	if !IsRefusal(err) || !strings.Contains(err.Error(), "12.2.0-14+deb12u2") || !strings.Contains(err.Error(), "wrong code") {
		t.Errorf("unknown entry: %v", err)
	}
}

func TestUpstream(t *testing.T) {
	for v, want := range map[string]string{"12.2.0-14+deb12u1": "12.2.0", "4:12.2.0-3": "12.2.0", "12.2.0-14cross1": "12.2.0", "2.40-2": "2.40", "1.0": "1.0"} {
		if got := upstream(v); got != want {
			t.Errorf("upstream(%q) = %q, want %q", v, got, want)
		}
	}
}

func TestPatchIncludes(t *testing.T) {
	x := "/usr/lib/gcc-cross/aarch64-linux-gnu/12"
	bin := []byte("junk\x00" + x + "/include\x00more\x00" + x + "/include-fixed\x00" +
		x + "/../../../../aarch64-linux-gnu/include/c++/12\x00end\x00(Debian 12.2.0-14) \x00")
	out, err := PatchIncludes(bin, "aarch64-linux-gnu", "12")
	if err != nil {
		t.Fatal(err)
	}
	if len(out) != len(bin) {
		t.Fatalf("length changed: %d -> %d", len(bin), len(out))
	}
	for _, want := range []string{"\x00/usr/lib/gcc/aarch64-linux-gnu/12/include\x00", "\x00/usr/lib/gcc/aarch64-linux-gnu/12/include-fixed\x00", "\x00/usr/include/c++/12\x00"} {
		if !bytes.Contains(out, []byte(want)) {
			t.Errorf("patched binary lacks %q", want)
		}
	}
	if bytes.Contains(out, []byte("gcc-cross")) {
		t.Error("a cross path is left")
	}
	if got := PkgVersion(out); got != "(Debian 12.2.0-14) " {
		t.Errorf("PkgVersion = %q", got)
	}
	if _, err := PatchIncludes([]byte("nothing here"), "aarch64-linux-gnu", "12"); !IsRefusal(err) {
		t.Errorf("binary without the paths: %v, want a refusal", err)
	}
}

func TestDecide(t *testing.T) {
	cfg := &Config{Rules: Rules{SSPEmulated: true, Why: []string{"CVE"}}, LocalInclude: []string{"/usr/local/include"}}
	env := map[string]string{}
	getenv := func(k string) string { return env[k] }
	empty := func(string) bool { return false }
	for _, c := range []struct {
		args   []string
		native bool
	}{
		{[]string{"-quiet", "x.c", "-O2", "-o", "x.s"}, true},
		{[]string{"-quiet", "x.c", "-fstack-protector-strong", "-o", "x.s"}, false},
		{[]string{"-quiet", "x.c", "-fstack-protector-strong", "-fno-stack-protector"}, true},
		{[]string{"-quiet", "x.c", "-fno-stack-protector", "-fstack-protector-all"}, false},
		{[]string{"-v", "x.c"}, false},
		{[]string{"--version"}, false},
		{[]string{"x.c", "-fplugin=foo.so"}, false},
		{[]string{"x.c", "-flto", "-ffat-lto-objects"}, false},
		{[]string{"x.h", "--output-pch=x.h.gch"}, false},
		{[]string{"x.c", "-march=native"}, false},
		{[]string{"x.c", "-O3", "-fstack-clash-protection"}, false},
		{[]string{"x.c", "-fstack-clash-protection", "-fno-stack-clash-protection"}, true},
	} {
		why := Decide(cfg, c.args, getenv, empty)
		if (why == "") != c.native {
			t.Errorf("Decide(%q) = %q, want native=%v", c.args, why, c.native)
		}
	}
	// Ubuntu: on by default.
	ub := *cfg
	ub.SSPDefault = true
	if Decide(&ub, []string{"x.c"}, getenv, empty) == "" {
		t.Error("stack protector on by default: ran native")
	}
	if Decide(&ub, []string{"x.c", "-fno-stack-protector"}, getenv, empty) == "" {
		t.Error("-fno-stack-protector with stack clash protection on by default: ran native")
	}
	if Decide(&ub, []string{"x.c", "-fno-stack-protector", "-fno-stack-clash-protection"}, getenv, empty) != "" {
		t.Error("both protections turned off: emulated")
	}
	// A non-empty /usr/local/include, and the escape hatch.
	if Decide(cfg, []string{"x.c"}, getenv, func(d string) bool { return d == "/usr/local/include" }) == "" {
		t.Error("non-empty /usr/local/include: ran native")
	}
	env[EnvSwitch] = "0"
	if Decide(cfg, []string{"x.c"}, getenv, empty) == "" {
		t.Error("XRUN_ACCEL=0: ran native")
	}
}

func TestIdentRewrite(t *testing.T) {
	from, to := identLine("(Debian 12.2.0-14) "), identLine("(Debian 12.2.0-14+deb12u1) ")
	asm := "\t.text\nmain:\n\tret\n" + from + "12.2.0\"\n\t.section\t.note.GNU-stack,\"\",@progbits\n"
	want := strings.Replace(asm, from, to, 1)
	p := filepath.Join(t.TempDir(), "x.s")
	os.WriteFile(p, []byte(asm), 0o644)
	if err := rewriteIdent(p, from, to); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(p); string(b) != want {
		t.Errorf("file: got\n%s\nwant\n%s", b, want)
	}
	var out bytes.Buffer
	// A line longer than the reader's buffer must pass unchanged.
	long := strings.Repeat("x", 100<<10) + from + "\n"
	if err := filterIdent(&out, strings.NewReader(long+asm), from, to); err != nil {
		t.Fatal(err)
	}
	if out.String() != long+want {
		t.Errorf("stream: wrong rewrite (len %d, want %d)", out.Len(), len(long+want))
	}
}

func TestInspectRefusals(t *testing.T) {
	root := t.TempDir()
	if _, err := Inspect(root, "arm64"); !IsRefusal(err) {
		t.Errorf("empty rootfs: %v", err)
	}
	os.MkdirAll(filepath.Join(root, "etc"), 0o755)
	os.WriteFile(filepath.Join(root, "etc/os-release"), []byte("ID=alpine\nVERSION_ID=3.20\n"), 0o644)
	if _, err := Inspect(root, "arm64"); !IsRefusal(err) || !strings.Contains(err.Error(), "alpine") {
		t.Errorf("alpine: %v", err)
	}
	os.WriteFile(filepath.Join(root, "etc/os-release"), []byte("ID=debian\nVERSION_CODENAME=bookworm\n"), 0o644)
	os.MkdirAll(filepath.Join(root, "var/lib/dpkg/info"), 0o755)
	os.WriteFile(filepath.Join(root, "var/lib/dpkg/status"), []byte("Package: bash\nStatus: install ok installed\nVersion: 5.2\n"), 0o644)
	if _, err := Inspect(root, "arm64"); !IsRefusal(err) || !strings.Contains(err.Error(), "no gcc") {
		t.Errorf("no gcc: %v", err)
	}
}

// TestDebianChangelogs reads the real changelogs of bookworm's native
// gcc-12 (the host's gcc-12-base) and cross gcc-12 for arm64 (hack/setup.sh
// installs gcc-aarch64-linux-gnu): the one difference is the known
// CVE-2023-4039 entry.
func TestDebianChangelogs(t *testing.T) {
	native := "/usr/share/doc/gcc-12-base/changelog.Debian.gz"
	cross := "/usr/share/doc/gcc-12-aarch64-linux-gnu-base/changelog.Debian.gz"
	read := func(p string) []Entry {
		f, err := os.Open(p)
		if err != nil {
			testutil.SkipOrFail(t, "Debian's gcc-12 changelogs (hack/setup.sh installs them): %v", err)
		}
		defer f.Close()
		e, err := ParseChangelog(f)
		if err != nil {
			t.Fatal(err)
		}
		return e
	}
	n, c := read(native), read(cross)
	if n[0].Version != "12.2.0-14+deb12u1" {
		t.Skipf("the host's gcc-12 is %s, not bookworm's 12.2.0-14+deb12u1", n[0].Version)
	}
	if extra := Delta(c, n); len(extra) != 0 {
		t.Errorf("the cross changelog has entries the native one lacks: %+v", extra)
	}
	d := Delta(n, c)
	r, err := RulesFor("gcc-12", d, "aarch64-linux-gnu")
	if err != nil || len(d) != 1 || !r.SSPEmulated {
		t.Errorf("delta %+v: rules %+v, %v", d, r, err)
	}
}
