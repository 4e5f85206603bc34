package cache

import (
	"runtime"
	"testing"
)

// TestLayout pins the on-disk layout: existing caches must keep working,
// so a change here needs a migration, not an edit of this table.
func TestLayout(t *testing.T) {
	const r = "/c"
	for _, tc := range []struct{ got, want string }{
		{BlobPath(r, "sha256", "ab"), "/c/blobs/sha256/ab"},
		{BlobsDir(r, "sha256"), "/c/blobs/sha256"},
		{BlobTmpDir(r), "/c/blobs/tmp"},
		{IndexDir(r), "/c/index"},
		{RootfsDir(r), "/c/rootfs"},
		{ContainersDir(r), "/c/containers"},
		{EmulatorsDir(r), "/c/emulators/" + runtime.GOARCH},
		{ProbesDir(r), "/c/probes"},
		{RunDir(r), "/c/run"},
		{LocksDir(r), "/c/locks"},
		{LockPath(r, "rootfs-ab"), "/c/locks/rootfs-ab.lock"},
	} {
		if tc.got != tc.want {
			t.Errorf("got %s, want %s", tc.got, tc.want)
		}
	}
}

func TestDefaultDir(t *testing.T) {
	t.Setenv(EnvDir, "")
	t.Setenv("XDG_CACHE_HOME", "/x")
	if got := DefaultDir(); got != "/x/xrun" {
		t.Errorf("DefaultDir = %s, want /x/xrun", got)
	}
	t.Setenv(EnvDir, "/y")
	if got := DefaultDir(); got != "/y" {
		t.Errorf("DefaultDir = %s, want /y", got)
	}
}
