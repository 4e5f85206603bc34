package rootfs

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// malCase is one hostile layer stack. base is the test's temp dir (absolute,
// on the host); the sentinel file lives at base/sentinel, outside the root.
type malCase struct {
	name    string
	layers  func(base string) [][]ent
	wantErr string                                // substring of the error ("" = must succeed); the layer digest is checked too
	check   func(t *testing.T, root, base string) // what the contained result looks like
}

func wantFile(rel, body string) func(*testing.T, string, string) {
	return func(t *testing.T, root, _ string) {
		t.Helper()
		b, err := os.ReadFile(filepath.Join(root, rel))
		if err != nil || string(b) != body {
			t.Errorf("read %s in root = %q, %v; want %q", rel, b, err, body)
		}
	}
}

func wantLink(rel, target string) func(*testing.T, string, string) {
	return func(t *testing.T, root, _ string) {
		t.Helper()
		l, err := os.Readlink(filepath.Join(root, rel))
		if err != nil || l != target {
			t.Errorf("readlink %s in root = %q, %v; want %q", rel, l, err, target)
		}
	}
}

func all(fs ...func(*testing.T, string, string)) func(*testing.T, string, string) {
	return func(t *testing.T, root, base string) {
		for _, f := range fs {
			f(t, root, base)
		}
	}
}

func one(es ...ent) func(string) [][]ent {
	return func(string) [][]ent { return [][]ent{es} }
}

var malCases = []malCase{
	{name: "dotdot file", layers: one(reg("../../sentinel", "evil", 0o644)), check: wantFile("sentinel", "evil")},
	{name: "dotdot deep", layers: one(reg("a/../../../../b/../sentinel", "evil", 0o644)), check: wantFile("sentinel", "evil")},
	{name: "absolute host path", layers: func(base string) [][]ent {
		return [][]ent{{reg(base+"/sentinel", "evil", 0o644)}}
	}, check: func(t *testing.T, root, base string) { wantFile(base+"/sentinel", "evil")(t, root, base) }},
	{name: "symlink to slash then write through it", layers: func(base string) [][]ent {
		return [][]ent{{sym("link", "/"), reg("link"+base+"/sentinel", "evil", 0o644)}}
	}, check: func(t *testing.T, root, base string) {
		wantLink("link", "/")(t, root, base)
		wantFile(base+"/sentinel", "evil")(t, root, base)
	}},
	{name: "symlink to host dir then write through it", layers: func(base string) [][]ent {
		return [][]ent{{sym("out", base), reg("out/sentinel", "evil", 0o644)}}
	}, check: func(t *testing.T, root, base string) { wantFile(base+"/sentinel", "evil")(t, root, base) }},
	{name: "relative symlink climbing out", layers: one(sym("up", "../../../../../.."), reg("up/sentinel", "evil", 0o644)),
		check: wantFile("sentinel", "evil")},
	{name: "symlink in a later layer", layers: func(base string) [][]ent {
		return [][]ent{{dirE("d", 0o755)}, {sym("d", base)}, {reg("d/sentinel", "evil", 0o644)}}
	}, check: func(t *testing.T, root, base string) { wantFile(base+"/sentinel", "evil")(t, root, base) }},
	{name: "symlink as last component is replaced", layers: func(base string) [][]ent {
		return [][]ent{{sym("f", base+"/sentinel")}, {reg("f", "evil", 0o644)}}
	}, check: wantFile("f", "evil")},
	{name: "symlink as last component same layer", layers: func(base string) [][]ent {
		return [][]ent{{sym("f", base+"/sentinel"), reg("f", "evil", 0o644)}}
	}, check: wantFile("f", "evil")},
	{name: "symlink as last component then dir", layers: func(base string) [][]ent {
		return [][]ent{{sym("d", base), dirE("d", 0o700), reg("d/sentinel", "evil", 0o644)}}
	}, check: wantFile("d/sentinel", "evil")},
	{name: "symlink as last component then fifo", layers: func(base string) [][]ent {
		return [][]ent{{sym("p", base+"/sentinel"), fifo("p")}}
	}},
	{name: "symlink parent for implicit dirs", layers: func(base string) [][]ent {
		return [][]ent{{sym("d", base), reg("d/new/deep/f", "evil", 0o644)}}
	}, check: func(t *testing.T, root, base string) { wantFile(base+"/new/deep/f", "evil")(t, root, base) }},
	{name: "hardlink to dotdot outside", layers: one(hard("h", "../../sentinel")), wantErr: `"h"`},
	{name: "hardlink to dotdot resolves inside", layers: one(reg("sentinel", "inner", 0o644), hard("h", "../../sentinel")),
		check: wantFile("h", "inner")},
	{name: "hardlink to absolute host path", layers: func(base string) [][]ent {
		return [][]ent{{hard("h", base+"/sentinel")}}
	}, wantErr: `"h"`},
	{name: "hardlink through symlink to host", layers: func(base string) [][]ent {
		return [][]ent{{sym("l", base), hard("h", "l/sentinel")}}
	}, wantErr: `"h"`},
	{name: "hardlink to symlink links the symlink", layers: func(base string) [][]ent {
		return [][]ent{{sym("s", base+"/sentinel"), hard("h", "s"), reg("h", "evil", 0o644)}}
	}, check: func(t *testing.T, root, base string) {
		wantLink("s", base+"/sentinel")(t, root, base)
		wantFile("h", "evil")(t, root, base)
	}},
	{name: "hardlink to root", layers: one(hard("h", "/")), wantErr: `"h"`},
	{name: "hardlink to dir", layers: one(dirE("d", 0o755), hard("h", "d")), wantErr: `"h"`},
	{name: "write through hardlink replaces it", layers: one(reg("etc/passwd", "root", 0o644), hard("h", "etc/passwd"), reg("h", "evil", 0o644)),
		check: all(wantFile("etc/passwd", "root"), wantFile("h", "evil"))},
	{name: "dot as file", layers: one(reg(".", "evil", 0o644)), wantErr: `"."`},
	{name: "slash as symlink", layers: func(base string) [][]ent { return [][]ent{{sym("/", base)}} }, wantErr: `"/"`},
	{name: "dotdot as hardlink", layers: one(reg("f", "x", 0o644), hard("..", "f")), wantErr: `".."`},
	{name: "empty name as file", layers: one(reg("", "evil", 0o644)), wantErr: `""`},
	{name: "dot dir is fine", layers: one(dirE("./", 0o755), dirE("../..", 0o750))},
	{name: "symlink loop", layers: one(sym("loop", "loop"), reg("loop/x", "evil", 0o644)), wantErr: `"loop/x"`},
	{name: "file parent", layers: one(reg("f", "x", 0o644), reg("f/x", "evil", 0o644)), wantErr: `"f/x"`},
	{name: "whiteout dotdot", layers: one(reg("../../.wh.sentinel", "", 0o644))},
	{name: "whiteout through symlink", layers: func(base string) [][]ent {
		return [][]ent{{sym("l", base), reg("l/.wh.sentinel", "", 0o644)}}
	}},
	{name: "opaque through symlink", layers: func(base string) [][]ent {
		return [][]ent{{sym("l", base)}, {reg("l/.wh..wh..opq", "", 0o644)}}
	}},
	{name: "whiteout of symlink to host removes only the link", layers: func(base string) [][]ent {
		return [][]ent{{sym("l", base)}, {wh("l")}}
	}},
	{name: "invalid whiteout name", layers: one(reg("a/.wh..", "", 0o644)), wantErr: `"a/.wh.."`},
	{name: "fifo dotdot", layers: one(fifo("../../fifo"))},
	{name: "device absolute", layers: func(base string) [][]ent { return [][]ent{{chr(base + "/sentinel")}} }},
	{name: "dir replaced by symlink then file", layers: func(base string) [][]ent {
		return [][]ent{{dirE("a", 0o755), reg("a/x", "x", 0o644)}, {sym("a", base), reg("a/sentinel", "evil", 0o644)}}
	}, check: func(t *testing.T, root, base string) { wantFile(base+"/sentinel", "evil")(t, root, base) }},
}

func TestMalicious(t *testing.T) {
	for _, sj := range []bool{false, true} {
		for _, tc := range malCases {
			name := tc.name
			if sj {
				name = "securejoin/" + name
			}
			t.Run(name, func(t *testing.T) {
				if sj {
					forceSecureJoin = true
					t.Cleanup(func() { forceSecureJoin = false })
				}
				runMalCase(t, tc)
			})
		}
	}
}

func runMalCase(t *testing.T, tc malCase) {
	base, root := newRoot(t)
	if err := os.WriteFile(filepath.Join(base, "sentinel"), []byte("sentinel"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(base, "outside"), 0o755); err != nil {
		t.Fatal(err)
	}
	before := snapshot(t, base, root)
	var layers [][]byte
	for _, es := range tc.layers(base) {
		layers = append(layers, mkLayer(t, es...))
	}
	err := unpackAll(t, root, layers...)
	if diff := cmp.Diff(before, snapshot(t, base, root)); diff != "" {
		t.Errorf("outside of the root changed (-before +after):\n%s", diff)
	}
	switch {
	case tc.wantErr == "" && err != nil:
		t.Fatalf("unpack: %v", err)
	case tc.wantErr != "" && err == nil:
		t.Fatalf("unpack succeeded, want error containing %s", tc.wantErr)
	case tc.wantErr != "":
		if !strings.Contains(err.Error(), tc.wantErr) || !strings.Contains(err.Error(), "layer sha256:layer") {
			t.Errorf("unpack error = %v, want it to name the layer and %s", err, tc.wantErr)
		}
		if strings.Contains(tc.name, "root") || strings.Contains(tc.name, "as ") {
			if !errors.Is(err, ErrUnsafeEntry) && strings.Contains(tc.wantErr, `"/"`) {
				t.Errorf("error %v is not ErrUnsafeEntry", err)
			}
		}
	}
	if tc.check != nil && err == nil {
		tc.check(t, root, base)
	}
}
