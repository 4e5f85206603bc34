//go:build integration

package integration

// Registry mirrors from containers' registries.conf (issue 18): Debian's
// docker-registry in proxy mode (a pull-through cache, as fleets run) in
// front of the test registry; pulls go through it, fall back to the
// upstream when it is stopped, and a mirror that corrupts a layer is
// skipped for the upstream.

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/xrun-dev/xrun/internal/testutil"
)

// startProxyRegistry starts Debian's docker-registry on 127.0.0.1 in proxy
// mode (proxy.remoteurl) in front of the registry at upstream (host:port),
// with its access log on; it is stopped (by PID) at the end of the test.
func startProxyRegistry(t *testing.T, upstream string) *registry {
	t.Helper()
	bin := os.Getenv("XRUN_REGISTRY_BIN")
	if bin == "" {
		bin = "/usr/bin/docker-registry"
	}
	if _, err := os.Stat(bin); err != nil {
		testutil.SkipOrFail(t, "registry server %s (Debian docker-registry; run hack/setup.sh): %v", bin, err)
	}
	dir := t.TempDir()
	port, err := freePort()
	if err != nil {
		t.Fatal(err)
	}
	r := &registry{
		addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)),
		dir:  dir,
		done: make(chan struct{}),
		log:  filepath.Join(dir, "proxy.log"),
	}
	config := fmt.Sprintf(`version: 0.1
log:
  level: info
storage:
  filesystem:
    rootdirectory: %s
http:
  addr: %s
  secret: xrun-integration-mirror
proxy:
  remoteurl: http://%s
`, filepath.Join(dir, "data"), r.addr, upstream)
	cfg := filepath.Join(dir, "config.yml")
	if err := os.WriteFile(cfg, []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}
	logf, err := os.Create(r.log)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	r.cmd = exec.Command(bin, "serve", cfg)
	r.cmd.Stdout, r.cmd.Stderr = logf, logf
	r.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := r.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		_ = r.cmd.Wait()
		close(r.done)
	}()
	t.Cleanup(r.Stop)
	client := &http.Client{Timeout: 2 * time.Second}
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		select {
		case <-r.done:
			t.Fatalf("proxy registry exited at start: %s", tail(r.log))
		default:
		}
		if resp, err := client.Get("http://" + r.addr + "/v2/"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return r
			}
		}
	}
	t.Fatalf("proxy registry on %s did not answer within 20s: %s", r.addr, tail(r.log))
	return nil
}

// mirrorConf writes a registries.conf that makes mirror the only mirror of
// the test registry, readable by every test user, and returns its path.
func mirrorConf(t *testing.T, dir, mirror string) string {
	t.Helper()
	conf := fmt.Sprintf("[[registry]]\nprefix = %q\nlocation = %q\n\n[[registry.mirror]]\nlocation = %q\n", h.reg.addr, h.reg.addr, mirror)
	path := filepath.Join(dir, "registries.conf")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// userDir returns a new directory under the harness's base owned by u.
func userDir(t *testing.T, u *testUser, pattern string) string {
	t.Helper()
	dir, err := os.MkdirTemp(h.base, pattern)
	if err != nil {
		t.Fatal(err)
	}
	if err := mkdirOwned(dir, u); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { removeAll(dir) })
	return dir
}

// TestMirrorPullThrough: with the proxy registry as mirror (in the user's
// ~/.config/containers/registries.conf), a cold run pulls the manifest and
// blobs through it and --verbose names it; xrun images shows the original
// reference. With the proxy stopped, a cold run falls back to the upstream.
func TestMirrorPullThrough(t *testing.T) {
	u := needRun(t, subUserName, platformByName(faultPlatform))
	needRegistry(t)
	proxy := startProxyRegistry(t, h.reg.addr)
	cfgHome := userDir(t, u, "mirror-config-")
	// README's "Running xrun on a CI fleet" file, for the test registry and
	// the proxy in front of it.
	conf := strings.NewReplacer("registry.corp.example", h.reg.addr, "ci-cache.corp.example:5000", proxy.addr).
		Replace(readmeBlock(t, "# ~/.config/containers/registries.conf on every runner"))
	if err := os.MkdirAll(filepath.Join(cfgHome, "containers"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(cfgHome, "containers", "registries.conf"), []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	ref := h.reg.ref(busyboxRepo)
	argv := []string{"--verbose", "--platform", faultPlatform, ref, "--", "uname", "-m"}

	cache := userDir(t, u, "cache-mirror-")
	o := opts{user: u, env: []string{"XRUN_CACHE=" + cache, "XDG_CONFIG_HOME=" + cfgHome}}
	// doctor shows what pulls will use.
	if out, _, _ := run(t, o, "doctor", "--platform", faultPlatform); !strings.Contains(out, "info  registry mirrors: from ") ||
		!strings.Contains(out, h.reg.addr+": mirrors "+proxy.addr+" (insecure), then the registry") {
		t.Errorf("xrun doctor does not show the mirror:\n%s", out)
	}
	out, stderr, code := run(t, o, argv...)
	if code != 0 || out != "aarch64\n" {
		t.Fatalf("run through the mirror: exit %d, %q, %s", code, out, stderr)
	}
	if !strings.Contains(stderr, "pulled from mirror") || !strings.Contains(stderr, proxy.addr) {
		t.Errorf("--verbose does not name the mirror %s:\n%s", proxy.addr, stderr)
	}
	b, _ := os.ReadFile(proxy.log)
	plog := string(b)
	for _, want := range []string{"/v2/xrun-test/busybox/manifests/latest", "/v2/xrun-test/busybox/blobs/sha256:"} {
		if !strings.Contains(plog, want) {
			t.Errorf("the proxy's log shows no %s request:\n%s", want, tail(proxy.log))
		}
	}
	img := archImage(t, h.images.Busybox, "arm64")
	checkCache(t, cache, cacheWant{img: img, published: true, noTemps: true})
	images, _, _ := run(t, o, "images")
	if !strings.Contains(images, ref) || strings.Contains(images, proxy.addr) {
		t.Errorf("xrun images shows\n%s\nwant the original reference %s, not the mirror's", images, ref)
	}

	proxy.Stop()
	cache2 := userDir(t, u, "cache-mirror-down-")
	o.env = []string{"XRUN_CACHE=" + cache2, "XDG_CONFIG_HOME=" + cfgHome}
	out, stderr, code = run(t, o, argv...)
	if code != 0 || out != "aarch64\n" {
		t.Fatalf("run with the mirror stopped: exit %d, %q, %s", code, out, stderr)
	}
	if !strings.Contains(stderr, "registry mirror failed") || strings.Contains(stderr, "pulled from mirror") {
		t.Errorf("with the mirror stopped, stderr does not say it fell back to the upstream:\n%s", stderr)
	}
	checkCache(t, cache2, cacheWant{img: img, published: true, noTemps: true})
}

// TestMirrorCorruptBlob: a mirror that serves a layer with one byte
// flipped (faultproxy) is detected by its digest and skipped: the layer
// comes from the upstream, the run succeeds, nothing corrupt is cached.
// Served slowly, the unpacker has read the corrupt bytes before the digest
// check fails: the rootfs is then unpacked again from the verified copy.
func TestMirrorCorruptBlob(t *testing.T) {
	u := needRun(t, subUserName, platformByName(faultPlatform))
	needRegistry(t)
	img, layer := arm64LastLayer(t)
	for _, tc := range []struct {
		name     string
		rate     int
		reunpack bool
	}{
		{name: "fast"},
		{name: "slow", rate: 2 << 20, reunpack: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bad := startFaultProxy(t, h.reg.addr, faultMode{CorruptBlob: layer.String(), Rate: tc.rate})
			conf := mirrorConf(t, userDir(t, u, "mirror-conf-"), bad.addr)
			cache := userDir(t, u, "cache-mirror-corrupt-")
			o := opts{user: u, env: []string{"XRUN_CACHE=" + cache, "XRUN_REGISTRIES_CONF=" + conf}}
			out, stderr, code := run(t, o, "--verbose", "--platform", faultPlatform, h.reg.ref(busyboxRepo), "--", "uname", "-m")
			st := bad.stats()
			t.Logf("mirror: %v; xrun's stderr:\n%s", st, stderr)
			if code != 0 || out != "aarch64\n" {
				t.Fatalf("run through a corrupting mirror: exit %d, %q, %s", code, out, stderr)
			}
			if st.Corrupted == 0 || st.ManifestGets == 0 {
				t.Errorf("the mirror served %d manifests and corrupted %d blobs; want both > 0", st.ManifestGets, st.Corrupted)
			}
			if !strings.Contains(stderr, "registry mirror failed") || !strings.Contains(stderr, layer.String()) {
				t.Errorf("stderr does not report the mirror's corrupt layer %s:\n%s", layer, stderr)
			}
			if tc.reunpack && !strings.Contains(stderr, "unpacking again from the verified copy") {
				t.Errorf("a slow corrupt layer did not make xrun unpack again:\n%s", stderr)
			}
			checkCache(t, cache, cacheWant{img: img, published: true, noTemps: true})
		})
	}
}
