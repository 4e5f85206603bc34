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

// OwnersRepo is a three-layer image of the host's platform whose files
// have owners other than root, as a Debian rootfs has (PushOwners):
//
//	/home/xrunuser/         1000:1000 0750 (layer 1)
//	/home/xrunuser/notes    1000:1000 0640
//	/home/xrunuser/gone     1000:1000 0644, deleted by a whiteout in layer 3
//	/usr/bin/setuid-root    0:0       4755 (a copy of the binary)
//	/usr/bin/setgid-staff   0:50      2755
//	/opt/ro/                1000:1000 0555, holding ro-file 1000:1000 0444
//	/var/spool/private/     100:101   0700, holding secret 100:101 0600 (layer 2)
//	/var/far                100000:100000 0644: beyond the 65536 ids a run maps
//	/etc/removed            deleted by a whiteout in layer 3
//	/etc/added              0:0 0644 "layer3\n" (layer 3)
const OwnersRepo = "xrun-test/owners:latest"

// owned is a file of OwnersRepo: an entry with an owner.
type owned struct {
	entry
	uid, gid int
}

func ownersLayers(binName string, bin []byte) [][]owned {
	var base []owned
	for _, e := range baseEntries(binName, bin) {
		base = append(base, owned{entry: e})
	}
	l1 := append(base,
		owned{entry{path: "etc/removed", mode: 0o644, content: []byte("layer1\n")}, 0, 0},
		owned{entry{path: "home/", mode: 0o755}, 0, 0},
		owned{entry{path: "home/xrunuser/", mode: 0o750}, 1000, 1000},
		owned{entry{path: "home/xrunuser/notes", mode: 0o640, content: []byte("notes\n")}, 1000, 1000},
		owned{entry{path: "home/xrunuser/gone", mode: 0o644, content: []byte("gone\n")}, 1000, 1000},
		owned{entry{path: "usr/", mode: 0o755}, 0, 0},
		owned{entry{path: "usr/bin/", mode: 0o755}, 0, 0},
		owned{entry{path: "usr/bin/setuid-root", mode: 0o4755, content: bin}, 0, 0},
		owned{entry{path: "usr/bin/setgid-staff", mode: 0o2755, content: []byte("#!/bin/sh\n")}, 0, 50},
		owned{entry{path: "opt/", mode: 0o755}, 0, 0},
		owned{entry{path: "opt/ro/", mode: 0o555}, 1000, 1000},
		owned{entry{path: "opt/ro/ro-file", mode: 0o444, content: []byte("ro\n")}, 1000, 1000},
	)
	l2 := []owned{
		{entry{path: "var/", mode: 0o755}, 0, 0},
		{entry{path: "var/spool/", mode: 0o755}, 0, 0},
		{entry{path: "var/spool/private/", mode: 0o700}, 100, 101},
		{entry{path: "var/spool/private/secret", mode: 0o600, content: []byte("secret\n")}, 100, 101},
		{entry{path: "var/far", mode: 0o644, content: []byte("far\n")}, 100000, 100000},
	}
	l3 := []owned{
		{entry{path: "etc/.wh.removed", mode: 0o644}, 0, 0},
		{entry{path: "etc/added", mode: 0o644, content: []byte("layer3\n")}, 0, 0},
		{entry{path: "home/xrunuser/.wh.gone", mode: 0o644}, 0, 0},
	}
	return [][]owned{l1, l2, l3}
}

func ownedTar(entries []owned) ([]byte, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		hdr := &tar.Header{Name: e.path, Mode: e.mode, ModTime: epoch, Format: tar.FormatPAX, Uid: e.uid, Gid: e.gid}
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
		if _, err := tw.Write(e.content); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// PushOwners builds OwnersRepo for the host's platform from im's binary for
// it and pushes it to the registry at addr. It returns the reference.
func (im *Images) PushOwners(addr string) (string, error) {
	var p Platform
	for _, q := range Platforms {
		if q.Native() && q.Arch == runtime.GOARCH {
			p = q
			break
		}
	}
	if p.Name == "" || im.Bins[p.Name] == "" {
		return "", fmt.Errorf("no test binary for the host's architecture %s", runtime.GOARCH)
	}
	bin, err := os.ReadFile(im.Bins[p.Name])
	if err != nil {
		return "", err
	}
	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	for _, es := range ownersLayers(p.BinName(), bin) {
		b, err := ownedTar(es)
		if err != nil {
			return "", err
		}
		l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
			return io.NopCloser(bytes.NewReader(b)), nil
		}, tarball.WithMediaType(types.OCILayer))
		if err != nil {
			return "", err
		}
		if img, err = mutate.AppendLayers(img, l); err != nil {
			return "", err
		}
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return "", err
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture, cf.Variant = p.OS, p.Arch, p.Variant
	cf.Created = v1.Time{Time: epoch}
	cf.Config.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin"}
	cf.Config.Cmd = []string{"/bin/sh"}
	if img, err = mutate.ConfigFile(img, cf); err != nil {
		return "", err
	}
	ref := addr + "/" + OwnersRepo
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
