package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// xrunOut runs Main in dir and returns its exit status, stdout and stderr.
func xrunOut(t *testing.T, dir string, args ...string) (int, string, string) {
	t.Helper()
	t.Chdir(dir)
	var out, errb bytes.Buffer
	code := Main(context.Background(), append([]string{"xrun"}, args...), strings.NewReader(""), &out, &errb)
	return code, out.String(), errb.String()
}

// configEnv gives a test its own home, trust list and cache.
func configEnv(t *testing.T) (trustList string) {
	t.Helper()
	t.Setenv("XRUN_CACHE", t.TempDir())
	t.Setenv("HOME", t.TempDir())
	cfg := t.TempDir()
	t.Setenv("XDG_CONFIG_HOME", cfg)
	for _, k := range []string{"XRUN_IMAGE", "XRUN_PLATFORM", "XRUN_TARGET", "XRUN_CONFIG", "XRUN_PULL"} {
		t.Setenv(k, "")
	}
	return filepath.Join(cfg, "xrun", "trusted")
}

// TestConfigTrust walks a cloned repository's .xrun.yaml that binds a path
// outside it through refusal, trust, an edit that withdraws the trust, and
// untrust. With --pull=never and an empty cache, a run that gets past the
// config stops at the cache miss.
func TestConfigTrust(t *testing.T) {
	list := configEnv(t)
	root := t.TempDir()
	repo := filepath.Join(root, "repo")
	for _, d := range []string{filepath.Join(repo, ".git"), filepath.Join(repo, "src"), filepath.Join(root, "outside")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	cfg := filepath.Join(repo, ".xrun.yaml")
	content := "image: 127.0.0.1:1/proj:1\npull: never\nvolumes:\n  - ../outside:/o\n"
	if err := os.WriteFile(cfg, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	sub := filepath.Join(repo, "src")
	refused := func(when string) {
		t.Helper()
		code, _, stderr := xrunOut(t, sub, "--", "true")
		want := cfg + ":4: volume \"../outside:/o\" binds " + filepath.Join(root, "outside") + ", outside the project " + repo + ": review the file, then run xrun config trust " + cfg + "\n"
		if code != 125 || stderr != "xrun: "+want {
			t.Errorf("%s: xrun -- true = %d, %q; want 125, %q", when, code, stderr, want)
		}
	}
	works := func(when string) {
		t.Helper()
		code, _, stderr := xrunOut(t, sub, "--", "true")
		if code != 125 || !strings.Contains(stderr, "127.0.0.1:1/proj:1 for") || !strings.Contains(stderr, "is not in the cache") {
			t.Errorf("%s: xrun -- true = %d, %q; want the run to reach the cache", when, code, stderr)
		}
	}
	show := func(want ...string) {
		t.Helper()
		code, out, stderr := xrunOut(t, sub, "config", "show")
		for _, w := range want {
			if code != 0 || !strings.Contains(out, w) {
				t.Errorf("xrun config show = %d, %q, %q; want %q", code, out, stderr, w)
			}
		}
	}

	refused("untrusted")
	show("file: "+cfg+"\n", "trusted: no (", "trust list: "+list+"\n")

	code, out, stderr := xrunOut(t, sub, "config", "trust")
	if code != 0 || !strings.HasPrefix(out, "trusted "+cfg+" (sha256 ") {
		t.Fatalf("xrun config trust = %d, %q, %q", code, out, stderr)
	}
	if fi, err := os.Stat(list); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("trust list: %v, %v; want mode 0600", fi, err)
	}
	works("trusted")
	show("trusted: yes")

	// Verbose runs name the file.
	_, _, stderr = xrunOut(t, sub, "--verbose", "--", "true")
	if !strings.Contains(stderr, `msg="config file"`) || !strings.Contains(stderr, "path="+cfg+" trusted=true") {
		t.Errorf("--verbose does not name the config file:\n%s", stderr)
	}

	// An edit withdraws the trust.
	if err := os.WriteFile(cfg, []byte(content+"# edited\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	refused("edited after trust")
	show("trusted: no, it changed since it was trusted")

	// Trust again, then untrust.
	if code, _, stderr := xrunOut(t, sub, "config", "trust", cfg); code != 0 {
		t.Fatalf("xrun config trust FILE = %d, %q", code, stderr)
	}
	works("trusted again")
	if code, out, _ := xrunOut(t, sub, "config", "untrust"); code != 0 || out != "untrusted "+cfg+"\n" {
		t.Errorf("xrun config untrust = %d, %q", code, out)
	}
	refused("untrusted again")
	if code, out, _ := xrunOut(t, sub, "config", "untrust"); code != 0 || out != cfg+" was not trusted\n" {
		t.Errorf("xrun config untrust, twice = %d, %q", code, out)
	}

	// Above the repository root nothing applies.
	if code, out, _ := xrunOut(t, root, "config", "show"); code != 0 || !strings.HasPrefix(out, "no .xrun.yaml applies here") {
		t.Errorf("xrun config show above the repository = %d, %q", code, out)
	}
	if code, _, stderr := xrunOut(t, root, "config", "trust"); code != 125 || !strings.Contains(stderr, "no .xrun.yaml applies here: name the file") {
		t.Errorf("xrun config trust with no file = %d, %q", code, stderr)
	}
}

// TestConfigIgnored checks the note for a file in a shared directory, that
// it is printed once, that -q silences it, and that "xrun config trust"
// without FILE refuses to trust such a file.
func TestConfigIgnored(t *testing.T) {
	configEnv(t)
	shared := filepath.Join(t.TempDir(), "shared")
	if err := os.Mkdir(shared, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Chmod(shared, 0o1777); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(shared, ".xrun.yaml")
	if err := os.WriteFile(cfg, []byte("image: 127.0.0.1:1/evil:1\nvolumes: [/:/host]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	work := filepath.Join(shared, "work")
	if err := os.Mkdir(work, 0o755); err != nil {
		t.Fatal(err)
	}
	note := "xrun: ignoring " + cfg + ": it is in " + shared + ", which is writable by others (mode 1777); if you trust it: xrun config trust " + cfg + "\n"

	code, _, stderr := xrunOut(t, work, "--pull=never", "--", "true")
	if code != 125 || stderr != note+"xrun: no image given: name one (xrun IMAGE -- CMD) or set image in .xrun.yaml\n" {
		t.Errorf("xrun in a shared directory = %d, %q; want the note once and no image", code, stderr)
	}
	code, _, stderr = xrunOut(t, work, "-q", "--pull=never", "127.0.0.1:1/mine:1", "--", "true")
	if code != 125 || strings.Contains(stderr, "ignoring") || !strings.Contains(stderr, "127.0.0.1:1/mine:1 for") {
		t.Errorf("xrun -q = %d, %q; want no note, and the command line's image", code, stderr)
	}
	_, _, stderr = xrunOut(t, work, "--verbose", "--pull=never", "127.0.0.1:1/mine:1", "--", "true")
	if !strings.Contains(stderr, `msg="config file ignored"`) || !strings.Contains(stderr, "path="+cfg+` reason="in `+shared) {
		t.Errorf("--verbose does not say the file is ignored:\n%s", stderr)
	}
	code, out, _ := xrunOut(t, work, "config", "show")
	if code != 0 || !strings.Contains(out, "ignored: it is in "+shared+", which is writable by others") {
		t.Errorf("xrun config show = %d, %q", code, out)
	}
	code, _, stderr = xrunOut(t, work, "config", "trust")
	if code != 125 || !strings.Contains(stderr, "name it to trust it anyway (xrun config trust "+cfg+")") {
		t.Errorf("xrun config trust (no FILE) of an ignored file = %d, %q; want a refusal", code, stderr)
	}
	// Named, it is trusted, used and no longer noted.
	if code, _, stderr := xrunOut(t, work, "config", "trust", cfg); code != 0 {
		t.Fatalf("xrun config trust FILE = %d, %q", code, stderr)
	}
	code, _, stderr = xrunOut(t, work, "--pull=never", "--", "true")
	if code != 125 || strings.Contains(stderr, "ignoring") || !strings.Contains(stderr, "127.0.0.1:1/evil:1 for") {
		t.Errorf("xrun with the shared file trusted = %d, %q; want it used", code, stderr)
	}

	// XRUN_CONFIG naming an unsafe file is an error, not a note.
	other := filepath.Join(shared, "other.yaml")
	if err := os.WriteFile(other, []byte("image: x\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv("XRUN_CONFIG", other)
	code, _, stderr = xrunOut(t, work, "--", "true")
	if code != 125 || !strings.Contains(stderr, other+" is in "+shared+", which is writable by others (mode 1777): move it to a directory only you can write") {
		t.Errorf("XRUN_CONFIG in a shared directory = %d, %q", code, stderr)
	}
}

// TestConfigEnvKeyNeedsTrust checks that an untrusted file may not copy
// the user's environment into the container with env: [KEY], and a trusted
// one may (TestConfigEnvKey checks what KEY means).
func TestConfigEnvKeyNeedsTrust(t *testing.T) {
	configEnv(t)
	t.Setenv("XRUN_T_HOST", "from-host")
	dir := t.TempDir()
	cfg := filepath.Join(dir, ".xrun.yaml")
	if err := os.WriteFile(cfg, []byte("image: 127.0.0.1:1/proj:1\npull: never\nenv: [A=1, XRUN_T_HOST]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	code, _, stderr := xrunOut(t, dir, "--", "true")
	if code != 125 || !strings.Contains(stderr, cfg+":3: env: XRUN_T_HOST copies your environment's value into the container, which needs a trusted file: review the file, then run xrun config trust "+cfg) {
		t.Errorf("untrusted env: [KEY] = %d, %q", code, stderr)
	}
	if code, _, stderr := xrunOut(t, dir, "config", "trust"); code != 0 {
		t.Fatalf("xrun config trust = %d, %q", code, stderr)
	}
	code, _, stderr = xrunOut(t, dir, "--", "true")
	if code != 125 || !strings.Contains(stderr, "is not in the cache") {
		t.Errorf("trusted env: [KEY] = %d, %q; want the run to reach the cache", code, stderr)
	}
}
