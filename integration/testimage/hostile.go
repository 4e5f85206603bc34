package testimage

import (
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

// FifoPasswdRepo is a hostile image of the host's platform (PushFifoPasswd):
// the base test image whose /etc/passwd (or /etc/group) is a named pipe,
// with User "app" in its config, so that xrun must read the file to resolve
// the user. Opening a FIFO for reading blocks until a writer comes.
const FifoPasswdRepo = "xrun-test/fifo-passwd"

// PushFifoPasswd builds FifoPasswdRepo:TAG with file ("passwd" or "group")
// a FIFO and pushes it to the registry at addr. It returns the reference.
func (im *Images) PushFifoPasswd(addr, file string) (string, error) {
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
	var es []entry
	for _, e := range baseEntries(p.BinName(), bin) {
		if e.path == "etc/"+file {
			e = entry{path: e.path, mode: 0o644, fifo: true}
		}
		es = append(es, e)
	}
	b, err := tarLayer(es)
	if err != nil {
		return "", err
	}
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(b)), nil
	}, tarball.WithMediaType(types.OCILayer))
	if err != nil {
		return "", err
	}
	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	if img, err = mutate.AppendLayers(img, l); err != nil {
		return "", err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return "", err
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture, cf.Variant = p.OS, p.Arch, p.Variant
	cf.Created = v1.Time{Time: epoch}
	cf.Config.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin"}
	cf.Config.Cmd = []string{"/bin/true"}
	cf.Config.User = "app"
	if img, err = mutate.ConfigFile(img, cf); err != nil {
		return "", err
	}
	ref := addr + "/" + FifoPasswdRepo + ":" + file
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
