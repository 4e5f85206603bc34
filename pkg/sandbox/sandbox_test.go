package sandbox

import (
	"os/exec"
	"testing"
)

func TestEscapeOverlay(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"/home/me/.cache/xrun/rootfs/abc", "/home/me/.cache/xrun/rootfs/abc"},
		{"/a,b:c", `/a\,b\:c`},
		{`/a\b`, `/a\\b`},
	} {
		if got := escapeOverlay(tc.in); got != tc.want {
			t.Errorf("escapeOverlay(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestBinfmtFlags(t *testing.T) {
	if got := binfmtFlags(false); got != "FP" {
		t.Errorf("binfmtFlags(false) = %q, want FP", got)
	}
	if got := binfmtFlags(true); got != "FPC" {
		t.Errorf("binfmtFlags(true) = %q, want FPC", got)
	}
}

func TestExitCodeOfSignal(t *testing.T) {
	for _, tc := range []struct {
		script string
		want   int
	}{
		{"exit 0", 0}, {"exit 3", 3}, {"kill -TERM $$", 143}, {"kill -KILL $$", 137},
	} {
		cmd := exec.Command("/bin/sh", "-c", tc.script)
		_ = cmd.Run()
		if got := exitCode(cmd.ProcessState); got != tc.want {
			t.Errorf("exitCode(sh -c %q) = %d, want %d", tc.script, got, tc.want)
		}
	}
}

func TestIsReaper(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want bool
	}{
		{[]string{ReaperPath, "--", "true"}, true},
		{[]string{"/usr/bin/xrun", "--", "true"}, false},
		{[]string{ReaperPath}, false},
	} {
		if got := IsReaper(tc.args); got != tc.want {
			t.Errorf("IsReaper(%q) = %v, want %v", tc.args, got, tc.want)
		}
	}
}
