package rootfs

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"fmt"
	"hash"
	"io"
	"strings"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"

	"github.com/xrun-dev/xrun/pkg/fsutil"
)

var (
	magicGzip  = []byte{0x1f, 0x8b}
	magicZstd  = []byte{0x28, 0xb5, 0x2f, 0xfd}
	magicBzip2 = []byte("BZh")
	magicXz    = []byte{0xfd, '7', 'z', 'X', 'Z', 0x00}
)

// applyLayer opens, decompresses, unpacks and verifies one layer. Errors are
// not prefixed with the layer: the caller does that.
func (u *unpacker) applyLayer(ctx context.Context, l Layer) error {
	if strings.Contains(l.MediaType, "encrypted") {
		return fmt.Errorf("unsupported media type %q", l.MediaType)
	}
	h, wantHex, err := diffIDHash(l.DiffID)
	if err != nil {
		return err
	}
	if l.Open == nil {
		return fmt.Errorf("[internal error] layer has no Open func")
	}
	rc, err := l.Open()
	if err != nil {
		return fmt.Errorf("open blob: %w", err)
	}
	defer rc.Close()

	br := bufio.NewReaderSize(rc, 64<<10)
	r, comp, closeDecomp, err := Decompress(br, l.MediaType)
	if err != nil {
		return err
	}
	defer closeDecomp()
	declared := "none"
	for _, c := range []string{"gzip", "zstd"} {
		if strings.Contains(l.MediaType, c) {
			declared = c
		}
	}
	if l.MediaType != "" && declared != comp {
		u.log.Debug("layer compression differs from its media type; using the magic bytes",
			"layer", l.Digest, "mediaType", l.MediaType, "detected", comp)
	}

	if comp != "none" {
		// Decompress in a goroutine of its own, a few chunks ahead: the
		// decompressor (half of a cold pull's CPU) then runs beside the
		// hashing, tar parsing and file writes instead of taking turns.
		ra := newReadAhead(r, 4, 1<<20)
		defer ra.stop()
		r = ra
	}
	// The stream is bounded by the per-layer limit and by what the
	// image-wide limit leaves after the layers before it.
	lr := &limitReader{ctx: ctx, r: r, max: u.opts.MaxBytes, errf: layerSizeError}
	if left := u.opts.MaxTotalBytes - u.streamN; left < lr.max {
		lr.max, lr.errf, lr.limit = left, imageSizeError, u.opts.MaxTotalBytes
	}
	defer func() { u.streamN += lr.n }()
	var tr io.Reader = lr
	if h != nil {
		tr = io.TeeReader(lr, h)
	}
	if err := u.apply(ctx, tr, lr); err != nil {
		return err
	}
	// The tar end marker may be followed by padding: hash it too.
	if _, err := io.Copy(io.Discard, tr); err != nil {
		if lr.err != nil {
			return lr.err
		}
		return fmt.Errorf("read layer: %w", err)
	}
	if h != nil {
		if got := hex.EncodeToString(h.Sum(nil)); got != wantHex {
			alg, _, _ := strings.Cut(l.DiffID, ":")
			return fmt.Errorf("%w: uncompressed content is %s:%s, want %s", ErrDiffIDMismatch, alg, got, l.DiffID)
		}
	}
	// Read the compressed blob to its end: a streamed blob (Layer.Open
	// reading a download in progress) reports a digest mismatch, or any
	// failure of the download, only there, and the layer must not count
	// as applied before that.
	if _, err := io.Copy(io.Discard, fsutil.ContextReader(ctx, br)); err != nil {
		return fmt.Errorf("read blob: %w", err)
	}
	return nil
}

// diffIDHash returns the hash that checks diffID ("sha256:..." or
// "sha512:...") and the hex digest it must give; nil for an empty diffID.
func diffIDHash(diffID string) (hash.Hash, string, error) {
	if diffID == "" {
		return nil, "", nil
	}
	alg, hx, ok := strings.Cut(diffID, ":")
	switch {
	case ok && alg == "sha256":
		return sha256.New(), hx, nil
	case ok && alg == "sha512":
		return sha512.New(), hx, nil
	}
	return nil, "", fmt.Errorf("unsupported diffid %q", diffID)
}

// Decompress returns the tar stream of the layer blob br, decompressed as
// its magic bytes say (gzip, zstd, else plain; bzip2 and xz are refused),
// the compression's name, and the function that frees the decompressor.
// mediaType is only for the error message.
func Decompress(br *bufio.Reader, mediaType string) (io.Reader, string, func(), error) {
	magic, _ := br.Peek(6) // short or empty blobs are plain (empty) tars
	switch {
	case bytes.HasPrefix(magic, magicGzip):
		zr, err := gzip.NewReader(br)
		if err != nil {
			return nil, "", nil, fmt.Errorf("gzip: %w", err)
		}
		return zr, "gzip", func() { zr.Close() }, nil
	case bytes.HasPrefix(magic, magicZstd):
		zr, err := zstd.NewReader(br, zstd.WithDecoderConcurrency(1))
		if err != nil {
			return nil, "", nil, fmt.Errorf("zstd: %w", err)
		}
		return zr, "zstd", zr.Close, nil
	case bytes.HasPrefix(magic, magicBzip2), bytes.HasPrefix(magic, magicXz):
		return nil, "", nil, fmt.Errorf("unsupported compression (bzip2/xz) for media type %q", mediaType)
	}
	return br, "none", func() {}, nil
}

// readAhead reads its source in a goroutine into a few recycled buffers,
// ahead of its reader. Bytes and the error that ended the source come out
// exactly as the source gave them.
type readAhead struct {
	full  chan aheadChunk
	free  chan []byte
	done  chan struct{}
	cur   []byte
	owned []byte // the buffer cur points into, returned to free when read
	err   error
}

type aheadChunk struct {
	b   []byte
	err error
}

func newReadAhead(src io.Reader, depth, size int) *readAhead {
	a := &readAhead{full: make(chan aheadChunk, depth), free: make(chan []byte, depth+1), done: make(chan struct{})}
	for range depth + 1 {
		a.free <- make([]byte, size)
	}
	go func() {
		defer close(a.full)
		for {
			var buf []byte
			select {
			case buf = <-a.free:
			case <-a.done:
				return
			}
			n := 0
			var err error
			for n < len(buf) && err == nil {
				var k int
				k, err = src.Read(buf[n:])
				n += k
			}
			select {
			case a.full <- aheadChunk{b: buf[:n], err: err}:
			case <-a.done:
				return
			}
			if err != nil {
				return
			}
		}
	}()
	return a
}

func (a *readAhead) Read(p []byte) (int, error) {
	for len(a.cur) == 0 {
		if a.owned != nil {
			a.free <- a.owned[:cap(a.owned)]
			a.owned = nil
		}
		if a.err != nil {
			return 0, a.err
		}
		c, ok := <-a.full
		if !ok {
			a.err = io.ErrClosedPipe
			continue
		}
		a.cur, a.owned, a.err = c.b, c.b, c.err
	}
	n := copy(p, a.cur)
	a.cur = a.cur[n:]
	return n, nil
}

// stop ends the goroutine and waits for it, so that the source is no
// longer read when stop returns (its owner closes it next).
func (a *readAhead) stop() {
	close(a.done)
	for range a.full {
	}
}
