package pull

import (
	"io"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// Option configures Resolve, Fetch, Stream and Login. The option set
// mirrors go-containerregistry's remote options.
type Option func(*options)

type options struct {
	platform  v1.Platform
	policy    Policy
	transport http.RoundTripper
	logger    *slog.Logger
	keychain  authn.Keychain
	jobs      int
	insecure  []string
	progress  Progress
	backoff   remote.Backoff
	attempts  int // tries per blob body (a reset mid-body resumes)
	// insecureCreds lists registries a password may be sent to over plain
	// HTTP (XRUN_INSECURE_CREDENTIALS).
	insecureCreds []string
	// idle is how long a blob body may send nothing before the download
	// is abandoned (and retried): 0 means defaultIdleTimeout.
	idle time.Duration
	// loopback, when set, replaces isLoopback in the decision to send a
	// password over plain HTTP (a test seam: test servers are all on
	// 127.0.0.1).
	loopback func(hostport string) bool
	// registriesConf, when set, are the registries.conf files to read
	// instead of RegistriesConfFiles(); mirrors is the configuration once
	// read.
	registriesConf []string
	mirrors        *mirrorConfig
}

// defaultJobs is how many layers Fetch downloads at once by default.
const defaultJobs = 4

// defaultBackoff is the wait between retries of a request that failed with
// a transient error (5xx, 429, reset, timeout): 1 s, 2 s, 4 s, then the
// error is reported.
var defaultBackoff = remote.Backoff{Duration: time.Second, Factor: 2, Jitter: 0.1, Steps: 4}

// EnvInsecureRegistries is the public environment variable listing
// registries (comma or space separated) that may be spoken to over plain
// HTTP, like --insecure-registry.
const EnvInsecureRegistries = "XRUN_INSECURE_REGISTRIES"

func makeOptions(opts []Option) *options {
	o := &options{
		platform:      HostPlatform(),
		policy:        PullMissing,
		logger:        slog.New(slog.NewTextHandler(io.Discard, nil)),
		keychain:      DefaultKeychain(),
		jobs:          defaultJobs,
		insecure:      splitList(os.Getenv(EnvInsecureRegistries)),
		insecureCreds: splitList(os.Getenv(EnvInsecureCredentials)),
		progress:      noProgress{},
		backoff:       defaultBackoff,
		attempts:      3,
	}
	for _, opt := range opts {
		opt(o)
	}
	return o
}

func splitList(s string) []string {
	return strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == ' ' || r == '\t' || r == '\n' })
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

// WithTransport sets the HTTP transport used to talk to registries. xrun
// still wraps it: retries, and plain HTTP refused except to loopback and
// insecure registries. Default: a clone of remote.DefaultTransport, which
// honours HTTP_PROXY, HTTPS_PROXY and NO_PROXY.
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
// Default: DefaultKeychain() (docker's config.json and credential helpers,
// then podman's auth.json files).
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

// WithInsecureRegistries adds registries (host or host:port) that may be
// spoken to over plain HTTP and whose TLS certificate is not verified.
// Loopback registries (localhost, 127.0.0.0/8, ::1) always may.
// Default: the registries listed in $XRUN_INSECURE_REGISTRIES.
func WithInsecureRegistries(regs ...string) Option {
	return func(o *options) {
		for _, r := range regs {
			o.insecure = append(o.insecure, splitList(r)...)
		}
	}
}

// WithProgress reports download progress to p. Default: no reports.
func WithProgress(p Progress) Option {
	return func(o *options) {
		if p != nil {
			o.progress = p
		}
	}
}

// withIdleTimeout is a test seam: how long a blob body may stall.
func withIdleTimeout(d time.Duration) Option {
	return func(o *options) { o.idle = d }
}

// withBackoff is a test seam: shorter waits between retries.
func withBackoff(b remote.Backoff) Option {
	return func(o *options) { o.backoff = b }
}

// WithRegistriesConf makes Resolve and Stream read registry mirrors (and
// blocked and insecure registries) from these registries.conf files only,
// in order, later entries replacing earlier ones of the same prefix; no
// file at all means no mirrors. Default: RegistriesConfFiles().
func WithRegistriesConf(files ...string) Option {
	return func(o *options) {
		o.registriesConf = append([]string{}, files...)
		o.mirrors = nil
	}
}
