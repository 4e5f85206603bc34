package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/xrun-dev/xrun/pkg/pull"
)

func TestSplitArgs(t *testing.T) {
	for _, tc := range []struct {
		args      []string
		wantImage string
		wantCmd   []string
	}{
		{[]string{"alpine"}, "alpine", []string{}},
		{[]string{"alpine", "--", "uname", "-m"}, "alpine", []string{"uname", "-m"}},
		{[]string{"alpine", "uname", "-m"}, "alpine", []string{"uname", "-m"}},
		{[]string{"alpine", "--", "--", "x"}, "alpine", []string{"--", "x"}},
		{[]string{"--", "make"}, "", []string{"make"}},
		{nil, "", nil},
	} {
		image, cmd := splitArgs(tc.args)
		if image != tc.wantImage || !cmp.Equal(cmd, tc.wantCmd) {
			t.Errorf("splitArgs(%q) = %q, %q, want %q, %q", tc.args, image, cmd, tc.wantImage, tc.wantCmd)
		}
	}
}

// TestMainErrors checks that bad input is refused before any work, with exit
// status 125 and one line on stderr that starts with "xrun:".
func TestMainErrors(t *testing.T) {
	t.Setenv("XRUN_CACHE", t.TempDir())
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--platform", "linux/foo", "alpine", "--", "true"}, `unknown platform "linux/foo"`},
		{[]string{"--pull", "sometimes", "alpine"}, `sometimes`},
		{[]string{"-e", "=x", "alpine", "--", "true"}, `invalid -e "=x"`},
		{[]string{"--pull=never", "127.0.0.1:1/none:latest", "--", "true"}, "not in the cache"},
		{[]string{"-t", "alpine", "--", "true"}, "-t needs standard input to be a terminal"},
		{[]string{"run", "--", "true"}, "no image given"},
		{[]string{"--", "make"}, "no image given"},
		{[]string{"Not/A:Valid:Ref", "--", "true"}, "invalid image reference"},
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
}

func TestHelpListsCommands(t *testing.T) {
	var out, errb bytes.Buffer
	if code := Main(context.Background(), []string{"xrun", "--help"}, strings.NewReader(""), &out, &errb); code != 0 {
		t.Fatalf("xrun --help: exit %d, stderr %q", code, errb.String())
	}
	for _, c := range []string{"run", "shell", "pull"} {
		if !strings.Contains(out.String(), "\n   "+c+" ") {
			t.Errorf("xrun --help does not list %q:\n%s", c, out.String())
		}
	}
}

func TestCompletion(t *testing.T) {
	for _, tc := range []struct{ shell, want string }{
		{"bash", "complete -o bashdefault -o default -F _xrun_complete xrun"},
		{"zsh", "compdef _xrun xrun"},
		{"fish", "complete -c xrun"},
	} {
		var out, errb bytes.Buffer
		if code := Main(context.Background(), []string{"xrun", "completion", tc.shell}, strings.NewReader(""), &out, &errb); code != 0 {
			t.Errorf("xrun completion %s: exit %d, stderr %q", tc.shell, code, errb.String())
		}
		if !strings.Contains(out.String(), tc.want) {
			t.Errorf("xrun completion %s does not contain %q", tc.shell, tc.want)
		}
	}
	var out, errb bytes.Buffer
	if code := Main(context.Background(), []string{"xrun", "completion", "tcsh"}, strings.NewReader(""), &out, &errb); code != 125 || !strings.Contains(errb.String(), `unknown shell "tcsh"`) {
		t.Errorf("xrun completion tcsh: exit %d, stderr %q; want 125 and the unknown shell", code, errb.String())
	}
}

func TestManPage(t *testing.T) {
	var out, errb bytes.Buffer
	if code := Main(context.Background(), []string{"xrun", "man"}, strings.NewReader(""), &out, &errb); code != 0 {
		t.Fatalf("xrun man: exit %d, stderr %q", code, errb.String())
	}
	for _, want := range []string{".TH xrun", "--platform", "shell"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("xrun man lacks %q", want)
		}
	}
}

// TestNotCachedWording: pull names what is missing; the CLI says which
// flag led there and what to run, keeping the wrapping and the sentinel.
func TestNotCachedWording(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want string
	}{
		{&pull.NotCachedError{Ref: "alpine", Platform: "linux/arm64"},
			"image alpine for linux/arm64 is not in the cache and --pull=never was given: run `xrun pull --platform linux/arm64 alpine` or use --pull=missing"},
		{fmt.Errorf("emulator image: %w", &pull.NotCachedError{Ref: "alpine", Platform: "linux/arm64", Layer: "2/3 (sha256:ab)"}),
			"emulator image: layer 2/3 (sha256:ab) of alpine is not in the cache and --pull=never was given: run `xrun pull --platform linux/arm64 alpine` or use --pull=missing"},
	} {
		got := cliWording(tc.err)
		if got.Error() != tc.want || !errors.Is(got, pull.ErrNotCached) {
			t.Errorf("cliWording(%q) = %q, want %q matching ErrNotCached", tc.err, got, tc.want)
		}
	}
}
