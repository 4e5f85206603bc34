package pull

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
)

// basicAuth wraps a registry handler so that it wants user/pass.
func basicAuth(user, pass string) func(http.Handler) http.Handler {
	return func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			u, p, ok := r.BasicAuth()
			if !ok || u != user || p != pass {
				w.Header().Set("WWW-Authenticate", `Basic realm="test"`)
				http.Error(w, `{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}`, http.StatusUnauthorized)
				return
			}
			h.ServeHTTP(w, r)
		})
	}
}

// isolateCredentials points every credential location at empty temp dirs.
func isolateCredentials(t *testing.T) string {
	t.Helper()
	home := t.TempDir()
	t.Setenv("HOME", home)
	t.Setenv("DOCKER_CONFIG", filepath.Join(home, "docker"))
	t.Setenv("XDG_RUNTIME_DIR", filepath.Join(home, "run"))
	t.Setenv("XDG_CONFIG_HOME", filepath.Join(home, "config"))
	t.Setenv("REGISTRY_AUTH_FILE", "")
	return home
}

func pushWithAuth(t *testing.T, ref string, user, pass string) {
	t.Helper()
	r, err := name.ParseReference(ref)
	if err != nil {
		t.Fatal(err)
	}
	img := mkImage(t, mustPlatform(t, "linux/arm64"), 2)
	if err := remote.Write(r, img, remote.WithAuth(&authn.Basic{Username: user, Password: pass})); err != nil {
		t.Fatal(err)
	}
}

func TestAuth(t *testing.T) {
	home := isolateCredentials(t)
	tr := newTestRegistry(t, basicAuth("me", "secret"))
	ref := tr.host + "/private:1"
	pushWithAuth(t, ref, "me", "secret")
	p := mustPlatform(t, "linux/arm64")
	ctx := context.Background()

	// No credentials: a 401 that says to log in.
	_, err := newClient(t.TempDir()).Resolve(ctx, ref, WithPlatform(p))
	if err == nil || !strings.Contains(err.Error(), "access denied") || !strings.Contains(err.Error(), "log in") {
		t.Errorf("Resolve without credentials = %v, want an access denied error that says to log in", err)
	}
	// Wrong credentials: the same.
	if _, err := Login(ctx, tr.host, "me", "wrong"); !errors.Is(err, ErrUnauthorized) {
		t.Errorf("Login(wrong password) = %v, want ErrUnauthorized", err)
	}
	if _, err := os.Stat(filepath.Join(home, "docker", "config.json")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("failed login wrote the config: stat = %v", err)
	}

	// Credentials from each place the default keychain reads.
	auth := base64.StdEncoding.EncodeToString([]byte("me:secret"))
	authJSON := `{"auths":{"` + tr.host + `":{"auth":"` + auth + `"}}}`
	for _, tc := range []struct {
		name  string
		setup func(t *testing.T)
	}{
		{"xrun login", func(t *testing.T) {
			if _, err := Login(ctx, tr.host, "me", "secret"); err != nil {
				t.Fatalf("Login = %v", err)
			}
		}},
		{"podman XDG_RUNTIME_DIR", func(t *testing.T) {
			writeFile(t, filepath.Join(home, "run", "containers", "auth.json"), authJSON)
		}},
		{"podman XDG_CONFIG_HOME", func(t *testing.T) {
			writeFile(t, filepath.Join(home, "config", "containers", "auth.json"), authJSON)
		}},
		{"REGISTRY_AUTH_FILE", func(t *testing.T) {
			f := filepath.Join(home, "elsewhere.json")
			writeFile(t, f, authJSON)
			t.Setenv("REGISTRY_AUTH_FILE", f)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, d := range []string{"docker", "run", "config"} {
				os.RemoveAll(filepath.Join(home, d))
			}
			tc.setup(t)
			s := newClient(t.TempDir())
			img, err := s.Resolve(ctx, ref, WithPlatform(p))
			if err != nil {
				t.Fatalf("Resolve with credentials = %v", err)
			}
			if err := s.Fetch(ctx, img, WithPlatform(p)); err != nil {
				t.Fatalf("Fetch with credentials = %v", err)
			}
		})
	}
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestLoginLogoutFile(t *testing.T) {
	home := isolateCredentials(t)
	tr := newTestRegistry(t, basicAuth("me", "p@ss:word"))
	cfgPath := filepath.Join(home, "docker", "config.json")
	// Whatever else the file holds is kept.
	writeFile(t, cfgPath, `{"auths":{"other.example":{"auth":"eDp5"}},"proxies":{"default":{"httpProxy":"http://proxy:3128"}}}`)
	os.Chmod(cfgPath, 0o644)

	where, err := Login(context.Background(), "http://"+tr.host+"/", "me", "p@ss:word")
	if err != nil {
		t.Fatalf("Login = %v", err)
	}
	if where != cfgPath {
		t.Errorf("Login saved to %q, want %q", where, cfgPath)
	}
	fi, err := os.Stat(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("config mode = %v, want 0600", fi.Mode().Perm())
	}
	var cfg struct {
		Auths   map[string]map[string]string `json:"auths"`
		Proxies map[string]any               `json:"proxies"`
	}
	b, _ := os.ReadFile(cfgPath)
	if err := json.Unmarshal(b, &cfg); err != nil {
		t.Fatalf("config.json = %s: %v", b, err)
	}
	if got, want := cfg.Auths[tr.host]["auth"], base64.StdEncoding.EncodeToString([]byte("me:p@ss:word")); got != want {
		t.Errorf("auths[%q].auth = %q, want %q", tr.host, got, want)
	}
	if cfg.Auths["other.example"]["auth"] != "eDp5" || cfg.Proxies["default"] == nil {
		t.Errorf("login lost other settings: %s", b)
	}
	if left, _ := filepath.Glob(filepath.Join(home, "docker", "*.tmp-*")); len(left) > 0 {
		t.Errorf("temp files left: %v", left)
	}
	// Docker Hub's key is its historical URL.
	if got := authKey("docker.io"); got != "https://index.docker.io/v1/" {
		t.Errorf("authKey(docker.io) = %q", got)
	}

	if _, removed, err := Logout(tr.host); err != nil || !removed {
		t.Fatalf("Logout = %v, %v; want removed", removed, err)
	}
	b, _ = os.ReadFile(cfgPath)
	cfg.Auths = nil
	json.Unmarshal(b, &cfg)
	if _, ok := cfg.Auths[tr.host]; ok || cfg.Auths["other.example"] == nil {
		t.Errorf("after logout: %s", b)
	}
	if _, removed, err := Logout(tr.host); err != nil || removed {
		t.Errorf("second Logout = %v, %v; want not removed", removed, err)
	}
}

// failFirst makes the first n GETs of paths containing part fail with code.
func failFirst(part string, n int32, code int, count *atomic.Int32) func(http.Handler) http.Handler {
	return func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method == http.MethodGet && strings.Contains(r.URL.Path, part) && count.Add(1) <= n {
				http.Error(w, "try later", code)
				return
			}
			h.ServeHTTP(w, r)
		})
	}
}

var fastBackoff = remote.Backoff{Duration: 5 * time.Millisecond, Factor: 2, Steps: 4}

func TestRetry(t *testing.T) {
	isolateCredentials(t)
	p := mustPlatform(t, "linux/arm64")
	ctx := context.Background()

	t.Run("500 then success", func(t *testing.T) {
		var manifests, blobs atomic.Int32
		tr := newTestRegistry(t, func(h http.Handler) http.Handler {
			return failFirst("/manifests/", 2, 500, &manifests)(failFirst("/blobs/", 2, 503, &blobs)(h))
		})
		ref := tr.host + "/flaky:1"
		pushImage(t, ref, mkImage(t, p, 2))
		manifests.Store(0)
		blobs.Store(0)
		s := newClient(t.TempDir())
		img, err := s.Resolve(ctx, ref, testOpts(p, withBackoff(fastBackoff))...)
		if err != nil {
			t.Fatalf("Resolve = %v", err)
		}
		if err := s.Fetch(ctx, img, testOpts(p, withBackoff(fastBackoff))...); err != nil {
			t.Fatalf("Fetch = %v", err)
		}
		if manifests.Load() < 3 || blobs.Load() < 3 {
			t.Errorf("manifest GETs %d, blob GETs %d: the failures were not retried", manifests.Load(), blobs.Load())
		}
	})
	t.Run("always 503", func(t *testing.T) {
		var n atomic.Int32
		tr := newTestRegistry(t, failFirst("/manifests/", 1000, 503, &n))
		ref := tr.host + "/down:1"
		_, err := newClient(t.TempDir()).Resolve(ctx, ref, testOpts(p, withBackoff(fastBackoff))...)
		if !errors.Is(err, ErrNetwork) || !strings.Contains(err.Error(), "503") || !strings.Contains(err.Error(), "try again later") {
			t.Errorf("Resolve against a failing registry = %v, want ErrNetwork saying 503 and to try again later", err)
		}
		if got := n.Load(); got < 2 || got > 10 {
			t.Errorf("%d manifest GETs, want a few retries", got)
		}
	})
}

// halfResponse serves only the first half of the responses match selects,
// then calls after (which breaks or stalls the connection).
func halfResponse(match func(*http.Request) bool, after func(http.ResponseWriter, *http.Request)) func(http.Handler) http.Handler {
	return func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if !match(r) {
				h.ServeHTTP(w, r)
				return
			}
			rec := &bufferWriter{header: http.Header{}}
			h.ServeHTTP(rec, r)
			for k, v := range rec.header {
				w.Header()[k] = v
			}
			w.WriteHeader(rec.code)
			w.Write(rec.body[:len(rec.body)/2])
			w.(http.Flusher).Flush()
			after(w, r)
		})
	}
}

// firstBlobGet matches the first GET of a blob body (count counts them).
func firstBlobGet(count *atomic.Int32) func(*http.Request) bool {
	return func(r *http.Request) bool {
		return r.Method == http.MethodGet && strings.Contains(r.URL.Path, "/blobs/") && count.Add(1) == 1
	}
}

// cutBody serves only the first half of the first response of blob bodies,
// then breaks the connection.
func cutBody(count *atomic.Int32) func(http.Handler) http.Handler {
	return halfResponse(firstBlobGet(count), func(w http.ResponseWriter, _ *http.Request) {
		if conn, _, err := w.(http.Hijacker).Hijack(); err == nil {
			conn.Close()
		}
	})
}

// stall keeps the connection open, sending nothing, until the client gives
// up (or a minute passes).
func stall(_ http.ResponseWriter, r *http.Request) {
	select {
	case <-r.Context().Done():
	case <-time.After(time.Minute):
	}
}

type bufferWriter struct {
	header http.Header
	code   int
	body   []byte
}

func (b *bufferWriter) Header() http.Header { return b.header }
func (b *bufferWriter) WriteHeader(c int)   { b.code = c }
func (b *bufferWriter) Write(p []byte) (int, error) {
	if b.code == 0 {
		b.code = 200
	}
	b.body = append(b.body, p...)
	return len(p), nil
}

func TestStreamResumesCutBody(t *testing.T) {
	isolateCredentials(t)
	var n atomic.Int32
	tr := newTestRegistry(t, cutBody(&n))
	p := mustPlatform(t, "linux/arm64")
	ref := tr.host + "/cut:1"
	pushImage(t, ref, mkImage(t, p, 1))
	n.Store(1) // the config downloads whole
	s := newClient(t.TempDir())
	img, err := s.Resolve(context.Background(), ref, testOpts(p)...)
	if err != nil {
		t.Fatal(err)
	}
	n.Store(0)
	st, err := s.Stream(context.Background(), img, testOpts(p)...)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	r, err := st.Open(0)
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(r)
	r.Close()
	if err != nil {
		t.Fatalf("reading a layer whose first download was cut: %v", err)
	}
	if int64(len(b)) != img.Layers[0].Size || !s.HasBlob(img.Layers[0].Digest) {
		t.Errorf("read %d bytes (want %d), stored %v", len(b), img.Layers[0].Size, s.HasBlob(img.Layers[0].Digest))
	}
	if n.Load() < 2 {
		t.Errorf("%d blob GETs, want the cut one and a retry", n.Load())
	}
	checkBlobs(t, s)
}

// TestStreamReadsWhileDownloading checks that a reader gets a layer's
// first bytes before its download ends, and EOF only once it is stored.
func TestStreamReadsWhileDownloading(t *testing.T) {
	isolateCredentials(t)
	release := make(chan struct{})
	var once sync.Once
	var slow atomic.Bool
	tr := newTestRegistry(t, func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if !slow.Load() || r.Method != http.MethodGet || !strings.Contains(r.URL.Path, "/blobs/") {
				h.ServeHTTP(w, r)
				return
			}
			rec := &bufferWriter{header: http.Header{}}
			h.ServeHTTP(rec, r)
			for k, v := range rec.header {
				w.Header()[k] = v
			}
			w.WriteHeader(rec.code)
			half := len(rec.body) / 2
			w.Write(rec.body[:half])
			w.(http.Flusher).Flush()
			<-release
			w.Write(rec.body[half:])
		})
	})
	p := mustPlatform(t, "linux/arm64")
	ref := tr.host + "/slow:1"
	pushImage(t, ref, mkImage(t, p, 1))
	s := newClient(t.TempDir())
	img, err := s.Resolve(context.Background(), ref, testOpts(p)...)
	if err != nil {
		t.Fatal(err)
	}
	slow.Store(true)
	st, err := s.Stream(context.Background(), img, testOpts(p)...)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	defer once.Do(func() { close(release) })
	r, err := st.Open(0)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	buf := make([]byte, 16)
	if _, err := io.ReadFull(r, buf); err != nil {
		t.Fatalf("first bytes: %v", err)
	}
	if s.HasBlob(img.Layers[0].Digest) {
		t.Fatalf("blob stored before its download ended")
	}
	once.Do(func() { close(release) })
	rest, err := io.ReadAll(r)
	if err != nil || int64(len(rest)+len(buf)) != img.Layers[0].Size {
		t.Fatalf("rest: %d bytes, %v", len(rest), err)
	}
	if !s.HasBlob(img.Layers[0].Digest) {
		t.Errorf("EOF before the blob was stored")
	}
}

func TestStreamCorruptBlob(t *testing.T) {
	isolateCredentials(t)
	var bad atomic.Value
	bad.Store("")
	tr := newTestRegistry(t, func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if d := bad.Load().(string); d != "" && r.Method == http.MethodGet && strings.HasSuffix(r.URL.Path, "/blobs/"+d) {
				w = &corruptWriter{ResponseWriter: w}
			}
			h.ServeHTTP(w, r)
		})
	})
	p := mustPlatform(t, "linux/arm64")
	ref := tr.host + "/bad:1"
	pushImage(t, ref, mkImage(t, p, 2))
	s := newClient(t.TempDir())
	img, err := s.Resolve(context.Background(), ref, testOpts(p)...)
	if err != nil {
		t.Fatal(err)
	}
	bad.Store(img.Layers[1].Digest.String())
	st, err := s.Stream(context.Background(), img, testOpts(p)...)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	r, _ := st.Open(1)
	_, err = io.ReadAll(r)
	r.Close()
	if !errors.Is(err, ErrDigestMismatch) || !strings.Contains(err.Error(), "layer 2/2 "+img.Layers[1].Digest.String()) {
		t.Errorf("reading a corrupt layer = %v, want ErrDigestMismatch naming layer 2/2", err)
	}
	if s.HasBlob(img.Layers[1].Digest) {
		t.Errorf("corrupt blob stored")
	}
}

func TestInsecureRegistries(t *testing.T) {
	t.Setenv(EnvInsecureRegistries, "10.1.2.3:5000, build.lan")
	o := makeOptions([]Option{WithInsecureRegistries("registry.example:8080")})
	for _, tc := range []struct {
		reg  string
		want bool
	}{
		{"127.0.0.1:5000", true},
		{"localhost:5000", true},
		{"[::1]:5000", true},
		{"10.1.2.3:5000", true},  // from the environment
		{"10.1.2.3:5001", false}, // another port
		{"10.9.9.9:5000", false}, // RFC 1918 is not enough (go-containerregistry would use HTTP)
		{"build.lan:5000", true}, // a bare host covers every port
		{"registry.example:8080", true},
		{"registry.example", false},
		{"ghcr.io", false},
		{"index.docker.io", false},
	} {
		if got := o.isInsecure(tc.reg); got != tc.want {
			t.Errorf("isInsecure(%q) = %v, want %v", tc.reg, got, tc.want)
		}
	}

	// The transport refuses plain HTTP to a registry not listed, even an
	// RFC 1918 one, and says how to allow it.
	var hits atomic.Int32
	rt := (&options{transport: roundTripFunc(func(*http.Request) (*http.Response, error) {
		hits.Add(1)
		return &http.Response{StatusCode: 200, Body: http.NoBody}, nil
	})}).roundTripper()
	for _, tc := range []struct {
		url string
		ok  bool
	}{
		{"http://10.9.9.9:5000/v2/", false},
		{"https://10.9.9.9:5000/v2/", true},
		{"http://127.0.0.1:5000/v2/", true},
	} {
		req, _ := http.NewRequest(http.MethodGet, tc.url, nil)
		_, err := rt.RoundTrip(req)
		if (err == nil) != tc.ok {
			t.Errorf("RoundTrip(%s) = %v, want ok %v", tc.url, err, tc.ok)
		}
		if err != nil && (!errors.Is(err, errPlainHTTP) || !strings.Contains(err.Error(), "--insecure-registry 10.9.9.9:5000")) {
			t.Errorf("RoundTrip(%s) error = %v, want it to suggest --insecure-registry", tc.url, err)
		}
	}
	if got := hits.Load(); got != 2 {
		t.Errorf("%d requests went out, want 2", got)
	}

	// A listed registry's reference gets HTTP as a fallback.
	r, err := o.parseRef("registry.example:8080/x:1")
	if err != nil || r.Context().Scheme() != "http" {
		t.Errorf("parseRef(listed) scheme = %v, %v; want http", r, err)
	}
	r, _ = o.parseRef("ghcr.io/x:1")
	if r.Context().Scheme() != "https" {
		t.Errorf("parseRef(ghcr.io) scheme = %s, want https", r.Context().Scheme())
	}
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

func TestProxyFromEnvironment(t *testing.T) {
	if defaultTransport().Proxy == nil {
		t.Errorf("the default transport ignores HTTP(S)_PROXY")
	}
}

// TestErrorKinds: a full disk is not a network problem (syscall.Errno
// satisfies net.Error), and a registry that keeps failing says so.
func TestErrorKinds(t *testing.T) {
	full := blobError("r", "layer 1/1 x", &os.PathError{Op: "write", Path: "/c/blobs/tmp/b", Err: syscall.ENOSPC})
	if errors.Is(full, ErrNetwork) || !errors.Is(full, syscall.ENOSPC) || strings.Contains(full.Error(), "network") {
		t.Errorf("blobError(ENOSPC) = %v: want no network advice, and errors.Is ENOSPC", full)
	}
	reset := blobError("r", "layer 1/1 x", &net.OpError{Op: "read", Net: "tcp", Err: syscall.ECONNRESET})
	if !errors.Is(reset, ErrNetwork) {
		t.Errorf("blobError(ECONNRESET) = %v, want ErrNetwork", reset)
	}
	if !bodyTransient(reset) || bodyTransient(&transport.Error{StatusCode: 500}) {
		t.Errorf("bodyTransient: a reset is resumed, an HTTP 500 is left to the transport's retries")
	}
	e500 := blobError("r", "config x", &transport.Error{StatusCode: 500})
	for _, want := range []string{"500", "retried", "try again later"} {
		if !strings.Contains(e500.Error(), want) {
			t.Errorf("blobError(500) = %v, want it to say %q", e500, want)
		}
	}
}
