//go:build integration

package integration

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestSecuritySysReadOnly (issue 13 item 9): /sys is bound read-only with
// everything mounted below it. A container whose user owns a cgroup (as
// systemd delegates one to every logged-in user) must not be able to write
// to it through the container's /sys: not create a cgroup, not write a
// limit. The bind was read-only only at its top, and the cgroup
// hierarchies below it stayed writable.
func TestSecuritySysReadOnly(t *testing.T) {
	p := nativePlatform(t)
	u := needRun(t, subUserName, p)
	cg, _ := delegatedCgroup(t, u)
	sub := filepath.Join(cg, "from-container")
	t.Cleanup(func() { _ = os.Remove(sub) })

	// The attack, from inside: each line prints what succeeded.
	script := `mkdir ` + sub + ` && echo mkdir-ok
echo $$ > ` + cg + `/cgroup.procs && echo write-ok
mkdir /sys/from-container 2>/dev/null && echo sys-mkdir-ok
test -d ` + cg + ` && echo visible`
	stdout, stderr, code := run(t, opts{user: u}, "--platform", p.Name, h.reg.ref(busyboxRepo), "--", "sh", "-c", script)
	if code != 0 {
		t.Fatalf("exit %d, stderr %q", code, stderr)
	}
	if !strings.Contains(stdout, "visible") {
		t.Fatalf("the delegated cgroup %s is not visible in the container's /sys: %q", cg, stdout)
	}
	for _, bad := range []string{"mkdir-ok", "write-ok", "sys-mkdir-ok"} {
		if strings.Contains(stdout, bad) {
			t.Errorf("the container could write below /sys: %s", bad)
		}
	}
	if !strings.Contains(stderr, "Read-only file system") {
		t.Errorf("the writes did not fail with EROFS: %q", stderr)
	}
	if _, err := os.Stat(sub); err == nil {
		t.Errorf("the container created the cgroup %s on the host", sub)
	}
}
