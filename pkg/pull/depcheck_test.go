package pull

import (
	"go/parser"
	"go/token"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestNoCLIImports keeps the CLI out of the library: pkg/pull must never
// import urfave/cli (STYLE.md practice 1).
func TestNoCLIImports(t *testing.T) {
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
			if strings.Contains(path, "urfave/cli") {
				t.Errorf("%s imports %s; pkg/pull must not depend on the CLI", f, path)
			}
		}
	}
}
