package rootfs

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"syscall"

	"github.com/xrun-dev/xrun/pkg/fsutil"
	"github.com/xrun-dev/xrun/pkg/userns"
)

// UnpackHelperCommand is the helper role under which the xrun binary
// unpacks layers inside a user namespace (see unpackInUserNS). The
// binary's role table dispatches it; it is not meant to be typed.
const UnpackHelperCommand = "__userns-unpack"

// served is userns.Served; tests replace it.
var served = userns.Served

// unpackInUserNS is what Options.InUserNS asks for: it applies the
// layers from a helper process in a user namespace with a run's id
// mappings (see userns.Run), with Options.Chown: files keep the uid and gid of
// the image (on the host: the invoking user for 0, subordinate id
// START+N-1 for id N), so that inside a container apt, sudo and ls -l see
// the image's owners. Ids the namespace does not map (above 65536) are
// recorded in the user.rootlesscontainers xattr, as in-process.
//
// The layers are opened here and streamed to the helper through a pipe,
// in order, so a layer still downloading (a streamed pull) is unpacked as
// it arrives, and a download failure fails the unpack. Errors keep their
// kind (ErrDiffIDMismatch, ErrTooLarge, ErrUnsafeEntry).
//
// Without a subordinate id range (or newuidmap/newgidmap), when the
// namespace cannot be set up, or in a program that does not serve the
// helper (see userns.ServeHelpers), it returns an error matching
// ErrUnpackerUnavailable having touched nothing: the cache then unpacks
// in-process, owned by the invoking user, which a container without
// subordinate ids maps as well. When it fails otherwise, dir may hold
// files owned by subordinate ids: the cache removes it with
// userns.Remove.
func unpackInUserNS(ctx context.Context, dir string, layers []Layer, opts Options) (Stats, error) {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	_, _, full := userns.IDMappings(log)
	if !served() {
		return Stats{}, fmt.Errorf("%w: %v", ErrUnpackerUnavailable, userns.ErrNotServed)
	}
	if !full {
		return Stats{}, fmt.Errorf("%w: no subordinate id range to give files their owners", ErrUnpackerUnavailable)
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return Stats{}, err
	}
	req := unpackRequest{Dir: abs, MaxBytes: opts.MaxBytes, MaxTotalBytes: opts.MaxTotalBytes,
		MaxEntries: opts.MaxEntries, MaxDirs: opts.MaxDirs}
	for _, l := range layers {
		req.Layers = append(req.Layers, layerDesc{Digest: l.Digest, DiffID: l.DiffID, MediaType: l.MediaType})
	}
	head, err := json.Marshal(req)
	if err != nil {
		return Stats{}, err
	}
	var out bytes.Buffer
	err = userns.Run(ctx, []string{UnpackHelperCommand}, func(w io.Writer) error {
		if err := writeFrame(w, head); err != nil {
			return err
		}
		for i, l := range layers {
			if err := sendLayer(w, i, l); err != nil {
				return err
			}
		}
		return nil
	}, &out)
	var res unpackResult
	haveRes := json.Unmarshal(out.Bytes(), &res) == nil
	var se *userns.SetupError
	switch {
	case ctx.Err() != nil:
		return Stats{}, ctx.Err()
	case errors.Is(err, userns.ErrNotServed):
		return Stats{}, fmt.Errorf("%w: %v", ErrUnpackerUnavailable, err)
	case errors.As(err, &se) || errors.Is(err, userns.ErrNoMapping):
		log.Warn("cannot unpack with the image's owners in a user namespace; files will belong to you", "err", err)
		return Stats{}, fmt.Errorf("%w: %v", ErrUnpackerUnavailable, err)
	case haveRes && res.Err != "":
		return res.Stats, res.err()
	case err != nil:
		return Stats{}, err
	case !haveRes:
		return Stats{}, errors.New("[internal error] the unpack helper gave no result")
	}
	return res.Stats, nil
}

// sendLayer streams layer i to the helper: frames of its compressed
// bytes, then an empty frame. The blob is read to its end, where a
// streamed download reports a digest mismatch or a failure.
func sendLayer(w io.Writer, i int, l Layer) error {
	name := l.Digest
	if name == "" {
		name = fmt.Sprintf("#%d", i)
	}
	if l.Open == nil {
		return fmt.Errorf("[internal error] layer %s has no Open func", name)
	}
	rc, err := l.Open()
	if err != nil {
		return fmt.Errorf("layer %s: open blob: %w", name, err)
	}
	defer rc.Close()
	buf := make([]byte, 4+frameMax)
	for {
		n, rerr := rc.Read(buf[4:])
		if n > 0 {
			binary.BigEndian.PutUint32(buf, uint32(n))
			if _, err := w.Write(buf[:4+n]); err != nil {
				return err
			}
		}
		if errors.Is(rerr, io.EOF) {
			break
		}
		if rerr != nil {
			return fmt.Errorf("layer %s: read blob: %w", name, rerr)
		}
	}
	return writeFrame(w, nil)
}

// The helper's input is a sequence of frames (a 4-byte big-endian length,
// then that many bytes): the JSON unpackRequest, then for each layer its
// compressed blob in frames of up to frameMax bytes ended by an empty
// frame. Its output is the JSON unpackResult.
const frameMax = 256 << 10

type unpackRequest struct {
	Dir           string      `json:"dir"`
	MaxBytes      int64       `json:"maxBytes"`
	MaxTotalBytes int64       `json:"maxTotalBytes,omitempty"`
	MaxEntries    int64       `json:"maxEntries,omitempty"`
	MaxDirs       int64       `json:"maxDirs,omitempty"`
	Layers        []layerDesc `json:"layers"`
}

type layerDesc struct {
	Digest    string `json:"digest"`
	DiffID    string `json:"diffID"`
	MediaType string `json:"mediaType"`
}

type unpackResult struct {
	Stats Stats    `json:"stats"`
	Err   string   `json:"err,omitempty"`
	Kinds []string `json:"kinds,omitempty"` // sentinels the error matched
	// The first errno of the error's chain (ENOSPC, EROFS, ...), and the
	// path and operation of the *fs.PathError holding it: the CLI's hints
	// look for them.
	Errno  int    `json:"errno,omitempty"`
	PathOp string `json:"pathOp,omitempty"`
	Path   string `json:"path,omitempty"`
}

// errKinds are the sentinel errors that cross the process boundary.
var errKinds = map[string]error{
	"unsafe":   ErrUnsafeEntry,
	"tooLarge": ErrTooLarge,
	"diffID":   ErrDiffIDMismatch,
}

func (r unpackResult) err() error {
	e := &helperError{msg: r.Err}
	for _, k := range r.Kinds {
		if s, ok := errKinds[k]; ok {
			e.wrapped = append(e.wrapped, s)
		}
	}
	if r.Errno != 0 {
		var errno error = syscall.Errno(r.Errno)
		if r.PathOp != "" {
			errno = &fs.PathError{Op: r.PathOp, Path: r.Path, Err: errno}
		}
		e.wrapped = append(e.wrapped, errno)
	}
	return e
}

// helperError is the helper's error: its message, and what it wrapped
// that callers test for (sentinels, the errno and its *fs.PathError).
type helperError struct {
	msg     string
	wrapped []error
}

func (e *helperError) Error() string   { return e.msg }
func (e *helperError) Unwrap() []error { return e.wrapped }

func writeFrame(w io.Writer, b []byte) error {
	var n [4]byte
	binary.BigEndian.PutUint32(n[:], uint32(len(b)))
	if _, err := w.Write(append(n[:], b...)); err != nil {
		return err
	}
	return nil
}

func readFrameLen(r io.Reader) (uint32, error) {
	var n [4]byte
	if _, err := io.ReadFull(r, n[:]); err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return 0, errors.New("the layer data stopped early (the xrun that started this helper failed or was interrupted)")
		}
		return 0, err
	}
	return binary.BigEndian.Uint32(n[:]), nil
}

// UnpackHelper is the body of the helper role UnpackHelperCommand (args:
// STAGE): in the user namespace, it reads the request and the layers from
// standard input, unpacks them with Options.Chown, and writes the
// result to standard output. On failure it empties the directory it
// unpacked into, which only it can do without a second helper.
func UnpackHelper(ctx context.Context, args []string) error {
	rest, err := userns.Stage(UnpackHelperCommand, args)
	if err != nil {
		return err
	}
	if len(rest) != 0 {
		return errors.New("[internal error] usage: xrun " + UnpackHelperCommand + " wait|run")
	}
	res := unpackFrom(ctx, bufio.NewReaderSize(os.Stdin, 64<<10))
	if err := json.NewEncoder(os.Stdout).Encode(res); err != nil {
		return err
	}
	if res.Err != "" {
		return errors.New(res.Err)
	}
	return nil
}

func unpackFrom(ctx context.Context, r *bufio.Reader) unpackResult {
	n, err := readFrameLen(r)
	if err != nil {
		return failure(err)
	}
	if n > 64<<20 {
		return failure(fmt.Errorf("[internal error] request of %d bytes", n))
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(r, b); err != nil {
		return failure(err)
	}
	var req unpackRequest
	if err := json.Unmarshal(b, &req); err != nil {
		return failure(fmt.Errorf("[internal error] request: %w", err))
	}
	if !filepath.IsAbs(req.Dir) {
		return failure(fmt.Errorf("[internal error] relative directory %q", req.Dir))
	}
	next := 0 // the layer whose frames come next
	layers := make([]Layer, len(req.Layers))
	for i, d := range req.Layers {
		layers[i] = Layer{Digest: d.Digest, DiffID: d.DiffID, MediaType: d.MediaType,
			Open: func() (io.ReadCloser, error) {
				if i != next {
					return nil, fmt.Errorf("[internal error] layer %d opened while %d is next", i, next)
				}
				next++
				return &frameReader{r: r}, nil
			}}
	}
	st, err := UnpackLayers(ctx, req.Dir, layers, Options{
		MaxBytes: req.MaxBytes, MaxTotalBytes: req.MaxTotalBytes, MaxEntries: req.MaxEntries, MaxDirs: req.MaxDirs, Chown: true})
	if err != nil {
		emptyDir(req.Dir)
		res := failure(err)
		res.Stats = st
		return res
	}
	return unpackResult{Stats: st}
}

// failure is the result of an unpack that failed with err.
func failure(err error) unpackResult {
	res := unpackResult{Err: err.Error()}
	for k, s := range errKinds {
		if errors.Is(err, s) {
			res.Kinds = append(res.Kinds, k)
		}
	}
	var errno syscall.Errno
	if errors.As(err, &errno) {
		res.Errno = int(errno)
		var pe *fs.PathError
		if errors.As(err, &pe) && errors.Is(pe.Err, errno) {
			res.PathOp, res.Path = pe.Op, pe.Path
		}
	}
	return res
}

// emptyDir removes what dir holds (best effort).
func emptyDir(dir string) {
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		_ = fsutil.RemoveAll(filepath.Join(dir, e.Name()))
	}
}

// frameReader reads one layer's frames up to its empty frame (io.EOF).
type frameReader struct {
	r    io.Reader
	left uint32
	done bool
}

func (f *frameReader) Read(p []byte) (int, error) {
	if f.done {
		return 0, io.EOF
	}
	if f.left == 0 {
		n, err := readFrameLen(f.r)
		if err != nil {
			return 0, err
		}
		if n == 0 {
			f.done = true
			return 0, io.EOF
		}
		f.left = n
	}
	if uint32(len(p)) > f.left {
		p = p[:f.left]
	}
	n, err := f.r.Read(p)
	f.left -= uint32(n)
	if errors.Is(err, io.EOF) {
		err = io.ErrUnexpectedEOF
	}
	return n, err
}

func (f *frameReader) Close() error { return nil }
