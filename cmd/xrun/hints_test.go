package main

import (
	"errors"
	"fmt"
	"io/fs"
	"strings"
	"syscall"
	"testing"
	"testing/fstest"

	"github.com/xrun-dev/xrun/pkg/doctor"
)

func TestHint(t *testing.T) {
	t.Setenv("XRUN_CACHE", "/cache")
	pe := func(op, path string, errno syscall.Errno) error { return &fs.PathError{Op: op, Path: path, Err: errno} }
	for _, tc := range []struct {
		err  error
		want string // "" = no hint
	}{
		{fmt.Errorf("fetch layer 1/2 x of y: %w", pe("write", "/cache/blobs/tmp/blob-1", syscall.ENOSPC)), "the cache at /cache is full: free space there or set XRUN_CACHE"},
		{fmt.Errorf("unpack rootfs k: layer l: entry \"a\": %w", pe("write", "bin/busybox", syscall.ENOSPC)), "the cache at /cache is full"},
		{fmt.Errorf("x: %w", pe("write", "/cache/rootfs/x", syscall.EDQUOT)), "the cache at /cache is full"},
		{fmt.Errorf("x: %w", pe("mkdir", "/run/user/1/xrun/c", syscall.ENOSPC)), "the filesystem of /run/user/1/xrun/c is full"},
		{fmt.Errorf("x: %w", pe("open", "/cache/locks/a.lock", syscall.EROFS)), "read-only filesystem: set XRUN_CACHE"},
		{fmt.Errorf("x: %w", pe("open", "/cache/locks/a.lock", syscall.EACCES)), "xrun cannot write its cache at /cache: check who owns it"},
		{fmt.Errorf("x: %w", pe("open", "/home/u/proj/f", syscall.EACCES)), ""},
		{errors.New(`image "x" not found: check the name and tag`), ""},
		{fmt.Errorf("fetch: %w: set XRUN_CACHE somewhere", pe("write", "/cache/x", syscall.ENOSPC)), ""},
		{nil, ""},
	} {
		got := hint(tc.err)
		if tc.want == "" && got != "" || tc.want != "" && !strings.Contains(got, tc.want) {
			t.Errorf("hint(%v) = %q, want %q", tc.err, got, tc.want)
		}
	}
}

// TestUserNSErrorLine: a run that fails to create or set up its user
// namespace prints one line, "what failed: cause: fix", for each cause of
// the doctor's table (the machine is faked), and the generic advice to run
// xrun doctor when no cause is found.
func TestUserNSErrorLine(t *testing.T) {
	defer func(s doctor.System) { userNSSystem = s }(userNSSystem)
	unshare := func(errno string) error {
		return errors.New("start container: unable to start container process: can't get final child's PID from pipe: EOF; runc init error(s): nsexec-1[10210]: failed to unshare user namespace: " + errno + "; nsexec-0[10209]: failed to sync with stage-1: next state (got 0 of 4 bytes)")
	}
	uidMap := errors.New("start container: unable to start container process: runc init error(s): nsexec-0[52]: failed to update /proc/53/uid_map: Operation not permitted")
	proc := errors.New(`start container: unable to start container process: error during container init: error mounting "proc" to rootfs at "/proc": mount src=proc, dst=/proc, flags=MS_NOSUID|MS_NODEV|MS_NOEXEC: operation not permitted`)
	masked := "21 26 0:20 / /proc rw - proc proc rw\n30 21 0:5 /null /proc/kcore rw - devtmpfs udev rw\n"
	for _, tc := range []struct {
		files map[string]string
		err   error
		want  string
	}{
		{map[string]string{"proc/sys/user/max_user_namespaces": "0"}, unshare("No space left on device"),
			"start container: cannot create a user namespace (no space left on device): user.max_user_namespaces is 0, which allows no user namespace: run sudo sysctl user.max_user_namespaces=15000"},
		{map[string]string{"proc/sys/kernel/unprivileged_userns_clone": "0"}, unshare("Operation not permitted"),
			"start container: cannot create a user namespace (operation not permitted): kernel.unprivileged_userns_clone is 0 (Debian's switch), which forbids unprivileged user namespaces: run sudo sysctl kernel.unprivileged_userns_clone=1"},
		{map[string]string{"proc/sys/kernel/apparmor_restrict_unprivileged_userns": "1", "proc/self/attr/apparmor/current": "unconfined"}, uidMap,
			"start container: cannot map ids into a user namespace (operation not permitted): AppArmor gives unconfined programs no capabilities in a user namespace (kernel.apparmor_restrict_unprivileged_userns=1, as on Ubuntu 23.10+, 24.04 and GitHub's ubuntu-24.04 runners): run xrun doctor for an AppArmor profile that allows xrun, or run sudo sysctl kernel.apparmor_restrict_unprivileged_userns=0"},
		{map[string]string{".dockerenv": "", "proc/self/status": "Seccomp:\t2\n"}, unshare("Operation not permitted"),
			"start container: cannot create a user namespace (operation not permitted): xrun runs in a docker container (/.dockerenv exists) whose seccomp profile refuses unshare: start the container with docker run --security-opt seccomp=unconfined --security-opt systempaths=unconfined (and --security-opt apparmor=unconfined on AppArmor hosts)"},
		{map[string]string{"run/.containerenv": "", "proc/self/mountinfo": masked}, proc,
			"start container: cannot mount /proc in the container (operation not permitted): xrun runs in a podman container (/run/.containerenv exists) whose /proc is partly masked (/proc/kcore is hidden), so the kernel refuses a fresh /proc: start the container with podman run --security-opt unmask=/proc/*"},
		{nil, unshare("Operation not permitted"),
			"start container: cannot create a user namespace (operation not permitted): this system does not let unprivileged users create user namespaces: run xrun doctor, which says which setting to change and how"},
	} {
		fsys := fstest.MapFS{}
		for name, data := range tc.files {
			fsys[name] = &fstest.MapFile{Data: []byte(data)}
		}
		userNSSystem = doctor.System{FS: fsys, Getenv: func(string) string { return "" }, Geteuid: func() int { return 1000 }, Exe: "/usr/local/bin/xrun"}
		if got := message(tc.err); got != tc.want {
			t.Errorf("message(%v) =\n  %q\nwant\n  %q", tc.err, got, tc.want)
		}
	}
}
