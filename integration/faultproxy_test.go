//go:build integration

package integration

import (
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"
)

// faultMode says which faults a faultProxy injects. The zero value passes
// everything through unchanged. Counts ("the first N") are of requests the
// proxy has seen since the mode was set.
type faultMode struct {
	// ResetFirst resets (TCP RST, no answer) the first N requests of any kind.
	ResetFirst int
	// Fail500Blobs answers 500 to the first N blob GETs; -1: to all.
	Fail500Blobs int
	// TruncateBlobs cuts the first N blob bodies after half of their bytes
	// (the connection is closed mid-body).
	TruncateBlobs int
	// CorruptBlob is a digest ("sha256:...") whose body is served with one
	// byte flipped, every time, with the right length.
	CorruptBlob string
	// Rate limits each blob body to that many bytes per second (0: unlimited),
	// so that a pull lasts long enough to be killed in the middle.
	Rate int
}

// faultStats counts what a faultProxy did.
type faultStats struct {
	Requests, BlobGets         int
	ManifestGets, PingRequests int
	Resets, Fails, Truncated   int
	Corrupted                  int
	BlobGetsByDigest           map[string]int
}

// faultProxy is an HTTP reverse proxy on 127.0.0.1 in front of the test
// registry that injects faults (see faultMode). xrun speaks plain HTTP to
// it since it is on loopback.
type faultProxy struct {
	addr string
	mu   sync.Mutex
	mode faultMode
	st   faultStats
}

// startFaultProxy starts a proxy to upstream (host:port), stopped at the
// end of the test.
func startFaultProxy(t testing.TB, upstream string, mode faultMode) *faultProxy {
	t.Helper()
	p := &faultProxy{mode: mode}
	p.st.BlobGetsByDigest = map[string]int{}
	u, err := url.Parse("http://" + upstream)
	if err != nil {
		t.Fatal(err)
	}
	rp := httputil.NewSingleHostReverseProxy(u)
	rp.FlushInterval = -1
	quiet := log.New(io.Discard, "", 0)
	rp.ErrorLog = quiet
	rp.ModifyResponse = func(resp *http.Response) error {
		req := resp.Request
		digest, isBlob := blobDigest(req.URL.Path)
		if !isBlob || req.Method != http.MethodGet || resp.StatusCode != http.StatusOK {
			return nil
		}
		p.mu.Lock()
		m := p.mode
		truncate := false
		if p.mode.TruncateBlobs > 0 {
			p.mode.TruncateBlobs--
			p.st.Truncated++
			truncate = true
		}
		corrupt := m.CorruptBlob != "" && digest == m.CorruptBlob
		if corrupt {
			p.st.Corrupted++
		}
		p.mu.Unlock()
		fb := &faultBody{rc: resp.Body, rate: m.Rate, flipAt: -1, cutAt: -1}
		if corrupt {
			fb.flipAt = max(resp.ContentLength/2, 0)
		}
		if truncate && resp.ContentLength > 1 {
			fb.cutAt = resp.ContentLength / 2
		}
		resp.Body = fb
		return nil
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{
		Handler:  http.HandlerFunc(p.serve(rp)),
		ErrorLog: quiet,
	}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	p.addr = l.Addr().String()
	return p
}

// blobDigest returns the digest of a /v2/<repo>/blobs/<digest> path.
func blobDigest(path string) (string, bool) {
	i := strings.LastIndex(path, "/blobs/")
	if i < 0 || strings.Contains(path, "/blobs/uploads") {
		return "", false
	}
	return path[i+len("/blobs/"):], true
}

func (p *faultProxy) serve(rp *httputil.ReverseProxy) func(http.ResponseWriter, *http.Request) {
	return func(w http.ResponseWriter, r *http.Request) {
		digest, isBlob := blobDigest(r.URL.Path)
		isBlobGet := isBlob && r.Method == http.MethodGet
		p.mu.Lock()
		p.st.Requests++
		switch {
		case r.URL.Path == "/v2/" || r.URL.Path == "/v2":
			p.st.PingRequests++
		case strings.Contains(r.URL.Path, "/manifests/") && r.Method == http.MethodGet:
			p.st.ManifestGets++
		case isBlobGet:
			p.st.BlobGets++
			p.st.BlobGetsByDigest[digest]++
		}
		reset := p.mode.ResetFirst > 0
		if reset {
			p.mode.ResetFirst--
			p.st.Resets++
		}
		fail := !reset && isBlobGet && p.mode.Fail500Blobs != 0
		if fail {
			if p.mode.Fail500Blobs > 0 {
				p.mode.Fail500Blobs--
			}
			p.st.Fails++
		}
		p.mu.Unlock()
		switch {
		case reset:
			resetConn(w)
		case fail:
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusInternalServerError)
			io.WriteString(w, `{"errors":[{"code":"UNKNOWN","message":"injected fault: internal server error"}]}`)
		default:
			rp.ServeHTTP(w, r)
		}
	}
}

// resetConn closes the request's connection with a TCP RST, without an
// answer.
func resetConn(w http.ResponseWriter) {
	hj, ok := w.(http.Hijacker)
	if !ok {
		panic(http.ErrAbortHandler)
	}
	c, _, err := hj.Hijack()
	if err != nil {
		panic(http.ErrAbortHandler)
	}
	if tc, ok := c.(*net.TCPConn); ok {
		tc.SetLinger(0)
	}
	c.Close()
}

// setMode replaces the faults injected from now on.
func (p *faultProxy) setMode(m faultMode) {
	p.mu.Lock()
	p.mode = m
	p.mu.Unlock()
}

// stats returns a copy of the counters.
func (p *faultProxy) stats() faultStats {
	p.mu.Lock()
	defer p.mu.Unlock()
	s := p.st
	s.BlobGetsByDigest = map[string]int{}
	for k, v := range p.st.BlobGetsByDigest {
		s.BlobGetsByDigest[k] = v
	}
	return s
}

func (s faultStats) String() string {
	return fmt.Sprintf("%d requests (%d pings, %d manifest GETs, %d blob GETs); injected %d resets, %d HTTP 500, %d truncated and %d corrupted bodies",
		s.Requests, s.PingRequests, s.ManifestGets, s.BlobGets, s.Resets, s.Fails, s.Truncated, s.Corrupted)
}

// ref returns a reference to repo through the proxy.
func (p *faultProxy) ref(repo string) string { return p.addr + "/" + repo }

// errInjectedCut is what a truncated body fails with; the reverse proxy
// then aborts the response, so the client sees the connection end early.
var errInjectedCut = errors.New("injected fault: body cut")

// faultBody serves a blob body slowly (rate), with one byte flipped at
// flipAt, or cut at cutAt (-1: neither).
type faultBody struct {
	rc     io.ReadCloser
	rate   int
	off    int64
	flipAt int64
	cutAt  int64
}

func (b *faultBody) Read(p []byte) (int, error) {
	if b.cutAt >= 0 && b.off >= b.cutAt {
		return 0, errInjectedCut
	}
	if b.rate > 0 {
		chunk := max(b.rate/50, 1) // 50 chunks a second
		if len(p) > chunk {
			p = p[:chunk]
		}
	}
	if b.cutAt >= 0 && int64(len(p)) > b.cutAt-b.off {
		p = p[:b.cutAt-b.off]
	}
	n, err := b.rc.Read(p)
	if b.flipAt >= b.off && b.flipAt < b.off+int64(n) {
		p[b.flipAt-b.off] ^= 0x5a
	}
	b.off += int64(n)
	if b.rate > 0 && n > 0 {
		time.Sleep(time.Duration(n) * time.Second / time.Duration(b.rate))
	}
	return n, err
}

func (b *faultBody) Close() error { return b.rc.Close() }
