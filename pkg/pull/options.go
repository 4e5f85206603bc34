package pull

import (
	"io"
	"log/slog"
	"net/http"

	"github.com/google/go-containerregistry/pkg/authn"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// Option configures Resolve and Fetch. The option set mirrors
// go-containerregistry's remote options.
type Option func(*options)

type options struct {
	platform  v1.Platform
	policy    Policy
	transport http.RoundTripper
	logger    *slog.Logger
	keychain  authn.Keychain
	jobs      int
}

// defaultJobs is how many layers Fetch downloads at once by default.
const defaultJobs = 4

func makeOptions(opts []Option) *options {
	o := &options{
		platform:  HostPlatform(),
		policy:    PullMissing,
		transport: remote.DefaultTransport,
		logger:    slog.New(slog.NewTextHandler(io.Discard, nil)),
		keychain:  authn.DefaultKeychain,
		jobs:      defaultJobs,
	}
	for _, opt := range opts {
		opt(o)
	}
	return o
}

// WithPlatform selects the platform to resolve. Default: HostPlatform().
func WithPlatform(p v1.Platform) Option {
	return func(o *options) { o.platform = p }
}

// WithPolicy sets the pull policy. Default: PullMissing.
func WithPolicy(p Policy) Option {
	return func(o *options) {
		if p != "" {
			o.policy = p
		}
	}
}

// WithTransport sets the HTTP transport used to talk to registries.
// Default: remote.DefaultTransport.
func WithTransport(t http.RoundTripper) Option {
	return func(o *options) {
		if t != nil {
			o.transport = t
		}
	}
}

// WithLogger sets the logger for progress and cache decisions.
// Default: a logger that discards everything.
func WithLogger(l *slog.Logger) Option {
	return func(o *options) {
		if l != nil {
			o.logger = l
		}
	}
}

// WithKeychain sets where registry credentials come from.
// Default: authn.DefaultKeychain (docker/podman config files).
func WithKeychain(k authn.Keychain) Option {
	return func(o *options) {
		if k != nil {
			o.keychain = k
		}
	}
}

// WithJobs sets how many layer blobs Fetch downloads in parallel.
// Default: 4. Values below 1 mean 1.
func WithJobs(n int) Option {
	return func(o *options) {
		if n < 1 {
			n = 1
		}
		o.jobs = n
	}
}
