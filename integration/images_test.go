//go:build integration

package integration

import (
	"archive/tar"
	"bytes"
	"context"
	"debug/elf"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Repositories the harness pushes to every registry it starts.
const (
	// busyboxRepo is an OCI index with one single-layer image per entry of
	// platforms.
	busyboxRepo = "xrun-test/busybox:latest"
	// layersRepo is a Docker manifest list (linux/amd64, linux/arm64/v8) of
	// two-layer schema2 images: layer 2 deletes a file with a whiteout and
	// replaces /data with an opaque whiteout.
	layersRepo = "xrun-test/layers:latest"
)

// testPlatform is one platform of the test images.
type testPlatform struct {
	name              string // as given to --platform
	os, arch, variant string // OCI platform
	deb               string // Debian arch of busybox-static; "" = cross-compiled minibox
	unameM            string // `uname -m` inside
	qemu              string // static emulator in /usr/bin when the host cannot run it natively
	machine           elf.Machine
	class             elf.Class
	data              elf.Data
	hostArch          string // runtime.GOARCH of a host that runs it natively
}

// binName is the multi-call binary in /bin that the applet symlinks point to.
func (p testPlatform) binName() string {
	if p.deb == "" {
		return "minibox"
	}
	return "busybox"
}

// native reports whether the host runs the platform's binaries itself.
func (p testPlatform) native() bool { return p.hostArch == runtime.GOARCH }

// platforms are the platforms of busyboxRepo. Debian bookworm has no
// riscv64 port, so that image carries a Go program (testdata/minibox).
var platforms = []testPlatform{
	{name: "linux/amd64", os: "linux", arch: "amd64", deb: "amd64", unameM: "x86_64",
		qemu: "qemu-x86_64-static", machine: elf.EM_X86_64, class: elf.ELFCLASS64, data: elf.ELFDATA2LSB, hostArch: "amd64"},
	{name: "linux/arm64", os: "linux", arch: "arm64", deb: "arm64", unameM: "aarch64",
		qemu: "qemu-aarch64-static", machine: elf.EM_AARCH64, class: elf.ELFCLASS64, data: elf.ELFDATA2LSB, hostArch: "arm64"},
	{name: "linux/arm/v7", os: "linux", arch: "arm", variant: "v7", deb: "armhf", unameM: "armv7l",
		qemu: "qemu-arm-static", machine: elf.EM_ARM, class: elf.ELFCLASS32, data: elf.ELFDATA2LSB, hostArch: "arm"},
	{name: "linux/ppc64le", os: "linux", arch: "ppc64le", deb: "ppc64el", unameM: "ppc64le",
		qemu: "qemu-ppc64le-static", machine: elf.EM_PPC64, class: elf.ELFCLASS64, data: elf.ELFDATA2LSB, hostArch: "ppc64le"},
	{name: "linux/s390x", os: "linux", arch: "s390x", deb: "s390x", unameM: "s390x",
		qemu: "qemu-s390x-static", machine: elf.EM_S390, class: elf.ELFCLASS64, data: elf.ELFDATA2MSB, hostArch: "s390x"},
	{name: "linux/riscv64", os: "linux", arch: "riscv64", unameM: "riscv64",
		qemu: "qemu-riscv64-static", machine: elf.EM_RISCV, class: elf.ELFCLASS64, data: elf.ELFDATA2LSB, hostArch: "riscv64"},
}

func platformByName(name string) testPlatform {
	for _, p := range platforms {
		if p.name == name {
			return p
		}
	}
	panic("no test platform " + name)
}

// applets get a symlink /bin/<applet> -> <binary> in every test image.
var applets = []string{"sh", "uname", "cat", "true", "false", "echo", "touch", "sleep", "kill", "id", "ls", "env", "pwd"}

// testImages are the images the harness pushes to each registry.
type testImages struct {
	busybox v1.ImageIndex
	layers  v1.ImageIndex
	bins    map[string]string // platform name -> host path of its /bin binary
}

// push writes the test images to the registry at addr.
func (ti *testImages) push(addr string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	for repo, idx := range map[string]v1.ImageIndex{busyboxRepo: ti.busybox, layersRepo: ti.layers} {
		ref, err := name.ParseReference(addr + "/" + repo)
		if err != nil {
			return err
		}
		if err := remote.WriteIndex(ref, idx, remote.WithContext(ctx)); err != nil {
			return fmt.Errorf("push %s: %w", ref, err)
		}
	}
	return nil
}

// debPath finds integration/testdata/debs/busybox-static_*_<arch>.deb.
func debPath(arch string) (string, error) {
	m, err := filepath.Glob(filepath.Join("testdata", "debs", "busybox-static_*_"+arch+".deb"))
	if err != nil {
		return "", err
	}
	if len(m) == 0 {
		return "", fmt.Errorf("no testdata/debs/busybox-static_*_%s.deb: run hack/setup.sh", arch)
	}
	return m[len(m)-1], nil
}

// buildImages extracts or compiles the per-platform binaries into dir and
// builds the test images in memory.
func buildImages(dir string) (*testImages, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	ti := &testImages{bins: map[string]string{}}
	busybox := mutate.IndexMediaType(empty.Index, types.OCIImageIndex)
	var layerAdds []mutate.IndexAddendum
	for _, p := range platforms {
		bin, err := platformBinary(p, dir)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", p.name, err)
		}
		ti.bins[p.name] = bin
		content, err := os.ReadFile(bin)
		if err != nil {
			return nil, err
		}
		base := baseEntries(p.binName(), content)

		img, err := buildImage(p.os, p.arch, p.variant, true, base)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", p.name, err)
		}
		busybox = mutate.AppendManifests(busybox, mutate.IndexAddendum{
			Add: img,
			Descriptor: v1.Descriptor{
				Platform: &v1.Platform{OS: p.os, Architecture: p.arch, Variant: p.variant},
			},
		})

		// Two-layer Docker images for amd64 and arm64 (as arm64/v8, as
		// Docker Hub lists it).
		if p.name == "linux/amd64" || p.name == "linux/arm64" {
			variant := ""
			if p.arch == "arm64" {
				variant = "v8"
			}
			img, err := buildImage(p.os, p.arch, variant, false, slices.Concat(base, layer1Extra), layer2)
			if err != nil {
				return nil, fmt.Errorf("%s layers: %w", p.name, err)
			}
			layerAdds = append(layerAdds, mutate.IndexAddendum{
				Add: img,
				Descriptor: v1.Descriptor{
					Platform: &v1.Platform{OS: p.os, Architecture: p.arch, Variant: variant},
				},
			})
		}
	}
	ti.busybox = busybox
	ti.layers = mutate.AppendManifests(mutate.IndexMediaType(empty.Index, types.DockerManifestList), layerAdds...)
	return ti, nil
}

// platformBinary returns the host path of the platform's multi-call binary:
// bin/busybox from Debian's busybox-static .deb, or minibox cross-compiled.
func platformBinary(p testPlatform, dir string) (string, error) {
	if p.deb == "" {
		return buildMinibox(p, dir)
	}
	deb, err := debPath(p.deb)
	if err != nil {
		return "", err
	}
	out := filepath.Join(dir, "deb-"+p.deb)
	if err := os.MkdirAll(out, 0o755); err != nil {
		return "", err
	}
	if b, err := exec.Command("dpkg-deb", "-x", deb, out).CombinedOutput(); err != nil {
		return "", fmt.Errorf("dpkg-deb -x %s: %v: %s", deb, err, b)
	}
	bin := filepath.Join(out, "bin", "busybox")
	if _, err := os.Stat(bin); err != nil {
		return "", fmt.Errorf("%s has no bin/busybox: %w", deb, err)
	}
	return bin, nil
}

func buildMinibox(p testPlatform, dir string) (string, error) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		goBin = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	out := filepath.Join(dir, "minibox-"+p.arch)
	cmd := exec.Command(goBin, "build", "-trimpath", "-ldflags=-s -w", "-o", out, "./testdata/minibox")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS="+p.os, "GOARCH="+p.arch)
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("cross-compile testdata/minibox for %s: %v: %s", p.name, err, b)
	}
	return out, nil
}

// entry is one file in a test layer.
type entry struct {
	path     string // relative, no leading slash; directories end in "/"
	mode     int64
	content  []byte
	linkname string // symlink target
}

var epoch = time.Unix(1700000000, 0).UTC()

// baseEntries is the root filesystem of a test image: /bin/<binName>, its
// applet symlinks, /etc/passwd and /etc/group for root, /tmp (1777), /root,
// and empty /proc, /dev, /sys.
func baseEntries(binName string, bin []byte) []entry {
	es := []entry{
		{path: "bin/", mode: 0o755},
		{path: "bin/" + binName, mode: 0o755, content: bin},
	}
	for _, a := range applets {
		es = append(es, entry{path: "bin/" + a, mode: 0o777, linkname: binName})
	}
	es = append(es,
		entry{path: "dev/", mode: 0o755},
		entry{path: "etc/", mode: 0o755},
		entry{path: "etc/group", mode: 0o644, content: []byte("root:x:0:\n")},
		entry{path: "etc/passwd", mode: 0o644, content: []byte("root:x:0:0:root:/root:/bin/sh\n")},
		entry{path: "proc/", mode: 0o555},
		entry{path: "root/", mode: 0o700},
		entry{path: "sys/", mode: 0o555},
		entry{path: "tmp/", mode: 0o1777},
	)
	return es
}

// layer1Extra and layer2 make the two-layer image: after both,
// /etc/removed-by-layer2 is gone, /etc/added-by-layer2 holds "layer2\n", and
// /data holds only "new" (opaque whiteout).
var (
	layer1Extra = []entry{
		{path: "etc/removed-by-layer2", mode: 0o644, content: []byte("layer1\n")},
		{path: "data/", mode: 0o755},
		{path: "data/old", mode: 0o644, content: []byte("old\n")},
	}
	layer2 = []entry{
		{path: "etc/", mode: 0o755},
		{path: "etc/.wh.removed-by-layer2", mode: 0o644},
		{path: "etc/added-by-layer2", mode: 0o644, content: []byte("layer2\n")},
		{path: "data/", mode: 0o755},
		{path: "data/.wh..wh..opq", mode: 0o644},
		{path: "data/new", mode: 0o644, content: []byte("new\n")},
	}
)

func tarLayer(entries []entry) ([]byte, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		hdr := &tar.Header{
			Name: e.path, Mode: e.mode, ModTime: epoch, Format: tar.FormatPAX,
			Uname: "root", Gname: "root",
		}
		switch {
		case e.path[len(e.path)-1] == '/':
			hdr.Typeflag = tar.TypeDir
		case e.linkname != "":
			hdr.Typeflag, hdr.Linkname = tar.TypeSymlink, e.linkname
		default:
			hdr.Typeflag, hdr.Size = tar.TypeReg, int64(len(e.content))
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return nil, err
		}
		if hdr.Typeflag == tar.TypeReg {
			if _, err := tw.Write(e.content); err != nil {
				return nil, err
			}
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// buildImage makes an image with one gzip layer per entry list. oci selects
// OCI media types, else Docker schema2.
func buildImage(goos, arch, variant string, oci bool, layers ...[]entry) (v1.Image, error) {
	layerType := types.DockerLayer
	img := empty.Image
	if oci {
		layerType = types.OCILayer
		img = mutate.MediaType(img, types.OCIManifestSchema1)
		img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	}
	for _, es := range layers {
		b, err := tarLayer(es)
		if err != nil {
			return nil, err
		}
		l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
			return io.NopCloser(bytes.NewReader(b)), nil
		}, tarball.WithMediaType(layerType))
		if err != nil {
			return nil, err
		}
		if img, err = mutate.AppendLayers(img, l); err != nil {
			return nil, err
		}
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture, cf.Variant = goos, arch, variant
	cf.Created = v1.Time{Time: epoch}
	cf.Config.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin"}
	cf.Config.Cmd = []string{"/bin/sh"}
	return mutate.ConfigFile(img, cf)
}
