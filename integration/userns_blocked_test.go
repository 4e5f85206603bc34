//go:build integration

package integration

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"github.com/xrun-dev/xrun/internal/testutil"
	"golang.org/x/sys/unix"
)

// Real reproductions of the causes of the user-namespace table
// (pkg/doctor/userns.go) that this machine can produce without changing
// anything others see: user.max_user_namespaces=0, a seccomp filter that
// refuses unshare as docker's default profile does, and a masked /proc.
// The others (AppArmor, Debian's sysctl, Kubernetes, podman) are simulated
// in the unit tests of pkg/doctor and cmd/xrun.

// seccompHelperEnv makes the test binary, started with it, install
// dockerSeccompFilter and exec its arguments (see init).
const seccompHelperEnv = "XRUN_TEST_SECCOMP_EXEC"

func init() {
	mode := os.Getenv(seccompHelperEnv)
	if mode == "" || len(os.Args) < 2 {
		return
	}
	if err := installSeccomp(mode == "mount-eacces"); err != nil {
		fmt.Fprintf(os.Stderr, "seccomp helper: %v\n", err)
		os.Exit(99)
	}
	env := []string{}
	for _, e := range os.Environ() {
		if !strings.HasPrefix(e, seccompHelperEnv+"=") {
			env = append(env, e)
		}
	}
	err := syscall.Exec(os.Args[1], os.Args[1:], env)
	fmt.Fprintf(os.Stderr, "seccomp helper: exec %s: %v\n", os.Args[1], err)
	os.Exit(99)
}

// installSeccomp installs, on every thread, a filter that does to user
// namespaces what docker's default profile does to a process without
// CAP_SYS_ADMIN: unshare and clone with namespace flags fail with EPERM,
// clone3 with ENOSYS (so that libc falls back to clone), mount with EPERM.
// Everything else is allowed. With mountOnly, only mount fails, with
// EACCES, as under Ubuntu's AppArmor restriction. amd64 only.
func installSeccomp(mountOnly bool) error {
	const (
		nsFlags = unix.CLONE_NEWNS | unix.CLONE_NEWUTS | unix.CLONE_NEWIPC | unix.CLONE_NEWUSER |
			unix.CLONE_NEWPID | unix.CLONE_NEWNET | unix.CLONE_NEWCGROUP
		ld    = unix.BPF_LD | unix.BPF_W | unix.BPF_ABS
		jeq   = unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K
		jset  = unix.BPF_JMP | unix.BPF_JSET | unix.BPF_K
		ret   = unix.BPF_RET | unix.BPF_K
		allow = unix.SECCOMP_RET_ALLOW
		eperm = unix.SECCOMP_RET_ERRNO | uint32(unix.EPERM)
	)
	filter := []unix.SockFilter{
		{Code: ld, K: 4}, // seccomp_data.arch
		{Code: jeq, K: unix.AUDIT_ARCH_X86_64, Jt: 1},
		{Code: ret, K: allow},
		{Code: ld, K: 0}, // seccomp_data.nr
		{Code: jeq, K: unix.SYS_UNSHARE, Jf: 1},
		{Code: ret, K: eperm},
		{Code: jeq, K: unix.SYS_MOUNT, Jf: 1},
		{Code: ret, K: eperm},
		{Code: jeq, K: unix.SYS_CLONE3, Jf: 1},
		{Code: ret, K: unix.SECCOMP_RET_ERRNO | uint32(unix.ENOSYS)},
		{Code: jeq, K: unix.SYS_CLONE, Jf: 3},
		{Code: ld, K: 16}, // low half of seccomp_data.args[0]: clone's flags
		{Code: jset, K: nsFlags, Jf: 1},
		{Code: ret, K: eperm},
		{Code: ret, K: allow},
	}
	if mountOnly {
		filter = []unix.SockFilter{
			{Code: ld, K: 4},
			{Code: jeq, K: unix.AUDIT_ARCH_X86_64, Jt: 1},
			{Code: ret, K: allow},
			{Code: ld, K: 0},
			{Code: jeq, K: unix.SYS_MOUNT, Jf: 1},
			{Code: ret, K: unix.SECCOMP_RET_ERRNO | uint32(unix.EACCES)},
			{Code: ret, K: allow},
		}
	}
	prog := unix.SockFprog{Len: uint16(len(filter)), Filter: &filter[0]}
	// As root (CAP_SYS_ADMIN), no_new_privs is not needed, so the setuid
	// newuidmap still works under the filter, as in a container.
	_, _, errno := unix.Syscall(unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER,
		unix.SECCOMP_FILTER_FLAG_TSYNC, uintptr(unsafe.Pointer(&prog)))
	if errno != 0 {
		return fmt.Errorf("seccomp: %v", errno)
	}
	return nil
}

// runBlocked runs xrun with args as o.user the way harness's run does,
// but through wrap: a function that turns the user's command (setpriv ...
// xrun ...) into the one to run.
func runBlocked(t *testing.T, o opts, wrap func(*exec.Cmd) *exec.Cmd, what string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	needXrun(t)
	if os.Geteuid() != 0 {
		testutil.SkipOrFail(t, "%s is set up by root; running as uid %d", what, os.Geteuid())
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	inner := userCommand(ctx, o.user, o.user.home, o.env, append([]string{h.xrun}, args...)...)
	cmd := wrap(inner)
	if cmd.Env == nil {
		cmd.Env = inner.Env
	}
	cmd.Dir, cmd.WaitDelay = inner.Dir, 10*time.Second
	var outB, errB bytes.Buffer
	cmd.Stdout, cmd.Stderr = &outB, &errB
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Errorf("xrun %s timed out", strings.Join(args, " "))
	}
	code = exitCode(t, err)
	t.Logf("as %s with %s: xrun %s -> %d%s", o.user, what, strings.Join(args, " "), code, logOutput(outB.String(), errB.String()))
	return outB.String(), errB.String(), code
}

// inLimitedUserNS runs the command inside a user namespace of its own,
// created by this root test process with every id mapped to itself, in
// which user.max_user_namespaces is 0. The limit is per user namespace and
// applies to every namespace below it, so the kernel refuses xrun's user
// namespaces exactly as after `sysctl user.max_user_namespaces=0` on the
// host, while the host's value (and every other test running on this
// machine) is untouched: nothing to restore.
func inLimitedUserNS(inner *exec.Cmd) *exec.Cmd {
	argv := append([]string{"-c", `echo 0 > /proc/sys/user/max_user_namespaces && exec "$@"`, "sh"}, inner.Args...)
	cmd := exec.Command("/bin/sh", argv...)
	const all = 1 << 31
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags:                 syscall.CLONE_NEWUSER,
		UidMappings:                []syscall.SysProcIDMap{{ContainerID: 0, HostID: 0, Size: all}},
		GidMappings:                []syscall.SysProcIDMap{{ContainerID: 0, HostID: 0, Size: all}},
		GidMappingsEnableSetgroups: true,
	}
	return cmd
}

// underSeccomp runs the command under installDockerLikeSeccomp, through
// this test binary (see init).
// mode is "docker" or "mount-eacces" (see installSeccomp).
func underSeccomp(mode string) func(*exec.Cmd) *exec.Cmd {
	return func(inner *exec.Cmd) *exec.Cmd {
		self, _ := os.Executable()
		cmd := exec.Command(self, inner.Args...)
		cmd.Env = append(append([]string{}, inner.Env...), seccompHelperEnv+"="+mode)
		return cmd
	}
}

func runSeccomp(t *testing.T, u *testUser, env []string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	return runBlocked(t, opts{user: u, env: env}, underSeccomp("docker"), "a docker-like seccomp filter", args...)
}

// pulled returns the env of a fresh cache that holds the arm64 busybox
// image, pulled and unpacked, so that a run's first step in a user
// namespace is its container.
func pulled(t *testing.T, u *testUser, p testPlatform) []string {
	t.Helper()
	cache, _ := freshCache(t, u)
	if _, stderr, code := run(t, opts{user: u, env: []string{cache}}, "--platform", p.Name, h.reg.ref(busyboxRepo), "--", "true"); code != 0 {
		t.Fatalf("first run: exit %d: %s", code, stderr)
	}
	return []string{cache}
}

// TestUserNSBlockedMaxZero: with user.max_user_namespaces=0, a run fails
// with one line naming the sysctl and its fix, and doctor fails its user
// namespace check with the fix.
func TestUserNSBlockedMaxZero(t *testing.T) {
	p := platformByName("linux/arm64")
	u := needRun(t, subUserName, p)
	env := pulled(t, u, p)
	const what = "user.max_user_namespaces=0 in its own user namespace"
	_, stderr, code := runBlocked(t, opts{user: u, env: env}, inLimitedUserNS, what,
		"--platform", p.Name, h.reg.ref(busyboxRepo), "--", "true")
	wantXrunError(t, stderr, code, "xrun: start container: cannot create a user namespace (no space left on device): "+
		"user.max_user_namespaces is 0, which allows no user namespace: run sudo sysctl user.max_user_namespaces=15000")
	out, _, code := runBlocked(t, opts{user: u, env: env}, inLimitedUserNS, what, "doctor", "--platform", p.Name)
	if code != 1 ||
		!strings.Contains(out, "FAIL  user namespaces: cannot create a user namespace: ") ||
		!strings.Contains(out, "user.max_user_namespaces is 0, which allows no user namespace\n"+
			"      fix: sudo sysctl user.max_user_namespaces=15000 (to keep it after a reboot: echo user.max_user_namespaces=15000 | sudo tee /etc/sysctl.d/50-xrun.conf)\n") {
		t.Errorf("doctor exit %d, want 1 and the fix:\n%s", code, out)
	}
	if b, err := os.ReadFile("/proc/sys/user/max_user_namespaces"); err != nil || strings.TrimSpace(string(b)) == "0" {
		t.Errorf("the host's user.max_user_namespaces changed: %q, %v", b, err)
	}
}

// TestUserNSBlockedSeccomp: under a seccomp filter like docker's default
// profile, a run fails with one line saying that seccomp refuses unshare
// and what to do: the docker (or podman) flags when this machine looks
// like such a container, else to leave or change the filter.
func TestUserNSBlockedSeccomp(t *testing.T) {
	if runtime.GOARCH != "amd64" {
		t.Skip("the test's seccomp filter is written for amd64")
	}
	p := platformByName("linux/arm64")
	u := needRun(t, subUserName, p)
	env := pulled(t, u, p)
	var fix string
	switch {
	case exists("/.dockerenv"):
		fix = "xrun runs in a docker container (/.dockerenv exists) whose seccomp profile refuses unshare: " +
			"start the container with docker run --security-opt seccomp=unconfined --security-opt systempaths=unconfined"
	case exists("/run/.containerenv"):
		fix = "whose seccomp profile refuses unshare: start the container with podman run --security-opt seccomp=unconfined --security-opt unmask=/proc/*"
	default:
		fix = "a seccomp filter on xrun (Seccomp: 2 in /proc/self/status) refuses unshare: run xrun outside the sandbox"
	}
	_, stderr, code := runSeccomp(t, u, env, "--platform", p.Name, h.reg.ref(busyboxRepo), "--", "true")
	wantXrunError(t, stderr, code, "xrun: start container: cannot create a user namespace (operation not permitted): ", fix)
	out, _, code := runSeccomp(t, u, env, "doctor", "--platform", p.Name)
	if code != 1 || !strings.Contains(out, "FAIL  user namespaces: cannot create a user namespace: ") ||
		!strings.Contains(out, "refuses unshare") {
		t.Errorf("doctor exit %d, want 1 and the cause:\n%s", code, out)
	}
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// inMaskedProc runs the command in a mount namespace of its own in which
// root has bound /dev/null over a file of /proc, as docker and podman
// (and Kubernetes' default procMount) do. The kernel then refuses a fresh
// procfs in a user namespace below it: a real masked /proc. Nothing is
// mounted on the host.
func inMaskedProc(path string) func(*exec.Cmd) *exec.Cmd {
	return func(inner *exec.Cmd) *exec.Cmd {
		argv := append([]string{"--mount", "--propagation", "private", "/bin/sh", "-c",
			`mount --bind /dev/null "$0" && exec "$@"`, path}, inner.Args...)
		return exec.Command("unshare", argv...)
	}
}

// TestUserNSBlockedMaskedProc: with part of /proc masked, a run fails with
// one line saying so and naming the flags that unmask it, and doctor's
// probe (which mounts a fresh /proc as every run does) fails with them.
func TestUserNSBlockedMaskedProc(t *testing.T) {
	p := platformByName("linux/arm64")
	u := needRun(t, subUserName, p)
	if _, err := exec.LookPath("unshare"); err != nil {
		testutil.SkipOrFail(t, "unshare (util-linux): %v", err)
	}
	masked := ""
	for _, f := range []string{"/proc/kcore", "/proc/keys", "/proc/timer_list"} {
		if exists(f) {
			masked = f
			break
		}
	}
	if masked == "" {
		testutil.SkipOrFail(t, "none of the /proc files container runtimes mask exists here")
	}
	env := pulled(t, u, p)
	what := masked + " masked"
	var cause, fix string
	switch {
	case exists("/.dockerenv"):
		cause = "xrun runs in a docker container (/.dockerenv exists) whose /proc is partly masked (" + masked + " is hidden), so the kernel refuses a fresh /proc"
		fix = ": start the container with docker run --security-opt seccomp=unconfined --security-opt systempaths=unconfined"
	case exists("/run/.containerenv"):
		cause = "xrun runs in a podman container (/run/.containerenv exists) whose /proc is partly masked (" + masked + " is hidden)"
		fix = ": start the container with podman run --security-opt unmask=/proc/*"
	default:
		cause = "xrun runs in a container (" + masked + " is masked) whose /proc is partly masked (" + masked + " is hidden)"
		fix = ": start the container with seccomp unconfined and /proc unmasked: docker run --security-opt seccomp=unconfined --security-opt systempaths=unconfined"
	}
	_, stderr, code := runBlocked(t, opts{user: u, env: env}, inMaskedProc(masked), what,
		"--platform", p.Name, h.reg.ref(busyboxRepo), "--", "true")
	wantXrunError(t, stderr, code, "xrun: start container: cannot mount /proc in the container (operation not permitted): "+cause, fix)
	out, _, code := runBlocked(t, opts{user: u, env: env}, inMaskedProc(masked), what, "doctor", "--platform", p.Name)
	if code != 1 || !strings.Contains(out, "FAIL  user namespaces: created a user namespace but cannot mount a fresh /proc in it (a run needs one): mount proc: operation not permitted") ||
		!strings.Contains(out, cause) || !strings.Contains(out, "      fix: start the container with seccomp unconfined and /proc unmasked:\n") ||
		!strings.Contains(out, "podman run --security-opt seccomp=unconfined --security-opt unmask=/proc/*\n") ||
		!strings.Contains(out, "procMount: Unmasked") {
		t.Errorf("doctor exit %d, want 1, the cause and the flags:\n%s", code, out)
	}
}

// TestUserNSBlockedMountEACCES: mount failing with EACCES in the user
// namespace (as under Ubuntu's AppArmor restriction; here a seccomp filter
// does it) is xrun's failure to set up the container (exit 125, one line
// naming the cause), not the command's "cannot execute" (126).
func TestUserNSBlockedMountEACCES(t *testing.T) {
	if runtime.GOARCH != "amd64" {
		t.Skip("the test's seccomp filter is written for amd64")
	}
	p := platformByName("linux/arm64")
	u := needRun(t, subUserName, p)
	env := pulled(t, u, p)
	var cause string
	switch {
	case exists("/.dockerenv"):
		cause = "xrun runs in a docker container (/.dockerenv exists) whose seccomp or AppArmor profile refuses mount: " +
			"start the container with docker run --security-opt seccomp=unconfined"
	case exists("/run/.containerenv"):
		cause = "whose seccomp or AppArmor profile refuses mount: start the container with podman run"
	default:
		cause = "a seccomp filter on xrun (Seccomp: 2 in /proc/self/status) refuses mount: run xrun outside the sandbox"
	}
	_, stderr, code := runBlocked(t, opts{user: u, env: env}, underSeccomp("mount-eacces"), "mount failing with EACCES",
		"--platform", p.Name, h.reg.ref(busyboxRepo), "--", "true")
	wantXrunError(t, stderr, code, "xrun: prepare container: cannot mount in a user namespace (permission denied): ", cause)
}
