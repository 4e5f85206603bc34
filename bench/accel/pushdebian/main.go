// Command pushdebian pushes hack/mkdebian.sh's Debian bookworm arm64 tarball
// as an image to a loopback registry (what integration/seed_test.go does):
//
//	go run ./bench/accel/pushdebian 127.0.0.1:PORT/xrun-test/debian:bookworm-arm64
package main

import (
	"fmt"
	"os"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/xrun-dev/xrun/integration/testimage"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: pushdebian REF")
		os.Exit(2)
	}
	img, err := testimage.DebianImage(testimage.DebianPath())
	if err == nil {
		var r name.Reference
		if r, err = name.ParseReference(os.Args[1]); err == nil {
			err = remote.Write(r, img)
		}
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "pushdebian:", err)
		os.Exit(1)
	}
}
