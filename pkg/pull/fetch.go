package pull

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
)

// Fetch makes sure every layer blob of img is in the store. Missing blobs are
// downloaded in parallel (WithJobs), each hashed while it is written and
// renamed into blobs/sha256 only if it matches its digest; blobs already
// present are skipped, so a fully cached image needs no network. Concurrent
// calls, in this process or others, download each blob once.
// With PullNever, a missing blob is ErrNotCached.
func (s *Store) Fetch(ctx context.Context, img *Image, opts ...Option) error {
	o := makeOptions(opts)
	var missing []int
	for i, l := range img.Layers {
		if !s.HasBlob(l.Digest) {
			missing = append(missing, i)
		}
	}
	if len(missing) == 0 {
		return nil
	}
	if o.policy == PullNever {
		l := img.Layers[missing[0]]
		return newError(ErrNotCached, nil, "layer %d/%d (%s) of %s is not in the cache and --pull=never was given: run `xrun pull --platform %s %s` or use --pull=missing",
			missing[0]+1, len(img.Layers), l.Digest, img.Ref, PlatformString(img.Platform), img.Ref)
	}
	r, err := name.ParseReference(img.Ref)
	if err != nil {
		return newError(ErrInvalidReference, err, "invalid image reference %q: %v", img.Ref, err)
	}
	repo := r.Context()
	p, err := o.puller()
	if err != nil {
		return fmt.Errorf("pull %s: %w", img.Ref, err)
	}
	log := o.logger.With("ref", img.Ref)

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	sem := make(chan struct{}, o.jobs)
	errs := make([]error, len(missing))
	var wg sync.WaitGroup
	for k, i := range missing {
		wg.Go(func() {
			l := img.Layers[i]
			what := fmt.Sprintf("layer %d/%d %s", i+1, len(img.Layers), l.Digest)
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				errs[k] = blobError(img.Ref, what, ctx.Err())
				return
			}
			defer func() { <-sem }()
			start := time.Now()
			wrote, err := s.putBlob(ctx, l.Digest, func() (io.ReadCloser, error) {
				log.Info("downloading", "layer", what, "size", l.Size)
				rl, err := p.Layer(ctx, repo.Digest(l.Digest.String()))
				if err != nil {
					return nil, err
				}
				return rl.Compressed()
			})
			if err != nil {
				errs[k] = blobError(img.Ref, what, err)
				cancel() // stop the other downloads: the fetch has failed
				return
			}
			if wrote {
				log.Info("downloaded", "layer", what, "size", l.Size, "took", time.Since(start).Round(time.Millisecond))
			} else {
				log.Debug("layer already stored by another process", "layer", what)
			}
		})
	}
	wg.Wait()
	// Report the failure that caused the cancellation, not the cancellations.
	var first error
	for _, err := range errs {
		if err == nil {
			continue
		}
		if first == nil {
			first = err
		}
		if !errors.Is(err, context.Canceled) {
			return err
		}
	}
	return first
}

// blobError describes a failure to fetch one blob (what, e.g. "layer 2/3
// sha256:...") of ref in one line that says what to do.
func blobError(ref, what string, err error) error {
	// go-containerregistry checks the digest itself while reading, so a
	// corrupt blob usually fails with its "error verifying" error before
	// ours (errDigestMismatch) can; treat both the same.
	if errors.Is(err, errDigestMismatch) || strings.Contains(err.Error(), "error verifying sha256 checksum") {
		return newError(ErrDigestMismatch, err, "fetch %s of %s: the registry sent data that does not match the digest (%v): nothing was cached; retry, and tell the registry owner if it persists", what, ref, err)
	}
	var nerr net.Error
	if errors.As(err, &nerr) && !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded) {
		return newError(ErrNetwork, err, "fetch %s of %s: %v: check the registry address and your network, or use --pull=never for a cached image", what, ref, err)
	}
	return fmt.Errorf("fetch %s of %s: %w", what, ref, err)
}
