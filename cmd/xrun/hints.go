package main

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/xrun-dev/xrun/pkg/doctor"
	"github.com/xrun-dev/xrun/pkg/engine"
)

// userNSSystem is the machine the user-namespace diagnosis reads (tests
// fake it).
var userNSSystem doctor.System

// message is xrun's one-line error for err: a user namespace the system
// refuses in the words of the doctor's table (what failed: why: the fix),
// else err with its hint.
func message(err error) string {
	if line, ok := doctor.ExplainUserNS(err, userNSSystem); ok {
		return line
	}
	if h := hint(err); h != "" {
		return err.Error() + ": " + h
	}
	return err.Error()
}

// hint returns one more sentence for xrun's error line when err has a
// known cause the message itself does not explain: what to do about a full
// or read-only cache. It returns "" when it has nothing to add (or the
// message already says it).
func hint(err error) string {
	if err == nil {
		return ""
	}
	msg := err.Error()
	cache := engine.DefaultCacheDir()
	path := errPath(err)
	// The unpacker reports paths relative to the rootfs it writes, which
	// is in the cache.
	inCache := path == "" || !filepath.IsAbs(path) || within(path, cache)
	switch {
	case errors.Is(err, syscall.ENOSPC), errors.Is(err, syscall.EDQUOT):
		if strings.Contains(msg, "XRUN_CACHE") {
			return ""
		}
		if inCache {
			return "the cache at " + cache + " is full: free space there or set XRUN_CACHE to a larger filesystem (xrun prune removes what no image uses)"
		}
		return "the filesystem of " + path + " is full: free space there"
	case errors.Is(err, syscall.EROFS) && inCache:
		return "the cache at " + cache + " is on a read-only filesystem: set XRUN_CACHE to a writable directory"
	case errors.Is(err, syscall.EACCES) && path != "" && within(path, cache):
		return "xrun cannot write its cache at " + cache + ": check who owns it (a run with sudo may have created files there as root), or set XRUN_CACHE to a directory of yours"
	}
	return ""
}

// errPath returns the path of the first *fs.PathError or *os.LinkError in
// err's chain, or "".
func errPath(err error) string {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Path
	}
	var le *os.LinkError
	if errors.As(err, &le) {
		return le.New
	}
	return ""
}

// within reports whether path is dir or below it.
func within(path, dir string) bool {
	if dir == "" {
		return false
	}
	rel, err := filepath.Rel(filepath.Clean(dir), filepath.Clean(path))
	return err == nil && rel != ".." && !strings.HasPrefix(rel, "../")
}
