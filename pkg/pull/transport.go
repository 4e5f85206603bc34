package pull

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
)

// retryStatusCodes are the HTTP statuses retried with backoff: timeouts,
// rate limits and server errors.
var retryStatusCodes = []int{
	http.StatusRequestTimeout, http.StatusTooManyRequests, http.StatusInternalServerError,
	http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout,
}

// transient reports whether err is worth retrying: a timeout, a reset or
// refused-mid-way connection, a truncated response, or what the net
// package calls temporary. Cancellation never is.
func transient(err error) bool {
	if err == nil || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false
	}
	if errors.Is(err, errPlainHTTP) || errors.Is(err, errPlainHTTPCredentials) || errors.Is(err, ErrDigestMismatch) {
		return false
	}
	var nerr net.Error
	if errors.As(err, &nerr) && nerr.Timeout() {
		return true
	}
	var terr *transport.Error
	if errors.As(err, &terr) {
		return terr.Temporary()
	}
	return errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) ||
		errors.Is(err, syscall.ECONNABORTED) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, io.EOF)
}

// bodyTransient reports whether a blob download that failed with err is
// worth fetching again from where it stopped: the connection broke or timed
// out mid-body. HTTP statuses are not: the transport already retried them
// with backoff.
func bodyTransient(err error) bool {
	var terr *transport.Error
	if errors.As(err, &terr) {
		return false
	}
	return transient(err)
}

// errPlainHTTP is wrapped by the error for a plain HTTP request to a
// registry that is neither loopback nor listed as insecure.
var errPlainHTTP = errors.New("plain HTTP refused")

// registryName returns the canonical name ("index.docker.io",
// "host:port") of a registry as a user writes it ("docker.io",
// "https://host:port/", "host:port/some/repo").
func registryName(s string) string {
	s = strings.TrimSuffix(strings.TrimPrefix(strings.TrimPrefix(s, "https://"), "http://"), "/")
	s, _, _ = strings.Cut(s, "/")
	if r, err := name.NewRegistry(s); err == nil {
		return r.RegistryStr()
	}
	return s
}

// errPlainHTTPCredentials is wrapped by the error for a request that would
// send a password (HTTP Basic credentials) over plain HTTP to a registry that
// is not on this machine.
var errPlainHTTPCredentials = errors.New("password over plain HTTP refused")

// EnvInsecureCredentials is the public environment variable listing
// registries (host or host:port, comma or space separated) to which xrun
// may send a user name and password over plain HTTP: an explicit opt-in on
// top of --insecure-registry, which alone lets xrun pull anonymously.
const EnvInsecureCredentials = "XRUN_INSECURE_CREDENTIALS"

// isLoopback reports whether a registry host[:port] is this machine: a
// loopback address, or localhost or a name under it, which xrun itself
// connects to a loopback address without asking DNS (see pinLocalhost).
func isLoopback(hostport string) bool {
	host := hostport
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		host = h
	}
	host = strings.Trim(host, "[]")
	if isLocalhostName(host) {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// isLocalhostName reports whether host is "localhost" or a name under it,
// which RFC 6761 reserves for the loopback interface.
func isLocalhostName(host string) bool {
	host = strings.ToLower(strings.TrimSuffix(host, "."))
	return host == "localhost" || strings.HasSuffix(host, ".localhost")
}

// pinLocalhost makes t connect localhost names (localhost, *.localhost) to
// 127.0.0.1 (else ::1) itself, never through DNS or a proxy. xrun trusts
// such names as loopback (plain HTTP allowed, no --insecure-registry
// needed); Go's resolver asks the network's DNS server for foo.localhost, and
// the proxy settings do not exempt it, so either could otherwise send that
// traffic, and any credentials, to another machine.
func pinLocalhost(t *http.Transport) *http.Transport {
	t = t.Clone()
	dial := t.DialContext
	if dial == nil {
		dial = (&net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}).DialContext
	}
	t.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		host, port, err := net.SplitHostPort(addr)
		if err != nil || !isLocalhostName(host) {
			return dial(ctx, network, addr)
		}
		c, err := dial(ctx, network, net.JoinHostPort("127.0.0.1", port))
		if err != nil {
			if c6, err6 := dial(ctx, network, net.JoinHostPort("::1", port)); err6 == nil {
				return c6, nil
			}
		}
		return c, err
	}
	if proxy := t.Proxy; proxy != nil {
		t.Proxy = func(req *http.Request) (*url.URL, error) {
			if isLocalhostName(req.URL.Hostname()) {
				return nil, nil
			}
			return proxy(req)
		}
	}
	return t
}

// isInsecure reports whether registry reg (canonical host[:port]) may be
// spoken to over plain HTTP: it is loopback, or it is listed (a listed
// bare host covers every port).
func (o *options) isInsecure(reg string) bool {
	if isLoopback(reg) {
		return true
	}
	host, _, err := net.SplitHostPort(reg)
	if err != nil {
		host = reg
	}
	for _, e := range o.insecure {
		e = registryName(e)
		if e == reg || e == host {
			return true
		}
	}
	return false
}

// parseRef parses an image reference; registries listed as insecure, and
// loopback ones (go-containerregistry itself recognises only some of the
// names isLoopback accepts, e.g. not REG.LOCALHOST), get name.Insecure so
// that go-containerregistry falls back to plain HTTP.
func (o *options) parseRef(ref string) (name.Reference, error) {
	r, err := name.ParseReference(ref)
	if err != nil {
		return nil, newError(ErrInvalidReference, err, "invalid image reference %q: %v", ref, err)
	}
	if reg := r.Context().RegistryStr(); o.isInsecure(reg) {
		r, err = name.ParseReference(ref, name.Insecure)
		if err != nil {
			return nil, newError(ErrInvalidReference, err, "invalid image reference %q: %v", ref, err)
		}
	}
	return r, nil
}

// roundTripper returns the transport to registries: the base transport (or
// one that skips TLS verification for insecure registries), refusing plain
// HTTP to any registry that is not loopback or listed as insecure. That
// matters because go-containerregistry itself falls back to HTTP for
// RFC 1918 addresses.
func (o *options) roundTripper() http.RoundTripper {
	base := o.transport
	if base == nil {
		base = defaultTransport()
	}
	if t, ok := base.(*http.Transport); ok {
		base = pinLocalhost(t)
	}
	insecure := base
	if t, ok := base.(*http.Transport); ok && len(o.insecure) > 0 {
		t = t.Clone()
		if t.TLSClientConfig == nil {
			t.TLSClientConfig = &tls.Config{}
		}
		t.TLSClientConfig.InsecureSkipVerify = true //nolint:gosec // only for registries the user named insecure
		insecure = t
	}
	return &guardTransport{o: o, secure: base, insecure: insecure}
}

// defaultTransport is remote.DefaultTransport with the proxy settings of
// the environment (HTTP_PROXY, HTTPS_PROXY, NO_PROXY).
func defaultTransport() *http.Transport {
	t := remote.DefaultTransport.(*http.Transport).Clone()
	t.Proxy = http.ProxyFromEnvironment
	return t
}

type guardTransport struct {
	o                *options
	secure, insecure http.RoundTripper
}

func (g *guardTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	host := req.URL.Host
	ok := g.o.isInsecure(host)
	if !ok && req.URL.Port() == "" {
		// A registry named host:443 or host:80 is reached without the port.
		ok = slices.ContainsFunc([]string{host + ":80", host + ":443"}, g.o.isInsecure)
	}
	if req.URL.Scheme == "http" && !ok {
		return nil, fmt.Errorf("%w to %s: xrun speaks HTTPS to registries that are not on this machine; if you trust the network, pass --insecure-registry %s (or set %s)",
			errPlainHTTP, host, host, EnvInsecureRegistries)
	}
	if req.URL.Scheme == "http" && hasPassword(req) && !g.o.mayPlainHTTPCredentials(host) {
		return nil, fmt.Errorf("%w to %s: anyone on the network could read it; use HTTPS for a registry that needs a login, or set %s=%s if you trust the network",
			errPlainHTTPCredentials, host, EnvInsecureCredentials, host)
	}
	rt := g.secure
	if ok && !isLoopback(host) {
		rt = g.insecure
	}
	resp, err := rt.RoundTrip(req)
	if err == nil && resp.Body != nil && resp.Body != http.NoBody {
		// Every body (blobs, manifests, tokens) fails with *idleError
		// when the registry stops sending, rather than hang.
		resp.Body = newIdleReader(resp.Body, g.o.idle)
	}
	return resp, err
}

// hasPassword reports whether req carries HTTP Basic credentials (a user
// name and password, also what a token exchange sends). Bearer tokens are
// short-lived and scoped to the pull, and anonymous ones are how public
// images are pulled: they are not refused.
func hasPassword(req *http.Request) bool {
	_, _, ok := req.BasicAuth()
	return ok
}

// mayPlainHTTPCredentials reports whether a password may go over plain HTTP
// to host (host[:port]): to this machine, or to a registry the user listed
// in XRUN_INSECURE_CREDENTIALS.
func (o *options) mayPlainHTTPCredentials(host string) bool {
	loopback := isLoopback
	if o.loopback != nil {
		loopback = o.loopback
	}
	if loopback(host) {
		return true
	}
	h, _, err := net.SplitHostPort(host)
	if err != nil {
		h = host
	}
	for _, e := range o.insecureCreds {
		if e = registryName(e); e == host || e == h {
			return true
		}
	}
	return false
}

// remoteOptions are the go-containerregistry options every request uses.
func (o *options) remoteOptions() []remote.Option {
	return []remote.Option{
		remote.WithTransport(o.roundTripper()),
		remote.WithAuthFromKeychain(o.keychain),
		remote.WithUserAgent(userAgent),
		remote.WithRetryBackoff(o.backoff),
		remote.WithRetryStatusCodes(retryStatusCodes...),
		remote.WithRetryPredicate(transient),
	}
}
