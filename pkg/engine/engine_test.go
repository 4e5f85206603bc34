package engine

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestMergeEnv(t *testing.T) {
	got := mergeEnv(
		[]string{"PATH=/bin", "HOME=/root"},
		[]string{"PATH=/usr/bin:/bin", "LANG=C"},
		[]string{"HOME=/home/me", "X=1=2"},
	)
	want := []string{"PATH=/usr/bin:/bin", "HOME=/home/me", "LANG=C", "X=1=2"}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("mergeEnv (-want +got):\n%s", d)
	}
}

func TestUnbindable(t *testing.T) {
	for _, tc := range []struct {
		dir  string
		want bool
	}{
		{"/", true}, {"/usr", true}, {"/usr/lib", true}, {"/etc", true}, {"/etc/apt", true},
		{"/var", true}, {"/var/lib", true}, {"/var/tmp", true}, {"/proc/self", true}, {"/dev/shm/x", true},
		{"/home/me/project", false}, {"/tmp/build", false}, {"/usrlocal", false}, {"/srv/x", false},
		{"/var/tmp/build", false}, {"/var/lib/jenkins/workspace/x", false}, {"/usr/src/project", false},
	} {
		if got := unbindable(tc.dir) != ""; got != tc.want {
			t.Errorf("unbindable(%q) = %v, want %v", tc.dir, got, tc.want)
		}
	}
}

func TestShell(t *testing.T) {
	root := t.TempDir()
	if got := shell(root, []string{"/bin/zsh", "-l"}); !cmp.Equal(got, []string{"/bin/zsh", "-l"}) {
		t.Errorf("shell with image SHELL = %q", got)
	}
	if got := shell(root, nil); !cmp.Equal(got, []string{"/bin/sh"}) {
		t.Errorf("shell without bash = %q, want /bin/sh", got)
	}
	// usrmerge layout: /bin -> usr/bin, bash only in /usr/bin.
	if err := os.MkdirAll(filepath.Join(root, "usr/bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("usr/bin", filepath.Join(root, "bin")); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "usr/bin/bash"), nil, 0o755); err != nil {
		t.Fatal(err)
	}
	if got := shell(root, nil); !cmp.Equal(got, []string{"/bin/bash"}) {
		t.Errorf("shell with bash = %q, want /bin/bash", got)
	}
}

func TestCommand(t *testing.T) {
	s := func(v string) *string { return &v }
	ep, cmd := []string{"/entry", "-x"}, []string{"default"}
	for _, tc := range []struct {
		name   string
		ep     *string
		args   []string
		want   []string
		imgEP  []string
		imgCmd []string
	}{
		{"image defaults", nil, nil, []string{"/entry", "-x", "default"}, ep, cmd},
		{"args replace cmd", nil, []string{"a"}, []string{"/entry", "-x", "a"}, ep, cmd},
		{"no entrypoint", nil, nil, []string{"default"}, nil, cmd},
		{"--entrypoint drops cmd", s("/bin/sh"), nil, []string{"/bin/sh"}, ep, cmd},
		{"--entrypoint with args", s("/bin/sh"), []string{"-c", "x"}, []string{"/bin/sh", "-c", "x"}, ep, cmd},
		{"--entrypoint ''", s(""), []string{"ls"}, []string{"ls"}, ep, cmd},
		{"--entrypoint '' alone", s(""), nil, []string{}, ep, cmd},
	} {
		if got := command(tc.imgEP, tc.imgCmd, tc.ep, tc.args); !cmp.Equal(got, tc.want) {
			t.Errorf("%s: command = %q, want %q", tc.name, got, tc.want)
		}
	}
}

func TestOptionsCheck(t *testing.T) {
	for _, tc := range []struct {
		name    string
		o       Options
		wantErr string // substring; "" = valid
	}{
		{"empty", Options{}, ""},
		{"platform", Options{Platform: "linux/arm64"}, ""},
		{"bad platform", Options{Platform: "linux/nope/x/y"}, "nope"},
		{"user", Options{User: "1000:1000"}, ""},
		{"bad name", Options{Name: "a/b"}, "a/b"},
		{"tty without a terminal", Options{TTY: true, Stdin: strings.NewReader("")}, "-t needs standard input to be a terminal"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.o.Check()
			if (err == nil) != (tc.wantErr == "") || err != nil && !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("Check() = %v, want error containing %q", err, tc.wantErr)
			}
			if err == nil {
				p, err := tc.o.targetPlatform()
				if err != nil {
					t.Fatal(err)
				}
				if tc.o.Platform != "" && (tc.o.platform == nil || p.Architecture != tc.o.platform.Architecture) {
					t.Errorf("Check did not keep the parsed platform: %+v", tc.o.platform)
				}
			}
		})
	}
}
