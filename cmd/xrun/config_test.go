package main

import (
	"bytes"
	"context"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/urfave/cli/v2"

	"github.com/xrun-dev/xrun/pkg/config"
	"github.com/xrun-dev/xrun/pkg/engine"
)

// xrunIn runs Main in dir and returns its exit status and stderr.
func xrunIn(t *testing.T, dir string, args ...string) (int, string) {
	t.Helper()
	t.Chdir(dir)
	var out, errb bytes.Buffer
	code := Main(context.Background(), append([]string{"xrun"}, args...), strings.NewReader(""), &out, &errb)
	return code, errb.String()
}

// TestProjectConfig checks discovery of .xrun.yaml from a subdirectory and
// the precedence flags > XRUN_* variables > file target > file. With
// --pull=never and an empty cache every run stops at the cache miss, whose
// message names the image and platform the run resolved to.
func TestProjectConfig(t *testing.T) {
	t.Setenv("XRUN_CACHE", t.TempDir())
	t.Setenv("XRUN_PLATFORM", "")
	t.Setenv("XRUN_IMAGE", "")
	t.Setenv("XRUN_TARGET", "")
	root := t.TempDir()
	if err := os.WriteFile(filepath.Join(root, ".xrun.yaml"), []byte(`image: 127.0.0.1:1/proj/base:1
platform: linux/arm64
pull: never
targets:
  riscv:
    platform: linux/riscv64
  sid:
    image: 127.0.0.1:1/proj/sid:1
`), 0o644); err != nil {
		t.Fatal(err)
	}
	sub := filepath.Join(root, "src", "lib")
	if err := os.MkdirAll(sub, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		env  map[string]string
		args []string
		want string
	}{
		{"file", nil, []string{"--", "make"}, "127.0.0.1:1/proj/base:1 for linux/arm64"},
		{"target", nil, []string{"--target", "riscv", "--", "make"}, "127.0.0.1:1/proj/base:1 for linux/riscv64"},
		{"target image", nil, []string{"--target", "sid", "--", "make"}, "127.0.0.1:1/proj/sid:1 for linux/arm64"},
		{"env over file", map[string]string{"XRUN_IMAGE": "127.0.0.1:1/env:2", "XRUN_PLATFORM": "linux/s390x"}, []string{"--", "make"}, "127.0.0.1:1/env:2 for linux/s390x"},
		{"flag over env", map[string]string{"XRUN_PLATFORM": "linux/s390x"}, []string{"--platform", "linux/ppc64le", "--", "make"}, "127.0.0.1:1/proj/base:1 for linux/ppc64le"},
		{"image argument over file", nil, []string{"127.0.0.1:1/arg:3", "--", "make"}, "127.0.0.1:1/arg:3 for linux/arm64"},
		{"shell", nil, []string{"shell"}, "127.0.0.1:1/proj/base:1 for linux/arm64"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			code, stderr := xrunIn(t, sub, tc.args...)
			if code != 125 || !strings.Contains(stderr, tc.want+" is not in the cache") {
				t.Errorf("xrun %q = %d, %q; want 125 and a cache miss for %q", tc.args, code, stderr, tc.want)
			}
		})
	}

	// --target all: one run per target, in the file's order, each reported.
	code, stderr := xrunIn(t, sub, "--target", "all", "--", "make")
	if code != 125 {
		t.Errorf("xrun --target all = %d, want 125", code)
	}
	for _, want := range []string{"xrun: target riscv: failed:", "xrun: target sid: failed:"} {
		if !strings.Contains(stderr, want) {
			t.Errorf("xrun --target all stderr lacks %q:\n%s", want, stderr)
		}
	}
	if i, j := strings.Index(stderr, "target riscv:"), strings.Index(stderr, "target sid:"); i < 0 || j < i {
		t.Errorf("targets not reported in file order:\n%s", stderr)
	}
}

func TestProjectConfigErrors(t *testing.T) {
	t.Setenv("XRUN_CACHE", t.TempDir())
	t.Setenv("XRUN_IMAGE", "")
	t.Setenv("XRUN_TARGET", "")
	dir := t.TempDir()
	cfg := filepath.Join(dir, ".xrun.yaml")
	for _, tc := range []struct {
		file string
		args []string
		want string
	}{
		{"image: x\nplatfrom: linux/arm64\n", []string{"--", "true"}, cfg + ":2: field platfrom not found"},
		{"image: x\nplatform: linux/foo\n", []string{"--", "true"}, `unknown platform "linux/foo"`},
		{"platform: linux/arm64\n", []string{"--", "true"}, "no image given"},
		{"image: x\ntargets:\n  a: {}\n", []string{"--target", "b", "--", "true"}, `no such target "b" (it has: a)`},
		{"image: x\n", []string{"--target", "all", "--", "true"}, "--target all needs targets in .xrun.yaml"},
	} {
		if err := os.WriteFile(cfg, []byte(tc.file), 0o644); err != nil {
			t.Fatal(err)
		}
		code, stderr := xrunIn(t, dir, tc.args...)
		if code != 125 || !strings.HasPrefix(stderr, "xrun: ") || strings.Count(stderr, "\n") != 1 || !strings.Contains(stderr, tc.want) {
			t.Errorf("with %q: xrun %q = %d, %q; want 125 and one line containing %q", tc.file, tc.args, code, stderr, tc.want)
		}
	}
}

// TestConfigEnvKey checks that env: [KEY] means what -e KEY means: the
// user's value, dropped when unset.
func TestConfigEnvKey(t *testing.T) {
	t.Setenv("XRUN_T_HOST", "from-host")
	t.Setenv("XRUN_T_UNSET", "")
	os.Unsetenv("XRUN_T_UNSET")
	c := cli.NewContext(newApp(strings.NewReader(""), &bytes.Buffer{}, &bytes.Buffer{}), flag.NewFlagSet("t", flag.ContinueOnError), nil)
	o := engine.Options{Image: "x", Env: []string{"FLAG=1"}}
	if err := applySettings(c, config.Settings{Env: []string{"A=1", "XRUN_T_HOST", "XRUN_T_UNSET"}}, &o); err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff([]string{"A=1", "XRUN_T_HOST=from-host", "FLAG=1"}, o.Env); d != "" {
		t.Errorf("env (-want +got):\n%s", d)
	}
}
