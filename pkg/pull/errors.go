package pull

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"net/url"
	"strings"

	"github.com/google/go-containerregistry/pkg/v1/remote/transport"

	"github.com/xrun-dev/xrun/pkg/store"
)

// Sentinel errors; test for them with errors.Is.
var (
	// ErrNotFound means the registry does not have the repository or tag.
	ErrNotFound = errors.New("image not found")
	// ErrNoPlatform means the image has no variant for the requested platform.
	ErrNoPlatform = errors.New("image has no variant for the platform")
	// ErrNotCached means PullNever was asked for and the image (or one of
	// its blobs) is not in the cache; see NotCachedError.
	ErrNotCached = errors.New("image not in the cache")
	// ErrInvalidReference means the image reference does not parse.
	ErrInvalidReference = errors.New("invalid image reference")
	// ErrNetwork means the registry could not be reached.
	ErrNetwork = errors.New("registry unreachable")
	// ErrDigestMismatch means a downloaded blob did not match its digest;
	// it was not stored. It is the store's sentinel (store.PutBlob).
	ErrDigestMismatch = store.ErrDigestMismatch
)

// NotCachedError is the error, matching ErrNotCached, of PullNever when
// the image's resolution or one of its layers is not in the cache. It
// names what is missing; the caller says how to get it (the CLI: which
// command to run, which flag to change).
type NotCachedError struct {
	Ref      string // the image reference, as given
	Platform string // os/arch[/variant]
	Layer    string // "N/M (digest)" of the missing layer; "" for the image
}

func (e *NotCachedError) Error() string {
	if e.Layer != "" {
		return fmt.Sprintf("layer %s of %s is not in the cache", e.Layer, e.Ref)
	}
	return fmt.Sprintf("image %s for %s is not in the cache", e.Ref, e.Platform)
}

func (e *NotCachedError) Unwrap() error { return ErrNotCached }

// pullError is an error with a complete, user-facing message that still
// matches a sentinel (kind) and the underlying cause with errors.Is/As.
type pullError struct {
	msg  string
	kind error
	err  error
}

func (e *pullError) Error() string { return e.msg }

func (e *pullError) Unwrap() []error {
	errs := []error{e.kind}
	if e.err != nil {
		errs = append(errs, e.err)
	}
	return errs
}

func newError(kind, cause error, format string, args ...any) error {
	return &pullError{msg: fmt.Sprintf(format, args...), kind: kind, err: cause}
}

// registryError turns an error from talking to the registry about ref into
// one line that says what to do.
func registryError(ref string, err error) error {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("pull %s: %w", ref, err)
	}
	if errors.Is(err, errPlainHTTP) || errors.Is(err, errPlainHTTPCredentials) {
		return newError(ErrNetwork, err, "pull %s: %v", ref, plainHTTPCause(err))
	}
	var terr *transport.Error
	if errors.As(err, &terr) {
		for _, d := range terr.Errors {
			switch d.Code {
			case transport.ManifestUnknownErrorCode, transport.NameUnknownErrorCode:
				return notFoundError(ref, err)
			case transport.UnauthorizedErrorCode, transport.DeniedErrorCode:
				return authError(ref, err)
			}
		}
		switch terr.StatusCode {
		case http.StatusNotFound:
			return notFoundError(ref, err)
		case http.StatusUnauthorized, http.StatusForbidden:
			return authError(ref, err)
		}
		if e := transientError("pull "+ref, err); e != nil {
			return e
		}
		return fmt.Errorf("pull %s: %w", ref, err)
	}
	if isNetworkError(err) {
		return newError(ErrNetwork, err, "pull %s: %v: check the registry address and your network, or use --pull=never for a cached image", ref, err)
	}
	return fmt.Errorf("pull %s: %w", ref, err)
}

// isNetworkError reports whether err comes from the network (a failed
// dial, a reset, a timeout, a truncated response) rather than, say, a full
// disk: syscall.Errno satisfies net.Error, so errors.As with net.Error alone
// would call ENOSPC a network error.
func isNetworkError(err error) bool {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false
	}
	var (
		oerr *net.OpError
		derr *net.DNSError
		uerr *url.Error
	)
	if errors.As(err, &oerr) || errors.As(err, &derr) || errors.As(err, &uerr) {
		return true
	}
	var perr *fs.PathError
	if errors.As(err, &perr) {
		return false // a file of the cache
	}
	return bodyTransient(err)
}

// transientError describes a registry that kept failing with a retryable
// HTTP status (after the transport's retries), or nil if err is not that.
func transientError(prefix string, err error) error {
	var terr *transport.Error
	if errors.As(err, &terr) && transient(terr) {
		return newError(ErrNetwork, err, "%s: the registry keeps failing (HTTP %d, retried with backoff): try again later, or tell the registry's owner: %v", prefix, terr.StatusCode, err)
	}
	return nil
}

func notFoundError(ref string, err error) error {
	return newError(ErrNotFound, err, "image %q not found: check the name and tag (xrun resolves short names to docker.io/library/NAME:latest)", ref)
}

func authError(ref string, err error) error {
	return fmt.Errorf("pull %s: access denied: check the name, or log in to the registry (docker login / podman login): %w", ref, err)
}

// plainHTTPCause finds the plain-HTTP refusal in err (go-containerregistry
// may have joined it with the failed HTTPS attempt) so the message leads
// with what to do.
func plainHTTPCause(err error) error {
	for e := err; e != nil; {
		if strings.HasPrefix(e.Error(), errPlainHTTP.Error()) || strings.HasPrefix(e.Error(), errPlainHTTPCredentials.Error()) {
			return e
		}
		u, ok := e.(interface{ Unwrap() error })
		if !ok {
			break
		}
		e = u.Unwrap()
	}
	return err
}
