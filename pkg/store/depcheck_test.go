package store

import (
	"strings"
	"testing"

	"github.com/xrun-dev/xrun/internal/testutil"
)

// TestImports keeps the store below the registry client: pull imports
// the store to write blobs and records, so the store's own files (its
// tests may drive pulls) import neither pull, the engine nor the CLI.
func TestImports(t *testing.T) {
	for path, f := range testutil.Imports(t, ".") {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		for _, bad := range []string{"github.com/xrun-dev/xrun/pkg/pull", "github.com/xrun-dev/xrun/pkg/engine", "github.com/urfave/cli"} {
			if strings.HasPrefix(path, bad) {
				t.Errorf("%s imports %s; pkg/store must not depend on it", f, path)
			}
		}
	}
}
