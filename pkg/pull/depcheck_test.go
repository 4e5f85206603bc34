package pull

import (
	"strings"
	"testing"

	"github.com/xrun-dev/xrun/internal/testutil"
)

// TestNoCLIImports keeps the CLI out of the library: pkg/pull must never
// import urfave/cli (STYLE.md practice 1).
func TestNoCLIImports(t *testing.T) {
	for path, f := range testutil.Imports(t, ".") {
		if strings.Contains(path, "urfave/cli") {
			t.Errorf("%s imports %s; pkg/pull must not depend on the CLI", f, path)
		}
	}
}
