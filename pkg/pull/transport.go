package pull

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"syscall"

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
	if errors.Is(err, errPlainHTTP) || errors.Is(err, ErrDigestMismatch) {
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

// isLoopback reports whether a registry host[:port] is this machine.
func isLoopback(hostport string) bool {
	host := hostport
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		host = h
	}
	host = strings.Trim(host, "[]")
	if host == "localhost" || strings.HasSuffix(host, ".localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
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

// parseRef parses an image reference; registries listed as insecure get
// name.Insecure so that go-containerregistry falls back to plain HTTP.
func (o *options) parseRef(ref string) (name.Reference, error) {
	r, err := name.ParseReference(ref)
	if err != nil {
		return nil, newError(ErrInvalidReference, err, "invalid image reference %q: %v", ref, err)
	}
	if reg := r.Context().RegistryStr(); !isLoopback(reg) && o.isInsecure(reg) {
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
	if ok && !isLoopback(host) {
		return g.insecure.RoundTrip(req)
	}
	return g.secure.RoundTrip(req)
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
