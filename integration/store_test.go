//go:build integration

package integration

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// storeProxy is an HTTP proxy in front of the registry that counts GETs
// per path and sends blob bodies at a limited rate (bytes per second per
// response), so that a pull lasts long enough to be killed at any point.
type storeProxy struct {
	addr string
	mu   sync.Mutex
	gets map[string]int
	rate int // bytes per second per blob response; 0 = unlimited
}

func startStoreProxy(t *testing.T, upstream string, rate int) *storeProxy {
	t.Helper()
	p := &storeProxy{gets: map[string]int{}, rate: rate}
	u, _ := url.Parse("http://" + upstream)
	rp := httputil.NewSingleHostReverseProxy(u)
	rp.FlushInterval = -1
	rp.ModifyResponse = func(resp *http.Response) error {
		if p.rate > 0 && resp.Request.Method == http.MethodGet && strings.Contains(resp.Request.URL.Path, "/blobs/") {
			resp.Body = &slowBody{rc: resp.Body, rate: p.rate}
		}
		return nil
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet {
			p.mu.Lock()
			p.gets[r.URL.Path]++
			p.mu.Unlock()
		}
		rp.ServeHTTP(w, r)
	})}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	p.addr = l.Addr().String()
	return p
}

func (p *storeProxy) count(suffix string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for path, c := range p.gets {
		if strings.HasSuffix(path, suffix) {
			n += c
		}
	}
	return n
}

func (p *storeProxy) reset() {
	p.mu.Lock()
	p.gets = map[string]int{}
	p.mu.Unlock()
}

type slowBody struct {
	rc   io.ReadCloser
	rate int
}

func (b *slowBody) Read(p []byte) (int, error) {
	chunk := b.rate / 20 // 20 chunks a second
	if len(p) > chunk {
		p = p[:chunk]
	}
	n, err := b.rc.Read(p)
	time.Sleep(time.Duration(n) * time.Second / time.Duration(b.rate))
	return n, err
}

func (b *slowBody) Close() error { return b.rc.Close() }

// pushMultiLayer pushes the native busybox image plus `extra` layers of
// incompressible data (size bytes each) as repo, and returns the image.
func pushMultiLayer(t *testing.T, repo string, extra int, size int64) v1.Image {
	t.Helper()
	needImages(t)
	return pushWithLayers(t, repo, archImage(t, h.images.Busybox, runtime.GOARCH), extra, size)
}

// storeCache returns an empty cache directory owned by u.
func storeCache(t *testing.T, u *testUser, name string) string {
	t.Helper()
	dir := filepath.Join(h.base, fmt.Sprintf("cache-%s-%d", name, time.Now().UnixNano()))
	if err := mkdirOwned(dir, u); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { removeAll(dir) })
	return dir
}

// verifyCache checks what a later run trusts: every blob hashes to its
// name, no temp files are left, and img's rootfs is published.
func verifyCache(t *testing.T, cache string, img v1.Image) {
	t.Helper()
	blobs, _ := filepath.Glob(filepath.Join(cache, "blobs", "sha256", "*"))
	for _, b := range blobs {
		f, err := os.Open(b)
		if err != nil {
			t.Errorf("blob %s: %v", b, err)
			continue
		}
		hh := sha256.New()
		io.Copy(hh, f)
		f.Close()
		if got := hex.EncodeToString(hh.Sum(nil)); got != filepath.Base(b) {
			t.Errorf("blob %s holds sha256:%s", filepath.Base(b), got)
		}
	}
	m, _ := img.Manifest()
	for _, l := range m.Layers {
		if _, err := os.Stat(filepath.Join(cache, "blobs", "sha256", l.Digest.Hex)); err != nil {
			t.Errorf("layer %s not in the blob store: %v", l.Digest, err)
		}
	}
	if left, _ := filepath.Glob(filepath.Join(cache, "blobs", "tmp", "*")); len(left) > 0 {
		t.Errorf("partial downloads left after a complete pull: %v", left)
	}
	if left, _ := filepath.Glob(filepath.Join(cache, "rootfs", ".tmp-*")); len(left) > 0 {
		t.Errorf("temp rootfs left after a complete pull: %v", left)
	}
	d, _ := img.Digest()
	if fi, err := os.Stat(filepath.Join(cache, "rootfs", d.Hex)); err != nil || !fi.IsDir() {
		t.Errorf("rootfs %s not published: %v", d.Hex, err)
	}
}

// TestStoreConcurrentColdRuns starts 8 runs of one image at once on an
// empty cache, as make -j8 would: all succeed, each blob is downloaded once
// and the image is unpacked once.
func TestStoreConcurrentColdRuns(t *testing.T) {
	u := needUser(t, subUserName)
	needXrun(t)
	img := pushMultiLayer(t, "xrun-test/store-concurrent:1", 4, 1<<20)
	proxy := startStoreProxy(t, h.reg.addr, 4<<20)
	cache := storeCache(t, u, "concurrent")
	ref := proxy.addr + "/xrun-test/store-concurrent:1"
	plat := "linux/" + runtime.GOARCH

	const n = 8
	var wg sync.WaitGroup
	codes := make([]int, n)
	stderrs := make([]string, n)
	for i := range n {
		wg.Go(func() {
			_, stderrs[i], codes[i] = run(t, opts{user: u, env: []string{"XRUN_CACHE=" + cache}},
				"--debug", "--platform", plat, ref, "--", "true")
		})
	}
	wg.Wait()
	unpacks := 0
	for i := range n {
		if codes[i] != 0 {
			t.Errorf("run %d: exit %d: %s", i, codes[i], stderrs[i])
		}
		unpacks += strings.Count(stderrs[i], `msg="rootfs unpacked" `)
	}
	if unpacks != 1 {
		t.Errorf("the image was unpacked %d times, want 1", unpacks)
	}
	m, _ := img.Manifest()
	for _, l := range append([]v1.Descriptor{m.Config}, m.Layers...) {
		if got := proxy.count("/blobs/" + l.Digest.String()); got != 1 {
			t.Errorf("blob %s downloaded %d times, want 1", l.Digest, got)
		}
	}
	t.Logf("manifest GETs: %d (8 processes)", proxy.count("/manifests/1"))
	verifyCache(t, cache, img)
}

// TestStoreKill9 kills a cold pull of a multi-layer image, served slowly,
// with SIGKILL at various points; each time, the next pull completes it
// and the cache verifies.
func TestStoreKill9(t *testing.T) {
	u := needUser(t, subUserName)
	needXrun(t)
	img := pushMultiLayer(t, "xrun-test/store-kill:1", 5, 512<<10)
	proxy := startStoreProxy(t, h.reg.addr, 1<<20)
	ref := proxy.addr + "/xrun-test/store-kill:1"
	plat := "linux/" + runtime.GOARCH

	// Measure one whole cold pull, to spread the kills over it.
	cache := storeCache(t, u, "kill-measure")
	start := time.Now()
	if _, stderr, code := run(t, opts{user: u, env: []string{"XRUN_CACHE=" + cache}}, "pull", "--platform", plat, ref); code != 0 {
		t.Fatalf("cold pull: exit %d: %s", code, stderr)
	}
	full := time.Since(start)
	verifyCache(t, cache, img)
	t.Logf("a cold pull takes %v", full)

	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 9))
	// Spread over the pull: resolve, downloads with unpacks, publish.
	fracs := []float64{0.03, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9}
	for i, f := range fracs {
		delay := time.Duration((f + rng.Float64()*0.05) * float64(full))
		t.Run(fmt.Sprintf("kill-%d-after-%v", i, delay.Round(time.Millisecond)), func(t *testing.T) {
			cache := storeCache(t, u, "kill")
			env := []string{"XRUN_CACHE=" + cache}
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			cmd := userCommand(ctx, u, u.home, env, h.xrun, "pull", "-q", "--platform", plat, ref)
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			time.Sleep(delay)
			cmd.Process.Signal(syscall.SIGKILL)
			err := cmd.Wait()
			t.Logf("killed after %v: %v", delay, err)
			// The next run completes the pull and runs.
			if _, stderr, code := run(t, opts{user: u, env: env}, "--platform", plat, ref, "--", "true"); code != 0 {
				t.Fatalf("run after kill -9: exit %d: %s", code, stderr)
			}
			verifyCache(t, cache, img)
		})
	}
}

// TestStoreCommands covers images, rmi and prune as the unprivileged user,
// and that rmi and prune leave an image that a run is using alone.
func TestStoreCommands(t *testing.T) {
	u := needUser(t, subUserName)
	needXrun(t)
	img := pushMultiLayer(t, "xrun-test/store-cmds:1", 1, 64<<10)
	ref := h.reg.ref("xrun-test/store-cmds:1")
	plat := "linux/" + runtime.GOARCH
	cache := storeCache(t, u, "cmds")
	o := opts{user: u, env: []string{"XRUN_CACHE=" + cache}}
	d, _ := img.Digest()

	if _, stderr, code := run(t, o, "pull", "--platform", plat, ref); code != 0 {
		t.Fatalf("pull: exit %d: %s", code, stderr)
	}
	out, _, code := run(t, o, "images")
	if code != 0 || !strings.Contains(out, ref) || !strings.Contains(out, plat) || !strings.Contains(out, d.Hex[:12]) || !strings.Contains(out, "never") {
		t.Errorf("images: exit %d:\n%s\nwant a line with %s %s %s ... never", code, out, ref, plat, d.Hex[:12])
	}

	// A run in progress holds its image.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	runCmd := userCommand(ctx, u, u.home, o.env, h.xrun, "--platform", plat, ref, "--", "sleep", "3")
	if err := runCmd.Start(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(1 * time.Second)
	_, stderr, code := run(t, o, "rmi", ref)
	if code != 125 || !strings.Contains(stderr, "in use") {
		t.Errorf("rmi of an image in use: exit %d, stderr %q; want 125 and 'in use'", code, stderr)
	}
	if _, _, code := run(t, o, "prune"); code != 0 {
		t.Errorf("prune during a run: exit %d", code)
	}
	if err := runCmd.Wait(); err != nil {
		t.Errorf("the run during rmi and prune: %v", err)
	}

	out, _, _ = run(t, o, "images")
	if !strings.Contains(out, "ago") && !strings.Contains(out, "just now") {
		t.Errorf("images after a run does not show when it was used:\n%s", out)
	}
	if _, stderr, code := run(t, o, "rmi", "--platform", plat, ref); code != 0 {
		t.Errorf("rmi: exit %d: %s", code, stderr)
	}
	if _, err := os.Stat(filepath.Join(cache, "rootfs", d.Hex)); err == nil {
		t.Errorf("rmi left the rootfs")
	}
	out, _, code = run(t, o, "prune")
	if code != 0 || !strings.HasPrefix(out, "freed ") || strings.HasPrefix(out, "freed 0 B") {
		t.Errorf("prune: exit %d, %q; want 'freed N'", code, out)
	}
	if blobs, _ := filepath.Glob(filepath.Join(cache, "blobs", "sha256", "*")); len(blobs) != 0 {
		t.Errorf("blobs left after rmi and prune: %v", blobs)
	}
	if _, stderr, code := run(t, o, "rmi", ref); code != 125 || !strings.Contains(stderr, "no such image") {
		t.Errorf("rmi of a removed image: exit %d, %q", code, stderr)
	}
}
