package testimage

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// QemuRepo is the repository PushQemu writes: an emulator image for
// `xrun emulator install --image`.
const QemuRepo = "xrun-test/qemu-user-static:latest"

// QemuEmulator is one emulator of the qemu test image.
type QemuEmulator struct {
	Name   string // qemu's arch name, e.g. "aarch64"
	Static bool   // stored as /usr/bin/qemu-NAME-static (Debian's name), else /usr/bin/qemu-NAME (tonistiigi/binfmt's)
}

// QemuEmulators are the emulators of the qemu test image: one under each
// naming scheme xrun accepts.
var QemuEmulators = []QemuEmulator{{Name: "aarch64", Static: true}, {Name: "riscv64"}}

// QemuImage builds an OCI index with one linux/<host arch> image whose
// single layer holds the static emulators of Debian's qemu-user-static
// package (the files it installed as /usr/bin/qemu-NAME-static; run
// hack/setup.sh), like the images `xrun emulator install` pulls.
func QemuImage() (v1.ImageIndex, error) {
	es := []entry{{path: "usr/", mode: 0o755}, {path: "usr/bin/", mode: 0o755}}
	for _, e := range QemuEmulators {
		src := "/usr/bin/qemu-" + e.Name + "-static"
		b, err := os.ReadFile(src)
		if err != nil {
			return nil, fmt.Errorf("%w (Debian's qemu-user-static; run hack/setup.sh)", err)
		}
		dst := "usr/bin/qemu-" + e.Name
		if e.Static {
			dst += "-static"
		}
		es = append(es, entry{path: dst, mode: 0o755, content: b})
	}
	img, err := buildImage("linux", runtime.GOARCH, "", true, es)
	if err != nil {
		return nil, err
	}
	idx := mutate.IndexMediaType(empty.Index, types.OCIImageIndex)
	return mutate.AppendManifests(idx, mutate.IndexAddendum{
		Add:        img,
		Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: runtime.GOARCH}},
	}), nil
}

// PushQemu builds QemuImage, pushes it to the registry at addr as QemuRepo
// and returns its reference pinned by digest (ADDR/REPO@sha256:...).
func PushQemu(addr string) (string, error) {
	idx, err := QemuImage()
	if err != nil {
		return "", err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	ref, err := name.ParseReference(addr + "/" + QemuRepo)
	if err != nil {
		return "", err
	}
	if err := remote.WriteIndex(ref, idx, remote.WithContext(ctx)); err != nil {
		return "", fmt.Errorf("push %s: %w", ref, err)
	}
	d, err := idx.Digest()
	if err != nil {
		return "", err
	}
	return ref.Context().Name() + "@" + d.String(), nil
}
