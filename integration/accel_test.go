//go:build integration

package integration

// The --accel tests (issue 15): a real Debian bookworm arm64 image with
// gcc/g++ and its amd64 sibling under one reference (hack/mkdebian.sh
// builds both trees), Debian's real cross packages downloaded by xrun
// through apt in the native container, and every check run as an
// unprivileged user: objects byte-identical with and without --accel, the
// version outputs the same, the refusals, one preparation for two
// concurrent first runs, rmi.

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/xrun-dev/xrun/integration/testimage"
	"github.com/xrun-dev/xrun/internal/testutil"
)

// debianTar is hack/mkdebian.sh's tarball called name.
func debianTar(t *testing.T, name string) string {
	t.Helper()
	p := filepath.Join(filepath.Dir(testimage.DebianPath()), name)
	if _, err := os.Stat(p); err != nil {
		testutil.SkipOrFail(t, "Debian tree %s: run hack/setup.sh (it runs hack/mkdebian.sh for it): %v", name, err)
	}
	return p
}

// archImage is testimage.DebianImage of tarPath for architecture arch,
// with extra layers on top.
func debianArchImage(t *testing.T, tarPath, arch string, extra ...v1.Layer) v1.Image {
	t.Helper()
	img, err := testimage.DebianImage(tarPath)
	if err != nil {
		t.Fatal(err)
	}
	if img, err = mutate.AppendLayers(img, extra...); err != nil {
		t.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cf = cf.DeepCopy()
	cf.Architecture = arch
	if img, err = mutate.ConfigFile(img, cf); err != nil {
		t.Fatal(err)
	}
	return img
}

// pushIndex pushes one reference with an image per architecture.
func pushIndex(t *testing.T, repo string, imgs map[string]v1.Image) string {
	t.Helper()
	idx := mutate.IndexMediaType(empty.Index, types.OCIImageIndex)
	archs := make([]string, 0, len(imgs))
	for a := range imgs {
		archs = append(archs, a)
	}
	sort.Strings(archs)
	for _, a := range archs {
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{Add: imgs[a],
			Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: a}}})
	}
	ref := h.reg.ref(repo)
	r, err := name.ParseReference(ref)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	start := time.Now()
	if err := remote.WriteIndex(r, idx, remote.WithContext(ctx)); err != nil {
		t.Fatalf("push %s: %v", ref, err)
	}
	t.Logf("timing: pushed %s (%s) in %v", ref, strings.Join(archs, ", "), time.Since(start).Round(time.Millisecond))
	return ref
}

var accelImage struct {
	sync.Mutex
	ref string
}

// pushAccelImage pushes (once per test binary) xrun-test/debian-gcc:bookworm:
// the arm64 tree with gcc, g++, libc6-dev and make, and the amd64 tree.
func pushAccelImage(t *testing.T) string {
	t.Helper()
	accelImage.Lock()
	defer accelImage.Unlock()
	if accelImage.ref == "" {
		accelImage.ref = pushIndex(t, "xrun-test/debian-gcc:bookworm", map[string]v1.Image{
			"arm64": debianArchImage(t, debianTar(t, "debian-bookworm-arm64-gcc.tar"), "arm64"),
			"amd64": debianArchImage(t, debianTar(t, "debian-bookworm-amd64.tar"), "amd64"),
		})
	}
	return accelImage.ref
}

// accelProject is a C library (static and shared), a C program and a C++
// program using it, and an object built with the stack protector, for
// make OUT=DIR.
var accelProject = map[string]string{
	"lib.h": "#include <stddef.h>\nunsigned crc(const char *p, size_t n);\nint vla(int n);\ndouble dot(const double *a, const double *b, int n);\n",
	"a.c": `#include <string.h>
#include "lib.h"
unsigned crc(const char *p, size_t n) {
	char buf[128];
	unsigned c = ~0u;
	memcpy(buf, p, n < sizeof buf ? n : sizeof buf);
	for (size_t i = 0; i < n && i < sizeof buf; i++) {
		c ^= (unsigned char)buf[i];
		for (int k = 0; k < 8; k++)
			c = (c >> 1) ^ (0xEDB88320u & -(c & 1));
	}
	return ~c;
}
`,
	"b.c": `#include <alloca.h>
#include "lib.h"
int vla(int n) {
	int v[n];
	int *w = alloca(n * sizeof *w);
	for (int i = 0; i < n; i++)
		v[i] = i * i, w[i] = v[i] + 1;
	return v[n - 1] + w[0];
}
`,
	"c.c": `#include "lib.h"
double dot(const double *a, const double *b, int n) {
	double s = 0;
	for (int i = 0; i < n; i++)
		s += a[i] * b[i];
	return s;
}
`,
	"main.c": `#include <stdio.h>
#include <sys/utsname.h>
#include "lib.h"
int main(void) {
	struct utsname u;
	double a[4] = {1, 2, 3, 4};
	uname(&u);
	printf("c machine=%s crc=%08x vla=%d dot=%g\n", u.machine, crc("xrun", 4), vla(9), dot(a, a, 4));
	return 0;
}
`,
	"main.cc": `#include <iostream>
#include <string>
#include <vector>
#include <sys/utsname.h>
extern "C" {
#include "lib.h"
}
int main() {
	utsname u;
	uname(&u);
	std::vector<std::string> v{"x", "run"};
	std::string s;
	for (const auto &x : v)
		s += x;
	std::cout << "c++ machine=" << u.machine << " " << s << " crc=" << std::hex << crc(s.data(), s.size()) << std::endl;
	return 0;
}
`,
	"Makefile": `CFLAGS = -O2 -g -Wall
OUT ?= out
OBJS = $(OUT)/a.o $(OUT)/b.o $(OUT)/c.o
all: $(OUT)/libfoo.a $(OUT)/libfoo.so $(OUT)/prog $(OUT)/progcc $(OUT)/ssp.o $(OUT)/o3.o $(OUT)/o3clash.o
$(OUT)/%.o: %.c lib.h
	$(CC) $(CFLAGS) -fPIC -c $< -o $@
$(OUT)/libfoo.a: $(OBJS)
	$(AR) rcD $@ $(OBJS)
$(OUT)/libfoo.so: $(OBJS)
	$(CC) -shared -Wl,-soname,libfoo.so -o $@ $(OBJS)
$(OUT)/prog: $(OUT)/main.o $(OUT)/libfoo.a
	$(CC) -o $@ $(OUT)/main.o $(OUT)/libfoo.a
$(OUT)/main++.o: main.cc lib.h
	$(CXX) $(CFLAGS) -c main.cc -o $@
$(OUT)/progcc: $(OUT)/main++.o $(OUT)/libfoo.a
	$(CXX) -o $@ $(OUT)/main++.o $(OUT)/libfoo.a
$(OUT)/ssp.o: a.c lib.h
	$(CC) -O2 -fstack-protector-strong -c a.c -o $@
$(OUT)/o3.o: b.c lib.h
	$(CC) -O3 -g -c b.c -o $@
$(OUT)/o3clash.o: b.c lib.h
	$(CC) -O3 -g -fstack-clash-protection -c b.c -o $@
`,
}

// versionScript prints what --accel must leave unchanged.
const versionScript = `gcc -v 2>&1; gcc -dumpmachine; gcc -print-search-dirs; gcc -print-libgcc-file-name
gcc -print-prog-name=cc1; gcc -print-file-name=plugin
gcc -dM -E - </dev/null | LC_ALL=C sort; g++ -dM -E -x c++ - </dev/null | LC_ALL=C sort
echo 'int f(void) { return 1; }' >/tmp/v.c && gcc -v -c /tmp/v.c -o /tmp/v.o 2>&1 | grep -v -e '^COLLECT_GCC_OPTIONS' -e ' -o /tmp/cc' -e '/tmp/cc.*\.s$'
`

// filesUnder lists the regular files under dir (relative names).
func filesUnder(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	err := filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err == nil && fi.Mode().IsRegular() {
			rel, _ := filepath.Rel(dir, p)
			out = append(out, rel)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(out)
	return out
}

func TestAccel(t *testing.T) {
	p := platformByName("linux/arm64")
	needEmulated(t, p)
	ref := pushAccelImage(t)
	u := needUser(t, subUserName)
	dir := workDir(t, u)
	writeOwned(t, u, dir, accelProject, 0o644)
	long := 10 * time.Minute
	arm := []string{"--platform", p.Name}

	// The first --accel run prepares the toolchain (download, self-check)
	// and builds; then the same build emulated, into the same container
	// path, so that debug information matches too.
	for _, mode := range []string{"acc", "emu"} {
		out := filepath.Join(dir, mode)
		if err := mkdirOwned(out, u); err != nil {
			t.Fatal(err)
		}
		args := append([]string{}, arm...)
		if mode == "acc" {
			args = append(args, "--accel", "--verbose")
		}
		args = append(args, "-v", out+":/out", ref, "--", "make", "-s", "OUT=/out")
		start := time.Now()
		stdout, stderr, code := run(t, opts{user: u, dir: dir, timeout: long}, args...)
		t.Logf("timing: %s build: %v", mode, time.Since(start).Round(time.Millisecond))
		if code != 0 {
			t.Fatalf("%s build: exit %d\n%s\n%s", mode, code, tailOf(stdout, 2000), tailOf(stderr, 4000))
		}
		if mode == "acc" {
			for _, want := range []string{"--accel: native toolchain prepared", "xrun accel: cc1: native", "xrun accel: cc1plus: native",
				"xrun accel: cc1: emulated (stack protector: cpp-12 12.2.0-14+deb12u1: CVE-2023-4039",
				"xrun accel: cc1: emulated (stack clash protection: cpp-12 12.2.0-14+deb12u1: CVE-2023-4039"} {
				if !strings.Contains(stderr, want) {
					t.Errorf("--accel --verbose did not say %q:\n%s", want, tailOf(stderr, 4000))
				}
			}
		}
	}
	acc, emu := filesUnder(t, filepath.Join(dir, "acc")), filesUnder(t, filepath.Join(dir, "emu"))
	if strings.Join(acc, " ") != strings.Join(emu, " ") || len(acc) < 10 {
		t.Fatalf("different outputs: accelerated %v, emulated %v", acc, emu)
	}
	same := 0
	for _, f := range acc {
		a, _ := os.ReadFile(filepath.Join(dir, "acc", f))
		e, _ := os.ReadFile(filepath.Join(dir, "emu", f))
		if !bytes.Equal(a, e) {
			t.Errorf("%s differs between the accelerated and the emulated build", f)
		} else {
			same++
		}
	}
	t.Logf("%d of %d files byte-identical: %s", same, len(acc), strings.Join(acc, " "))

	t.Run("programs", func(t *testing.T) {
		stdout, _, code := run(t, opts{user: u, dir: dir}, append(arm, ref, "--", "sh", "-c", "acc/prog && acc/progcc")...)
		if code != 0 || !strings.Contains(stdout, "c machine=aarch64") || !strings.Contains(stdout, "c++ machine=aarch64 xrun") {
			t.Errorf("the accelerated programs: exit %d, %q", code, stdout)
		}
	})

	t.Run("versions", func(t *testing.T) {
		emuOut, _, code := run(t, opts{user: u, dir: dir, timeout: long}, append(arm, ref, "--", "sh", "-c", versionScript)...)
		if code != 0 {
			t.Fatalf("emulated: exit %d", code)
		}
		accOut, _, code := run(t, opts{user: u, dir: dir, timeout: long}, append(arm, "--accel", ref, "--", "sh", "-c", versionScript)...)
		if code != 0 {
			t.Fatalf("accelerated: exit %d", code)
		}
		if !strings.Contains(emuOut, "__aarch64__") || !strings.Contains(emuOut, "aarch64-linux-gnu\n") {
			t.Fatalf("the version script printed no aarch64 compiler: %s", tailOf(emuOut, 2000))
		}
		if accOut != emuOut {
			t.Errorf("gcc -v, -dumpmachine, -print-*, -dM -E differ with --accel:\n%s", lineDiff(emuOut, accOut))
		}
	})

	t.Run("configure", func(t *testing.T) {
		// What autoconf does to tell a native from a cross build: compile
		// a program and run it; the triplet is the machine's.
		script := `printf '#include <stdio.h>\nint main(void){puts("ran");return 0;}\n' >/tmp/conftest.c &&
gcc -o /tmp/conftest /tmp/conftest.c && /tmp/conftest && test "$(gcc -dumpmachine)" = "$(uname -m)-linux-gnu" && echo native-build`
		stdout, stderr, code := run(t, opts{user: u, dir: dir}, append(arm, "--accel", ref, "--", "sh", "-c", script)...)
		if code != 0 || stdout != "ran\nnative-build\n" {
			t.Errorf("configure-style check under --accel: exit %d, %q, %s", code, stdout, stderr)
		}
	})

	t.Run("doctor", func(t *testing.T) {
		stdout, stderr, code := run(t, opts{user: u, dir: dir, timeout: long}, "doctor", "--platform", p.Name, "--accel", ref)
		if code != 0 {
			t.Fatalf("doctor --accel: exit %d\n%s\n%s", code, stdout, stderr)
		}
		for _, want := range []string{"cross     cpp-12-aarch64-linux-gnu 12.2.0-14cross1", "rule      runs emulated: cpp-12 12.2.0-14+deb12u1: CVE-2023-4039",
			"native    /usr/lib/gcc/aarch64-linux-gnu/12/cc1\n", "ok        self-check: check.o identical", "ok        self-check: checkcc.o identical",
			"ok        self-check: macros-c identical", "ok        self-check: search-dirs identical"} {
			if !strings.Contains(stdout, want) {
				t.Errorf("doctor --accel lacks %q:\n%s", want, stdout)
			}
		}
		if strings.Contains(stdout, "FAIL") {
			t.Errorf("doctor --accel: %s", stdout)
		}
	})

	t.Run("refusals", func(t *testing.T) {
		// An image without gcc: one line, and the command runs.
		plain := pushDebian(t)
		stdout, stderr, code := run(t, opts{user: u, dir: dir, timeout: long}, append(arm, "--accel", plain, "--", "echo", "ran")...)
		if code != 0 || stdout != "ran\n" || !strings.Contains(stderr, "--accel: the image has no gcc") || strings.Count(strings.TrimSpace(stderr), "\n") != 0 {
			t.Errorf("image without gcc: exit %d, stdout %q, stderr %q", code, stdout, stderr)
		}
		// A gcc whose version has no cross package (the dpkg database says
		// 12.3.0-1): refused after looking, and the build runs emulated.
		bumped := pushIndex(t, "xrun-test/debian-gcc:bumped", map[string]v1.Image{
			"arm64": debianArchImage(t, debianTar(t, "debian-bookworm-arm64-gcc.tar"), "arm64", bumpedStatus(t)),
			"amd64": debianArchImage(t, debianTar(t, "debian-bookworm-amd64.tar"), "amd64"),
		})
		for i := 0; i < 2; i++ { // the second run remembers the refusal
			stdout, stderr, code = run(t, opts{user: u, dir: dir, timeout: long}, append(arm, "--accel", bumped, "--", "sh", "-c", "gcc -c a.c -o /tmp/a.o && echo built")...)
			if code != 0 || stdout != "built\n" || !strings.Contains(stderr, "the image's cpp-12 is 12.3.0-1 but debian bookworm's cross package cpp-12-aarch64-linux-gnu is 12.2.0-14cross1") {
				t.Errorf("run %d, gcc without a cross package: exit %d, stdout %q, stderr %q", i+1, code, stdout, stderr)
			}
		}
	})

	t.Run("rmi", func(t *testing.T) {
		stdout, _, _ := run(t, opts{user: u}, "images")
		if !strings.Contains(stdout, "+ accel ") {
			t.Errorf("xrun images does not show the accelerator:\n%s", stdout)
		}
		if _, stderr, code := run(t, opts{user: u}, "rmi", "--platform", p.Name, ref); code != 0 {
			t.Fatalf("rmi: exit %d: %s", code, stderr)
		}
		ents, _ := os.ReadDir(filepath.Join(u.cache, "accel"))
		for _, e := range ents {
			if strings.HasPrefix(e.Name(), ".") {
				continue
			}
			// What is left is the refusal of the other image.
			if st, _ := os.ReadFile(filepath.Join(u.cache, "accel", e.Name(), "state.json")); !bytes.Contains(st, []byte(`"refused"`)) {
				t.Errorf("rmi left the accelerator %s", e.Name())
			}
		}
	})
}

// TestAccelConcurrentFirstRuns starts two --accel runs at once with an
// empty cache, as a user without subordinate ids: one prepares the
// toolchain, the other waits and uses it; both compile the same object.
func TestAccelConcurrentFirstRuns(t *testing.T) {
	p := platformByName("linux/arm64")
	needEmulated(t, p)
	ref := pushAccelImage(t)
	u := needUser(t, noSubUserName)
	dir := workDir(t, u)
	writeOwned(t, u, dir, accelProject, 0o644)
	cache := filepath.Join(dir, "cache")
	var wg sync.WaitGroup
	type result struct {
		stdout, stderr string
		code           int
	}
	res := make([]result, 2)
	for i := range res {
		wg.Add(1)
		go func() {
			defer wg.Done()
			o := opts{user: u, dir: dir, timeout: 10 * time.Minute, env: []string{"XRUN_CACHE=" + cache}}
			res[i].stdout, res[i].stderr, res[i].code = run(t, o, "--platform", p.Name, "--accel", "--verbose", ref, "--",
				"sh", "-c", fmt.Sprintf("gcc -O2 -g -c a.c -o obj%d.o && echo built", i))
		}()
	}
	wg.Wait()
	prepared := 0
	for i, r := range res {
		if r.code != 0 || r.stdout != "built\n" {
			t.Fatalf("run %d: exit %d, %q\n%s", i, r.code, r.stdout, tailOf(r.stderr, 3000))
		}
		if !strings.Contains(r.stderr, "xrun accel: cc1: native") {
			t.Errorf("run %d did not compile natively:\n%s", i, tailOf(r.stderr, 3000))
		}
		prepared += strings.Count(r.stderr, "native toolchain prepared")
		if !strings.Contains(r.stderr, "native toolchain prepared") && !strings.Contains(r.stderr, "native toolchain cached") {
			t.Errorf("run %d says neither prepared nor cached:\n%s", i, tailOf(r.stderr, 3000))
		}
	}
	if prepared != 1 {
		t.Errorf("the toolchain was prepared %d times by two concurrent first runs, want 1", prepared)
	}
	a, _ := os.ReadFile(filepath.Join(dir, "obj0.o"))
	b, _ := os.ReadFile(filepath.Join(dir, "obj1.o"))
	if len(a) == 0 || !bytes.Equal(a, b) {
		t.Errorf("the two runs' objects differ (%d and %d bytes)", len(a), len(b))
	}
}

// bumpedStatus is a layer whose /var/lib/dpkg/status says that the gcc-12
// packages are 12.3.0-1 (a version Debian has no cross compiler of).
func bumpedStatus(t *testing.T) v1.Layer {
	t.Helper()
	f, err := os.Open(debianTar(t, "debian-bookworm-arm64-gcc.tar"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tr := tar.NewReader(f)
	var status []byte
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if strings.TrimPrefix(hdr.Name, "./") == "var/lib/dpkg/status" {
			if status, err = io.ReadAll(tr); err != nil {
				t.Fatal(err)
			}
			break
		}
	}
	if !bytes.Contains(status, []byte("Version: 12.2.0-14+deb12u1")) {
		t.Fatalf("the gcc tree's dpkg status has no gcc 12.2.0-14+deb12u1 (%d bytes)", len(status))
	}
	status = bytes.ReplaceAll(status, []byte("Version: 12.2.0-14+deb12u1"), []byte("Version: 12.3.0-1"))
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	tw.WriteHeader(&tar.Header{Name: "var/lib/dpkg/status", Mode: 0o644, Size: int64(len(status)), Typeflag: tar.TypeReg})
	tw.Write(status)
	tw.Close()
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(buf.Bytes())), nil })
	if err != nil {
		t.Fatal(err)
	}
	return layer
}

// lineDiff shows the lines of b that are not in a and the other way round.
func lineDiff(a, b string) string {
	in := func(s string) map[string]bool {
		m := map[string]bool{}
		for _, l := range strings.Split(s, "\n") {
			m[l] = true
		}
		return m
	}
	ma, mb := in(a), in(b)
	var out []string
	for _, l := range strings.Split(a, "\n") {
		if !mb[l] {
			out = append(out, "- "+l)
		}
	}
	for _, l := range strings.Split(b, "\n") {
		if !ma[l] {
			out = append(out, "+ "+l)
		}
	}
	return strings.Join(out, "\n")
}
