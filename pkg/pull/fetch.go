package pull

import (
	"context"
	"errors"
	"fmt"
	"strings"
)

// Fetch makes sure every layer blob of img is in the store. Missing blobs are
// downloaded in parallel (WithJobs), each hashed while it is written and
// renamed into blobs/sha256 only if it matches its digest; blobs already
// present are skipped, so a fully cached image needs no network. Concurrent
// calls, in this process or others, download each blob once.
// With PullNever, a missing blob is ErrNotCached. Fetch is Stream without a
// reader.
func (s *Client) Fetch(ctx context.Context, img *Image, opts ...Option) error {
	st, err := s.Stream(ctx, img, opts...)
	if err != nil {
		return err
	}
	defer st.Close()
	return st.Wait()
}

// blobError describes a failure to fetch one blob (what, e.g. "layer 2/3
// sha256:...") of ref in one line that says what to do.
func blobError(ref, what string, err error) error {
	// go-containerregistry checks the digest itself while reading, so a
	// corrupt blob usually fails with its "error verifying" error before
	// ours (ErrDigestMismatch) can; treat both the same.
	if errors.Is(err, ErrDigestMismatch) || strings.Contains(err.Error(), "error verifying sha256 checksum") {
		return newError(ErrDigestMismatch, err, "fetch %s of %s: the registry sent data that does not match the digest (%v): nothing was cached; retry, and tell the registry owner if it persists", what, ref, err)
	}
	if errors.Is(err, errPlainHTTP) || errors.Is(err, errPlainHTTPCredentials) {
		return newError(ErrNetwork, err, "fetch %s of %s: %v", what, ref, plainHTTPCause(err))
	}
	if e := transientError(fmt.Sprintf("fetch %s of %s", what, ref), err); e != nil {
		return e
	}
	if isNetworkError(err) {
		return newError(ErrNetwork, err, "fetch %s of %s: %v: check the registry address and your network, or use --pull=never for a cached image", what, ref, err)
	}
	return fmt.Errorf("fetch %s of %s: %w", what, ref, err)
}
