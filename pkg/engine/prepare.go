package engine

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"time"

	"github.com/xrun-dev/xrun/pkg/progress"
	"github.com/xrun-dev/xrun/pkg/pull"
	"github.com/xrun-dev/xrun/pkg/rootfs"
	"github.com/xrun-dev/xrun/pkg/store"
)

// Prepared is an image ready to run: its rootfs is in the cache, held
// (rootfs.Cache.Acquire) so that rmi and prune leave it alone until
// Release.
type Prepared struct {
	Image  *pull.Image
	Rootfs string
	// Layers are laid over Rootfs (topmost first): the user-owned
	// directories over an image of a shared cache (ownerShim).
	Layers []string
	// Release gives back the hold on the rootfs; call it when the run
	// ends (exiting does it too). Safe to call more than once; never nil.
	Release func()
}

// PullOptions are registry settings for Prepare beyond Options.
type PullOptions struct {
	// Insecure lists registries (host[:port]) that may be spoken to over
	// plain HTTP (--insecure-registry); XRUN_INSECURE_REGISTRIES adds to it.
	Insecure []string
	// PullOnly is for xrun pull: the rootfs is not held for a run and the
	// image is not marked as used (Prepared.Release is a no-op).
	PullOnly bool
}

// Prepare resolves o.Image for o.Platform and makes sure its rootfs is
// unpacked in the cache. A cached image needs no network (pull=missing).
func Prepare(ctx context.Context, o Options) (*Prepared, error) {
	return PrepareWith(ctx, o, PullOptions{})
}

// PrepareWith is Prepare with registry settings.
//
// A cold pull is streamed: the missing layers download in parallel into
// the blob store while layer i is unpacked from its download as soon as
// layers before it are applied; each layer's compressed digest and DiffID
// are checked on the way, and the rootfs is published only when every
// layer verified. On a terminal (o.Stderr), progress bars show the
// download unless -q or -v (o.Logger's level) is given.
func PrepareWith(ctx context.Context, o Options, po PullOptions) (*Prepared, error) {
	r, err := resolve(ctx, o, po)
	if err != nil {
		return nil, err
	}
	return r.ensure(ctx)
}

// resolved is an image whose manifest and config are known (from the
// registry or the index) but whose rootfs may still have to be pulled: a
// run decides its emulation between the two steps, so that it fails before
// the download when the platform cannot run here.
type resolved struct {
	o      Options
	po     PullOptions
	img    *pull.Image
	client *pull.Client
	popts  []pull.Option
	bars   *progress.Bars
	// shared is the read-only cache (Options.AdditionalCaches) that has
	// img unpacked, or "".
	shared string
}

// resolve is the first step of PrepareWith.
func resolve(ctx context.Context, o Options, po PullOptions) (*resolved, error) {
	o.fill()
	log := o.Logger
	privateCache(o.CacheDir, log)
	plat, err := o.targetPlatform()
	if err != nil {
		return nil, err
	}
	popts := []pull.Option{pull.WithPlatform(plat), pull.WithPolicy(o.Pull), pull.WithLogger(log), pull.WithInsecureRegistries(po.Insecure...)}
	var bars *progress.Bars
	if o.Stderr != nil && progress.IsTerminal(o.Stderr) && log.Enabled(ctx, slog.LevelWarn) && !log.Enabled(ctx, slog.LevelInfo) {
		bars = progress.New(o.Stderr)
		popts = append(popts, pull.WithProgress(bars))
	}
	client := pull.NewClient(store.New(o.CacheDir))
	if img, dir := fromShared(ctx, o, popts); img != nil {
		return &resolved{o: o, po: po, img: img, client: client, popts: popts, bars: bars, shared: dir}, nil
	}
	t0 := time.Now()
	img, err := client.Resolve(ctx, o.Image, popts...)
	if err != nil {
		return nil, err
	}
	log.Info("resolved", "ref", img.Ref, "platform", pull.PlatformString(img.Platform), "digest", img.Digest.String(), "took", time.Since(t0).Round(time.Millisecond))
	return &resolved{o: o, po: po, img: img, client: client, popts: popts, bars: bars}, nil
}

// ensure is the second step of PrepareWith: the rootfs unpacked in the
// cache (pulling what is missing) and held for the run.
func (r *resolved) ensure(ctx context.Context) (*Prepared, error) {
	img, log := r.img, r.o.Logger
	if r.shared != "" {
		// Read-only and updated by its owner only through atomic renames:
		// nothing to hold.
		dir := rootfs.NewCache(r.shared).Path(img.Digest.Hex)
		shim, release, err := ownerShim(ctx, r.o.CacheDir, dir, img.Digest.Hex)
		if err != nil {
			return nil, err
		}
		return &Prepared{Image: img, Rootfs: dir, Layers: []string{shim}, Release: release}, nil
	}
	cache := rootfs.NewCache(r.o.CacheDir)
	key := img.Digest.Hex
	// Unpack if needed, then hold the rootfs. Between the two, rmi or
	// prune may remove it: then unpack again.
	for attempt := 0; ; attempt++ {
		if !cache.Has(key) {
			if err := unpack(ctx, r.client, cache, img, r.popts, r.bars, log); err != nil {
				return nil, err
			}
		}
		if r.po.PullOnly {
			return &Prepared{Image: img, Rootfs: cache.Path(key), Release: func() {}}, nil
		}
		release, err := cache.Acquire(ctx, key)
		if errors.Is(err, rootfs.ErrNotFound) && attempt < 3 {
			log.Debug("rootfs removed before the run could hold it; unpacking again", "key", key)
			continue
		}
		if err != nil {
			return nil, err
		}
		return &Prepared{Image: img, Rootfs: cache.Path(key), Release: release}, nil
	}
}

// unpack streams img's layers from the registry (or the blob store) into
// its rootfs.
func unpack(ctx context.Context, client *pull.Client, cache *rootfs.Cache, img *pull.Image, popts []pull.Option, bars *progress.Bars, log *slog.Logger) error {
	t0 := time.Now()
	st, err := client.Stream(ctx, img, popts...)
	if err != nil {
		return err
	}
	layers := make([]rootfs.Layer, len(img.Layers))
	for i, l := range img.Layers {
		layers[i] = rootfs.Layer{
			Digest:    l.Digest.String(),
			DiffID:    l.DiffID.String(),
			MediaType: string(l.MediaType),
			Open:      func() (io.ReadCloser, error) { return st.Open(i) },
		}
	}
	// With a subordinate id range, layers are unpacked in a user namespace
	// that maps it, so files keep the image's owners.
	ropts := rootfs.Options{Logger: log, InUserNS: true}
	dir, err := cache.Ensure(ctx, img.Digest.Hex, layers, ropts)
	if err != nil && ctx.Err() == nil && st.Refetched() && st.Wait() == nil {
		// A registry mirror sent a layer that failed its digest check
		// after the unpacker had read some of it; the layer came intact
		// from the next endpoint and is now in the store: unpack again.
		log.Warn("a registry mirror sent a corrupt layer; unpacking again from the verified copy", "err", err)
		dir, err = cache.Ensure(ctx, img.Digest.Hex, layers, ropts)
	}
	st.Close()
	if bars != nil {
		bars.Wait()
	}
	if err != nil {
		// A failed download explains the unpack's failure better than the
		// read error the unpacker saw.
		if serr := st.Err(); serr != nil && !errors.Is(serr, context.Canceled) {
			return serr
		}
		return err
	}
	log.Info("pulled and unpacked", "layers", len(img.Layers), "rootfs", dir, "took", time.Since(t0).Round(time.Millisecond))
	return nil
}
