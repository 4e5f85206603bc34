package engine

import (
	"context"
	"io"
	"os"
	"time"

	"github.com/xrun-dev/xrun/pkg/pull"
	"github.com/xrun-dev/xrun/pkg/rootfs"
)

// Prepared is an image ready to run: its rootfs is in the cache.
type Prepared struct {
	Image  *pull.Image
	Rootfs string
}

// Prepare resolves o.Image for o.Platform and makes sure its rootfs is
// unpacked in the cache. A cached image needs no network (pull=missing).
func Prepare(ctx context.Context, o Options) (*Prepared, error) {
	o.fill()
	log := o.Logger
	plat := pull.HostPlatform()
	if o.Platform != "" {
		p, err := pull.ParsePlatform(o.Platform)
		if err != nil {
			return nil, err
		}
		plat = p
	}
	popts := []pull.Option{pull.WithPlatform(plat), pull.WithPolicy(o.Pull), pull.WithLogger(log)}
	store := pull.NewStore(o.CacheDir)
	t0 := time.Now()
	img, err := store.Resolve(ctx, o.Image, popts...)
	if err != nil {
		return nil, err
	}
	log.Info("resolved", "ref", img.Ref, "platform", pull.PlatformString(img.Platform), "digest", img.Digest.String(), "took", time.Since(t0).Round(time.Millisecond))

	cache := rootfs.NewCache(o.CacheDir)
	key := img.Digest.Hex
	if cache.Has(key) {
		return &Prepared{Image: img, Rootfs: cache.Path(key)}, nil
	}
	t0 = time.Now()
	if err := store.Fetch(ctx, img, popts...); err != nil {
		return nil, err
	}
	log.Info("pulled", "layers", len(img.Layers), "took", time.Since(t0).Round(time.Millisecond))
	t0 = time.Now()
	layers := make([]rootfs.Layer, len(img.Layers))
	for i, l := range img.Layers {
		path := store.BlobPath(l.Digest)
		layers[i] = rootfs.Layer{
			Digest:    l.Digest.String(),
			DiffID:    l.DiffID.String(),
			MediaType: string(l.MediaType),
			Open:      func() (io.ReadCloser, error) { return os.Open(path) },
		}
	}
	dir, err := cache.Ensure(ctx, key, layers, rootfs.Options{Logger: log})
	if err != nil {
		return nil, err
	}
	log.Info("unpacked", "rootfs", dir, "took", time.Since(t0).Round(time.Millisecond))
	return &Prepared{Image: img, Rootfs: dir}, nil
}
