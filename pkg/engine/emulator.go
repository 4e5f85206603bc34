package engine

import (
	"archive/tar"
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"

	"github.com/xrun-dev/xrun/pkg/binfmt"
	"github.com/xrun-dev/xrun/pkg/cache"
	"github.com/xrun-dev/xrun/pkg/fsutil"
	"github.com/xrun-dev/xrun/pkg/pull"
	"github.com/xrun-dev/xrun/pkg/rootfs"
	"github.com/xrun-dev/xrun/pkg/store"
)

// DefaultEmulatorImage is where `xrun emulator install` (and a run that
// finds no emulator) gets static qemu-user binaries: tonistiigi/binfmt, the
// image docker's buildx documentation installs emulators from, built for
// every host platform, with static qemu-ARCH binaries in /usr/bin. It is
// pinned by digest: what runs every foreign binary must not change under a
// tag. EnvEmulatorImage overrides it (e.g. a mirror on an internal
// registry); it too must be pinned by digest.
const DefaultEmulatorImage = "docker.io/tonistiigi/binfmt:qemu-v10.2.3@sha256:400a4873b838d1b89194d982c45e5fb3cda4593fbfd7e08a02e76b03b21166f0"

// EnvEmulatorImage is a public environment variable: the image emulators
// are installed from, instead of DefaultEmulatorImage.
const EnvEmulatorImage = "XRUN_EMULATOR_IMAGE"

// emulatorSearchDirs are the directories of an emulator image searched for
// qemu-NAME-static and qemu-NAME, in order of preference.
var emulatorSearchDirs = []string{"usr/bin", "usr/local/bin", "bin"}

// EmulatorDir is where installed emulators for this host live:
// <cache>/emulators/<host GOARCH>. binfmt's discovery searches it last.
func EmulatorDir(cacheDir string) string {
	return cache.EmulatorsDir(cacheDir)
}

// ProbeDir is where binfmt remembers, for the current boot, what it probed
// of this machine (does the kernel run 32-bit x86 programs?).
func ProbeDir(cacheDir string) string {
	return cache.ProbesDir(cacheDir)
}

// CacheBinfmtOptions returns bo with the directories of cacheDir that
// binfmt.Decide uses: installed emulators and remembered probes.
func CacheBinfmtOptions(bo binfmt.Options, cacheDir string) binfmt.Options {
	bo.InstalledDir = EmulatorDir(cacheDir)
	bo.ProbeDir = ProbeDir(cacheDir)
	return bo
}

// emulatorSourceFile records where the installed emulators came from.
const emulatorSourceFile = "source.json"

// EmulatorSource is the content of <EmulatorDir>/source.json.
type EmulatorSource struct {
	Image     string    `json:"image"`  // the reference installed from
	Digest    string    `json:"digest"` // manifest digest for the host platform
	Installed []string  `json:"installed"`
	Time      time.Time `json:"time"`
}

// ReadEmulatorSource reads what the last install recorded (nil if none).
func ReadEmulatorSource(cacheDir string) *EmulatorSource {
	b, err := os.ReadFile(filepath.Join(EmulatorDir(cacheDir), emulatorSourceFile))
	if err != nil {
		return nil
	}
	var s EmulatorSource
	if json.Unmarshal(b, &s) != nil {
		return nil
	}
	return &s
}

// InstallOptions describe an emulator install.
type InstallOptions struct {
	// CacheDir is the cache root (default DefaultCacheDir()).
	CacheDir string
	// Image is the image reference, pinned by digest (default
	// $XRUN_EMULATOR_IMAGE, else DefaultEmulatorImage).
	Image string
	// Pull is the pull policy (default pull.PullMissing).
	Pull   pull.Policy
	Logger *slog.Logger
}

// EmulatorImage returns the image emulators are installed from by default:
// $XRUN_EMULATOR_IMAGE, else DefaultEmulatorImage.
func EmulatorImage() string {
	if s := os.Getenv(EnvEmulatorImage); s != "" {
		return s
	}
	return DefaultEmulatorImage
}

// InstallEmulators pulls the host platform's variant of an emulator image
// and copies its static qemu-user binaries for the architectures of
// binfmt.Arches into EmulatorDir, as qemu-NAME-static. It replaces what an
// earlier install put there. Concurrent installs (make -j) take turns.
func InstallEmulators(ctx context.Context, o InstallOptions) (*EmulatorSource, error) {
	o.fill()
	log := o.Logger
	privateCache(o.CacheDir, log)
	if _, err := name.NewDigest(o.Image); err != nil {
		return nil, fmt.Errorf("emulator image %q must be pinned by digest (REF@sha256:...): what runs every foreign binary must not change under a tag", o.Image)
	}
	unlock, err := lockEmulators(ctx, o.CacheDir)
	if err != nil {
		return nil, err
	}
	defer unlock()
	// The reference is pinned by digest: if it is what is installed (e.g.
	// by a concurrent run that held the lock first), there is nothing to do.
	if src := ReadEmulatorSource(o.CacheDir); src != nil && src.Image == o.Image && installedAll(o.CacheDir, src) {
		log.Info("emulators already installed", "image", o.Image, "dir", EmulatorDir(o.CacheDir))
		return src, nil
	}

	client := pull.NewClient(store.New(o.CacheDir))
	img, err := pullEmulatorImage(ctx, client, o)
	if err != nil {
		return nil, err
	}
	dir := EmulatorDir(o.CacheDir)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("install emulators: %w", err)
	}
	tmp, err := os.MkdirTemp(filepath.Dir(dir), ".tmp-")
	if err != nil {
		return nil, fmt.Errorf("install emulators: %w", err)
	}
	defer os.RemoveAll(tmp)

	var blobs []string
	for _, l := range img.Layers {
		blobs = append(blobs, client.BlobPath(l.Digest))
	}
	found, err := extractEmulators(ctx, blobs, tmp)
	if err != nil {
		return nil, fmt.Errorf("install emulators from %s: %w", o.Image, err)
	}
	src := &EmulatorSource{Image: o.Image, Digest: img.Digest.String(), Time: time.Now().UTC()}
	if src.Installed, err = installFound(found, dir, log); err != nil {
		return nil, err
	}
	if len(src.Installed) == 0 {
		return nil, fmt.Errorf("emulator image %s has no static qemu-user binaries for a linux/%s host in /%s (qemu-ARCH-static or qemu-ARCH)",
			o.Image, runtime.GOARCH, strings.Join(emulatorSearchDirs, ", /"))
	}
	b, _ := json.MarshalIndent(src, "", "  ")
	if err := fsutil.WriteFileAtomic(filepath.Join(dir, emulatorSourceFile), ".tmp-", b, 0o644); err != nil {
		return nil, err
	}
	log.Info("installed emulators", "dir", dir, "arches", strings.Join(src.Installed, ","))
	return src, nil
}

func (o *InstallOptions) fill() {
	if o.CacheDir == "" {
		o.CacheDir = DefaultCacheDir()
	}
	if o.Image == "" {
		o.Image = EmulatorImage()
	}
	if o.Pull == "" {
		o.Pull = pull.PullMissing
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
}

// pullEmulatorImage resolves and fetches o.Image for this host.
func pullEmulatorImage(ctx context.Context, client *pull.Client, o InstallOptions) (*pull.Image, error) {
	popts := []pull.Option{pull.WithPlatform(pull.HostPlatform()), pull.WithPolicy(o.Pull), pull.WithLogger(o.Logger)}
	t0 := time.Now()
	img, err := client.Resolve(ctx, o.Image, popts...)
	if err != nil {
		return nil, fmt.Errorf("install emulators: %w", err)
	}
	if err := client.Fetch(ctx, img, popts...); err != nil {
		return nil, fmt.Errorf("install emulators: %w", err)
	}
	o.Logger.Info("pulled emulator image", "ref", img.Ref, "digest", img.Digest.String(), "took", time.Since(t0).Round(time.Millisecond))
	return img, nil
}

// installFound moves the usable emulators of found (qemu name -> extracted
// file) into dir as qemu-NAME-static and returns their GOARCHes.
func installFound(found map[string]string, dir string, log *slog.Logger) ([]string, error) {
	hostArch, err := binfmt.Lookup(runtime.GOARCH)
	if err != nil {
		return nil, err
	}
	var installed []string
	for _, a := range binfmt.Arches {
		if a.GOARCH == runtime.GOARCH {
			continue
		}
		f := found[a.Name]
		if f == "" {
			continue
		}
		if why := unusableEmulator(f, hostArch); why != "" {
			log.Warn("emulator image: skipping qemu-"+a.Name, "why", why)
			continue
		}
		dst := filepath.Join(dir, "qemu-"+a.Name+"-static")
		if err := os.Chmod(f, 0o755); err != nil {
			return nil, err
		}
		// A rename replaces the file a running xrun may have open: it
		// keeps its (unlinked) copy.
		if err := os.Rename(f, dst); err != nil {
			return nil, fmt.Errorf("install %s: %w", dst, err)
		}
		installed = append(installed, a.GOARCH)
	}
	return installed, nil
}

// installedAll reports whether every emulator src lists is in place.
func installedAll(cacheDir string, src *EmulatorSource) bool {
	for _, goarch := range src.Installed {
		a, err := binfmt.Lookup(goarch)
		if err != nil {
			return false
		}
		if _, err := os.Stat(filepath.Join(EmulatorDir(cacheDir), "qemu-"+a.Name+"-static")); err != nil {
			return false
		}
	}
	return true
}

// unusableEmulator says why the file at p cannot serve as an emulator on
// this host ("" if it can): it must be a static ELF for the host's arch.
func unusableEmulator(p string, host *binfmt.Arch) string {
	f, err := os.Open(p)
	if err != nil {
		return err.Error()
	}
	hdr := make([]byte, 64)
	n, _ := io.ReadFull(f, hdr)
	f.Close()
	if !host.Matches(hdr[:n]) {
		return "not an executable for this host (" + host.Name + ")"
	}
	static, err := binfmt.IsStatic(p)
	if err != nil {
		return err.Error()
	}
	if !static {
		return "dynamically linked"
	}
	return ""
}

// extractEmulators reads the layers (blob paths, base first) and writes
// the last version of each qemu binary of binfmt.Arches in
// emulatorSearchDirs into tmp, applying whiteouts. It returns qemu NAME ->
// file in tmp, preferring qemu-NAME-static over qemu-NAME and the earlier
// search directory.
func extractEmulators(ctx context.Context, blobs []string, tmp string) (map[string]string, error) {
	x := &emulatorExtract{tmp: tmp, wanted: map[string]string{}, have: map[string]string{}}
	for _, a := range binfmt.Arches {
		for _, d := range emulatorSearchDirs {
			x.wanted[d+"/qemu-"+a.Name+"-static"] = a.Name
			x.wanted[d+"/qemu-"+a.Name] = a.Name
		}
	}
	for i, blob := range blobs {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if err := x.layer(i, blob); err != nil {
			return nil, fmt.Errorf("layer %d: %w", i+1, err)
		}
	}
	found := map[string]string{}
	for _, a := range binfmt.Arches {
		for _, d := range emulatorSearchDirs {
			for _, f := range []string{d + "/qemu-" + a.Name + "-static", d + "/qemu-" + a.Name} {
				if t, ok := x.have[f]; ok && found[a.Name] == "" {
					// Links share one extracted file: give each arch its own.
					if slices.Contains(mapValues(found), t) {
						continue
					}
					found[a.Name] = t
				}
			}
		}
	}
	return found, nil
}

// emulatorExtract is the state of extractEmulators across the layers.
type emulatorExtract struct {
	tmp    string
	wanted map[string]string // image path -> qemu NAME
	have   map[string]string // image path -> file in tmp
	n      int               // files extracted
}

// layer applies layer i (the blob at path blob) to x.have: the wanted
// files it holds are extracted, its whiteouts remove earlier ones.
func (x *emulatorExtract) layer(i int, blob string) error {
	f, err := os.Open(blob)
	if err != nil {
		return err
	}
	defer f.Close()
	r, _, closeR, err := rootfs.Decompress(bufio.NewReaderSize(f, 64<<10), "")
	if err != nil {
		return err
	}
	defer closeR()
	tr := tar.NewReader(r)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		if err := x.entry(i, hdr, tr); err != nil {
			return err
		}
	}
}

// entry applies one tar entry of layer i.
func (x *emulatorExtract) entry(i int, hdr *tar.Header, r io.Reader) error {
	p := strings.TrimPrefix(path.Clean("/"+hdr.Name), "/")
	dir, base := path.Split(p)
	dir = strings.TrimSuffix(dir, "/")
	if base == ".wh..wh..opq" {
		for k := range x.have {
			if strings.HasPrefix(k, dir+"/") {
				delete(x.have, k)
			}
		}
		return nil
	}
	if strings.HasPrefix(base, ".wh.") {
		delete(x.have, path.Join(dir, strings.TrimPrefix(base, ".wh.")))
		return nil
	}
	if _, ok := x.wanted[p]; !ok {
		return nil
	}
	switch hdr.Typeflag {
	case tar.TypeReg:
		x.n++
		out := filepath.Join(x.tmp, fmt.Sprintf("%d-%d-%s", i, x.n, base))
		w, err := os.OpenFile(out, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o700)
		if err != nil {
			return err
		}
		_, err = io.Copy(w, r)
		if cerr := w.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return fmt.Errorf("extract /%s: %w", p, err)
		}
		x.have[p] = out
	case tar.TypeLink, tar.TypeSymlink:
		target := hdr.Linkname
		if hdr.Typeflag == tar.TypeSymlink && !strings.HasPrefix(target, "/") {
			target = path.Join(dir, target)
		}
		target = strings.TrimPrefix(path.Clean("/"+target), "/")
		if f, ok := x.have[target]; ok {
			x.have[p] = f
		} else {
			delete(x.have, p)
		}
	default:
		delete(x.have, p)
	}
	return nil
}

func mapValues(m map[string]string) []string {
	vs := make([]string, 0, len(m))
	for _, v := range m {
		vs = append(vs, v)
	}
	return vs
}

// lockEmulators takes <cache>/locks/emulators-<GOARCH>.lock.
func lockEmulators(ctx context.Context, cacheDir string) (func(), error) {
	p := cache.LockPath(cacheDir, "emulators-"+runtime.GOARCH)
	l, err := fsutil.LockFile(ctx, p, fsutil.Exclusive)
	if err != nil {
		return nil, fmt.Errorf("lock %s: %w", p, err)
	}
	return l.Unlock, nil
}

// binfmtOptions are the binfmt.Options of a run: o.Binfmt plus the
// emulator named by --emulator, the cache's installed emulators and the
// logger.
func binfmtOptions(o *Options) binfmt.Options {
	bo := CacheBinfmtOptions(o.Binfmt, o.CacheDir)
	bo.Emulator = o.Emulator
	bo.Logger = o.Logger
	return bo
}

// decide is binfmt.Decide for a run, installing emulators from the
// emulator image first when none is found and the user has not named one,
// forced a strategy that needs none, or asked for no pull.
func decide(ctx context.Context, o *Options, goarch, variant string) (*binfmt.Plan, error) {
	bo := binfmtOptions(o)
	plan, err := binfmt.Decide(goarch, variant, bo)
	if err == nil || !(errors.Is(err, binfmt.ErrNoEmulator) || errors.Is(err, binfmt.ErrDynamicEmulator)) {
		return plan, err
	}
	switch {
	case o.NoEmulatorPull, o.Pull == pull.PullNever, o.Emulator != "", os.Getenv(binfmt.EnvQemuPath) != "",
		bo.Force != "" && bo.Force != binfmt.Namespaced:
		return nil, err
	}
	image := EmulatorImage()
	lacks := fmt.Errorf("%w (the emulator image %s has none for linux/%s)", err, image, goarch)
	if src := ReadEmulatorSource(o.CacheDir); src != nil && src.Image == image && !slices.Contains(src.Installed, goarch) {
		return nil, lacks // installed already: pulling it again does not help
	}
	o.Logger.Info("no emulator found: installing emulators", "image", image, "dir", EmulatorDir(o.CacheDir))
	if _, ierr := InstallEmulators(ctx, InstallOptions{CacheDir: o.CacheDir, Image: image, Pull: o.Pull, Logger: o.Logger}); ierr != nil {
		return nil, fmt.Errorf("%w (installing one failed: %v; --no-emulator-pull skips that)", err, ierr)
	}
	plan, err = binfmt.Decide(goarch, variant, bo)
	if errors.Is(err, binfmt.ErrNoEmulator) {
		return nil, lacks
	}
	return plan, err
}
