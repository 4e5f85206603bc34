// Package testutil holds the helpers that xrun's tests share.
package testutil

import (
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"strconv"
	"testing"
)

// MustWork reports whether XRUN_TEST_MUST_WORK=1 (set by CI) asks that
// every test whose prerequisite is missing fail instead of skipping.
func MustWork() bool { return os.Getenv("XRUN_TEST_MUST_WORK") == "1" }

// SkipOrFail skips t with the reason, or fails it under MustWork.
func SkipOrFail(t testing.TB, format string, args ...any) {
	t.Helper()
	if MustWork() {
		t.Fatalf("XRUN_TEST_MUST_WORK=1 and a prerequisite is missing: "+format, args...)
	}
	t.Skipf(format, args...)
}

// Imports returns the import paths of the Go files in dir (tests
// included), each with a file that imports it, for tests that keep a
// package's dependencies in check.
func Imports(t testing.TB, dir string) map[string]string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "*.go"))
	if err != nil {
		t.Fatal(err)
	}
	imports := map[string]string{}
	fset := token.NewFileSet()
	for _, f := range files {
		af, err := parser.ParseFile(fset, f, nil, parser.ImportsOnly)
		if err != nil {
			t.Fatal(err)
		}
		for _, imp := range af.Imports {
			path, _ := strconv.Unquote(imp.Path.Value)
			imports[path] = f
		}
	}
	return imports
}
