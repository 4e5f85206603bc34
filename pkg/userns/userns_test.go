package userns

import (
	"errors"
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
