package testimage

import (
	"compress/gzip"
	"fmt"
	"os"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// DebianRepo is where the integration tests push DebianImage.
const DebianRepo = "xrun-test/debian:bookworm-arm64"

// DebianPath is the Debian bookworm arm64 root filesystem tarball that
// hack/mkdebian.sh writes: $XRUN_TEST_CACHE/debian-bookworm-arm64.tar,
// by default under /var/tmp/xrun-test-cache.
func DebianPath() string {
	dir := os.Getenv("XRUN_TEST_CACHE")
	if dir == "" {
		dir = "/var/tmp/xrun-test-cache"
	}
	return dir + "/debian-bookworm-arm64.tar"
}

// DebianImage turns the root filesystem tarball of hack/mkdebian.sh into a
// linux/arm64 OCI image of one layer, with the PATH of Debian's images and
// /bin/bash as Cmd. The layer is compressed once (fast gzip) and kept in
// memory, so that digesting and pushing it do not compress it again.
func DebianImage(tarPath string) (v1.Image, error) {
	fi, err := os.Stat(tarPath)
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a file", tarPath)
	}
	layer, err := tarball.LayerFromFile(tarPath,
		tarball.WithMediaType(types.OCILayer),
		tarball.WithCompressionLevel(gzip.BestSpeed),
		tarball.WithCompressedCaching)
	if err != nil {
		return nil, fmt.Errorf("layer from %s: %w", tarPath, err)
	}
	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	img, err = mutate.AppendLayers(img, layer)
	if err != nil {
		return nil, fmt.Errorf("layer from %s: %w", tarPath, err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture, cf.Variant = "linux", "arm64", ""
	cf.Created = v1.Time{Time: fi.ModTime().UTC().Truncate(time.Second)}
	cf.Config.Env = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
	cf.Config.Cmd = []string{"/bin/bash"}
	return mutate.ConfigFile(img, cf)
}
