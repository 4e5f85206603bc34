//go:build integration

package integration

import (
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/xrun-dev/xrun/internal/testutil"
)

// TestNestedPodman runs xrun inside a rootless podman container (Debian's
// podman, as the unprivileged test user, xrun bound in), with the one flag
// README's "Running xrun inside a container" gives for podman: an arm64
// image as the container's root and as a non-root user. Without the flag,
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
	podman := func(flags []string, argv ...string) (string, string, int) {
		a := []string{"podman", "--runtime", "runc", "--cgroup-manager", "cgroupfs", "run", "--rm", "--network", "host",
			"--tls-verify=false", "-v", h.xrun + ":/xrun:ro", "-v", qemu + ":/usr/bin/qemu-aarch64-static:ro"}
		a = append(append(a, flags...), ref, "/xrun")
		return runAs(t, o, append(a, argv...)...)
	}
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
