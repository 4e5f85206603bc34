package rootfs

import (
	"errors"
	"path"
	"strings"
	"sync"

	securejoin "github.com/cyphar/filepath-securejoin"
	"golang.org/x/sys/unix"
)

// Path safety. Every tar entry name is cleaned as if it were absolute
// ("../../etc/x" and "/etc/x" both mean <root>/etc/x), then only its parent
// directory is resolved, and always inside the root: with openat2
// RESOLVE_IN_ROOT (symlinks in the tree, even "link -> /", resolve as if the
// root were "/"), or on kernels without openat2 (< 5.6, or filtered by
// seccomp) with securejoin.SecureJoin followed by an O_NOFOLLOW open. The
// final component is then created relative to that directory fd after
// unlinking whatever was there, so a symlink planted as the last component is
// replaced, never followed. Nothing else writes into the temp dir while we
// unpack, so the SecureJoin fallback has no race to lose.

// useOpenat2 reports whether openat2(2) with RESOLVE_IN_ROOT works here;
// tests switch it off to cover the fallback.
var useOpenat2 = sync.OnceValue(func() bool {
	fd, err := unix.Openat2(unix.AT_FDCWD, "/", &unix.OpenHow{
		Flags:   unix.O_PATH | unix.O_CLOEXEC,
		Resolve: unix.RESOLVE_IN_ROOT,
	})
	if err != nil {
		return false
	}
	unix.Close(fd)
	return true
})

// forceSecureJoin is set by tests to exercise the SecureJoin fallback.
var forceSecureJoin bool

// cleanRel turns a tar name into a slash path relative to the root, without
// leading slash, ".." or "."; "" is the root itself.
func cleanRel(name string) string {
	return strings.TrimPrefix(path.Clean("/"+name), "/")
}

// splitRel splits a cleaned relative path into its parent ("" = root) and base.
func splitRel(rel string) (dir, base string) {
	i := strings.LastIndexByte(rel, '/')
	if i < 0 {
		return "", rel
	}
	return rel[:i], rel[i+1:]
}

func joinRel(dir, base string) string {
	if dir == "" {
		return base
	}
	return dir + "/" + base
}

// openDirIn opens the directory rel (cleaned, "" = root) for reading, with
// every symlink resolved inside root. rootFD is an fd of root.
func openDirIn(root string, rootFD int, rel string) (int, error) {
	if rel == "" {
		rel = "."
	}
	return openAt(root, rootFD, rel, unix.O_RDONLY|unix.O_DIRECTORY)
}

// openAt opens the cleaned relative path rel inside root with flags
// (O_CLOEXEC added), every symlink resolved inside root: with openat2
// RESOLVE_IN_ROOT from rootFD (an fd of root), else with securejoin and
// O_NOFOLLOW on the last component.
func openAt(root string, rootFD int, rel string, flags int) (int, error) {
	flags |= unix.O_CLOEXEC
	if !forceSecureJoin && useOpenat2() {
		how := unix.OpenHow{Flags: uint64(flags), Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS}
		for range 16 { // EAGAIN: a rename raced the lookup; cannot happen in our private tree, but retry anyway
			fd, err := unix.Openat2(rootFD, rel, &how)
			if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR) {
				continue
			}
			return fd, err
		}
		return -1, unix.EAGAIN
	}
	p, err := securejoin.SecureJoin(root, rel)
	if err != nil {
		return -1, err
	}
	for {
		fd, err := unix.Open(p, flags|unix.O_NOFOLLOW, 0)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		return fd, err
	}
}

func isDirMode(m uint32) bool { return m&unix.S_IFMT == unix.S_IFDIR }
