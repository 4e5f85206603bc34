package rootfs

import (
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/xrun-dev/xrun/internal/testutil"
	"github.com/xrun-dev/xrun/pkg/fsutil"
)

// TestUnprivileged re-runs the permission-sensitive tests as uid/gid 65534
// when the suite runs as root (as CI does): 0555/0000 directories, modes and
// removal behave differently for an unprivileged unpacker, which is how xrun
// runs. Set XRUN_TEST_MUST_WORK=1 to turn a skip into a failure.
func TestUnprivileged(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("already unprivileged: the other tests cover it")
	}
	if testing.Short() {
		testutil.SkipOrFail(t, "%s", "-short")
	}
	exe, err := os.Executable()
	if err != nil {
		testutil.SkipOrFail(t, "%s", "no test executable: "+err.Error())
	}
	dir, err := os.MkdirTemp("", "xrun-rootfs-unpriv-")
	if err != nil {
		t.Fatal(err)
	}
	defer fsutil.RemoveAll(dir)
	tmp := filepath.Join(dir, "tmp")
	bin := filepath.Join(dir, "rootfs.test")
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(tmp, 0o777); err != nil {
		t.Fatal(err)
	}
	os.Chmod(tmp, 0o1777)
	if err := copyFile(exe, bin); err != nil {
		t.Fatal(err)
	}
	cmd := exec.CommandContext(t.Context(), bin, "-test.count=1", "-test.v",
		"-test.run", "^(TestMalicious|TestUnpack.*|TestEnsure.*|TestCacheRemove|TestRemoveAll)$")
	cmd.Dir = tmp
	cmd.Env = []string{"TMPDIR=" + tmp, "HOME=" + tmp, "PATH=/usr/bin:/bin"}
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("tests as uid 65534 failed: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "--- PASS: TestCacheRemove") {
		t.Fatalf("tests as uid 65534 did not run:\n%s", out)
	}
	for l := range strings.Lines(string(out)) {
		if strings.Contains(l, "--- SKIP") || strings.Contains(l, "--- PASS: Test") {
			t.Logf("uid 65534: %s", strings.TrimSpace(l))
		}
	}
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o755)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
