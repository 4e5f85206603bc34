package userns

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

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
