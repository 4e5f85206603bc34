package testimage

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"runtime"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// entry is one file in a test layer.
type entry struct {
	path     string // relative, no leading slash; directories end in "/"
	mode     int64
	content  []byte
	linkname string // symlink target
	uid, gid int    // owner (root when zero)
	fifo     bool   // a named pipe
}

var epoch = time.Unix(1700000000, 0).UTC()

// baseEntries is the root filesystem of a test image: /bin/<binName>, its
// applet symlinks, /etc/passwd for root and xrunuser (1000:1000, for --user
// tests), /etc/group for root, /tmp (1777), /root,
// and empty /proc, /dev, /sys.
func baseEntries(binName string, bin []byte) []entry {
	es := []entry{
		{path: "bin/", mode: 0o755},
		{path: "bin/" + binName, mode: 0o755, content: bin},
	}
	for _, a := range Applets {
		es = append(es, entry{path: "bin/" + a, mode: 0o777, linkname: binName})
	}
	es = append(es,
		entry{path: "dev/", mode: 0o755},
		entry{path: "etc/", mode: 0o755},
		entry{path: "etc/group", mode: 0o644, content: []byte("root:x:0:\n")},
		entry{path: "etc/passwd", mode: 0o644, content: []byte("root:x:0:0:root:/root:/bin/sh\n" +
			"xrunuser:x:1000:1000:xrun --user tests:/home/xrunuser:/bin/sh\n")},
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
			Uid: e.uid, Gid: e.gid,
		}
		if e.uid == 0 && e.gid == 0 {
			hdr.Uname, hdr.Gname = "root", "root"
		}
		switch {
		case e.path[len(e.path)-1] == '/':
			hdr.Typeflag = tar.TypeDir
		case e.fifo:
			hdr.Typeflag = tar.TypeFifo
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
	return buildImageWith(goos, arch, variant, oci, nil, layers...)
}

// buildImageWith is buildImage with edit (when not nil) applied to the
// image's run configuration (Env PATH and Cmd /bin/sh by default).
func buildImageWith(goos, arch, variant string, oci bool, edit func(*v1.Config), layers ...[]entry) (v1.Image, error) {
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
	if edit != nil {
		edit(&cf.Config)
	}
	return mutate.ConfigFile(img, cf)
}

// hostBinary returns the platform of the test images that this host runs
// natively as its own architecture, and the content of its /bin binary.
func (im *Images) hostBinary() (Platform, []byte, error) {
	for _, p := range Platforms {
		if p.Native() && p.Arch == runtime.GOARCH && im.Bins[p.Name] != "" {
			bin, err := os.ReadFile(im.Bins[p.Name])
			return p, bin, err
		}
	}
	return Platform{}, nil, fmt.Errorf("no test binary for the host's architecture %s", runtime.GOARCH)
}

// pushImage pushes img to the registry at addr as repo (with tag) and
// returns the reference.
func pushImage(addr, repo string, img v1.Image) (string, error) {
	ref := addr + "/" + repo
	r, err := name.ParseReference(ref)
	if err != nil {
		return "", err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := remote.Write(r, img, remote.WithContext(ctx)); err != nil {
		return "", fmt.Errorf("push %s: %w", ref, err)
	}
	return ref, nil
}
