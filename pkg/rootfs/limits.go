package rootfs

import (
	"fmt"
	"os"
	"strconv"
	"strings"
)

// Limits of an unpack. An image is hostile input: without them a small
// download could fill the disk (a decompression bomb, or many layers each
// under the per-layer limit) or the memory (the unpacker remembers every
// directory until the end, to apply its mode and times last, and every
// entry of the current layer, for whiteouts). The defaults are far above
// real images (the largest CUDA and ML images unpack to tens of GiB and a
// few hundred thousand entries); each can be raised through an environment
// variable, which the error that reports it names.
const (
	// DefaultMaxBytes is the per-layer uncompressed size limit used when
	// Options.MaxBytes is 0 (EnvMaxLayerSize).
	DefaultMaxBytes int64 = 64 << 30
	// DefaultMaxTotalBytes bounds the uncompressed size of all layers
	// together (EnvMaxImageSize).
	DefaultMaxTotalBytes int64 = 256 << 30
	// DefaultMaxEntries bounds the tar entries of all layers together
	// (EnvMaxImageEntries). The unpacker keeps about 100 bytes per entry of
	// the current layer.
	DefaultMaxEntries int64 = 10_000_000
	// DefaultMaxDirs bounds the directories an unpack tracks until its end
	// (EnvMaxImageDirs), about 220 bytes each (TestDirMemory).
	DefaultMaxDirs int64 = 1_000_000
)

// Environment variables that override the defaults (sizes take a K, M, G or
// T suffix, powers of 1024).
const (
	EnvMaxLayerSize    = "XRUN_MAX_LAYER_SIZE"
	EnvMaxImageSize    = "XRUN_MAX_IMAGE_SIZE"
	EnvMaxImageEntries = "XRUN_MAX_IMAGE_ENTRIES"
	EnvMaxImageDirs    = "XRUN_MAX_IMAGE_DIRS"
)

// LimitError reports a limit an image exceeded. It matches ErrTooLarge.
type LimitError struct {
	What  string // "uncompressed layer size", ...
	Limit int64
	Env   string // the variable that raises it
	Size  bool   // Limit is a size in bytes (else a count)
}

func (e *LimitError) Error() string {
	lim := strconv.FormatInt(e.Limit, 10)
	if e.Size {
		lim = HumanSize(e.Limit)
	}
	return fmt.Sprintf("%s exceeds the limit of %s (%s): set %s higher to allow it, if you trust the image", e.What, lim, e.Env, e.Env)
}

// Is makes every LimitError match ErrTooLarge.
func (e *LimitError) Is(target error) bool { return target == ErrTooLarge }

func layerSizeError(max int64) error {
	return &LimitError{What: "uncompressed layer size", Limit: max, Env: EnvMaxLayerSize, Size: true}
}

func imageSizeError(max int64) error {
	return &LimitError{What: "uncompressed image size (all layers)", Limit: max, Env: EnvMaxImageSize, Size: true}
}

func entriesError(max int64) error {
	return &LimitError{What: "number of entries in the image (files, directories, links)", Limit: max, Env: EnvMaxImageEntries}
}

func dirsError(max int64) error {
	return &LimitError{What: "number of directories in the image", Limit: max, Env: EnvMaxImageDirs}
}

// limitFromEnv returns the value of the environment variable env (a size
// with an optional K/M/G/T suffix when size is set, else a count), or def
// when it is unset or empty.
func limitFromEnv(env string, def int64, size bool) (int64, error) {
	s := strings.TrimSpace(os.Getenv(env))
	if s == "" {
		return def, nil
	}
	var n int64
	var err error
	if size {
		n, err = ParseSize(s)
	} else {
		n, err = strconv.ParseInt(s, 10, 64)
	}
	if err != nil || n <= 0 {
		example := "10000000"
		if size {
			example = "512G"
		}
		return 0, fmt.Errorf("invalid %s=%q: use a positive number such as %s", env, s, example)
	}
	return n, nil
}

// ParseSize parses a byte count with an optional suffix K, M, G or T
// (powers of 1024; "KiB", "KB" and lower case too).
func ParseSize(s string) (int64, error) {
	t := strings.ToUpper(strings.TrimSpace(s))
	t = strings.TrimSuffix(strings.TrimSuffix(t, "B"), "I")
	mult := int64(1)
	if t != "" {
		switch t[len(t)-1] {
		case 'K':
			mult = 1 << 10
		case 'M':
			mult = 1 << 20
		case 'G':
			mult = 1 << 30
		case 'T':
			mult = 1 << 40
		}
		if mult != 1 {
			t = t[:len(t)-1]
		}
	}
	n, err := strconv.ParseInt(strings.TrimSpace(t), 10, 64)
	if err != nil || n < 0 || n > (1<<62)/mult {
		return 0, fmt.Errorf("invalid size %q", s)
	}
	return n * mult, nil
}

// HumanSize formats n bytes as "64 GiB", "1.5 MiB" or "512 bytes".
func HumanSize(n int64) string {
	units := []string{"KiB", "MiB", "GiB", "TiB"}
	if n < 1024 {
		return fmt.Sprintf("%d bytes", n)
	}
	v, u := float64(n)/1024, 0
	for v >= 1024 && u < len(units)-1 {
		v, u = v/1024, u+1
	}
	s := strconv.FormatFloat(v, 'f', 1, 64)
	return strings.TrimSuffix(s, ".0") + " " + units[u]
}
