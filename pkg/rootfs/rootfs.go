package rootfs

import (
	"context"
	"errors"
	"io"
	"log/slog"
)

// Layer is one image layer, applied in order by Cache.Ensure.
type Layer struct {
	// Digest is the compressed digest ("sha256:..."), used in error messages.
	Digest string
	// DiffID is the digest of the uncompressed tar ("sha256:..." or "sha512:...").
	// It is verified while unpacking; a mismatch fails the layer. Empty skips
	// the check (the blob store already verified Digest).
	DiffID string
	// MediaType is the OCI/docker layer media type. The compression is taken
	// from the stream's magic bytes (gzip, zstd, else plain tar), which also
	// covers unknown or lying media types; encrypted layers are refused.
	MediaType string
	// Open returns the compressed blob.
	Open func() (io.ReadCloser, error)
}

// Options tunes unpacking. The zero value is ready to use.
type Options struct {
	// Logger receives debug lines and one summary per unpack. Default: discard.
	Logger *slog.Logger
	// MaxBytes bounds the uncompressed bytes of one layer (stream bytes and
	// the sum of file sizes, which also covers sparse files): a guard against
	// decompression bombs. Default (0): $XRUN_MAX_LAYER_SIZE, else
	// DefaultMaxBytes.
	MaxBytes int64
	// MaxTotalBytes bounds the same across all layers. Default (0):
	// $XRUN_MAX_IMAGE_SIZE, else DefaultMaxTotalBytes.
	MaxTotalBytes int64
	// MaxEntries bounds the number of tar entries of all layers. Default
	// (0): $XRUN_MAX_IMAGE_ENTRIES, else DefaultMaxEntries.
	MaxEntries int64
	// MaxDirs bounds the directories tracked until the end of the unpack
	// (see unpacker.pending). Default (0): $XRUN_MAX_IMAGE_DIRS, else
	// DefaultMaxDirs.
	MaxDirs int64
	// Chown gives every entry the uid and gid of its tar header (lchown).
	// It is meant for an unpacker that is root in a user namespace mapping
	// the image's ids (see InUserNS): there the files keep the image's
	// owners. An owner that cannot be applied (an id the namespace does not
	// map, EINVAL; no privilege, EPERM) never fails the unpack: it is
	// recorded in the user.rootlesscontainers xattr instead, as without
	// Chown, where every entry belongs to the unpacking user.
	Chown bool
	// InUserNS makes Cache.Ensure fill its temp dir from a helper process
	// in a user namespace with a run's id mappings, with Chown, so that
	// files keep the image's owners (see unpackInUserNS); under the same
	// lock, published by the same rename, removed the same way on
	// failure. Where that helper cannot run (no subordinate id range, a
	// program that does not serve it), Ensure unpacks in-process.
	InUserNS bool

	// unpacker, when set, replaces unpackInUserNS for InUserNS (tests).
	unpacker unpackerFunc
}

// unpackerFunc fills the empty directory dir with layers, in order, as
// UnpackLayers does (opts is Ensure's, filled). If it returns an error
// matching ErrUnpackerUnavailable, it must not have opened any layer.
type unpackerFunc func(ctx context.Context, dir string, layers []Layer, opts Options) (Stats, error)

// fill sets the defaults of the zero fields, reading the limits' environment
// variables; a malformed one is an error.
func (o Options) fill() (Options, error) {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	for _, l := range []struct {
		v    *int64
		env  string
		def  int64
		size bool
	}{
		{&o.MaxBytes, EnvMaxLayerSize, DefaultMaxBytes, true},
		{&o.MaxTotalBytes, EnvMaxImageSize, DefaultMaxTotalBytes, true},
		{&o.MaxEntries, EnvMaxImageEntries, DefaultMaxEntries, false},
		{&o.MaxDirs, EnvMaxImageDirs, DefaultMaxDirs, false},
	} {
		if *l.v > 0 {
			continue
		}
		n, err := limitFromEnv(l.env, l.def, l.size)
		if err != nil {
			return o, err
		}
		*l.v = n
	}
	return o, nil
}

// Stats counts what an unpack did.
type Stats struct {
	Files          int   // regular files written
	Dirs           int   // directory entries applied
	Symlinks       int   // symlinks created
	Hardlinks      int   // hard links created
	Fifos          int   // named pipes created
	Whiteouts      int   // whiteout and opaque markers applied
	SkippedDevices int   // char/block devices skipped (cannot be created rootless)
	SkippedOther   int   // entries of unknown type skipped
	Bytes          int64 // file content bytes written
}

func (s *Stats) add(o Stats) {
	s.Files += o.Files
	s.Dirs += o.Dirs
	s.Symlinks += o.Symlinks
	s.Hardlinks += o.Hardlinks
	s.Fifos += o.Fifos
	s.Whiteouts += o.Whiteouts
	s.SkippedDevices += o.SkippedDevices
	s.SkippedOther += o.SkippedOther
	s.Bytes += o.Bytes
}

var (
	// ErrUnsafeEntry is wrapped by errors about tar entries that would leave
	// or replace the root (they are refused rather than contained).
	ErrUnsafeEntry = errors.New("unsafe entry")
	// ErrTooLarge is wrapped by the decompression-bomb guard's error.
	ErrTooLarge = errors.New("uncompressed size limit exceeded")
	// ErrDiffIDMismatch is wrapped when a layer's uncompressed digest differs from its DiffID.
	ErrDiffIDMismatch = errors.New("diffid mismatch")
	// ErrNotFound is wrapped by Remove when the key is not published.
	ErrNotFound = errors.New("rootfs not found")
	// ErrInvalidKey is wrapped when a cache key is not a plain [A-Za-z0-9_] name.
	ErrInvalidKey = errors.New("invalid rootfs key")
	// ErrUnpackerUnavailable is wrapped when Options.InUserNS cannot be
	// honoured here (e.g. no subordinate id range): Ensure then unpacks
	// in-process.
	ErrUnpackerUnavailable = errors.New("unpacker unavailable")
)
