package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/xrun-dev/xrun/pkg/sandbox"
)

func TestParseVolume(t *testing.T) {
	cwd := t.TempDir()
	if err := os.Mkdir(filepath.Join(cwd, "data"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		spec    string
		want    sandbox.Bind
		wantErr string
	}{
		{spec: cwd + ":/src", want: sandbox.Bind{Source: cwd, Destination: "/src"}},
		{spec: "data:/data:ro", want: sandbox.Bind{Source: filepath.Join(cwd, "data"), Destination: "/data", ReadOnly: true}},
		{spec: "./data:/d/../data/:rw", want: sandbox.Bind{Source: filepath.Join(cwd, "data"), Destination: "/data"}},
		{spec: "data", wantErr: "want SRC:DST"},
		{spec: "data:/a:ro:x", wantErr: "want SRC:DST"},
		{spec: "data:rel", wantErr: "absolute"},
		{spec: "data:/", wantErr: "root"},
		{spec: ":/x", wantErr: "empty source"},
		{spec: "data:/x:rx", wantErr: `unknown mode "rx"`},
		{spec: "missing:/x", wantErr: "does not exist"},
	} {
		got, err := parseVolume(tc.spec, cwd)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("parseVolume(%q) error = %v, want one containing %q", tc.spec, err, tc.wantErr)
			}
			continue
		}
		if err != nil {
			t.Errorf("parseVolume(%q): %v", tc.spec, err)
			continue
		}
		if d := cmp.Diff(tc.want, got); d != "" {
			t.Errorf("parseVolume(%q) (-want +got):\n%s", tc.spec, d)
		}
	}
}

func TestParseTmpfs(t *testing.T) {
	for _, tc := range []struct {
		spec    string
		want    sandbox.Tmpfs
		wantErr bool
	}{
		{spec: "/run", want: sandbox.Tmpfs{Destination: "/run"}},
		{spec: "/run/:size=1m,mode=755", want: sandbox.Tmpfs{Destination: "/run", Options: []string{"size=1m", "mode=755"}}},
		{spec: "run", wantErr: true},
		{spec: "/", wantErr: true},
		{spec: "/x:size=1m,,", wantErr: true},
	} {
		got, err := parseTmpfs(tc.spec)
		if (err != nil) != tc.wantErr {
			t.Errorf("parseTmpfs(%q) error = %v, want error %v", tc.spec, err, tc.wantErr)
			continue
		}
		if d := cmp.Diff(tc.want, got); !tc.wantErr && d != "" {
			t.Errorf("parseTmpfs(%q) (-want +got):\n%s", tc.spec, d)
		}
	}
}

func TestParseEnvFile(t *testing.T) {
	lookup := func(k string) (string, bool) {
		v, ok := map[string]string{"FROMHOST": "h v"}[k]
		return v, ok
	}
	dir := t.TempDir()
	good := filepath.Join(dir, "good.env")
	content := "# comment\n\nA=1\n  B=two words \nC=x=y,z\nFROMHOST\nUNSET\nEMPTY=\r\n  # indented comment\n"
	if err := os.WriteFile(good, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := parseEnvFile(good, lookup)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"A=1", "B=two words ", "C=x=y,z", "FROMHOST=h v", "EMPTY="}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("parseEnvFile (-want +got):\n%s", d)
	}

	bad := filepath.Join(dir, "bad.env")
	if err := os.WriteFile(bad, []byte("A=1\n=nokey\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := parseEnvFile(bad, lookup); err == nil || !strings.Contains(err.Error(), "line 2") {
		t.Errorf("parseEnvFile(bad) error = %v, want one naming line 2", err)
	}
	if _, err := parseEnvFile(filepath.Join(dir, "missing"), lookup); err == nil {
		t.Error("parseEnvFile(missing): no error")
	}
}

func TestCheckUserSpec(t *testing.T) {
	for _, tc := range []struct {
		spec string
		ok   bool
	}{
		{"0", true}, {"1000", true}, {"bob", true}, {"bob:staff", true}, {"1000:100", true}, {"bob:100", true},
		{"", false}, {":", false}, {"bob:", false}, {":staff", false}, {"a:b:c", false}, {"b ob", false},
	} {
		if err := sandbox.CheckUserSpec(tc.spec); (err == nil) != tc.ok {
			t.Errorf("CheckUserSpec(%q) = %v, want ok %v", tc.spec, err, tc.ok)
		}
	}
}

// TestRunFlagErrors checks that bad run flags are refused before any work
// (the cache stays empty), with status 125 and one line on stderr.
func TestRunFlagErrors(t *testing.T) {
	cache := t.TempDir()
	t.Setenv("XRUN_CACHE", cache)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--rm", "--name", "x", "alpine", "--", "true"}, "--rm and --name are mutually exclusive"},
		{[]string{"-v", "nonexistent-dir:/x", "alpine", "--", "true"}, "does not exist"},
		{[]string{"-v", ".:relative", "alpine", "--", "true"}, "absolute"},
		{[]string{"-w", "relative", "alpine", "--", "true"}, "absolute"},
		{[]string{"--user", "bob:", "alpine", "--", "true"}, "invalid --user"},
		{[]string{"--network", "bridge", "alpine", "--", "true"}, "invalid --network"},
		{[]string{"--tmpfs", "run", "alpine", "--", "true"}, "invalid --tmpfs"},
		{[]string{"--name", "-bad", "alpine", "--", "true"}, "invalid container name"},
		{[]string{"--env-file", "/nonexistent/env", "alpine", "--", "true"}, "--env-file"},
		{[]string{"-e", "=x", "alpine", "--", "true"}, `invalid -e "=x"`},
		{[]string{"rm"}, "usage: xrun rm"},
		{[]string{"rm", "nosuch"}, `no such container`},
	} {
		var out, errb bytes.Buffer
		code := Main(context.Background(), append([]string{"xrun"}, tc.args...), strings.NewReader(""), &out, &errb)
		msg := errb.String()
		if code != 125 {
			t.Errorf("xrun %q: exit %d, want 125 (stderr %q)", tc.args, code, msg)
		}
		if !strings.HasPrefix(msg, "xrun: ") || strings.Count(msg, "\n") != 1 || !strings.Contains(msg, tc.want) {
			t.Errorf("xrun %q: stderr %q, want one line starting with \"xrun: \" containing %q", tc.args, msg, tc.want)
		}
	}
	if ents, _ := os.ReadDir(cache); len(ents) != 0 {
		var names []string
		for _, e := range ents {
			names = append(names, e.Name())
		}
		t.Errorf("refused runs left %q in the cache", names)
	}
}

func TestPsEmpty(t *testing.T) {
	t.Setenv("XRUN_CACHE", t.TempDir())
	var out, errb bytes.Buffer
	if code := Main(context.Background(), []string{"xrun", "ps"}, strings.NewReader(""), &out, &errb); code != 0 {
		t.Fatalf("xrun ps: exit %d, stderr %q", code, errb.String())
	}
	if got := out.String(); got != "NAME  IMAGE  PLATFORM  SIZE  LAST USED\n" {
		t.Errorf("xrun ps on an empty cache printed %q", got)
	}
}

func TestHumanSize(t *testing.T) {
	for n, want := range map[int64]string{0: "0B", 999: "999B", 4096: "4.1kB", 12_000_000: "12MB", 1_500_000_000: "1.5GB"} {
		if got := humanSize(n); got != want {
			t.Errorf("humanSize(%d) = %q, want %q", n, got, want)
		}
	}
}
