package pull

import (
	"context"
	"io"
	"os"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/xrun-dev/xrun/pkg/store"
)

// Client is the registry client over an on-disk image store: Resolve,
// Fetch and Stream talk to registries and keep what they get in the
// embedded store.Store (blobs, index records, gc lock), which also answers
// offline runs. The store itself lives in pkg/store; this type only adds
// the registry side. The zero value is not usable; use NewClient.
type Client struct {
	*store.Store
}

// NewClient returns the registry client that keeps what it pulls in s.
func NewClient(s *store.Store) *Client {
	return &Client{Store: s}
}

// putBlob is store.PutBlob for a small blob (manifest, index, config): a
// body cut short by a transient error is fetched again up to 3 times.
func (s *Client) putBlob(ctx context.Context, h v1.Hash, open func() (io.ReadCloser, error)) (bool, error) {
	return s.PutBlob(ctx, h, open, store.Watch{Attempts: 3, Transient: bodyTransient})
}

// readConfigBlob reads config blob h, which must be in the store, of at
// most max bytes (one cached before that limit existed may be larger).
func (s *Client) readConfigBlob(h v1.Hash, max int64) ([]byte, error) {
	f, err := os.Open(s.BlobPath(h))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, max+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > max {
		return nil, configLimitError(max)
	}
	return b, nil
}
