package engine

import (
	"log/slog"
	"os"
	"syscall"
)

// The cache holds the layers of every image the user pulled, private ones
// too, so it is private: xrun creates its root and every directory in it
// with mode 0700 (the files inside keep 0444/0644: the root alone keeps
// other users out, wherever the home is traversable).
//
// Versions before made the root 0755. privateCache tightens such a root
// on first use, but only at the default place ($XDG_CACHE_HOME/xrun or
// ~/.cache/xrun), which xrun created: a directory named with XRUN_CACHE may
// have been made by the user with its modes on purpose (say, a cache shared
// with a group), and is left alone; xrun doctor warns about it.

// privateCache makes dir mode 0700 when it is the default cache, a real
// directory owned by the user, and open to others.
func privateCache(dir string, log *slog.Logger) {
	if os.Getenv("XRUN_CACHE") != "" || dir != DefaultCacheDir() {
		return
	}
	tightenDir(dir, log)
}

// tightenDir removes group and other permissions from dir when it is a
// directory (not a symbolic link) owned by the effective user.
func tightenDir(dir string, log *slog.Logger) {
	st, err := os.Lstat(dir)
	if err != nil || !st.IsDir() || st.Mode().Perm()&0o077 == 0 {
		return
	}
	if sys, ok := st.Sys().(*syscall.Stat_t); !ok || int(sys.Uid) != os.Geteuid() {
		return
	}
	if err := os.Chmod(dir, st.Mode().Perm()&0o700); err != nil {
		log.Debug("make the cache private", "dir", dir, "err", err)
		return
	}
	log.Info("made the cache private: other users could read it", "dir", dir, "was", st.Mode().Perm().String())
}
