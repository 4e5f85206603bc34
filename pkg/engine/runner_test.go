package engine

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/xrun-dev/xrun/pkg/sandbox"
)

func TestProgramBind(t *testing.T) {
	host := t.TempDir()
	lower := t.TempDir()
	write := func(p string, mode os.FileMode) string {
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte("x"), mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	prog := write(filepath.Join(host, "build", "x.test"), 0o755)
	data := write(filepath.Join(host, "build", "data"), 0o644)
	shared := write(filepath.Join(host, "shared", "tool"), 0o755)
	// The image has its own file at the path of this host program.
	both := write(filepath.Join(host, "both"), 0o755)
	write(filepath.Join(lower, both), 0o755)
	// A symlink in the image pointing outside still counts as the image's.
	link := write(filepath.Join(host, "link"), 0o755)
	if err := os.MkdirAll(filepath.Dir(filepath.Join(lower, link)), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/nowhere", filepath.Join(lower, link)); err != nil {
		t.Fatal(err)
	}
	binds := []sandbox.Bind{
		{Source: filepath.Join(host, "shared"), Destination: filepath.Join(host, "shared")},
		{Source: filepath.Join(host, "build"), Destination: "/elsewhere"},
	}
	for _, tt := range []struct {
		name, prog string
		want       *sandbox.Bind
	}{
		{"host program outside the binds", prog, &sandbox.Bind{Source: prog, Destination: prog, ReadOnly: true}},
		{"uncleaned path", filepath.Join(host, "build", ".", "x.test"), &sandbox.Bind{Source: prog, Destination: prog, ReadOnly: true}},
		{"bound at another path only", prog, &sandbox.Bind{Source: prog, Destination: prog, ReadOnly: true}},
		{"inside a same-path bind", shared, nil},
		{"not executable", data, nil},
		{"the image has it", both, nil},
		{"the image has a symlink there", link, nil},
		{"relative", "build/x.test", nil},
		{"a command name", "sh", nil},
		{"missing", filepath.Join(host, "nope"), nil},
		{"a directory", filepath.Join(host, "build"), nil},
		{"kernel file system", "/proc/self/exe", nil},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got := programBind(tt.prog, binds, lower)
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("programBind(%q) (-want +got):\n%s", tt.prog, diff)
			}
		})
	}
}
