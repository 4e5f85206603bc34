// Package testimage builds xrun's test images from Debian's busybox-static
// packages and a Go-cross-compiled riscv64 binary, and pushes them to a
// registry.
//
// The integration tests (package integration, build tag integration) and
// hack/demo.sh (through the command testimage/push) use it. The .debs come
// from hack/setup.sh, which downloads them into integration/testdata/debs.
package testimage

import (
	"context"
	"debug/elf"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"sync"
	"syscall"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/xrun-dev/xrun/pkg/binfmt"
)

// Repositories (with tag) that Push writes, relative to the registry.
const (
	// BusyboxRepo is an OCI index with one single-layer image per entry of
	// Platforms.
	BusyboxRepo = "xrun-test/busybox:latest"
	// LayersRepo is a Docker manifest list (linux/amd64, linux/arm64/v8) of
	// two-layer schema2 images: layer 2 deletes a file with a whiteout and
	// replaces /data with an opaque whiteout.
	LayersRepo = "xrun-test/layers:latest"
)

// Repos are the repositories Push writes, in the order it writes them.
var Repos = []string{BusyboxRepo, LayersRepo}

// Platform is one platform of the test images.
type Platform struct {
	Name              string // as given to --platform
	OS, Arch, Variant string // OCI platform
	Deb               string // Debian arch of busybox-static; "" = cross-compiled minibox
	UnameM            string // `uname -m` inside, when emulated (see Uname)
	Qemu              string // static emulator in /usr/bin when the host cannot run it natively
	Machine           elf.Machine
	Class             elf.Class
	Data              elf.Data
	HostArch          string // runtime.GOARCH of a host that runs it natively
}

// BinName is the multi-call binary in /bin that the applet symlinks point to.
func (p Platform) BinName() string {
	if p.Deb == "" {
		return "minibox"
	}
	return "busybox"
}

// Native reports whether the host runs the platform's binaries itself:
// its own arch, or 32-bit x86 on an amd64 kernel that runs such programs
// (IA-32 emulation can be off; see runsIA32).
func (p Platform) Native() bool {
	if p.HostArch == runtime.GOARCH {
		return true
	}
	return p.Arch == "386" && runtime.GOARCH == "amd64" && runsIA32()
}

// Uname is `uname -m` inside: UnameM, but a 32-bit x86 program run natively
// by an x86_64 kernel sees "x86_64" (only qemu-i386 or the PER_LINUX32
// personality say i686).
func (p Platform) Uname() string {
	if p.Arch == "386" && p.Native() {
		return "x86_64"
	}
	return p.UnameM
}

var ia32 = sync.OnceValue(func() bool {
	ok, err := runsIA32Program()
	if err != nil {
		panic(err)
	}
	return ok
})

// runsIA32 reports whether this machine executes 32-bit x86 programs. It
// asks the kernel by running one from a file, independently of xrun's own
// probe (which this answer checks).
func runsIA32() bool { return ia32() }

func runsIA32Program() (bool, error) {
	prog, err := binfmt.TestProgram("386")
	if err != nil {
		return false, err
	}
	dir, err := os.MkdirTemp("", "ia32-")
	if err != nil {
		return false, err
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "prog")
	if err := os.WriteFile(path, prog, 0o755); err != nil {
		return false, err
	}
	err = exec.Command(path).Run()
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee) && ee.ExitCode() == binfmt.TestProgramStatus:
		return true, nil
	case errors.Is(err, syscall.ENOEXEC):
		return false, nil
	}
	return false, fmt.Errorf("running a 32-bit x86 test program: %v", err)
}

// Platforms are the platforms of BusyboxRepo. Debian bookworm has no
// riscv64 port, so that image carries a Go program
// (integration/testdata/minibox).
var Platforms = []Platform{
	{Name: "linux/386", OS: "linux", Arch: "386", Deb: "i386", UnameM: "i686",
		Qemu: "qemu-i386-static", Machine: elf.EM_386, Class: elf.ELFCLASS32, Data: elf.ELFDATA2LSB, HostArch: "386"},
	{Name: "linux/amd64", OS: "linux", Arch: "amd64", Deb: "amd64", UnameM: "x86_64",
		Qemu: "qemu-x86_64-static", Machine: elf.EM_X86_64, Class: elf.ELFCLASS64, Data: elf.ELFDATA2LSB, HostArch: "amd64"},
	{Name: "linux/arm64", OS: "linux", Arch: "arm64", Deb: "arm64", UnameM: "aarch64",
		Qemu: "qemu-aarch64-static", Machine: elf.EM_AARCH64, Class: elf.ELFCLASS64, Data: elf.ELFDATA2LSB, HostArch: "arm64"},
	{Name: "linux/arm/v7", OS: "linux", Arch: "arm", Variant: "v7", Deb: "armhf", UnameM: "armv7l",
		Qemu: "qemu-arm-static", Machine: elf.EM_ARM, Class: elf.ELFCLASS32, Data: elf.ELFDATA2LSB, HostArch: "arm"},
	{Name: "linux/ppc64le", OS: "linux", Arch: "ppc64le", Deb: "ppc64el", UnameM: "ppc64le",
		Qemu: "qemu-ppc64le-static", Machine: elf.EM_PPC64, Class: elf.ELFCLASS64, Data: elf.ELFDATA2LSB, HostArch: "ppc64le"},
	{Name: "linux/s390x", OS: "linux", Arch: "s390x", Deb: "s390x", UnameM: "s390x",
		Qemu: "qemu-s390x-static", Machine: elf.EM_S390, Class: elf.ELFCLASS64, Data: elf.ELFDATA2MSB, HostArch: "s390x"},
	{Name: "linux/riscv64", OS: "linux", Arch: "riscv64", UnameM: "riscv64",
		Qemu: "qemu-riscv64-static", Machine: elf.EM_RISCV, Class: elf.ELFCLASS64, Data: elf.ELFDATA2LSB, HostArch: "riscv64"},
}

// PlatformByName returns the entry of Platforms with the given name.
func PlatformByName(name string) (Platform, bool) {
	for _, p := range Platforms {
		if p.Name == name {
			return p, true
		}
	}
	return Platform{}, false
}

// Applets get a symlink /bin/<applet> -> <binary> in every test image.
var Applets = []string{"sh", "uname", "cat", "true", "false", "echo", "touch", "sleep", "kill", "id", "ls", "env", "pwd"}

// Images are the test images, built in memory.
type Images struct {
	Busybox v1.ImageIndex     // pushed as BusyboxRepo
	Layers  v1.ImageIndex     // pushed as LayersRepo
	Bins    map[string]string // platform name -> host path of its /bin binary
}

// Push writes the test images to the registry at addr (host:port, plain
// HTTP for localhost addresses) as BusyboxRepo and LayersRepo.
func (im *Images) Push(addr string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	for _, repo := range Repos {
		idx := im.Busybox
		if repo == LayersRepo {
			idx = im.Layers
		}
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

// Build extracts or compiles the per-platform binaries into workDir and
// builds the test images in memory. debsDir holds busybox-static_*_<arch>.deb
// for the Debian arches of Platforms; "" means DebsDir(). Building needs
// dpkg-deb and the go command (for the riscv64 minibox).
func Build(debsDir, workDir string) (*Images, error) {
	if debsDir == "" {
		d, err := DebsDir()
		if err != nil {
			return nil, err
		}
		debsDir = d
	}
	if err := os.MkdirAll(workDir, 0o755); err != nil {
		return nil, err
	}
	im := &Images{Bins: map[string]string{}}
	busybox := mutate.IndexMediaType(empty.Index, types.OCIImageIndex)
	var layerAdds []mutate.IndexAddendum
	for _, p := range Platforms {
		bin, err := platformBinary(p, debsDir, workDir)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", p.Name, err)
		}
		im.Bins[p.Name] = bin
		content, err := os.ReadFile(bin)
		if err != nil {
			return nil, err
		}
		base := baseEntries(p.BinName(), content)

		img, err := buildImage(p.OS, p.Arch, p.Variant, true, base)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", p.Name, err)
		}
		busybox = mutate.AppendManifests(busybox, mutate.IndexAddendum{
			Add: img,
			Descriptor: v1.Descriptor{
				Platform: &v1.Platform{OS: p.OS, Architecture: p.Arch, Variant: p.Variant},
			},
		})

		// Two-layer Docker images for amd64 and arm64 (as arm64/v8, as
		// Docker Hub lists it).
		if p.Name == "linux/amd64" || p.Name == "linux/arm64" {
			variant := ""
			if p.Arch == "arm64" {
				variant = "v8"
			}
			img, err := buildImage(p.OS, p.Arch, variant, false, slices.Concat(base, layer1Extra), layer2)
			if err != nil {
				return nil, fmt.Errorf("%s layers: %w", p.Name, err)
			}
			layerAdds = append(layerAdds, mutate.IndexAddendum{
				Add: img,
				Descriptor: v1.Descriptor{
					Platform: &v1.Platform{OS: p.OS, Architecture: p.Arch, Variant: variant},
				},
			})
		}
	}
	im.Busybox = busybox
	im.Layers = mutate.AppendManifests(mutate.IndexMediaType(empty.Index, types.DockerManifestList), layerAdds...)
	return im, nil
}

// integrationDir finds the checkout's integration/ directory: from this
// source file's path, or (in a -trimpath build, whose paths are not real)
// by looking for integration/testdata/minibox from the working directory
// upwards.
func integrationDir() (string, error) {
	isIt := func(dir string) bool {
		_, err := os.Stat(filepath.Join(dir, "testdata", "minibox", "main.go"))
		return err == nil
	}
	if _, file, _, ok := runtime.Caller(0); ok && filepath.IsAbs(file) {
		if d := filepath.Dir(filepath.Dir(file)); isIt(d) {
			return d, nil
		}
	}
	wd, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for dir := wd; ; {
		for _, d := range []string{dir, filepath.Join(dir, "integration")} {
			if isIt(d) {
				return d, nil
			}
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("cannot find xrun's integration/testdata/minibox " +
				"(run from the checkout)")
		}
		dir = parent
	}
}

// DebsDir is the checkout's integration/testdata/debs, where hack/setup.sh
// puts the busybox-static packages.
func DebsDir() (string, error) {
	d, err := integrationDir()
	if err != nil {
		return "", err
	}
	return filepath.Join(d, "testdata", "debs"), nil
}

// MiniboxDir is the source of minibox, integration/testdata/minibox.
func MiniboxDir() (string, error) {
	d, err := integrationDir()
	if err != nil {
		return "", err
	}
	return filepath.Join(d, "testdata", "minibox"), nil
}

// debPath finds debsDir/busybox-static_*_<arch>.deb.
func debPath(debsDir, arch string) (string, error) {
	m, err := filepath.Glob(filepath.Join(debsDir, "busybox-static_*_"+arch+".deb"))
	if err != nil {
		return "", err
	}
	if len(m) == 0 {
		return "", fmt.Errorf("no %s: run hack/setup.sh",
			filepath.Join(debsDir, "busybox-static_*_"+arch+".deb"))
	}
	return m[len(m)-1], nil
}

// platformBinary returns the host path of the platform's multi-call binary:
// bin/busybox from Debian's busybox-static .deb, or minibox cross-compiled.
func platformBinary(p Platform, debsDir, workDir string) (string, error) {
	if p.Deb == "" {
		return buildMinibox(p, workDir)
	}
	deb, err := debPath(debsDir, p.Deb)
	if err != nil {
		return "", err
	}
	out := filepath.Join(workDir, "deb-"+p.Deb)
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

func buildMinibox(p Platform, workDir string) (string, error) {
	src, err := MiniboxDir()
	if err != nil {
		return "", err
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		goBin = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	out, err := filepath.Abs(filepath.Join(workDir, "minibox-"+p.Arch))
	if err != nil {
		return "", err
	}
	cmd := exec.Command(goBin, "build", "-trimpath", "-ldflags=-s -w", "-o", out, ".")
	cmd.Dir = src
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS="+p.OS, "GOARCH="+p.Arch)
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("cross-compile %s for %s: %v: %s", src, p.Name, err, b)
	}
	return out, nil
}
