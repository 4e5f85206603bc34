package pull

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/xrun-dev/xrun/pkg/rootfs"
	"github.com/xrun-dev/xrun/pkg/store"
)

// Layer is one layer blob of an image, in manifest order (base first).
type Layer struct {
	Digest    v1.Hash         // compressed blob digest
	DiffID    v1.Hash         // uncompressed digest (from config rootfs.diff_ids)
	MediaType types.MediaType // tells gzip, zstd or plain tar apart
	Size      int64           // compressed size
}

// Image is an image resolved for one platform. Its manifest and config are
// in the store; its layers are once Fetch returns.
type Image struct {
	// Ref is the canonical reference, e.g. "index.docker.io/library/alpine:latest"
	// or "127.0.0.1:5000/x@sha256:...".
	Ref string
	// Digest is the manifest digest for the chosen platform: the rootfs cache key.
	Digest v1.Hash
	// Platform is the platform actually selected; its variant may be an
	// older, compatible one than requested (arm/v6 for arm/v7).
	Platform v1.Platform
	Config   *v1.ConfigFile
	Layers   []Layer
}

// userAgent is sent to registries.
const userAgent = "xrun"

// Resolve turns ref and the platform (WithPlatform) into an Image whose
// manifest and config are in the store.
//
// With PullMissing (the default), a cached resolution of ref@platform whose
// manifest and config blobs are present is used without any network access.
// PullNever does the same but returns ErrNotCached on a miss. PullAlways asks
// the registry again and updates the cached resolution, except for cached
// digest-pinned references (REF@sha256:...), which cannot change.
func (s *Client) Resolve(ctx context.Context, ref string, opts ...Option) (*Image, error) {
	o := makeOptions(opts)
	r, err := o.parseRef(ref)
	if err != nil {
		return nil, err
	}
	want := normPlatform(o.platform)
	if want.OS == "" || want.Architecture == "" {
		return nil, fmt.Errorf("resolve %s: incomplete platform %q: %s", ref, PlatformString(want), platformHint)
	}
	canon, plat := r.Name(), PlatformString(want)
	log := o.logger.With("ref", canon, "platform", plat)

	_, pinned := r.(name.Digest)
	if o.policy != PullAlways || pinned {
		img, why := s.cached(canon, plat)
		if img != nil {
			log.Debug("using cached resolution", "digest", img.Digest)
			return img, nil
		}
		log.Debug("not in cache", "reason", why)
	}
	if o.policy == PullNever {
		return nil, &NotCachedError{Ref: ref, Platform: plat}
	}
	// One process at a time resolves ref@platform: the others wait, then
	// find its record (make -j: one manifest request, not N).
	unlock, err := s.Lock(ctx, "resolve-"+store.RecordKey(canon, plat))
	if err != nil {
		return nil, fmt.Errorf("resolve %s: %w", ref, err)
	}
	defer unlock()
	if o.policy != PullAlways || pinned {
		if img, _ := s.cached(canon, plat); img != nil {
			log.Debug("resolved by another process", "digest", img.Digest)
			return img, nil
		}
	}
	// Keep prune from deleting the manifest and config between their
	// download and the record that references them.
	release, err := s.HoldGC(ctx)
	if err != nil {
		return nil, fmt.Errorf("resolve %s: %w", ref, err)
	}
	defer release()
	return s.resolveRemote(ctx, r, ref, want, o)
}

// cached returns the image recorded for ref@platform if its manifest and
// config are in the store, or nil and the reason it cannot be used.
func (s *Client) cached(ref, platform string) (*Image, string) {
	rec, err := s.ReadRecord(ref, platform)
	if err != nil || rec == nil {
		return nil, fmt.Sprintf("no index record (%v)", err)
	}
	if !s.HasBlob(rec.Digest) {
		return nil, "manifest blob missing"
	}
	mb, err := s.ReadBlob(rec.Digest)
	if err != nil {
		return nil, err.Error()
	}
	m, err := v1.ParseManifest(bytes.NewReader(mb))
	if err != nil {
		return nil, err.Error()
	}
	maxCfg, err := maxConfigSize()
	if err != nil {
		return nil, err.Error()
	}
	cb, err := s.readConfigBlob(m.Config.Digest, maxCfg)
	if err != nil {
		return nil, "config blob: " + err.Error()
	}
	cfg, err := v1.ParseConfigFile(bytes.NewReader(cb))
	if err != nil {
		return nil, err.Error()
	}
	sel, err := ParsePlatform(rec.Selected)
	if err != nil {
		sel = configPlatform(cfg)
	}
	img, err := newImage(ref, rec.Digest, sel, m, cfg)
	if err != nil {
		return nil, err.Error()
	}
	return img, ""
}

// newImage builds an Image from a parsed manifest and config.
func newImage(ref string, digest v1.Hash, p v1.Platform, m *v1.Manifest, cfg *v1.ConfigFile) (*Image, error) {
	if len(m.Layers) != len(cfg.RootFS.DiffIDs) {
		return nil, fmt.Errorf("image %s: manifest lists %d layers but config lists %d diff_ids: the image is malformed, rebuild it", ref, len(m.Layers), len(cfg.RootFS.DiffIDs))
	}
	img := &Image{Ref: ref, Digest: digest, Platform: p, Config: cfg, Layers: make([]Layer, len(m.Layers))}
	for i, l := range m.Layers {
		img.Layers[i] = Layer{Digest: l.Digest, DiffID: cfg.RootFS.DiffIDs[i], MediaType: l.MediaType, Size: l.Size}
	}
	return img, nil
}

func (o *options) puller() (*remote.Puller, error) {
	return remote.NewPuller(o.remoteOptions()...)
}

// resolveRemote asks the endpoints of r (its mirrors from registries.conf,
// then its registry) in turn: a failing mirror (unreachable, an error, no
// such image, data that does not match its digest) is skipped with a
// warning; the error of the last endpoint, the upstream, is returned.
func (s *Client) resolveRemote(ctx context.Context, r name.Reference, userRef string, want v1.Platform, o *options) (*Image, error) {
	log := o.logger.With("ref", r.Name(), "platform", PlatformString(want))
	eps, err := o.endpointsFor(r)
	if err != nil {
		return nil, err
	}
	ps, err := o.pullers(eps)
	if err != nil {
		return nil, fmt.Errorf("pull %s: %w", userRef, err)
	}
	log.Info("resolving", "policy", o.policy)
	for i, ep := range eps {
		img, err := s.resolveAt(ctx, ps.of(ep), ep, r, userRef, want, o)
		if err == nil {
			if ep.mirror {
				log.Info("pulled from mirror", "mirror", ep.String(), "digest", img.Digest)
			}
			return img, nil
		}
		if i == len(eps)-1 || ctx.Err() != nil {
			return nil, err
		}
		log.Warn("registry mirror failed; trying the next endpoint", "mirror", ep.String(), "next", eps[i+1].String(), "err", err)
	}
	return nil, fmt.Errorf("[internal error] pull %s: no endpoint", userRef)
}

// at returns r's tag or digest in repository repo.
func at(repo name.Repository, r name.Reference) name.Reference {
	if d, ok := r.(name.Digest); ok {
		return repo.Digest(d.DigestStr())
	}
	return repo.Tag(r.Identifier())
}

// resolveAt resolves r from one endpoint and records the result under r's
// own name, whatever endpoint served it.
func (s *Client) resolveAt(ctx context.Context, p *remote.Puller, ep endpoint, r name.Reference, userRef string, want v1.Platform, o *options) (*Image, error) {
	canon, plat := r.Name(), PlatformString(want)
	log := o.logger.With("ref", canon, "platform", plat)
	repo := ep.repo
	desc, err := p.Get(ctx, at(repo, r))
	if err != nil {
		return nil, registryError(userRef, err)
	}

	var (
		isIndex  = desc.MediaType.IsIndex()
		mbytes   = desc.Manifest
		mdigest  = desc.Digest
		selected v1.Platform
		// indexDigest is the index the manifest was chosen from, if any.
		indexDigest *v1.Hash
	)
	switch {
	case isIndex:
		indexDigest = &desc.Digest
		mbytes, mdigest, selected, err = s.fromIndex(ctx, p, repo, desc, userRef, want)
		if err != nil {
			return nil, err
		}
		log.Debug("selected manifest from index", "index", desc.Digest, "manifest", mdigest, "selected", PlatformString(selected))
	case desc.MediaType.IsImage():
	case desc.MediaType.IsSchema1():
		return nil, fmt.Errorf("pull %s: image uses the docker schema 1 manifest format (%s), which xrun does not support: re-push it with a current docker or crane", userRef, desc.MediaType)
	default:
		return nil, fmt.Errorf("pull %s: unsupported manifest media type %q: xrun pulls OCI and docker v2 images", userRef, desc.MediaType)
	}

	m, err := v1.ParseManifest(bytes.NewReader(mbytes))
	if err != nil {
		return nil, fmt.Errorf("pull %s: parse manifest %s: %w", userRef, mdigest, err)
	}
	cfg, err := s.fetchConfig(ctx, p, repo, userRef, m)
	if err != nil {
		return nil, err
	}
	if have := configPlatform(cfg); isIndex && have.Architecture != "" && (have.OS != selected.OS || have.Architecture != selected.Architecture) {
		// The index says one thing, the config another: run it, but say so.
		log.Warn("image config declares a different platform than its index entry; running it as requested",
			"index", PlatformString(selected), "config", PlatformString(have))
	}
	if !isIndex {
		have := configPlatform(cfg)
		switch {
		case have.OS == "" && have.Architecture == "":
			log.Warn("image config has no os/architecture; assuming it matches", "wanted", plat)
			selected = want
		case platformRank(want, have) < 0:
			return nil, noPlatformError(userRef, want, []string{PlatformString(have)})
		default:
			selected = have
		}
	}
	if PlatformString(selected) != plat {
		log.Warn("image platform differs from the requested one", "requested", plat, "image", PlatformString(selected))
	}
	if _, err := s.putBlob(ctx, mdigest, bytesOpener(mbytes)); err != nil {
		return nil, fmt.Errorf("pull %s: store manifest %s: %w", userRef, mdigest, err)
	}
	img, err := newImage(canon, mdigest, selected, m, cfg)
	if err != nil {
		return nil, err
	}
	rec := &store.Record{Ref: canon, Platform: plat, Digest: mdigest, Index: indexDigest, Selected: PlatformString(selected), Updated: time.Now().UTC()}
	if err := s.WriteRecord(rec); err != nil {
		return nil, fmt.Errorf("pull %s: write cache index: %w", userRef, err)
	}
	log.Info("resolved", "digest", mdigest, "selected", rec.Selected, "layers", len(img.Layers), "from", repo.RegistryStr())
	return img, nil
}

// fromIndex picks the manifest for want from the index desc (stored in the
// store too) and returns its bytes, digest and platform: from the store if
// present, else fetched by digest from repo (go-containerregistry checks
// it against the digest).
func (s *Client) fromIndex(ctx context.Context, p *remote.Puller, repo name.Repository, desc *remote.Descriptor, userRef string, want v1.Platform) ([]byte, v1.Hash, v1.Platform, error) {
	var none v1.Platform
	idx, err := v1.ParseIndexManifest(bytes.NewReader(desc.Manifest))
	if err != nil {
		return nil, v1.Hash{}, none, fmt.Errorf("pull %s: parse index %s: %w", userRef, desc.Digest, err)
	}
	child, err := selectManifest(userRef, idx, want)
	if err != nil {
		return nil, v1.Hash{}, none, err
	}
	selected := normPlatform(*child.Platform)
	// Keep the index too: a later resolve of ref@sha256:<index> for
	// another platform then needs no network for the index.
	if _, err := s.putBlob(ctx, desc.Digest, bytesOpener(desc.Manifest)); err != nil {
		return nil, v1.Hash{}, none, fmt.Errorf("pull %s: store index %s: %w", userRef, desc.Digest, err)
	}
	if s.HasBlob(child.Digest) {
		mbytes, err := s.ReadBlob(child.Digest)
		return mbytes, child.Digest, selected, err
	}
	cd, err := p.Get(ctx, repo.Digest(child.Digest.String()))
	if err != nil {
		return nil, v1.Hash{}, none, registryError(userRef, err)
	}
	if !cd.MediaType.IsImage() {
		return nil, v1.Hash{}, none, fmt.Errorf("pull %s: manifest %s for %s has media type %s, not an image manifest: nested indexes are not supported", userRef, child.Digest, PlatformString(want), cd.MediaType)
	}
	return cd.Manifest, child.Digest, selected, nil
}

// fetchConfig stores the config blob of m, fetched from repo if missing,
// and parses it.
func (s *Client) fetchConfig(ctx context.Context, p *remote.Puller, repo name.Repository, userRef string, m *v1.Manifest) (*v1.ConfigFile, error) {
	cdig := m.Config.Digest
	// The config is read whole into memory: bound it, by its declared
	// size and by what is actually read (the descriptor may lie).
	maxCfg, err := maxConfigSize()
	if err != nil {
		return nil, err
	}
	if m.Config.Size > maxCfg {
		return nil, fmt.Errorf("pull %s: config %s: %w", userRef, cdig, configLimitError(maxCfg))
	}
	_, err = s.putBlob(ctx, cdig, func() (io.ReadCloser, error) {
		l, err := p.Layer(ctx, repo.Digest(cdig.String()))
		if err != nil {
			return nil, err
		}
		rc, err := l.Compressed()
		if err != nil {
			return nil, err
		}
		return &capReader{ReadCloser: rc, left: maxCfg, err: configLimitError(maxCfg)}, nil
	})
	var le *rootfs.LimitError
	if errors.As(err, &le) {
		return nil, fmt.Errorf("pull %s: config %s: %w", userRef, cdig, le)
	}
	if err != nil {
		return nil, blobError(userRef, "config "+cdig.String(), err)
	}
	cb, err := s.readConfigBlob(cdig, maxCfg)
	if err != nil {
		return nil, fmt.Errorf("pull %s: config %s: %w", userRef, cdig, err)
	}
	cfg, err := v1.ParseConfigFile(bytes.NewReader(cb))
	if err != nil {
		return nil, fmt.Errorf("pull %s: parse config %s: %w", userRef, cdig, err)
	}
	return cfg, nil
}

func bytesOpener(b []byte) func() (io.ReadCloser, error) {
	return func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil }
}

// selectManifest picks the manifest in idx that runs best on want: the same
// os and architecture and the most specific compatible variant (arm/v7
// accepts v7, then v6, then v5). Attestations and other non-image entries
// are skipped.
func selectManifest(ref string, idx *v1.IndexManifest, want v1.Platform) (*v1.Descriptor, error) {
	var (
		best     *v1.Descriptor
		bestRank = -1
		have     []string
	)
	for i := range idx.Manifests {
		d := &idx.Manifests[i]
		if d.Platform == nil || (d.MediaType != "" && !d.MediaType.IsImage()) {
			continue
		}
		if d.Platform.OS == "unknown" || d.Annotations["vnd.docker.reference.type"] == "attestation-manifest" {
			continue
		}
		np := normPlatform(*d.Platform)
		if s := PlatformString(np); !slices.Contains(have, s) {
			have = append(have, s)
		}
		if r := platformRank(want, np); r >= 0 && (bestRank < 0 || r < bestRank) {
			best, bestRank = d, r
		}
	}
	if best == nil {
		return nil, noPlatformError(ref, want, have)
	}
	return best, nil
}

func noPlatformError(ref string, want v1.Platform, have []string) error {
	list := "no platforms listed"
	if len(have) > 0 {
		list = strings.Join(have, ", ")
	}
	return newError(ErrNoPlatform, nil, "image %q has no %s variant; it has: %s", ref, PlatformString(want), list)
}

// configPlatform returns the normalized platform an image config declares
// (empty fields if it declares none).
func configPlatform(cfg *v1.ConfigFile) v1.Platform {
	return normPlatform(v1.Platform{OS: cfg.OS, Architecture: cfg.Architecture, Variant: cfg.Variant})
}

// Limit of the image config, which is read whole into memory. Real configs
// are a few KiB (a long history: a few hundred KiB). Manifests are bounded
// by go-containerregistry (100 MiB).
const (
	DefaultMaxConfigSize int64 = 16 << 20
	EnvMaxConfigSize           = "XRUN_MAX_CONFIG_SIZE"
)

// maxConfigSize is $XRUN_MAX_CONFIG_SIZE, else DefaultMaxConfigSize.
func maxConfigSize() (int64, error) {
	v := strings.TrimSpace(os.Getenv(EnvMaxConfigSize))
	if v == "" {
		return DefaultMaxConfigSize, nil
	}
	n, err := rootfs.ParseSize(v)
	if err != nil || n <= 0 {
		return 0, fmt.Errorf("invalid %s=%q: use a positive number such as 64M", EnvMaxConfigSize, v)
	}
	return n, nil
}

func configLimitError(max int64) error {
	return &rootfs.LimitError{What: "image config size", Limit: max, Env: EnvMaxConfigSize, Size: true}
}

// capReader fails with err once more than left bytes are read.
type capReader struct {
	io.ReadCloser
	left int64
	err  error
}

func (c *capReader) Read(p []byte) (int, error) {
	if c.left < 0 {
		return 0, c.err
	}
	if int64(len(p)) > c.left+1 {
		p = p[:c.left+1]
	}
	n, err := c.ReadCloser.Read(p)
	c.left -= int64(n)
	if c.left < 0 {
		return 0, c.err
	}
	return n, err
}
