package main

import (
	"os/exec"
	"strings"
	"testing"
)

// TestPackagesDoNotImportCLI keeps the CLI thin: no package under pkg/
// depends on urfave/cli, directly or not, so all logic stays usable and
// testable without it.
func TestPackagesDoNotImportCLI(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "-f", "{{.ImportPath}}", "../../pkg/...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	deps := strings.Fields(string(out))
	if len(deps) < 20 {
		t.Fatalf("go list found only %d packages", len(deps))
	}
	for _, d := range deps {
		if strings.HasPrefix(d, "github.com/urfave/cli") {
			t.Errorf("a package under pkg/ depends on %s: keep flag parsing in cmd/xrun", d)
		}
	}
}
