package userns

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/xrun-dev/xrun/internal/testutil"
)

// TestRunNotServed: in a program that does not dispatch the helper roles
// (this test binary), Run refuses rather than re-executing a binary that
// would not understand the helper command.
func TestRunNotServed(t *testing.T) {
	if err := Run(t.Context(), []string{RemoveHelperCommand, "/nonexistent"}, nil, nil); !errors.Is(err, ErrNotServed) {
		t.Errorf("Run = %v, want ErrNotServed", err)
	}
}

// TestImports keeps userns at the bottom of the import graph: rootfs and
// sandbox import it, so it imports no package of xrun but fsutil.
func TestImports(t *testing.T) {
	for path, f := range testutil.Imports(t, ".") {
		if strings.HasPrefix(path, "github.com/xrun-dev/xrun/") && path != "github.com/xrun-dev/xrun/pkg/fsutil" &&
			path != "github.com/xrun-dev/xrun/internal/testutil" {
			t.Errorf("%s imports %s", f, path)
		}
	}
}

func TestRootMapping(t *testing.T) {
	dir := t.TempDir()
	for _, c := range []struct{ file, want string }{
		{"         0          0 4294967295\n", "[{0 0 65537}]"},
		// Root of a rootless podman container: two extents of the parent.
		{"         0       1001          1\n         1     200000      65536\n", "[{0 0 1} {1 1 65536}]"},
		{"0 1000 1\n", "[{0 0 1}]"},
		{"", "[{0 0 65537}]"},
	} {
		p := filepath.Join(dir, "map")
		os.WriteFile(p, []byte(c.file), 0o644)
		got := fmt.Sprint(rootMapping(p))
		if got != c.want {
			t.Errorf("rootMapping(%q) = %s, want %s", c.file, got, c.want)
		}
	}
	if got := fmt.Sprint(rootMapping(filepath.Join(dir, "none"))); got != "[{0 0 65537}]" {
		t.Errorf("no map file: %s", got)
	}
}

func TestHelperUnusable(t *testing.T) {
	if os.Geteuid() != 0 {
		testutil.SkipOrFail(t, "needs root to make a setuid-root file and set file capabilities")
	}
	dir := t.TempDir()
	helper := func(name string, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte("#!/bin/true\n"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	if !boundingHas(unix.CAP_SYS_ADMIN) {
		t.Fatal("boundingHas: root's bounding set has no CAP_SYS_ADMIN")
	}
	orig := boundingHas
	defer func() { boundingHas = orig }()
	// The bounding set, as /proc/self/status shows it.
	status := func(capBnd string) {
		mask, err := strconv.ParseUint(capBnd, 16, 64)
		if err != nil {
			t.Fatal(err)
		}
		boundingHas = func(c int) bool { return mask&(1<<uint(c)) != 0 }
	}
	plain := helper("plain", 0o755)
	setuid := helper("setuid", 0o755|os.ModeSetuid)
	caps := helper("caps", 0o755)
	// VFS_CAP_REVISION_2, effective, CAP_SETUID permitted.
	if err := unix.Setxattr(caps, "security.capability", []byte{1, 0, 0, 2, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}, 0); err != nil {
		testutil.SkipOrFail(t, "cannot set file capabilities here: %v", err)
	}
	for _, c := range []struct {
		capBnd, path, want string
	}{
		{"000001ffffffffff", plain, "neither setuid nor has file capabilities"},
		{"000001ffffffffff", setuid, ""},
		{"000001ffffffffff", caps, ""},
		{"00000000800405fb", setuid, "no CAP_SYS_ADMIN"}, // podman's default set
		{"00000000800405fb", caps, ""},
	} {
		status(c.capBnd)
		got, fix := HelperUnusable(c.path)
		if wantFix := strings.Contains(c.want, "CAP_SYS_ADMIN"); (fix != "") != wantFix || wantFix && !strings.Contains(fix, "setcap cap_setuid+ep /usr/bin/newuidmap") {
			t.Errorf("CapBnd %s, %s: fix %q", c.capBnd, filepath.Base(c.path), fix)
		}
		if c.want == "" && got != "" || c.want != "" && !strings.Contains(got, c.want) {
			t.Errorf("CapBnd %s, %s: %q, want %q", c.capBnd, filepath.Base(c.path), got, c.want)
		}
	}
}
