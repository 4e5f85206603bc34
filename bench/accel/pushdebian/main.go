// Command pushdebian pushes hack/mkdebian.sh's Debian tarballs to a
// loopback registry as one image (one tarball) or one multi-platform index
// (several), as the integration tests do:
//
//	go run ./bench/accel/pushdebian REF TAR:ARCH [TAR:ARCH...]
//	go run ./bench/accel/pushdebian 127.0.0.1:PORT/bench/debian-gcc:bookworm \
//	    /var/tmp/xrun-test-cache/debian-bookworm-arm64-gcc.tar:arm64 \
//	    /var/tmp/xrun-test-cache/debian-bookworm-amd64-gcc.tar:amd64
package main

import (
	"fmt"
	"os"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/xrun-dev/xrun/integration/testimage"
)

func main() {
	if err := push(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "pushdebian:", err)
		os.Exit(1)
	}
}

func push(args []string) error {
	if len(args) < 2 {
		return fmt.Errorf("usage: pushdebian REF TAR:ARCH [TAR:ARCH...]")
	}
	r, err := name.ParseReference(args[0])
	if err != nil {
		return err
	}
	idx := mutate.IndexMediaType(empty.Index, types.OCIImageIndex)
	for _, a := range args[1:] {
		path, arch, ok := strings.Cut(a, ":")
		if !ok {
			return fmt.Errorf("%s: want TAR:ARCH", a)
		}
		img, err := testimage.DebianImage(path)
		if err != nil {
			return err
		}
		cf, err := img.ConfigFile()
		if err != nil {
			return err
		}
		cf = cf.DeepCopy()
		cf.Architecture = arch
		if img, err = mutate.ConfigFile(img, cf); err != nil {
			return err
		}
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{Add: img,
			Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: arch}}})
	}
	return remote.WriteIndex(r, idx)
}
