package main

import (
	"errors"
	"fmt"
	"io/fs"
	"strings"
	"syscall"
	"testing"
)

func TestHint(t *testing.T) {
	t.Setenv("XRUN_CACHE", "/cache")
	pe := func(op, path string, errno syscall.Errno) error { return &fs.PathError{Op: op, Path: path, Err: errno} }
	for _, tc := range []struct {
		err  error
		want string // "" = no hint
	}{
		{fmt.Errorf("fetch layer 1/2 x of y: %w", pe("write", "/cache/blobs/tmp/blob-1", syscall.ENOSPC)), "the cache at /cache is full: free space there or set XRUN_CACHE"},
		{fmt.Errorf("unpack rootfs k: layer l: entry \"a\": %w", pe("write", "bin/busybox", syscall.ENOSPC)), "the cache at /cache is full"},
		{fmt.Errorf("x: %w", pe("write", "/cache/rootfs/x", syscall.EDQUOT)), "the cache at /cache is full"},
		{fmt.Errorf("x: %w", pe("mkdir", "/run/user/1/xrun/c", syscall.ENOSPC)), "the filesystem of /run/user/1/xrun/c is full"},
		{fmt.Errorf("x: %w", pe("open", "/cache/locks/a.lock", syscall.EROFS)), "read-only filesystem: set XRUN_CACHE"},
		{fmt.Errorf("x: %w", pe("open", "/cache/locks/a.lock", syscall.EACCES)), "xrun cannot write its cache at /cache: check who owns it"},
		{fmt.Errorf("x: %w", pe("open", "/home/u/proj/f", syscall.EACCES)), ""},
		{errors.New("start container: unable to start container process: error during container init: unshare: operation not permitted"), "run xrun doctor"},
		{fmt.Errorf("start container: %w", syscall.ENOSPC), "run xrun doctor"},
		{errors.New(`image "x" not found: check the name and tag`), ""},
		{fmt.Errorf("fetch: %w: set XRUN_CACHE somewhere", pe("write", "/cache/x", syscall.ENOSPC)), ""},
		{nil, ""},
	} {
		got := hint(tc.err)
		if tc.want == "" && got != "" || tc.want != "" && !strings.Contains(got, tc.want) {
			t.Errorf("hint(%v) = %q, want %q", tc.err, got, tc.want)
		}
	}
}
