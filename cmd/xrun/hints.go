package main

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/xrun-dev/xrun/pkg/engine"
)

// hint returns one more sentence for xrun's error line when err has a
// known cause the message itself does not explain: what to do about a full
// or read-only cache, or about user namespaces the system forbids. It
// returns "" when it has nothing to add (or the message already says it).
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
	case userNSError(err, msg):
		if strings.Contains(msg, "xrun doctor") {
			return ""
		}
		return "this system does not let unprivileged users create user namespaces" + userNSSysctls() +
			"; run xrun doctor, which says which setting to change and how"
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

// userNSError reports whether err is the kernel refusing a new user
// namespace: EPERM, EACCES or ENOSPC (user.max_user_namespaces reached or 0)
// from clone/unshare, as libcontainer and the sandbox report it ("start
// container: ..."; README: troubleshooting). Their errors often carry the
// errno only as text.
func userNSError(err error, msg string) bool {
	m := strings.ToLower(msg)
	if !strings.Contains(m, "start container") && !strings.Contains(m, "user namespace") &&
		!strings.Contains(m, "userns") && !strings.Contains(m, "clone") && !strings.Contains(m, "unshare") {
		return false
	}
	for _, e := range []syscall.Errno{syscall.EPERM, syscall.EACCES, syscall.ENOSPC} {
		if errors.Is(err, e) || strings.Contains(m, strings.ToLower(e.Error())) {
			return true
		}
	}
	return false
}

// userNSSysctls names the settings that forbid user namespaces here, as
// " (name=value, ...)", or "".
func userNSSysctls() string {
	var bad []string
	for _, s := range []struct{ file, name, bad string }{
		{"user/max_user_namespaces", "user.max_user_namespaces", "0"},
		{"kernel/unprivileged_userns_clone", "kernel.unprivileged_userns_clone", "0"},
		{"kernel/apparmor_restrict_unprivileged_userns", "kernel.apparmor_restrict_unprivileged_userns", "1"},
	} {
		b, err := os.ReadFile(filepath.Join("/proc/sys", s.file))
		if err == nil && strings.TrimSpace(string(b)) == s.bad {
			bad = append(bad, s.name+"="+s.bad)
		}
	}
	if len(bad) == 0 {
		return ""
	}
	return " (" + strings.Join(bad, ", ") + ")"
}
