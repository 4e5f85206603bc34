//go:build integration

package integration

import (
	"archive/tar"
	"bytes"
	"encoding/binary"
	"io"
	"os"
	"os/exec"
	"sort"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"golang.org/x/sys/unix"

	"github.com/xrun-dev/xrun/internal/testutil"
)

// TestNestedPodman runs xrun inside a rootless podman container (Debian's
// podman, as the unprivileged test user, xrun bound in), with the one flag
// README's "Running xrun inside a container" gives for podman: an arm64
// image as the container's root and as a non-root user (with one id, and
// in a Debian container with a subordinate range of the container's ids
// and the uidmap helpers). Without the flag,
// a run fails with one line naming it and xrun doctor prints it.
func TestNestedPodman(t *testing.T) {
	p := platformByName("linux/arm64")
	needXrun(t)
	needRegistry(t)
	needImages(t)
	needQemu(t, p)
	for _, tool := range []string{"podman", "runc"} {
		if _, err := exec.LookPath(tool); err != nil {
			testutil.SkipOrFail(t, "%s not installed (hack/setup.sh installs it): %v", tool, err)
		}
	}
	if h.usersErr != nil {
		testutil.SkipOrFail(t, "users: %v", h.usersErr)
	}
	u := needUser(t, subUserName)
	qemu, err := exec.LookPath("qemu-aarch64-static")
	if err != nil {
		testutil.SkipOrFail(t, "qemu-aarch64-static: %v", err)
	}
	ref := h.reg.ref(busyboxRepo)
	o := opts{user: u, timeout: 5 * time.Minute, env: []string{"XDG_RUNTIME_DIR=" + userDir(t, u, "podman-run-")}}
	// runc and cgroupfs: podman's default crun refuses this VM's hybrid
	// cgroup v1/v2 layout (a property of the host, not of xrun).
	podmanIn := func(image string, flags []string, argv ...string) (string, string, int) {
		a := []string{"podman", "--runtime", "runc", "--cgroup-manager", "cgroupfs", "run", "--rm", "--network", "host",
			"--tls-verify=false", "-v", h.xrun + ":/xrun:ro", "-v", qemu + ":/usr/bin/qemu-aarch64-static:ro"}
		a = append(append(a, flags...), image, "/xrun")
		return runAs(t, o, append(a, argv...)...)
	}
	podman := func(flags []string, argv ...string) (string, string, int) { return podmanIn(ref, flags, argv...) }
	flag := []string{"--security-opt", "unmask=/proc/*"}
	run := []string{"--platform", p.Name, ref, "--", "uname", "-m"}
	t.Run("root", func(t *testing.T) {
		// README's command as written, but for this VM's runtime flags, the
		// plain-HTTP test registry and the paths of this machine.
		cmd := strings.NewReplacer("podman run", "podman --runtime runc --cgroup-manager cgroupfs run --tls-verify=false",
			"/usr/local/bin/xrun:/usr/local/bin/xrun", h.xrun+":/usr/local/bin/xrun",
			"/usr/bin/qemu-aarch64-static:/usr/bin/qemu-aarch64-static", qemu+":/usr/bin/qemu-aarch64-static",
			"registry.corp.example/ci/runner:latest", ref, "registry.corp.example/ci/debian:bookworm", ref).
			Replace(readmeBlock(t, "# a rootless podman runner, xrun and a static qemu bound in"))
		out, stderr, code := runAs(t, o, "sh", "-euc", cmd)
		if code != 0 || out != "aarch64\n" {
			t.Errorf("README's podman command, as the container's root: exit %d, %q\n%s", code, out, stderr)
		}
	})
	t.Run("non-root", func(t *testing.T) {
		out, stderr, code := podman(append(flag, "--user", "1000:1000", "-e", "HOME=/tmp"), run...)
		if code != 0 || out != "aarch64\n" {
			t.Errorf("as uid 1000 in the container: exit %d, %q\n%s", code, out, stderr)
		}
	})
	// Debian amd64 with the host's uidmap helpers and a range of the
	// container's 65536 ids for u (1000): once with file capabilities (as
	// podman's own images have them), once setuid root as Debian ships
	// them, which a container's bounding set (no CAP_SYS_ADMIN) defeats.
	uidmapImage := func(t *testing.T, tag string, fileCaps bool) string {
		files := map[string]tarFile{
			"etc/passwd": {0o644, []byte("root:x:0:0:root:/root:/bin/sh\nu:x:1000:1000:u:/tmp:/bin/sh\n"), nil},
			"etc/group":  {0o644, []byte("root:x:0:\nu:x:1000:\n"), nil},
			"etc/subuid": {0o644, []byte("u:10000:50000\n"), nil},
			"etc/subgid": {0o644, []byte("u:10000:50000\n"), nil},
		}
		for tool, capBit := range map[string]uint32{"newuidmap": unix.CAP_SETUID, "newgidmap": unix.CAP_SETGID} {
			b, err := os.ReadFile("/usr/bin/" + tool)
			if err != nil {
				testutil.SkipOrFail(t, "the host's %s (uidmap; hack/setup.sh installs it): %v", tool, err)
			}
			f := tarFile{0o4755, b, nil}
			if fileCaps {
				f = tarFile{0o755, b, fileCapability(capBit)}
			}
			files["usr/bin/"+tool] = f
		}
		return pushIndex(t, "xrun-test/debian-uidmap:"+tag, map[string]v1.Image{
			"amd64": debianArchImage(t, debianTar(t, "debian-bookworm-amd64.tar"), "amd64", filesLayer(t, files)),
		})
	}
	u1000 := append(flag, "--user", "1000:1000", "-e", "HOME=/tmp")
	mapRun := []string{"--platform", p.Name, ref, "--", "sh", "-c", "cat /proc/self/uid_map; uname -m"}
	t.Run("non-root with a subordinate range", func(t *testing.T) {
		out, stderr, code := podmanIn(uidmapImage(t, "filecaps", true), u1000, mapRun...)
		// The xrun container's map: root to u, then 1.. to u's range.
		if f := strings.Fields(out); code != 0 || len(f) != 7 || f[3] != "1" || f[4] != "10000" || f[6] != "aarch64" {
			t.Errorf("as uid 1000 with a subordinate range in the container: exit %d, %q (want two extents, 1 -> 10000, and aarch64)\n%s", code, out, stderr)
		}
	})
	t.Run("setuid helpers", func(t *testing.T) {
		img := uidmapImage(t, "setuid", false)
		out, stderr, code := podmanIn(img, u1000, mapRun...)
		// One id, as without a range, rather than a failure.
		if f := strings.Fields(out); code != 0 || len(f) != 4 || f[1] != "1000" || f[3] != "aarch64" {
			t.Errorf("as uid 1000 with setuid helpers in the container: exit %d, %q (want one extent and aarch64)\n%s", code, out, stderr)
		}
		out, _, _ = podmanIn(img, u1000, "doctor", "--platform", p.Name)
		if !strings.Contains(out, "no CAP_SYS_ADMIN") || !strings.Contains(out, "setcap cap_setuid+ep /usr/bin/newuidmap") {
			t.Errorf("doctor with setuid helpers in the container does not give the fix:\n%s", out)
		}
	})
	t.Run("without the flag", func(t *testing.T) {
		fix := "start the container with podman run --security-opt unmask=/proc/*"
		_, stderr, code := podman([]string{"-e", "HOME=/root"}, run...)
		if code != 125 || !strings.Contains(stderr, "cannot mount /proc in the container") || !strings.Contains(stderr, fix) {
			t.Errorf("a run without the flag: exit %d, want 125 and the flag:\n%s", code, stderr)
		}
		out, _, code := podman([]string{"-e", "HOME=/root"}, "doctor", "--platform", p.Name)
		if code != 1 || !strings.Contains(out, "whose /proc is partly masked") || !strings.Contains(out, "podman run --security-opt unmask=/proc/*") {
			t.Errorf("doctor without the flag: exit %d, want 1 and the flag:\n%s", code, out)
		}
	})
}

// tarFile is a regular file of filesLayer.
type tarFile struct {
	mode int64
	data []byte
	caps []byte // security.capability, or nil
}

// fileCapability is the security.capability xattr (VFS_CAP_REVISION_2)
// giving a program capability c, effective and permitted.
func fileCapability(c uint32) []byte {
	b := make([]byte, 20)
	binary.LittleEndian.PutUint32(b[0:], 0x02000000|0x000001) // revision 2, effective
	binary.LittleEndian.PutUint32(b[4:], 1<<c)                // permitted, low word
	return b
}

// filesLayer is an image layer holding files, owned by root.
func filesLayer(t *testing.T, files map[string]tarFile) v1.Layer {
	t.Helper()
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, n := range names {
		f := files[n]
		hdr := &tar.Header{Name: n, Mode: f.mode, Size: int64(len(f.data)), Typeflag: tar.TypeReg, Format: tar.FormatPAX}
		if f.caps != nil {
			hdr.PAXRecords = map[string]string{"SCHILY.xattr.security.capability": string(f.caps)}
		}
		if err := tw.WriteHeader(hdr); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(f.data); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(buf.Bytes())), nil })
	if err != nil {
		t.Fatal(err)
	}
	return layer
}
