package sandbox

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/opencontainers/runc/libcontainer/configs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
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

// reaper runs the C reaper of this test binary (its constructor takes over
// when argv[0] is ReaperPath) with args, and returns its output and status.
func reaper(t *testing.T, args []string, during func(*exec.Cmd)) (string, int) {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe)
	cmd.Args = args
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	if during != nil {
		during(cmd)
	}
	_ = cmd.Wait()
	return out.String(), exitCode(cmd.ProcessState)
}

func TestReaper(t *testing.T) {
	for _, tc := range []struct {
		name    string
		args    []string
		signal  syscall.Signal
		want    int
		wantOut string
	}{
		{"exit code", []string{ReaperPath, "--", "sh", "-c", "echo hi; exit 3"}, 0, 3, "hi\n"},
		{"not found", []string{ReaperPath, "--", "no-such-command-xrun"}, 0, 127, "xrun: no-such-command-xrun: command not found in the image: check the name and the image's PATH\n"},
		{"not executable", []string{ReaperPath, "--", os.TempDir()}, 0, 126, "xrun: " + os.TempDir() + ": cannot execute: Permission denied\n"},
		{"SIGTERM forwarded", []string{ReaperPath, "--", "sleep", "30"}, syscall.SIGTERM, 143, ""},
		{"SIGINT forwarded", []string{ReaperPath, "--", "sleep", "30"}, syscall.SIGINT, 130, ""},
		{"bad credentials", []string{ReaperPath, "-u", "x:1", "--", "true"}, 0, 125, "xrun: [internal error] bad init arguments\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var during func(*exec.Cmd)
			if tc.signal != 0 {
				during = func(c *exec.Cmd) {
					time.Sleep(200 * time.Millisecond)
					_ = c.Process.Signal(tc.signal)
				}
			}
			out, code := reaper(t, tc.args, during)
			if code != tc.want || out != tc.wantOut {
				t.Errorf("reaper %q = %d, %q; want %d, %q", tc.args, code, out, tc.want, tc.wantOut)
			}
		})
	}
}

func TestReaperUser(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("switching users needs root (CI runs this test as root)")
	}
	out, code := reaper(t, []string{ReaperPath, "-u", "65534:65533:4,5", "--", "sh", "-c", "id -u; id -g; id -G"}, nil)
	if want := "65534\n65533\n65533 4 5\n"; code != 0 || out != want {
		t.Errorf("reaper -u 65534:65533:4,5 id = %d, %q; want 0, %q", code, out, want)
	}
}

func TestReaperArgs(t *testing.T) {
	for _, tc := range []struct {
		u    *User
		want string
	}{
		{nil, ReaperPath + " -- id"},
		{&User{}, ReaperPath + " -- id"},
		{&User{UID: 1000, GID: 100}, ReaperPath + " -u 1000:100 -- id"},
		{&User{UID: 1000, GID: 100, AdditionalGIDs: []uint32{5, 6}}, ReaperPath + " -u 1000:100:5,6 -- id"},
	} {
		args := reaperArgs(tc.u, []string{"id"})
		if got := strings.Join(args, " "); got != tc.want {
			t.Errorf("reaperArgs(%+v) = %q, want %q", tc.u, got, tc.want)
		}
	}
}

func TestConfigOptions(t *testing.T) {
	ids := []specs.LinuxIDMapping{{ContainerID: 0, HostID: uint32(os.Geteuid()), Size: 1}}
	opts := Options{Network: NetworkNone, ReadOnly: true, Hostname: "box",
		Tmpfs: []Tmpfs{{Destination: "/run", Options: []string{"size=1m", "mode=755"}}, {Destination: "/tmp"}},
		Binds: []Bind{{Source: "/src", Destination: "/dst", ReadOnly: true}}}
	cfg, err := config(t.TempDir(), "/xrun", false, ids, ids, opts)
	if err != nil {
		t.Fatal(err)
	}
	if !cfg.Namespaces.Contains(configs.NEWNET) || len(cfg.Networks) != 1 || cfg.Networks[0].Type != "loopback" {
		t.Errorf("--network none: namespaces %v, networks %+v", cfg.Namespaces, cfg.Networks)
	}
	if !cfg.Readonlyfs || cfg.Hostname != "box" {
		t.Errorf("Readonlyfs %v, Hostname %q", cfg.Readonlyfs, cfg.Hostname)
	}
	found := map[string]string{}
	for _, m := range cfg.Mounts {
		if m.Device == "tmpfs" && (m.Destination == "/run" || m.Destination == "/tmp") {
			found[m.Destination] = m.Data
		}
	}
	if found["/run"] != "size=1m,mode=755" || found["/tmp"] != "mode=1777" {
		t.Errorf("tmpfs mount data = %q", found)
	}

	opts.Network = ""
	if err := opts.fill(); err == nil {
		t.Error("fill without Args or Lower: no error")
	}
	cfg, err = config(t.TempDir(), "/xrun", false, ids, ids, Options{Network: NetworkHost})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Namespaces.Contains(configs.NEWNET) {
		t.Error("host network: a network namespace is created")
	}
}

// TestStartError: only libcontainer's words about the process it starts
// make a start failure "command not found" (127) or "cannot execute"
// (126); a set-up failure that mentions a missing file stays xrun's own.
func TestStartError(t *testing.T) {
	const pre = "unable to start container process: error during container init: "
	for _, tc := range []struct {
		msg  string
		name string
		code int // 0: not a CommandError
	}{
		{pre + `exec: "nope": executable file not found in $PATH`, "nope", 127},
		{pre + `exec: "/bin/nope": stat /bin/nope: no such file or directory`, "/bin/nope", 127},
		{pre + `exec: "/etc/passwd": permission denied`, "/etc/passwd", 126},
		{pre + `exec /bin/x: exec format error`, "/bin/x", 126},
		// A -v source gone between the check and the mount.
		{pre + `error mounting "/home/u/gone" to rootfs at "/data": mount src=/home/u/gone, dst=/data: no such file or directory`, "nope", 0},
		{pre + `chdir to cwd ("/work") set in config.json failed: no such file or directory`, "ls", 0},
		{pre + `exec: "other": executable file not found in $PATH`, ReaperPath, 0},
	} {
		err := startError(errors.New(tc.msg), tc.name, "cmd")
		var ce *CommandError
		code := 0
		if errors.As(err, &ce) {
			code = ce.Code
		}
		if code != tc.code {
			t.Errorf("startError(%q, %q) = %v (code %d), want code %d", tc.msg, tc.name, err, code, tc.code)
		}
		if code == 0 && !strings.HasPrefix(err.Error(), "start container: ") {
			t.Errorf("startError(%q) = %q, want the set-up failure", tc.msg, err)
		}
	}
	var ce *CommandError
	if err := startError(exec.ErrNotFound, "x", "x"); !errors.As(err, &ce) || ce.Code != 127 {
		t.Errorf("startError(exec.ErrNotFound) = %v", err)
	}
}

func TestExitStatus(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want int
	}{
		{nil, 0},
		{&ExitError{Code: 3}, 3},
		{fmt.Errorf("wrapped: %w", &ExitError{Code: 143}), 143},
		{&CommandError{Code: 127, Err: errors.New("nope")}, 127},
		{&CommandError{Code: 126, Err: errors.New("nope")}, 126},
		{errors.New("pull failed"), 125},
	} {
		if got := ExitStatus(tc.err); got != tc.want {
			t.Errorf("ExitStatus(%v) = %d, want %d", tc.err, got, tc.want)
		}
	}
}
