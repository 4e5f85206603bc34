package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

const sample = `# project defaults
image: debian:bookworm
platform: linux/arm64
env: [CC=gcc]
volumes: [cache:/root/.cache]
default: arm64
targets:
  arm64: {}
  riscv64:
    image: debian:sid
    platform: linux/riscv64
    env: [EXTRA=1]
  armv7:
    platform: linux/arm/v7
    pull: always
`

func write(t *testing.T, dir, content string) string {
	t.Helper()
	p := filepath.Join(dir, FileName)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestFind(t *testing.T) {
	root := t.TempDir()
	sub := filepath.Join(root, "a", "b", "c")
	if err := os.MkdirAll(sub, 0o755); err != nil {
		t.Fatal(err)
	}
	if got := Find(sub, ""); got != "" {
		t.Errorf("Find(%q) with no file = %q, want \"\"", sub, got)
	}
	p := write(t, filepath.Join(root, "a"), sample)
	if got := Find(sub, ""); got != p {
		t.Errorf("Find(%q) = %q, want %q", sub, got, p)
	}
	// The nearest file wins.
	p2 := write(t, filepath.Join(root, "a", "b"), "image: alpine\n")
	if got := Find(sub, ""); got != p2 {
		t.Errorf("Find(%q) = %q, want %q", sub, got, p2)
	}
}

func TestTargets(t *testing.T) {
	dir := t.TempDir()
	f, err := Load(write(t, dir, sample))
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff([]string{"arm64", "riscv64", "armv7"}, f.TargetNames()); d != "" {
		t.Errorf("TargetNames (-want +got):\n%s", d)
	}
	vol := filepath.Join(dir, "cache") + ":/root/.cache"
	for _, tc := range []struct {
		name string
		want Settings
	}{
		{"", Settings{Image: "debian:bookworm", Platform: "linux/arm64", Env: []string{"CC=gcc"}, Volumes: []string{vol}}},
		{"riscv64", Settings{Image: "debian:sid", Platform: "linux/riscv64", Env: []string{"CC=gcc", "EXTRA=1"}, Volumes: []string{vol}}},
		{"armv7", Settings{Image: "debian:bookworm", Platform: "linux/arm/v7", Pull: "always", Env: []string{"CC=gcc"}, Volumes: []string{vol}}},
	} {
		got, err := f.Target(tc.name)
		if err != nil {
			t.Errorf("Target(%q): %v", tc.name, err)
			continue
		}
		if d := cmp.Diff(tc.want, got); d != "" {
			t.Errorf("Target(%q) (-want +got):\n%s", tc.name, d)
		}
	}
	_, err = f.Target("s390x")
	if !errors.Is(err, ErrNoTarget) || !strings.Contains(err.Error(), "arm64, riscv64, armv7") {
		t.Errorf("Target(s390x) error = %v, want ErrNoTarget listing the targets", err)
	}
}

func TestLoadErrors(t *testing.T) {
	for _, tc := range []struct {
		content string
		want    string // after "<path>:"
	}{
		{"image: [unclosed\n", "1: "},
		{"image: x\nplatfrom: linux/arm64\n", "2: field platfrom not found"},
		{"image: x\npull: sometimes\n", `2: pull: "sometimes" is not missing, always or never`},
		{"targets:\n  a:\n    volumes: [nocolon]\n", `3: volumes: "nocolon" is not SRC:/DST[:ro]`},
		{"targets:\n  all: {}\n", `2: targets: "all" is reserved`},
		{"default: x\n", `1: default: no target named "x"`},
		{"env: [\"=x\"]\n", `1: env: "=x" is not KEY=VALUE or KEY`},
		{"image: x\nenv:\n  - A=1\n  - \"B C\"\n", `4: env: "B C" is not KEY=VALUE or KEY`},
	} {
		p := write(t, t.TempDir(), tc.content)
		_, err := Load(p)
		if err == nil || !strings.HasPrefix(err.Error(), p+":"+tc.want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("Load(%q) error = %v, want one line starting %q", tc.content, err, p+":"+tc.want)
		}
	}
}

func TestEmptyFile(t *testing.T) {
	f, err := Load(write(t, t.TempDir(), "# nothing yet\n"))
	if err != nil {
		t.Fatal(err)
	}
	if s, err := f.Target(""); err != nil || s.Image != "" {
		t.Errorf("Target(\"\") of an empty file = %+v, %v", s, err)
	}
}

func TestAccelAndAdditionalCaches(t *testing.T) {
	dir := t.TempDir()
	f, err := Load(write(t, dir, "image: debian:bookworm\naccel: true\nadditional_caches: [/opt/xrun-cache]\ntargets:\n  slow:\n    accel: false\n  fast: {}\n"))
	if err != nil {
		t.Fatal(err)
	}
	f.Trusted = true
	for target, want := range map[string]bool{"": true, "fast": true, "slow": false} {
		s, err := f.Target(target)
		if err != nil {
			t.Fatal(err)
		}
		if s.Accel == nil || *s.Accel != want {
			t.Errorf("target %q: accel %v, want %v", target, s.Accel, want)
		}
		if len(s.AdditionalCaches) != 1 || s.AdditionalCaches[0] != "/opt/xrun-cache" {
			t.Errorf("target %q: additional_caches %v", target, s.AdditionalCaches)
		}
	}
	// Naming shared caches makes runs trust their images: a trusted file only.
	f.Trusted = false
	if _, err := f.Target(""); err == nil || !strings.Contains(err.Error(), "additional_caches makes runs trust the images in /opt/xrun-cache") {
		t.Errorf("untrusted file with additional_caches: %v", err)
	}
}
