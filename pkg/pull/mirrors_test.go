package pull

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
)

func TestRefMatchLen(t *testing.T) {
	for _, tc := range []struct {
		ref, prefix string
		want        int
	}{
		{"docker.io/library/debian:12", "docker.io", len("docker.io")},
		{"docker.io/library/debian:12", "docker.io/library", len("docker.io/library")},
		{"docker.io/library/debian:12", "docker.io/library/debian", len("docker.io/library/debian")},
		{"docker.io/library/debian:12", "docker.io/library/debian:12", len("docker.io/library/debian:12")},
		{"docker.io/library/debian:12", "docker.io/lib", -1},
		{"docker.io/library/debian@sha256:ab", "docker.io/library/debian", len("docker.io/library/debian")},
		{"docker.io/library/debian:12", "quay.io", -1},
		{"docker.iox/a:1", "docker.io", -1},
		{"reg.example.com/a:1", "*.example.com", len("reg.example.com")},
		{"a.b.example.com/a:1", "*.example.com", len("a.b.example.com")},
		{"reg.example.com:5000/a:1", "*.example.com", len("reg.example.com")},
		{"example.com/a:1", "*.example.com", -1},
		{"other.com/reg.example.com/a:1", "*.example.com", -1},
		{"reg.example.community/a:1", "*.example.com", -1},
	} {
		if got := refMatchLen(tc.ref, tc.prefix); got != tc.want {
			t.Errorf("refMatchLen(%q, %q) = %d, want %d", tc.ref, tc.prefix, got, tc.want)
		}
	}
}

// writeConf writes a registries.conf file (making its directory).
func writeConf(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func reg(prefix, location string, mirrors ...string) string {
	s := fmt.Sprintf("[[registry]]\nprefix = %q\nlocation = %q\n", prefix, location)
	for _, m := range mirrors {
		s += fmt.Sprintf("[[registry.mirror]]\nlocation = %q\n", m)
	}
	return s
}

// mirrorsOf returns each prefix's mirror locations (and location) in c.
func mirrorsOf(c *mirrorConfig) map[string]string {
	got := map[string]string{}
	for _, r := range c.regs {
		var ms []string
		for _, m := range r.Mirrors {
			ms = append(ms, m.Location)
		}
		got[r.Prefix] = r.Location + " <- " + strings.Join(ms, ",")
	}
	return got
}

func TestRegistriesConfPrecedence(t *testing.T) {
	d := t.TempDir()
	sysFile, sysDir := filepath.Join(d, "etc/registries.conf"), filepath.Join(d, "etc/registries.conf.d")
	userFile, userDir := filepath.Join(d, "home/registries.conf"), filepath.Join(d, "home/registries.conf.d")
	writeConf(t, sysFile, "unqualified-search-registries = [\"docker.io\"]\n"+
		reg("docker.io", "docker.io", "sys.mirror")+reg("quay.io", "quay.io", "sys.quay"))
	writeConf(t, filepath.Join(sysDir, "10-a.conf"), reg("quay.io", "quay.io", "dropin.quay")+reg("ghcr.io", "ghcr.io", "dropin.ghcr"))
	writeConf(t, filepath.Join(sysDir, "20-b.conf"), reg("ghcr.io", "ghcr.io", "dropin2.ghcr"))
	writeConf(t, filepath.Join(sysDir, "ignored.txt"), "not toml [[[")

	t.Run("system", func(t *testing.T) {
		files := confFiles(sysFile, sysDir, userFile, userDir, true)
		want := []string{sysFile, filepath.Join(sysDir, "10-a.conf"), filepath.Join(sysDir, "20-b.conf")}
		if diff := cmp.Diff(want, files); diff != "" {
			t.Fatalf("confFiles (-want +got):\n%s", diff)
		}
		c, err := loadMirrorConfig(files, false)
		if err != nil {
			t.Fatal(err)
		}
		want2 := map[string]string{"docker.io": "docker.io <- sys.mirror", "quay.io": "quay.io <- dropin.quay", "ghcr.io": "ghcr.io <- dropin2.ghcr"}
		if diff := cmp.Diff(want2, mirrorsOf(c)); diff != "" {
			t.Errorf("merged config (-want +got):\n%s", diff)
		}
	})
	t.Run("user", func(t *testing.T) {
		writeConf(t, userFile, reg("docker.io", "docker.io", "user.mirror"))
		writeConf(t, filepath.Join(userDir, "50.conf"), reg("ghcr.io", "ghcr.io", "user.ghcr"))
		files := confFiles(sysFile, sysDir, userFile, userDir, true)
		want := []string{userFile, filepath.Join(sysDir, "10-a.conf"), filepath.Join(sysDir, "20-b.conf"), filepath.Join(userDir, "50.conf")}
		if diff := cmp.Diff(want, files); diff != "" {
			t.Fatalf("confFiles (-want +got):\n%s", diff)
		}
		c, err := loadMirrorConfig(files, false)
		if err != nil {
			t.Fatal(err)
		}
		// The user's file replaces the system one: sys.quay is gone, the
		// drop-ins still apply, the user's last.
		want2 := map[string]string{"docker.io": "docker.io <- user.mirror", "quay.io": "quay.io <- dropin.quay", "ghcr.io": "ghcr.io <- user.ghcr"}
		if diff := cmp.Diff(want2, mirrorsOf(c)); diff != "" {
			t.Errorf("merged config (-want +got):\n%s", diff)
		}
	})
	t.Run("env", func(t *testing.T) {
		one := filepath.Join(d, "one.conf")
		t.Setenv(EnvContainersRegistriesConf, "/nonexistent")
		t.Setenv(EnvRegistriesConf, one)
		if diff := cmp.Diff([]string{one}, RegistriesConfFiles()); diff != "" {
			t.Errorf("RegistriesConfFiles with %s (-want +got):\n%s", EnvRegistriesConf, diff)
		}
		t.Setenv(EnvRegistriesConf, "")
		if diff := cmp.Diff([]string{"/nonexistent"}, RegistriesConfFiles()); diff != "" {
			t.Errorf("RegistriesConfFiles with %s (-want +got):\n%s", EnvContainersRegistriesConf, diff)
		}
	})
}

func TestRegistriesConfErrors(t *testing.T) {
	d := t.TempDir()
	for _, tc := range []struct{ name, conf, want string }{
		{"syntax", "[[registry]\nprefix = 1", "fix the file"},
		{"type", "[[registry]]\nprefix = 1\n", "fix the file"},
		{"no location", "[[registry]]\nprefix = \"docker.io\"\n", `registry "docker.io" has no location`},
		{"empty", "[[registry]]\ninsecure = true\n", "neither prefix nor location"},
		{"wildcard path", "[[registry]]\nprefix = \"*.example.com/x\"\n", "must be a bare host name"},
		{"mirror mode", reg("a.io", "a.io", "m.io") + "pull-from-mirror = \"sometimes\"\n", "want all, digest-only or tag-only"},
		{"both modes", "[[registry]]\nprefix = \"a.io\"\nlocation = \"a.io\"\nmirror-by-digest-only = true\n[[registry.mirror]]\nlocation = \"m.io\"\npull-from-mirror = \"all\"\n", "containers/image refuses both"},
	} {
		f := filepath.Join(d, tc.name+".conf")
		writeConf(t, f, tc.conf)
		_, err := loadMirrorConfig([]string{f}, false)
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), f) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%s: loadMirrorConfig = %v, want one line naming %s and containing %q", tc.name, err, f, tc.want)
		}
	}
	missing := filepath.Join(d, "missing.conf")
	if c, err := loadMirrorConfig([]string{missing}, false); err != nil || len(c.regs) != 0 {
		t.Errorf("missing file: %v, %v; want no entries, no error", c, err)
	}
	if _, err := loadMirrorConfig([]string{missing}, true); err == nil || !strings.Contains(err.Error(), missing) {
		t.Errorf("missing file named by the user: %v, want an error naming it", err)
	}
	f := filepath.Join(d, "typo.conf")
	writeConf(t, f, "unqualified-search-registries = [\"x\"]\n"+reg("a.io", "a.io", "m.io")+"insecur = true\n[[registry.mirrors]]\nlocation = \"m.io\"\n")
	c, err := loadMirrorConfig([]string{f}, false)
	want := []string{f + ": registry.mirror.insecur", f + ": registry.mirrors"}
	if diff := cmp.Diff(want, c.unknown); err != nil || diff != "" {
		t.Errorf("typos: %v, unknown keys (-want +got):\n%s", err, diff)
	}
}

func TestEndpoints(t *testing.T) {
	conf := reg("docker.io", "docker.io", "mirror.corp:5000", "mirror2.corp") +
		reg("docker.io/library/busybox", "docker.io/library/busybox", "bb.corp/hub/busybox") +
		reg("registry.example.com/team", "internal.example.com/team-images", "cache.example.com/team") +
		"[[registry]]\nprefix = \"*.example.org\"\n[[registry.mirror]]\nlocation = \"wild.mirror\"\n" +
		reg("digest.io", "digest.io", "dm.io") + "pull-from-mirror = \"digest-only\"\n" +
		reg("bad.io", "bad.io") + "blocked = true\n"
	f := filepath.Join(t.TempDir(), "registries.conf")
	writeConf(t, f, conf)
	c, err := loadMirrorConfig([]string{f}, false)
	if err != nil {
		t.Fatal(err)
	}
	const dig = "@sha256:0123456789012345678901234567890123456789012345678901234567890123"
	for _, tc := range []struct {
		ref  string
		want []string // repositories, "m:" for mirrors
	}{
		{"debian", []string{"m:mirror.corp:5000/library/debian", "m:mirror2.corp/library/debian", "index.docker.io/library/debian"}},
		{"docker.io/library/debian" + dig, []string{"m:mirror.corp:5000/library/debian", "m:mirror2.corp/library/debian", "index.docker.io/library/debian"}},
		// The longest prefix wins.
		{"busybox:1.36", []string{"m:bb.corp/hub/busybox", "index.docker.io/library/busybox"}},
		{"busyboxes", []string{"m:mirror.corp:5000/library/busyboxes", "m:mirror2.corp/library/busyboxes", "index.docker.io/library/busyboxes"}},
		// location rewrites the prefix, for mirrors and the upstream.
		{"registry.example.com/team/app:1", []string{"m:cache.example.com/team/app", "internal.example.com/team-images/app"}},
		{"registry.example.com/other/app:1", []string{"registry.example.com/other/app"}},
		{"a.example.org/x/y:1", []string{"m:wild.mirror/x/y", "a.example.org/x/y"}},
		{"digest.io/app:1", []string{"digest.io/app"}},
		{"digest.io/app" + dig, []string{"m:dm.io/app", "digest.io/app"}},
		{"quay.io/a/b", []string{"quay.io/a/b"}},
	} {
		r, err := name.ParseReference(tc.ref)
		if err != nil {
			t.Fatal(err)
		}
		o := makeOptions(nil)
		eps, err := o.endpoints(c, r)
		if err != nil {
			t.Errorf("endpoints(%q) = %v", tc.ref, err)
			continue
		}
		var got []string
		for _, e := range eps {
			s := e.String()
			if e.mirror {
				s = "m:" + s
			}
			got = append(got, s)
		}
		if diff := cmp.Diff(tc.want, got); diff != "" {
			t.Errorf("endpoints(%q) (-want +got):\n%s", tc.ref, diff)
		}
	}
	r, _ := name.ParseReference("bad.io/x:1")
	_, err = makeOptions(nil).endpoints(c, r)
	if !errors.Is(err, ErrBlocked) || !strings.Contains(err.Error(), "bad.io is blocked") || !strings.Contains(err.Error(), f) {
		t.Errorf("endpoints(blocked) = %v, want ErrBlocked naming the registry and %s", err, f)
	}
}

func TestEndpointsInsecure(t *testing.T) {
	f := filepath.Join(t.TempDir(), "registries.conf")
	writeConf(t, f, reg("docker.io", "docker.io", "plain.corp:5000")+"insecure = true\n"+
		"[[registry.mirror]]\nlocation = \"tls.corp\"\n")
	c, err := loadMirrorConfig([]string{f}, false)
	if err != nil {
		t.Fatal(err)
	}
	o := makeOptions(nil)
	if _, err := o.endpoints(c, name.MustParseReference("debian")); err != nil {
		t.Fatal(err)
	}
	if !o.isInsecure("plain.corp:5000") || o.isInsecure("tls.corp") || o.isInsecure("index.docker.io") {
		t.Errorf("insecure registries after endpoints = %v, want plain.corp:5000 only", o.insecure)
	}
	// Plain HTTP to it still never carries a password.
	if o.mayPlainHTTPCredentials("plain.corp:5000") {
		t.Errorf("a password may go over plain HTTP to an insecure mirror")
	}
}

// downAddr returns an address nothing listens on.
func downAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

// corruptBlobs wraps a registry so that GETs of the digests in *bad are
// served with their first byte flipped.
func corruptBlobs(mu *sync.Mutex, bad map[string]bool) func(http.Handler) http.Handler {
	return func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			i := strings.LastIndex(r.URL.Path, "/")
			mu.Lock()
			corrupt := r.Method == http.MethodGet && bad[r.URL.Path[i+1:]]
			mu.Unlock()
			if corrupt {
				w = &corruptWriter{ResponseWriter: w}
			}
			h.ServeHTTP(w, r)
		})
	}
}

func fail500(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/v2/" {
			h.ServeHTTP(w, r)
			return
		}
		http.Error(w, `{"errors":[{"code":"UNKNOWN","message":"down for maintenance"}]}`, http.StatusInternalServerError)
	})
}

// TestMirrorFallback pulls through four mirrors that fail in different
// ways: down, HTTP 500, without the image (404), and serving one corrupt
// layer; the layer comes from the upstream, everything is verified, and the
// index records the original reference.
func TestMirrorFallback(t *testing.T) {
	isolateCredentials(t)
	p := mustPlatform(t, "linux/arm64")
	up := newTestRegistry(t, nil)
	var mu sync.Mutex
	bad := map[string]bool{}
	corrupt := newTestRegistry(t, corruptBlobs(&mu, bad))
	e500 := newTestRegistry(t, fail500)
	empty := newTestRegistry(t, nil)
	img := mkImage(t, p, 3)
	ref := up.host + "/team/app:1"
	pushImage(t, ref, img)
	pushImage(t, corrupt.host+"/team/app:1", img)
	layers, _ := img.Layers()
	ld, _ := layers[1].Digest()
	bad[ld.String()] = true

	conf := filepath.Join(t.TempDir(), "registries.conf")
	writeConf(t, conf, reg(up.host, up.host, downAddr(t), e500.host, empty.host, corrupt.host))
	var logb bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logb, &slog.HandlerOptions{Level: slog.LevelInfo}))
	opts := testOpts(p, WithRegistriesConf(conf), withBackoff(fastBackoff), WithLogger(log))
	s := newClient(t.TempDir())
	got, err := s.Resolve(context.Background(), ref, opts...)
	if err != nil {
		t.Fatalf("Resolve(%q) through failing mirrors = %v", ref, err)
	}
	if !strings.Contains(logb.String(), "pulled from mirror") || !strings.Contains(logb.String(), corrupt.host) {
		t.Errorf("log does not name the mirror %s that resolved the image:\n%s", corrupt.host, logb.String())
	}
	if err := s.Fetch(context.Background(), got, opts...); err != nil {
		t.Fatalf("Fetch through failing mirrors = %v", err)
	}
	checkBlobs(t, s)
	if n := up.blobGets(ld); n != 1 {
		t.Errorf("upstream served the corrupt layer %d times, want 1 (after the mirror)", n)
	}
	if n := corrupt.blobGets(ld); n > 1 {
		t.Errorf("the corrupt mirror was asked %d times for the layer, want at most 1", n)
	}
	// The index records the reference the user gave, not a mirror's.
	if r, _ := name.ParseReference(ref); got.Ref != r.Name() {
		want := r.Name()
		t.Errorf("image ref = %q, want %q", got.Ref, want)
	}
	again, err := s.Resolve(context.Background(), ref, testOpts(p, WithPolicy(PullNever), WithRegistriesConf())...)
	if err != nil || again.Digest != got.Digest {
		t.Errorf("offline Resolve(%q) = %v, %v; want the cached %v", ref, again, err, got.Digest)
	}
	t.Logf("log:\n%s", logb.String())
}

// TestMirrorManifestDigest: a mirror that answers a digest reference with
// other bytes is skipped, and so is one whose layer is corrupt while a
// reader follows it: the reader is told (Refetched) and the verified copy
// is in the store.
func TestMirrorManifestDigest(t *testing.T) {
	isolateCredentials(t)
	p := mustPlatform(t, "linux/arm64")
	up := newTestRegistry(t, nil)
	var mu sync.Mutex
	bad := map[string]bool{}
	mirror := newTestRegistry(t, corruptBlobs(&mu, bad))
	img := mkImage(t, p, 2)
	d := pushImage(t, up.host+"/app:1", img)
	pushImage(t, mirror.host+"/app:1", img)
	layers, _ := img.Layers()
	ld, _ := layers[0].Digest()
	bad[d.String()], bad[ld.String()] = true, true

	conf := filepath.Join(t.TempDir(), "registries.conf")
	writeConf(t, conf, reg(up.host, up.host, mirror.host))
	opts := testOpts(p, WithRegistriesConf(conf), withBackoff(fastBackoff))
	s := newClient(t.TempDir())
	ref := up.host + "/app@" + d.String()
	got, err := s.Resolve(context.Background(), ref, opts...)
	if err != nil {
		t.Fatalf("Resolve(%q) = %v", ref, err)
	}
	if got.Digest != d || up.requests() == 0 {
		t.Errorf("Resolve(%q) = %v after %d upstream requests; want %v from the upstream", ref, got.Digest, up.requests(), d)
	}
	st, err := s.Stream(context.Background(), got, opts...)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	r, _ := st.Open(0)
	b, rerr := io.ReadAll(r)
	r.Close()
	if err := st.Wait(); err != nil {
		t.Fatalf("Wait = %v, want the layer from the upstream", err)
	}
	if !st.Refetched() {
		t.Errorf("Refetched = false after a corrupt layer from the mirror")
	}
	r, _ = st.Open(0)
	b2, err := io.ReadAll(r)
	r.Close()
	if err != nil || mustHash(t, b2) != ld {
		t.Errorf("layer read again after Wait: %v, digest %v, want %v", err, mustHash(t, b2), ld)
	}
	t.Logf("first read: %d bytes, %v", len(b), rerr)
	checkBlobs(t, s)
}

func mustHash(t *testing.T, b []byte) v1.Hash {
	t.Helper()
	h, _, err := v1.SHA256(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func TestMirrorBlocked(t *testing.T) {
	isolateCredentials(t)
	p := mustPlatform(t, "linux/arm64")
	up := newTestRegistry(t, nil)
	pushImage(t, up.host+"/app:1", mkImage(t, p, 1))
	conf := filepath.Join(t.TempDir(), "registries.conf")
	writeConf(t, conf, reg(up.host+"/app", up.host+"/app")+"blocked = true\n")
	before := up.requests()
	_, err := newClient(t.TempDir()).Resolve(context.Background(), up.host+"/app:1", testOpts(p, WithRegistriesConf(conf))...)
	if !errors.Is(err, ErrBlocked) || up.requests() != before {
		t.Errorf("Resolve of a blocked registry = %v after %d requests, want ErrBlocked and none", err, up.requests()-before)
	}
	// Another repository of the same registry is not blocked.
	pushImage(t, up.host+"/other:1", mkImage(t, p, 1))
	if _, err := newClient(t.TempDir()).Resolve(context.Background(), up.host+"/other:1", testOpts(p, WithRegistriesConf(conf))...); err != nil {
		t.Errorf("Resolve of another repository = %v", err)
	}
}

// TestMirrorCredentials: a mirror's credentials are those of the mirror's
// host in the auth files; without them, the mirror's 401 makes xrun fall
// back to the upstream.
func TestMirrorCredentials(t *testing.T) {
	home := isolateCredentials(t)
	p := mustPlatform(t, "linux/arm64")
	up := newTestRegistry(t, nil)
	mirror := newTestRegistry(t, basicAuth("me", "secret"))
	img := mkImage(t, p, 2)
	ref := up.host + "/app:1"
	pushImage(t, ref, img)
	pushWithAuth(t, mirror.host+"/app:1", "me", "secret")
	conf := filepath.Join(t.TempDir(), "registries.conf")
	writeConf(t, conf, reg(up.host, up.host, mirror.host))
	opts := []Option{WithPlatform(p), WithRegistriesConf(conf), withBackoff(fastBackoff)}
	ctx := context.Background()

	// No credentials for the mirror: the upstream serves the image.
	s := newClient(t.TempDir())
	got, err := s.Resolve(ctx, ref, opts...)
	if want, _ := img.Digest(); err != nil || got.Digest != want {
		t.Fatalf("Resolve without the mirror's credentials = %v, %v; want %v from the upstream", got, err, want)
	}

	// With them (podman's auth.json, keyed by the mirror's host), the
	// mirror serves its own image.
	auth := base64.StdEncoding.EncodeToString([]byte("me:secret"))
	writeFile(t, filepath.Join(home, "config", "containers", "auth.json"), `{"auths":{"`+mirror.host+`":{"auth":"`+auth+`"}}}`)
	s = newClient(t.TempDir())
	got, err = s.Resolve(ctx, ref, opts...)
	if err != nil {
		t.Fatalf("Resolve with the mirror's credentials = %v", err)
	}
	before := up.requests()
	if err := s.Fetch(ctx, got, opts...); err != nil {
		t.Fatalf("Fetch with the mirror's credentials = %v", err)
	}
	if want, _ := img.Digest(); got.Digest == want || up.requests() != before {
		t.Errorf("with credentials, the image came from the upstream (digest %v, %d upstream GETs), want the mirror's", got.Digest, up.requests()-before)
	}
}

// TestReadmeRegistriesConf keeps the README's registries.conf example
// valid and doing what the README says.
func TestReadmeRegistriesConf(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, sec, _ := strings.Cut(string(b), "\n### Registry mirrors\n")
	_, block, ok := strings.Cut(sec, "```toml\n")
	block, _, _ = strings.Cut(block, "```")
	if !ok || block == "" {
		t.Fatal("README's Registry mirrors section has no toml example")
	}
	f := filepath.Join(t.TempDir(), "registries.conf")
	writeConf(t, f, block)
	c, err := loadMirrorConfig([]string{f}, true)
	if err != nil || len(c.unknown) > 0 {
		t.Fatalf("README example: %v, unknown keys %q", err, c.unknown)
	}
	const dig = "@sha256:0123456789012345678901234567890123456789012345678901234567890123"
	for ref, want := range map[string]string{
		"debian":                                 "hub-cache.corp.example:5000/library/debian 10.0.0.7:5000/library/debian index.docker.io/library/debian",
		"registry.corp.example/ci/tool:1":        "registry.corp.example/ci/tool",
		"registry.corp.example/ci/tool" + dig:    "ci-cache.corp.example/ci/tool registry.corp.example/ci/tool",
		"registry.corp.example/other/tool" + dig: "registry.corp.example/other/tool",
		"ghcr.io/x/y:1":                          "ghcr.io/x/y",
	} {
		r, _ := name.ParseReference(ref)
		eps, err := makeOptions(nil).endpoints(c, r)
		var got []string
		for _, e := range eps {
			got = append(got, e.String())
		}
		if err != nil || strings.Join(got, " ") != want {
			t.Errorf("README example: endpoints(%q) = %q, %v; want %q", ref, got, err, want)
		}
	}
	r, _ := name.ParseReference("a.untrusted.example/x:1")
	if _, err := makeOptions(nil).endpoints(c, r); !errors.Is(err, ErrBlocked) {
		t.Errorf("README example: a.untrusted.example = %v, want ErrBlocked", err)
	}
}

// TestMirrorFailsFast: a mirror that keeps answering 500 is retried once,
// not with the upstream's full backoff (1 s, 2 s, 4 s), before the next
// endpoint.
func TestMirrorFailsFast(t *testing.T) {
	isolateCredentials(t)
	p := mustPlatform(t, "linux/arm64")
	up := newTestRegistry(t, nil)
	e500 := newTestRegistry(t, fail500)
	ref := up.host + "/app:1"
	pushImage(t, ref, mkImage(t, p, 2))
	conf := filepath.Join(t.TempDir(), "registries.conf")
	writeConf(t, conf, reg(up.host, up.host, e500.host))
	opts := []Option{WithPlatform(p), WithRegistriesConf(conf)} // the default backoff
	s := newClient(t.TempDir())
	start := time.Now()
	img, err := s.Resolve(context.Background(), ref, opts...)
	if err == nil {
		err = s.Fetch(context.Background(), img, opts...)
	}
	if took := time.Since(start); err != nil || took > 5*time.Second {
		t.Errorf("pull past a mirror answering 500: %v after %v, want success within 5s", err, took.Round(time.Millisecond))
	}
}
