//go:build integration

package integration

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/xrun-dev/xrun/internal/testutil"
)

// TestSharedCacheRecipe follows README's "Shared read-only caches" step by
// step: root bakes a cache from a registry of its own, the registry goes
// away, and both unprivileged users run the baked images from the cache
// with no network and no copy; a cache others may write to is refused.
func TestSharedCacheRecipe(t *testing.T) {
	needXrun(t)
	needImages(t)
	if os.Geteuid() != 0 {
		testutil.SkipOrFail(t, "the recipe bakes the cache as root")
	}
	if h.usersErr != nil {
		testutil.SkipOrFail(t, "users: %v", h.usersErr)
	}
	reg, err := startRegistry(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer reg.Stop()
	ref := reg.ref("ci/debian:bookworm")
	r, _ := name.ParseReference(ref)
	if err := remote.WriteIndex(r, h.images.Busybox); err != nil {
		t.Fatal(err)
	}
	shared := filepath.Join(t.TempDir(), "opt", "xrun-cache")
	os.MkdirAll(filepath.Dir(shared), 0o755)
	for d := shared; d != "/"; d = filepath.Dir(d) { // traversable by the users
		if fi, err := os.Stat(d); err == nil && fi.Mode().Perm()&0o005 != 0o005 {
			os.Chmod(d, fi.Mode().Perm()|0o005)
		}
	}
	bake := strings.NewReplacer("/opt/xrun-cache", shared, "registry.corp.example/ci/debian:bookworm", ref).
		Replace(readmeBlock(t, "# bake the images the jobs use"))
	job := strings.NewReplacer("/opt/xrun-cache", shared, "registry.corp.example/ci/debian:bookworm", ref, "make check", "sh -c 'touch /etc/xrun-wrote /tmp/x && uname -m'").
		Replace(readmeBlock(t, "export XRUN_ADDITIONAL_CACHES=/opt/xrun-cache"))
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "sh", "-euc", bake)
	cmd.Env = append(os.Environ(), "PATH="+filepath.Dir(h.xrun)+":"+os.Getenv("PATH"))
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("baking the cache as root (%s): %v\n%s", bake, err, out)
	}
	reg.Stop() // from here on, no registry has the image
	jobScript := "export PATH=" + filepath.Dir(h.xrun) + ":$PATH\n" + job
	for _, name := range []string{subUserName, noSubUserName} {
		t.Run(name, func(t *testing.T) {
			u := needUser(t, name)
			own := userDir(t, u, "cache-own-")
			o := opts{user: u, env: []string{"XRUN_CACHE=" + own}}
			out, stderr, code := runAs(t, o, "sh", "-euc", jobScript)
			// (It also created files in the image's /etc and /tmp.)
			if code != 0 || out != "aarch64\n" {
				t.Fatalf("job from the shared cache: exit %d, %q\n%s", code, out, stderr)
			}
			if ents, _ := os.ReadDir(filepath.Join(own, "rootfs")); len(ents) != 0 {
				t.Errorf("the image was copied into the user's own cache: %v", ents)
			}
		})
	}
	t.Run("writable by others", func(t *testing.T) {
		u := needUser(t, subUserName)
		index := filepath.Join(shared, "index")
		os.Chmod(index, 0o777)
		defer os.Chmod(index, 0o755)
		o := opts{user: u, env: []string{"XRUN_CACHE=" + userDir(t, u, "cache-own-")}}
		_, stderr, code := runAs(t, o, "sh", "-euc", jobScript)
		if code == 0 || !strings.Contains(stderr, "is writable by group or others") {
			t.Errorf("a cache others can write was used: exit %d\n%s", code, stderr)
		}
	})
}
