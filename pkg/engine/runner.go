package engine

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	securejoin "github.com/cyphar/filepath-securejoin"

	"github.com/xrun-dev/xrun/pkg/sandbox"
)

// programBind is runner mode, what lets build systems use xrun as their
// emulator (go test -exec, Cargo's runner, CMAKE_CROSSCOMPILING_EMULATOR,
// Meson's exe_wrapper): they run `xrun IMAGE -- /abs/path/prog args`, where
// prog was just built on the host, often outside the current directory
// (go test's /tmp/go-build.../x.test, a Cargo workspace's target/). When
// the command is an absolute path naming an executable host file that no
// same-path bind already shows and that the image does not have, the file
// is bound read-only at its own path. The image's own files always win
// (`xrun IMAGE -- /bin/sh` runs the image's sh), and nothing under /proc,
// /dev or /sys is bound. It returns nil when no bind is needed.
func programBind(prog string, binds []sandbox.Bind, lower string) *sandbox.Bind {
	if !filepath.IsAbs(prog) {
		return nil
	}
	prog = filepath.Clean(prog)
	for _, k := range kernelDirs {
		if prog == k || strings.HasPrefix(prog, k+"/") {
			return nil
		}
	}
	fi, err := os.Stat(prog)
	if err != nil || !fi.Mode().IsRegular() || fi.Mode().Perm()&0o111 == 0 {
		return nil
	}
	for _, b := range binds {
		if b.Source == b.Destination && (prog == b.Source || strings.HasPrefix(prog, b.Source+"/")) {
			return nil // the container sees it already
		}
	}
	// The directory resolved inside the image (its symlinks kept in it),
	// the last component not followed: a symlink there is the image's too.
	dir, err := securejoin.SecureJoin(lower, filepath.Dir(prog))
	if err != nil {
		return nil
	}
	if _, err := os.Lstat(filepath.Join(dir, filepath.Base(prog))); !errors.Is(err, fs.ErrNotExist) {
		return nil // the image has it (or it cannot be told): the image's wins
	}
	return &sandbox.Bind{Source: prog, Destination: prog, ReadOnly: true}
}
