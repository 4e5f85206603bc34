//go:build integration

// Package integration tests the built xrun binary end to end: it starts
// Debian's registry server on 127.0.0.1, pushes multi-platform test images
// built from Debian's busybox-static packages, and runs xrun as an
// unprivileged user (dropping from root with setpriv when the tests run as
// root, as CI does).
//
// Prerequisites come from hack/setup.sh. A missing prerequisite skips the
// tests that need it with the reason; XRUN_TEST_MUST_WORK=1 (set by .ci/run)
// turns those skips into failures.
//
// Environment (public):
//
//	XRUN_BIN              xrun binary to test (default ../bin/xrun, from `make build`)
//	XRUN_REGISTRY_BIN     registry server (default /usr/bin/docker-registry)
//	XRUN_TEST_MUST_WORK=1 fail instead of skipping when a prerequisite is missing
//	XRUN_TEST_KEEP=1      keep the temp dir (/tmp/xrun-it-*) for debugging
package integration

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/xrun-dev/xrun/integration/testimage"
	"github.com/xrun-dev/xrun/internal/testutil"
)

// Names of the users hack/setup.sh creates.
const (
	subUserName   = "xruntest"  // has xruntest:200000:65536 in /etc/subuid and /etc/subgid
	noSubUserName = "xrunnosub" // has no subordinate ids
)

// testUser is an account xrun runs as.
type testUser struct {
	name     string
	uid, gid int
	subIDs   bool // has a subordinate uid and gid range
	subStart int  // first subordinate uid (when subIDs)
	subCount int
	self     bool   // the test process itself (not root): run without setpriv
	home     string // HOME for xrun, owned by the user
	cache    string // XRUN_CACHE, owned by the user
	err      error  // why this user cannot run xrun (nil when it can)
}

func (u *testUser) String() string { return u.name }

// harness is the state TestMain prepares. Each field with an error beside it
// is usable only when that error is nil; tests check them with the need*
// helpers, which skip (or fail under XRUN_TEST_MUST_WORK=1) with the reason.
type harness struct {
	base string // /tmp/xrun-it-*, 0755, removed at the end

	xrun    string // copy of the xrun binary under base, executable by everyone
	xrunErr error

	setpriv string // path of setpriv when running as root

	users    map[string]*testUser // subUserName / noSubUserName
	usersErr error

	reg    *registry
	regErr error

	images    *testimage.Images
	imagesErr error
}

var h harness

func TestMain(m *testing.M) {
	os.Exit(testMain(m))
}

func testMain(m *testing.M) int {
	base, err := os.MkdirTemp("/tmp", "xrun-it-")
	if err == nil {
		err = os.Chmod(base, 0o755)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "integration: temp dir: %v\n", err)
		return 1
	}
	h.base = base
	defer func() {
		if os.Getenv("XRUN_TEST_KEEP") == "1" {
			fmt.Fprintf(os.Stderr, "integration: keeping %s\n", base)
			return
		}
		removeAll(base)
	}()

	h.xrun, h.xrunErr = installXrun(base)
	h.users, h.usersErr = setupUsers(base)
	if h.usersErr == nil && os.Geteuid() == 0 {
		h.setpriv, h.usersErr = exec.LookPath("setpriv")
		if h.usersErr != nil {
			h.usersErr = fmt.Errorf("setpriv (util-linux) is needed to drop from root: %w", h.usersErr)
		}
	}
	if h.usersErr == nil {
		for _, u := range h.users {
			if u.err == nil {
				u.err = probeUserNS(u)
			}
		}
	}

	h.reg, h.regErr = startRegistry(filepath.Join(base, "registry"))
	if h.regErr == nil {
		defer h.reg.Stop()
	}

	h.images, h.imagesErr = testimage.Build(filepath.Join("testdata", "debs"), filepath.Join(base, "images"))
	if h.imagesErr == nil && h.regErr == nil {
		h.imagesErr = h.images.Push(h.reg.addr)
	}
	if testutil.MustWork() {
		// Say early why the run is going to fail, once.
		for what, err := range map[string]error{
			"xrun": h.xrunErr, "users": h.usersErr, "registry": h.regErr, "images": h.imagesErr,
		} {
			if err != nil {
				fmt.Fprintf(os.Stderr, "integration: %s: %v\n", what, err)
			}
		}
	}
	return m.Run()
}

// needXrun and the other need* helpers skip the test with the reason, or
// fail it when XRUN_TEST_MUST_WORK=1 (CI must not pass by skipping).
func needXrun(t testing.TB) {
	t.Helper()
	if h.xrunErr != nil {
		testutil.SkipOrFail(t, "%v", h.xrunErr)
	}
}

func needRegistry(t testing.TB) {
	t.Helper()
	if h.regErr != nil {
		testutil.SkipOrFail(t, "registry: %v", h.regErr)
	}
}

func needImages(t testing.TB) {
	t.Helper()
	needRegistry(t)
	if h.imagesErr != nil {
		testutil.SkipOrFail(t, "test images: %v", h.imagesErr)
	}
}

// needUser returns the named test user, checked to be able to create user
// namespaces (which rootless xrun needs).
func needUser(t testing.TB, name string) *testUser {
	t.Helper()
	if h.usersErr != nil {
		testutil.SkipOrFail(t, "users: %v", h.usersErr)
	}
	u := h.users[name]
	if u == nil {
		testutil.SkipOrFail(t, "no test user %s", name)
	}
	if u.err != nil {
		testutil.SkipOrFail(t, "user %s: %v", name, u.err)
	}
	return u
}

// needQemu checks that the static emulator for a foreign platform exists.
func needQemu(t testing.TB, p testPlatform) {
	t.Helper()
	if p.Native() {
		return
	}
	path := "/usr/bin/" + p.Qemu
	if _, err := os.Stat(path); err != nil {
		testutil.SkipOrFail(t, "%s needs %s (Debian qemu-user-static; run hack/setup.sh): %v", p.Name, path, err)
	}
}

// needEmulated checks what a test running platform p emulated as the test
// users needs: the binary, the registry, p's qemu, per-namespace
// binfmt_misc and the users.
func needEmulated(t testing.TB, p testPlatform) {
	t.Helper()
	needXrun(t)
	needRegistry(t)
	needQemu(t, p)
	needBinfmtNS(t)
	if h.usersErr != nil {
		testutil.SkipOrFail(t, "users: %v", h.usersErr)
	}
}

// needBinfmtNS checks that the kernel has per-user-namespace binfmt_misc
// (Linux 6.7+), which xrun relies on when the host has no handler.
func needBinfmtNS(t testing.TB) {
	t.Helper()
	var u syscall.Utsname
	if err := syscall.Uname(&u); err != nil {
		t.Fatal(err)
	}
	var rel strings.Builder
	for _, c := range u.Release {
		if c == 0 {
			break
		}
		rel.WriteByte(byte(c))
	}
	var major, minor int
	if _, err := fmt.Sscanf(rel.String(), "%d.%d", &major, &minor); err != nil {
		t.Fatalf("kernel release %q: %v", rel.String(), err)
	}
	if major < 6 || major == 6 && minor < 7 {
		testutil.SkipOrFail(t, "kernel %s has no per-user-namespace binfmt_misc (needs 6.7+)", rel.String())
	}
}

// installXrun copies the binary under test to base/bin, so that the test
// users can execute it whatever the permissions of the checkout are.
func installXrun(base string) (string, error) {
	src := os.Getenv("XRUN_BIN")
	if src == "" {
		src = "../bin/xrun"
	}
	src, err := filepath.Abs(src)
	if err != nil {
		return "", err
	}
	fi, err := os.Stat(src)
	if err != nil {
		return "", fmt.Errorf("xrun binary %s is missing: run make build (or set XRUN_BIN): %w", src, err)
	}
	if !fi.Mode().IsRegular() || fi.Mode()&0o111 == 0 {
		return "", fmt.Errorf("xrun binary %s is not an executable file: run make build", src)
	}
	dir := filepath.Join(base, "bin")
	if err := os.Mkdir(dir, 0o755); err != nil {
		return "", err
	}
	dst := filepath.Join(dir, "xrun")
	if err := copyFile(src, dst, 0o755); err != nil {
		return "", err
	}
	return dst, nil
}

func copyFile(src, dst string, mode os.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, mode)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	if err := out.Close(); err != nil {
		return err
	}
	return os.Chmod(dst, mode)
}

// setupUsers finds the accounts to run xrun as. As root: the two users of
// hack/setup.sh. Otherwise: the current user, in the role its subordinate ids
// allow (the other role is then unavailable).
func setupUsers(base string) (map[string]*testUser, error) {
	users := map[string]*testUser{}
	if os.Geteuid() == 0 {
		for _, name := range []string{subUserName, noSubUserName} {
			u, err := lookupUser(name)
			if err != nil {
				users[name] = &testUser{name: name, err: fmt.Errorf("%w: run hack/setup.sh", err)}
				continue
			}
			switch {
			case name == subUserName && !u.subIDs:
				u.err = fmt.Errorf("%s has no range in /etc/subuid and /etc/subgid: run hack/setup.sh", name)
			case name == noSubUserName && u.subIDs:
				u.err = fmt.Errorf("%s must have no range in /etc/subuid or /etc/subgid: run hack/setup.sh", name)
			}
			users[name] = u
		}
	} else {
		cur, err := user.Current()
		if err != nil {
			return nil, err
		}
		u, err := lookupUser(cur.Username)
		if err != nil {
			return nil, err
		}
		u.self = true
		role, other := noSubUserName, subUserName
		if u.subIDs {
			role, other = subUserName, noSubUserName
		}
		users[role] = u
		users[other] = &testUser{name: other, err: fmt.Errorf(
			"tests run as %s (uid %d, subordinate ids: %v); running as a user %s needs root",
			u.name, u.uid, u.subIDs, map[bool]string{true: "with a range", false: "without a range"}[!u.subIDs])}
	}
	for _, u := range users {
		if u.err != nil {
			continue
		}
		u.home = filepath.Join(base, "home-"+u.name)
		u.cache = filepath.Join(base, "cache-"+u.name)
		for _, d := range []string{u.home, u.cache} {
			if err := mkdirOwned(d, u); err != nil {
				return nil, err
			}
		}
	}
	return users, nil
}

func lookupUser(name string) (*testUser, error) {
	pw, err := user.Lookup(name)
	if err != nil {
		return nil, fmt.Errorf("user %s: %w", name, err)
	}
	u := &testUser{name: name}
	if u.uid, err = strconv.Atoi(pw.Uid); err != nil {
		return nil, err
	}
	if u.gid, err = strconv.Atoi(pw.Gid); err != nil {
		return nil, err
	}
	start, count, okU := subRange("/etc/subuid", name, u.uid)
	_, _, okG := subRange("/etc/subgid", name, u.uid)
	u.subIDs = okU && okG
	u.subStart, u.subCount = start, count
	return u, nil
}

// subRange returns the first range of name (or its uid) in /etc/subuid or
// /etc/subgid.
func subRange(file, name string, uid int) (start, count int, ok bool) {
	b, err := os.ReadFile(file)
	if err != nil {
		return 0, 0, false
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Split(strings.TrimSpace(line), ":")
		if len(f) != 3 || (f[0] != name && f[0] != strconv.Itoa(uid)) {
			continue
		}
		s, err1 := strconv.Atoi(f[1])
		c, err2 := strconv.Atoi(f[2])
		if err1 == nil && err2 == nil && c > 0 {
			return s, c, true
		}
	}
	return 0, 0, false
}

// mkdirOwned creates dir (0755) owned by u.
func mkdirOwned(dir string, u *testUser) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		return err
	}
	if os.Geteuid() == 0 {
		return os.Chown(dir, u.uid, u.gid)
	}
	return nil
}

// workDir creates a fresh project directory owned by u, for one test.
func workDir(t testing.TB, u *testUser) string {
	t.Helper()
	d, err := os.MkdirTemp(h.base, "work-")
	if err != nil {
		t.Fatal(err)
	}
	if err := mkdirOwned(d, u); err != nil {
		t.Fatal(err)
	}
	return d
}

// removeAll removes a tree that may hold read-only directories (an unpacked
// rootfs) and, when not root, files owned by subordinate ids (left in place).
func removeAll(dir string) {
	if os.Geteuid() != 0 {
		_ = filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				_ = os.Chmod(p, 0o755)
			}
			return nil
		})
	}
	if err := os.RemoveAll(dir); err != nil {
		fmt.Fprintf(os.Stderr, "integration: cleanup: %v\n", err)
	}
}

// probeUserNS checks that u can create user and mount namespaces, as
// rootless xrun does (`unshare -Urm true` as u).
func probeUserNS(u *testUser) error {
	if b, err := os.ReadFile("/proc/sys/user/max_user_namespaces"); err == nil &&
		strings.TrimSpace(string(b)) == "0" {
		return errors.New("user namespaces are disabled (user.max_user_namespaces = 0)")
	}
	unshare, err := exec.LookPath("unshare")
	if err != nil {
		return fmt.Errorf("unshare (util-linux) for the user namespace probe: %w", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := userCommand(ctx, u, u.home, nil, unshare, "-Urm", "true").CombinedOutput()
	if err != nil {
		return fmt.Errorf("cannot create a user namespace (unshare -Urm true: %v: %s); check "+
			"user.max_user_namespaces, kernel.unprivileged_userns_clone or AppArmor's "+
			"kernel.apparmor_restrict_unprivileged_userns", err, bytes.TrimSpace(out))
	}
	return nil
}

// userCommand builds a command that runs argv as u in dir with a clean
// environment (HOME, PATH, XRUN_CACHE, then env). As root it goes through
// setpriv, which execs, so the command's PID is the PID of argv[0].
func userCommand(ctx context.Context, u *testUser, dir string, env []string, argv ...string) *exec.Cmd {
	vars := []string{
		"HOME=" + u.home,
		"PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin",
		"XRUN_CACHE=" + u.cache,
		"LANG=C.UTF-8",
	}
	vars = append(vars, env...)
	var cmd *exec.Cmd
	if u.self {
		cmd = exec.CommandContext(ctx, argv[0], argv[1:]...)
		cmd.Env = vars
	} else {
		args := []string{
			"--reuid=" + strconv.Itoa(u.uid), "--regid=" + strconv.Itoa(u.gid), "--init-groups",
			"--reset-env", "--", "/usr/bin/env", "-i",
		}
		args = append(args, vars...)
		args = append(args, argv...)
		cmd = exec.CommandContext(ctx, h.setpriv, args...)
		cmd.Env = []string{"PATH=/usr/bin:/bin"}
	}
	cmd.Dir = dir
	// Do not hang on a pipe some orphan still holds open.
	cmd.WaitDelay = 10 * time.Second
	return cmd
}

// opts are the settings of one xrun run.
type opts struct {
	user    *testUser // required
	dir     string    // working directory; default the user's home
	stdin   []byte    // nil: /dev/null
	env     []string  // extra KEY=VALUE for xrun
	timeout time.Duration
}

// exitCode maps a finished command's error to a shell-style exit code:
// the code, or 128+N when killed by signal N. Errors that are not exit
// statuses fail the test.
func exitCode(t testing.TB, err error) int {
	t.Helper()
	if err == nil {
		return 0
	}
	var ee *exec.ExitError
	if !errors.As(err, &ee) {
		t.Fatalf("running: %v", err)
	}
	if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return 128 + int(ws.Signal())
	}
	return ee.ExitCode()
}

// run runs the xrun binary with args as o.user and returns its output and
// exit code.
func run(t testing.TB, o opts, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	needXrun(t)
	return runAs(t, o, append([]string{h.xrun}, args...)...)
}

// runAs runs any argv as o.user, like run.
func runAs(t testing.TB, o opts, argv ...string) (stdout, stderr string, code int) {
	t.Helper()
	if o.user == nil {
		t.Fatal("runAs: no user")
	}
	if o.dir == "" {
		o.dir = o.user.home
	}
	if o.timeout == 0 {
		o.timeout = 3 * time.Minute
	}
	ctx, cancel := context.WithTimeout(context.Background(), o.timeout)
	defer cancel()
	cmd := userCommand(ctx, o.user, o.dir, o.env, argv...)
	var outB, errB bytes.Buffer
	cmd.Stdout, cmd.Stderr = &outB, &errB
	if o.stdin != nil {
		cmd.Stdin = bytes.NewReader(o.stdin)
	}
	start := time.Now()
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Errorf("%s timed out after %v", shortArgv(argv), o.timeout)
	}
	code = exitCode(t, err)
	t.Logf("as %s in %s: %s -> %d (%v)%s", o.user, o.dir, shortArgv(argv), code,
		time.Since(start).Round(time.Millisecond), logOutput(outB.String(), errB.String()))
	return outB.String(), errB.String(), code
}

func shortArgv(argv []string) string {
	a := append([]string{}, argv...)
	if len(a) > 0 && a[0] == h.xrun {
		a[0] = "xrun"
	}
	return strings.Join(a, " ")
}

func logOutput(stdout, stderr string) string {
	clip := func(s string) string {
		if len(s) > 300 {
			return fmt.Sprintf("%q... (%d bytes)", s[:300], len(s))
		}
		return fmt.Sprintf("%q", s)
	}
	var b strings.Builder
	if stdout != "" {
		b.WriteString("\n  stdout: " + clip(stdout))
	}
	if stderr != "" {
		b.WriteString("\n  stderr: " + clip(stderr))
	}
	return b.String()
}

// registry is a running Debian docker-registry (CNCF distribution) serving
// plain HTTP on 127.0.0.1.
type registry struct {
	addr string // 127.0.0.1:PORT
	dir  string
	cmd  *exec.Cmd
	done chan struct{} // closed when the process has exited
	log  string
}

// startRegistry starts a registry storing its data under dir and waits until
// it answers GET /v2/.
func startRegistry(dir string) (*registry, error) {
	bin := os.Getenv("XRUN_REGISTRY_BIN")
	if bin == "" {
		bin = "/usr/bin/docker-registry"
	}
	if _, err := os.Stat(bin); err != nil {
		return nil, fmt.Errorf("registry server %s (Debian docker-registry; run hack/setup.sh): %w", bin, err)
	}
	if err := os.MkdirAll(filepath.Join(dir, "data"), 0o755); err != nil {
		return nil, err
	}
	var lastErr error
	// A free port can be taken between probing and binding: retry.
	for attempt := 0; attempt < 3; attempt++ {
		r, err := tryStartRegistry(bin, dir)
		if err == nil {
			return r, nil
		}
		lastErr = err
	}
	return nil, lastErr
}

func tryStartRegistry(bin, dir string) (*registry, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	r := &registry{
		addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)),
		dir:  dir,
		done: make(chan struct{}),
		log:  filepath.Join(dir, fmt.Sprintf("registry-%d.log", port)),
	}
	config := fmt.Sprintf(`version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: %s
  delete:
    enabled: true
http:
  addr: %s
  secret: xrun-integration-tests
`, filepath.Join(dir, "data"), r.addr)
	cfgPath := filepath.Join(dir, fmt.Sprintf("config-%d.yml", port))
	if err := os.WriteFile(cfgPath, []byte(config), 0o644); err != nil {
		return nil, err
	}
	logf, err := os.Create(r.log)
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	r.cmd = exec.Command(bin, "serve", cfgPath)
	r.cmd.Stdout, r.cmd.Stderr = logf, logf
	// Do not outlive the test binary if it dies.
	r.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := r.cmd.Start(); err != nil {
		return nil, err
	}
	go func() {
		_ = r.cmd.Wait()
		close(r.done)
	}()
	client := &http.Client{Timeout: 2 * time.Second}
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-r.done:
			return nil, fmt.Errorf("registry exited at start: %s", tail(r.log))
		default:
		}
		resp, err := client.Get("http://" + r.addr + "/v2/")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return r, nil
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	r.Stop()
	return nil, fmt.Errorf("registry on %s did not answer GET /v2/ within 20s: %s", r.addr, tail(r.log))
}

// Stop stops the registry (SIGTERM, then SIGKILL after 5s) and waits for it
// to exit. It can be called more than once.
func (r *registry) Stop() {
	select {
	case <-r.done:
		return
	default:
	}
	_ = r.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-r.done:
	case <-time.After(5 * time.Second):
		_ = r.cmd.Process.Kill()
		<-r.done
	}
}

// ref returns a reference to repo (e.g. "xrun-test/busybox:latest") on r.
func (r *registry) ref(repo string) string { return r.addr + "/" + repo }

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func tail(path string) string {
	b, _ := os.ReadFile(path)
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	return strings.TrimSpace(string(b))
}
