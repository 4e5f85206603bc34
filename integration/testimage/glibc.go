package testimage

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// GlibcRepo is an OCI index (linux/arm64, linux/riscv64) of the busybox
// test image plus Debian's glibc for that arch in /lib, taken from the
// host's cross packages (libc6-arm64-cross, libc6-riscv64-cross, which
// hack/setup.sh installs with the cross compilers): programs that the
// host's cross gcc links dynamically run in it. Debian 12 has no riscv64
// port, so this is the glibc image the tests can have for riscv64.
const GlibcRepo = "xrun-test/glibc:latest"

// glibcPlatforms maps the platforms of GlibcRepo to their GNU triplet.
var glibcPlatforms = []struct{ platform, triplet string }{
	{"linux/arm64", "aarch64-linux-gnu"},
	{"linux/riscv64", "riscv64-linux-gnu"},
}

// glibcLibs are the files of /usr/<triplet>/lib copied to /lib: the
// loader (ld-linux-*) and the libraries a C program commonly needs.
var glibcLibs = []string{"ld-linux-*.so.*", "libc.so.6", "libm.so.6", "libgcc_s.so.1", "libpthread.so.0", "libdl.so.2", "librt.so.1"}

// PushGlibc builds GlibcRepo from im's binaries and the host's cross
// glibc and pushes it to the registry at addr. It returns the reference.
func (im *Images) PushGlibc(addr string) (string, error) {
	idx := mutate.IndexMediaType(empty.Index, types.OCIImageIndex)
	for _, gp := range glibcPlatforms {
		p, _ := PlatformByName(gp.platform)
		bin, err := os.ReadFile(im.Bins[p.Name])
		if err != nil {
			return "", fmt.Errorf("%s: %w", p.Name, err)
		}
		libDir := filepath.Join("/usr", gp.triplet, "lib")
		libs := []entry{{path: "lib/", mode: 0o755}}
		for _, pattern := range glibcLibs {
			m, _ := filepath.Glob(filepath.Join(libDir, pattern))
			if len(m) == 0 {
				return "", fmt.Errorf("no %s in %s: install the cross glibc (hack/setup.sh)", pattern, libDir)
			}
			for _, f := range m {
				b, err := os.ReadFile(f) // follows symlinks: each is a plain file
				if err != nil {
					return "", err
				}
				if !bytes.HasPrefix(b, []byte("\x7fELF")) {
					return "", fmt.Errorf("%s is not an ELF file", f)
				}
				libs = append(libs, entry{path: "lib/" + filepath.Base(f), mode: 0o755, content: b})
			}
		}
		img, err := buildImage(p.OS, p.Arch, p.Variant, true, baseEntries(p.BinName(), bin), libs)
		if err != nil {
			return "", fmt.Errorf("%s: %w", p.Name, err)
		}
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{
			Add:        img,
			Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: p.OS, Architecture: p.Arch, Variant: p.Variant}},
		})
	}
	ref, err := name.ParseReference(addr + "/" + GlibcRepo)
	if err != nil {
		return "", err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := remote.WriteIndex(ref, idx, remote.WithContext(ctx)); err != nil {
		return "", fmt.Errorf("push %s: %w", ref, err)
	}
	return ref.String(), nil
}
