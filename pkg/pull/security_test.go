package pull

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
)

// staticKeychain gives the same credentials for every registry.
type staticKeychain struct{ user, pass string }

func (k staticKeychain) Resolve(authn.Resource) (authn.Authenticator, error) {
	return &authn.Basic{Username: k.user, Password: k.pass}, nil
}

func TestMayPlainHTTPCredentials(t *testing.T) {
	t.Setenv(EnvInsecureCredentials, "build.lan, 10.1.2.3:5000")
	o := makeOptions([]Option{WithInsecureRegistries("10.9.9.9:5000,build.lan,10.1.2.3:5000")})
	for _, tc := range []struct {
		host string
		want bool
	}{
		{"127.0.0.1:5000", true},
		{"[::1]:5000", true},
		{"localhost:5000", true},
		{"reg.localhost:5000", true}, // connected to 127.0.0.1 without DNS
		{"10.9.9.9:5000", false},     // insecure, but no opt-in for passwords
		{"registry.example", false},
		{"build.lan:5000", true}, // opted in (every port)
		{"10.1.2.3:5000", true},  // opted in
		{"10.1.2.3:5001", false}, // another port
		{"localhost.example.com", false},
		{"127.0.0.1.nip.io:5000", false},
	} {
		if got := o.mayPlainHTTPCredentials(tc.host); got != tc.want {
			t.Errorf("mayPlainHTTPCredentials(%q) = %v, want %v", tc.host, got, tc.want)
		}
	}
}

// TestNoPasswordOverPlainHTTP is the attack of issue 13 item 11a: a
// registry listed with --insecure-registry on another machine asks for
// Basic auth over plain HTTP, and xrun sent the user's password in clear
// text to whoever answers on the network. The test registry is on
// 127.0.0.1, so it is reached under a name that is not loopback
// (10.9.9.9:5000), through a transport that forwards to it.
func TestNoPasswordOverPlainHTTP(t *testing.T) {
	isolateCredentials(t)
	tr := newTestRegistry(t, basicAuth("me", "secret"))
	p := mustPlatform(t, "linux/arm64")
	pushWithAuth(t, tr.host+"/private:1", "me", "secret")
	var sawPassword atomic.Int32
	forward := &http.Transport{DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, network, tr.host)
	}}
	spy := roundTripFunc(func(r *http.Request) (*http.Response, error) {
		if _, _, ok := r.BasicAuth(); ok {
			sawPassword.Add(1)
		}
		return forward.RoundTrip(r)
	})
	const remote = "10.9.9.9:5000"
	ref := remote + "/private:1"
	opts := testOpts(p, WithTransport(spy), WithInsecureRegistries(remote), WithKeychain(staticKeychain{"me", "secret"}))

	_, err := newClient(t.TempDir()).Resolve(context.Background(), ref, opts...)
	if err == nil || !errors.Is(err, errPlainHTTPCredentials) {
		t.Fatalf("Resolve(%s) with a password over plain HTTP = %v, want it refused", ref, err)
	}
	if msg := err.Error(); strings.Contains(msg, "\n") || !strings.Contains(msg, EnvInsecureCredentials+"="+remote) || !strings.Contains(msg, "use HTTPS") {
		t.Errorf("error %q: want one line saying to use HTTPS or set %s", msg, EnvInsecureCredentials)
	}
	if n := sawPassword.Load(); n != 0 {
		t.Errorf("the password went out %d times", n)
	}

	// The user's explicit opt-in.
	t.Setenv(EnvInsecureCredentials, remote)
	if _, err := newClient(t.TempDir()).Resolve(context.Background(), ref, opts...); err != nil {
		t.Fatalf("Resolve(%s) with %s=%s: %v", ref, EnvInsecureCredentials, remote, err)
	}
	if sawPassword.Load() == 0 {
		t.Errorf("with the opt-in, the password was not sent")
	}

	// On this machine, no opt-in is needed.
	t.Setenv(EnvInsecureCredentials, "")
	if _, err := newClient(t.TempDir()).Resolve(context.Background(), tr.host+"/private:1", testOpts(p, WithKeychain(staticKeychain{"me", "secret"}))...); err != nil {
		t.Errorf("Resolve from a loopback registry with a password: %v", err)
	}
}

// TestLocalhostNamesSkipDNS is the attack of issue 13 item 11b: xrun
// trusts foo.localhost as loopback (plain HTTP, no --insecure-registry),
// but Go's resolver asked the network's DNS server for it, which could
// answer with another machine. Localhost names must reach 127.0.0.1
// without DNS and without a proxy.
func TestLocalhostNamesSkipDNS(t *testing.T) {
	isolateCredentials(t)
	tr := newTestRegistry(t, nil)
	p := mustPlatform(t, "linux/arm64")
	pushImage(t, tr.host+"/app:1", mkImage(t, p, 1))
	_, port, _ := net.SplitHostPort(tr.host)

	for _, proxy := range []bool{false, true} {
		var dialed []string
		dialer := &net.Dialer{}
		base := &http.Transport{
			// What is dialed: a name here would be resolved by DNS.
			DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
				dialed = append(dialed, addr)
				return dialer.DialContext(ctx, network, addr)
			},
		}
		if proxy {
			// A proxy for everything: localhost names must not go through it.
			base.Proxy = func(*http.Request) (*url.URL, error) { return url.Parse("http://192.0.2.1:3128") }
		}
		for _, host := range []string{"registry.localhost", "Foo.Bar.LOCALHOST", "localhost"} {
			ref := host + ":" + port + "/app:1"
			if _, err := newClient(t.TempDir()).Resolve(context.Background(), ref, testOpts(p, WithTransport(base))...); err != nil {
				t.Errorf("proxy %v: Resolve(%s): %v", proxy, ref, err)
			}
		}
		for _, a := range dialed {
			if a != "127.0.0.1:"+port {
				t.Errorf("proxy %v: dialed %s, want only 127.0.0.1:%s (no DNS, no proxy)", proxy, a, port)
			}
		}
		if len(dialed) == 0 {
			t.Errorf("proxy %v: nothing dialed", proxy)
		}
	}
}

// stallBody sends the first half of the first blob body it serves, then
// nothing more (keeping the connection open) until the client gives up.
func stallBody(count *atomic.Int32) func(http.Handler) http.Handler {
	return halfResponse(firstBlobGet(count), stall)
}

// TestStreamIdleTimeout is the attack of issue 13 item 11c: a registry that
// stops sending in the middle of a layer hung the pull for ever. After the
// idle timeout the download resumes on a new connection.
func TestStreamIdleTimeout(t *testing.T) {
	isolateCredentials(t)
	var n atomic.Int32
	tr := newTestRegistry(t, stallBody(&n))
	p := mustPlatform(t, "linux/arm64")
	ref := tr.host + "/stall:1"
	pushImage(t, ref, mkImage(t, p, 1))
	n.Store(1) // the config downloads whole
	s := newClient(t.TempDir())
	img, err := s.Resolve(context.Background(), ref, testOpts(p)...)
	if err != nil {
		t.Fatal(err)
	}
	n.Store(0)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, err := s.Stream(ctx, img, testOpts(p, withIdleTimeout(200*time.Millisecond))...)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	r, err := st.Open(0)
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Now()
	b, err := io.ReadAll(r)
	r.Close()
	if err != nil {
		t.Fatalf("reading a layer whose first download stalled: %v (after %v)", err, time.Since(t0))
	}
	if int64(len(b)) != img.Layers[0].Size || !s.HasBlob(img.Layers[0].Digest) {
		t.Errorf("read %d bytes (want %d), stored %v", len(b), img.Layers[0].Size, s.HasBlob(img.Layers[0].Digest))
	}
	if n.Load() < 2 {
		t.Errorf("%d blob GETs, want the stalled one and a retry", n.Load())
	}
	checkBlobs(t, s)
}

// TestIdleErrorGivesUp: a registry that always stalls fails the pull with
// a message that says so, after the retries.
func TestIdleErrorGivesUp(t *testing.T) {
	err := blobError("r", "layer 1/1 x", &idleError{time.Minute})
	if !errors.Is(err, ErrNetwork) || !bodyTransient(&idleError{time.Minute}) {
		t.Errorf("blobError(idle) = %v: want a network error, retried", err)
	}
	if !strings.Contains(err.Error(), "the registry stopped sending: nothing received for 1m0s") {
		t.Errorf("blobError(idle) = %v", err)
	}
}

// TestManifestIdleTimeout: a registry that stops sending in the middle of a
// manifest fails the pull with a message that says so, instead of hanging.
func TestManifestIdleTimeout(t *testing.T) {
	isolateCredentials(t)
	tr := newTestRegistry(t, halfResponse(func(r *http.Request) bool {
		return r.Method == http.MethodGet && strings.Contains(r.URL.Path, "/manifests/")
	}, stall))
	p := mustPlatform(t, "linux/arm64")
	ref := tr.host + "/stall:1"
	pushImage(t, ref, mkImage(t, p, 1))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err := newClient(t.TempDir()).Resolve(ctx, ref, testOpts(p, withIdleTimeout(200*time.Millisecond))...)
	if err == nil || !strings.Contains(err.Error(), "the registry stopped sending") || ctx.Err() != nil {
		t.Errorf("Resolve from a registry that stalls mid-manifest = %v (ctx %v), want the idle error", err, ctx.Err())
	}
}
