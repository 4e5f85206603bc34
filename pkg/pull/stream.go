package pull

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/xrun-dev/xrun/pkg/store"
)

// Stream downloads the layers of an image that are not in the store, in
// parallel and in layer order (WithJobs at a time), and lets a reader
// consume each layer while it downloads: Open(i) returns layer i's bytes as
// they reach the store's temp file. A reader gets io.EOF only after the
// whole blob matched its digest and was renamed into the store; if it did
// not, the reader gets the error instead. So an unpacker reading layer i can
// run while layers i+1... download, and never sees unverified bytes as
// complete.
//
// The downloads start at the first Open or Wait, so a Stream that is never
// read (the rootfs was published by another process meanwhile) costs
// nothing. Close cancels what is left and waits for it.
type Stream struct {
	s      *Client
	img    *Image
	o      *options
	ctx    context.Context
	cancel context.CancelFunc
	once   sync.Once
	wg     sync.WaitGroup
	layers []*streamLayer
	// start begins the downloads (nil when nothing is missing).
	start func()
	// release gives back the shared gc lock taken while downloading.
	release func()
	// eps are the endpoints to download from, in order (mirrors first);
	// failed marks those that failed once, which later layers skip.
	eps    []endpoint
	epMu   sync.Mutex
	failed map[int]bool
}

type layerState int

const (
	statePending layerState = iota // waiting for a download slot
	stateWriting                   // bytes are arriving in tmp
	stateDone                      // the blob is in the store
	stateFailed                    // err says why
)

type streamLayer struct {
	mu      sync.Mutex
	cond    *sync.Cond
	state   layerState
	rf      *os.File // read side of the temp file, opened before it can be renamed
	written int64
	err     error
	// old are the temp files of earlier endpoints that failed (closed by
	// Close: a reader may still hold one); refetched is set once the layer
	// was downloaded again from another endpoint.
	old       []*os.File
	refetched bool
}

func (l *streamLayer) set(f func()) {
	l.mu.Lock()
	f()
	l.mu.Unlock()
	l.cond.Broadcast()
}

// Stream prepares the download of img's missing layers (see Stream). With
// PullNever, a missing layer is ErrNotCached.
func (s *Client) Stream(ctx context.Context, img *Image, opts ...Option) (*Stream, error) {
	o := makeOptions(opts)
	st := &Stream{s: s, img: img, o: o, layers: make([]*streamLayer, len(img.Layers)), failed: map[int]bool{}}
	var missing []int
	for i, l := range img.Layers {
		sl := &streamLayer{}
		sl.cond = sync.NewCond(&sl.mu)
		if s.HasBlob(l.Digest) {
			sl.state = stateDone
		} else {
			missing = append(missing, i)
		}
		st.layers[i] = sl
	}
	if len(missing) > 0 && o.policy == PullNever {
		l := img.Layers[missing[0]]
		return nil, &NotCachedError{Ref: img.Ref, Platform: PlatformString(img.Platform),
			Layer: fmt.Sprintf("%d/%d (%s)", missing[0]+1, len(img.Layers), l.Digest)}
	}
	st.ctx, st.cancel = context.WithCancel(ctx)
	if len(missing) == 0 {
		return st, nil
	}
	r, err := o.parseRef(img.Ref)
	if err != nil {
		st.cancel()
		return nil, err
	}
	if st.eps, err = o.endpointsFor(r); err != nil {
		st.cancel()
		return nil, err
	}
	ps, err := o.pullers(st.eps)
	if err != nil {
		st.cancel()
		return nil, fmt.Errorf("pull %s: %w", img.Ref, err)
	}
	log := o.logger.With("ref", img.Ref)
	st.start = func() {
		release, err := s.HoldGC(st.ctx)
		if err != nil {
			for _, i := range missing {
				sl := st.layers[i]
				sl.set(func() { sl.state, sl.err = stateFailed, err })
			}
			return
		}
		st.release = release
		var total int64
		for _, i := range missing {
			total += img.Layers[i].Size
		}
		o.progress.Start(len(missing), total)
		sem := make(chan struct{}, o.jobs)
		st.wg.Go(func() {
			// Dispatch in layer order, so that the layer the unpacker
			// needs next is always among those downloading.
			for k, i := range missing {
				select {
				case sem <- struct{}{}:
				case <-st.ctx.Done():
					for _, j := range missing[k:] {
						sl := st.layers[j]
						sl.set(func() { sl.state, sl.err = stateFailed, blobError(img.Ref, layerName(img, j), st.ctx.Err()) })
					}
					return
				}
				st.wg.Go(func() {
					defer func() { <-sem }()
					st.download(i, ps, log)
				})
			}
		})
	}
	return st, nil
}

func layerName(img *Image, i int) string {
	return fmt.Sprintf("layer %d/%d %s", i+1, len(img.Layers), img.Layers[i].Digest)
}

// download fetches layer i into the store from the first endpoint that
// serves it intact, keeping its streamLayer up to date.
func (st *Stream) download(i int, ps *pullers, log *slog.Logger) {
	l, sl := st.img.Layers[i], st.layers[i]
	what := layerName(st.img, i)
	prog := st.o.progress.Layer(i, len(st.img.Layers), l)
	start := time.Now()
	var (
		wrote bool
		err   error
		ep    endpoint
	)
	for k := range st.eps {
		last := k == len(st.eps)-1
		if !last && st.skip(k) {
			continue
		}
		ep = st.eps[k]
		wrote, err = st.downloadFrom(i, ep, ps.of(ep), prog, log)
		if err == nil || last || st.ctx.Err() != nil {
			break
		}
		st.epMu.Lock()
		st.failed[k] = true
		st.epMu.Unlock()
		log.Warn("registry mirror failed; trying the next endpoint", "layer", what, "mirror", ep.String(), "next", st.eps[k+1].String(), "err", err)
	}
	if err != nil {
		err = blobError(st.img.Ref, what, err)
		prog.Done(err)
		sl.set(func() { sl.state, sl.err = stateFailed, err })
		if !errors.Is(err, context.Canceled) {
			st.cancel() // the pull has failed: stop the other downloads
		}
		return
	}
	prog.Done(nil)
	sl.set(func() { sl.state = stateDone })
	switch {
	case wrote && ep.mirror:
		log.Info("downloaded", "layer", what, "size", l.Size, "took", time.Since(start).Round(time.Millisecond))
		log.Info("pulled from mirror", "mirror", ep.String(), "layer", what)
	case wrote:
		log.Info("downloaded", "layer", what, "size", l.Size, "took", time.Since(start).Round(time.Millisecond))
	default:
		log.Debug("layer stored by another process", "layer", what)
	}
}

// skip reports whether endpoint k failed for another layer of the stream.
func (st *Stream) skip(k int) bool {
	st.epMu.Lock()
	defer st.epMu.Unlock()
	return st.failed[k]
}

// downloadFrom fetches layer i from one endpoint. A second endpoint's
// download starts a new temp file: readers following the layer continue at
// their offset in it (the blob is the same bytes wherever it comes from),
// and the old file stays open for them until Close.
func (st *Stream) downloadFrom(i int, ep endpoint, p *remote.Puller, prog LayerProgress, log *slog.Logger) (bool, error) {
	l, sl := st.img.Layers[i], st.layers[i]
	return st.s.PutBlob(st.ctx, l.Digest, func() (io.ReadCloser, error) {
		rl, err := p.Layer(st.ctx, ep.repo.Digest(l.Digest.String()))
		if err != nil {
			return nil, err
		}
		return rl.Compressed()
	}, store.Watch{
		Started: func(tmp string) {
			// Open it now, while its name is sure to exist: the writer
			// renames it into the store when it completes.
			rf, err := os.Open(tmp)
			var again int64
			sl.set(func() {
				if sl.rf != nil {
					// Readers may have seen bytes of the failed endpoint.
					again = sl.written
					sl.refetched = sl.refetched || sl.written > 0
					sl.old, sl.rf, sl.written = append(sl.old, sl.rf), nil, 0
				}
				if err == nil {
					sl.state, sl.rf = stateWriting, rf
				}
			})
			prog.Add(-again) // the bytes of the failed endpoint come again
		},
		Wrote:     func(n int64) { sl.set(func() { sl.written = n }) },
		Progress:  prog,
		Attempts:  st.o.attempts,
		Transient: bodyTransient,
		Log:       log.Info,
	})
}

// Refetched reports whether a layer had to be downloaded again from
// another endpoint after a registry mirror failed: a reader that followed
// it may have read bytes the store then rejected, so what it made of them
// should be made again from the store (Open after Wait returns nil).
func (st *Stream) Refetched() bool {
	for _, sl := range st.layers {
		sl.mu.Lock()
		r := sl.refetched
		sl.mu.Unlock()
		if r {
			return true
		}
	}
	return false
}

func (st *Stream) begin() {
	st.once.Do(func() {
		if st.start != nil {
			st.start()
		}
	})
}

// Open returns the bytes of layer i, blocking while they are not there
// yet; see Stream. Layers may be opened in any order and more than once.
func (st *Stream) Open(i int) (io.ReadCloser, error) {
	if i < 0 || i >= len(st.layers) {
		return nil, fmt.Errorf("[internal error] layer %d of %d", i, len(st.layers))
	}
	st.begin()
	return &follower{st: st, i: i, sl: st.layers[i]}, nil
}

// Wait downloads every missing layer and returns the first error, if any.
func (st *Stream) Wait() error {
	st.begin()
	var first error
	for _, sl := range st.layers {
		sl.mu.Lock()
		for sl.state == statePending || sl.state == stateWriting {
			sl.cond.Wait()
		}
		err := sl.err
		sl.mu.Unlock()
		if err != nil && (first == nil || errors.Is(first, context.Canceled) && !errors.Is(err, context.Canceled)) {
			first = err
		}
	}
	return first
}

// Err returns why a download failed, if one did (a cancellation only if
// nothing else failed).
func (st *Stream) Err() error {
	var first error
	for _, sl := range st.layers {
		sl.mu.Lock()
		err := sl.err
		sl.mu.Unlock()
		if err != nil && !errors.Is(err, context.Canceled) {
			return err
		}
		if first == nil {
			first = err
		}
	}
	return first
}

// Close stops the downloads still running and waits for them (their temp
// files are removed). It is safe to call more than once.
func (st *Stream) Close() error {
	st.cancel()
	st.once.Do(func() {})
	st.wg.Wait()
	for _, sl := range st.layers {
		sl.mu.Lock()
		if sl.rf != nil {
			sl.rf.Close()
			sl.rf = nil
		}
		for _, f := range sl.old {
			f.Close()
		}
		sl.old = nil
		sl.mu.Unlock()
	}
	if st.release != nil {
		st.release()
		st.release = nil
	}
	return nil
}

// follower reads a layer from the store, or from the temp file its
// download is writing, waiting for bytes to arrive.
type follower struct {
	st  *Stream
	i   int
	sl  *streamLayer
	f   *os.File // the blob, when it was not followed while downloading
	off int64
}

func (r *follower) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	sl := r.sl
	sl.mu.Lock()
	for sl.state == statePending || sl.state == stateWriting && r.off >= sl.written {
		sl.cond.Wait()
	}
	state, rf, written, err := sl.state, sl.rf, sl.written, sl.err
	sl.mu.Unlock()
	f := r.f
	switch {
	case state == stateFailed:
		return 0, err
	case state == stateWriting:
		f = rf
		if int64(len(p)) > written-r.off {
			p = p[:written-r.off]
		}
	case rf != nil:
		// Done: the temp file we followed is the blob, renamed and
		// verified; read on to its end.
		f = rf
	case f == nil:
		// Done without a download of ours (already stored, or stored by
		// another process): the verified blob.
		bf, err := os.Open(r.st.s.BlobPath(r.st.img.Layers[r.i].Digest))
		if err != nil {
			return 0, err
		}
		r.f, f = bf, bf
	}
	n, err := f.ReadAt(p, r.off)
	r.off += int64(n)
	if errors.Is(err, io.EOF) && state == stateWriting {
		err = nil // more is coming
	}
	return n, err
}

func (r *follower) Close() error {
	if r.f != nil {
		return r.f.Close()
	}
	return nil
}
