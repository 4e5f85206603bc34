//go:build integration

package integration

import (
	"context"
	"debug/elf"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/xrun-dev/xrun/integration/testimage"
	"github.com/xrun-dev/xrun/internal/testutil"
)

// The seed scenario of issue 5: in an emulated arm64 Debian, as an
// unprivileged user, apt-get installs a C compiler from Debian's archive,
// then compiles and runs a program in the bound working directory.
//
// The image comes from a Debian bookworm arm64 root filesystem that
// hack/mkdebian.sh (called by hack/setup.sh) builds once per machine with
// debootstrap; apt reaches Debian's mirror through the host's network.

// helloC prints the machine uname(2) reports, on a line of its own.
const helloC = `#include <stdio.h>
#include <sys/utsname.h>

int main(void) {
	struct utsname u;
	if (uname(&u) != 0) {
		perror("uname");
		return 1;
	}
	printf("hello machine=%s\n", u.machine);
	return 0;
}
`

// seedTimeout bounds one xrun run of the scenario (apt-get update and
// install, compile, run), all emulated.
const seedTimeout = 10 * time.Minute

// pushDebian builds the Debian image from hack/mkdebian.sh's tarball and
// pushes it to the harness registry; it returns the reference.
func pushDebian(t *testing.T) string {
	t.Helper()
	tarPath := testimage.DebianPath()
	if _, err := os.Stat(tarPath); err != nil {
		testutil.SkipOrFail(t, "Debian arm64 root filesystem: run hack/mkdebian.sh (hack/setup.sh does): %v", err)
	}
	start := time.Now()
	img, err := testimage.DebianImage(tarPath)
	if err != nil {
		t.Fatal(err)
	}
	ref := h.reg.ref(testimage.DebianRepo)
	r, err := name.ParseReference(ref)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if err := remote.Write(r, img, remote.WithContext(ctx)); err != nil {
		t.Fatalf("push %s: %v", ref, err)
	}
	t.Logf("timing: image from %s built and pushed in %v", tarPath, time.Since(start).Round(time.Millisecond))
	return ref
}

// checkHello checks the binary the scenario wrote into the bound directory:
// owned by u on the host, an aarch64 ELF.
func checkHello(t *testing.T, u *testUser, path string) {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Errorf("the compiled binary is not in the bound directory: %v", err)
		return
	}
	if st := fi.Sys().(*syscall.Stat_t); int(st.Uid) != u.uid || int(st.Gid) != u.gid {
		t.Errorf("%s is owned by %d:%d on the host, want %s's %d:%d", path, st.Uid, st.Gid, u, u.uid, u.gid)
	}
	f, err := elf.Open(path)
	if err != nil {
		t.Errorf("%s: %v", path, err)
		return
	}
	defer f.Close()
	if f.Machine != elf.EM_AARCH64 {
		t.Errorf("%s: ELF machine %v, want EM_AARCH64", path, f.Machine)
	}
}

// tailOf returns the last n bytes of s.
func tailOf(s string, n int) string {
	if len(s) > n {
		return "..." + s[len(s)-n:]
	}
	return s
}

// TestSeedScenario runs issue 5's seed scenario in one xrun invocation per
// user: as xruntest (65536 ids: apt drops to _apt for downloads) and as
// xrunnosub (one id: xrun tells apt to download as root).
func TestSeedScenario(t *testing.T) {
	p := platformByName("linux/arm64")
	needEmulated(t, p)
	img := pushDebian(t)
	// Acquire::Retries: a transient mirror failure is not xrun's.
	script := "apt-get -o Acquire::Retries=3 update && " +
		"apt-get -o Acquire::Retries=3 install -y --no-install-recommends gcc libc6-dev make && " +
		"make hello && ./hello"
	// The third run: exec interception instead of binfmt_misc (issue 16).
	for _, c := range []struct {
		name, user string
		env        []string
	}{{subUserName, subUserName, nil}, {noSubUserName, noSubUserName, nil}, {"intercept", subUserName, interceptEnv}} {
		user := c.user
		t.Run(c.name, func(t *testing.T) {
			u := needUser(t, user)
			dir := workDir(t, u)
			writeAs(t, u, filepath.Join(dir, "hello.c"), helloC)
			start := time.Now()
			out, stderr, code := run(t, opts{user: u, dir: dir, timeout: seedTimeout, env: c.env},
				"--platform", p.Name, "-e", "DEBIAN_FRONTEND=noninteractive", img, "--", "sh", "-c", script)
			t.Logf("timing: %s: pull, apt-get update, install gcc libc6-dev make, compile and run: %v",
				u, time.Since(start).Round(time.Millisecond))
			if code != 0 {
				t.Fatalf("exit %d\nstdout: %s\nstderr: %s", code, tailOf(out, 4000), tailOf(stderr, 4000))
			}
			t.Logf("end of the output: %s", tailOf(out, 200))
			want := "hello machine=" + p.Uname()
			if !strings.Contains(out, want+"\n") {
				t.Errorf("the program did not print %q: %q", want, tailOf(out, 2000))
			}
			checkHello(t, u, filepath.Join(dir, "hello"))
		})
	}
}
