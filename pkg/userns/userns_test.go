package userns

import (
	"errors"
	"go/parser"
	"go/token"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
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
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	for _, f := range files {
		af, err := parser.ParseFile(fset, f, nil, parser.ImportsOnly)
		if err != nil {
			t.Fatal(err)
		}
		for _, imp := range af.Imports {
			path, _ := strconv.Unquote(imp.Path.Value)
			if strings.HasPrefix(path, "github.com/xrun-dev/xrun/") && path != "github.com/xrun-dev/xrun/pkg/fsutil" {
				t.Errorf("%s imports %s", f, path)
			}
		}
	}
}
