package pull

import (
	"context"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/mutate"

	"github.com/xrun-dev/xrun/pkg/rootfs"
)

// TestConfigSizeLimit: the image config is read whole into memory, so an
// image whose config exceeds XRUN_MAX_CONFIG_SIZE is refused with a
// one-line error naming the limit, before the config is downloaded; and a
// config cached under a higher limit is not read whole under a lower one.
func TestConfigSizeLimit(t *testing.T) {
	tr := newTestRegistry(t, nil)
	p := mustPlatform(t, "linux/arm64")
	img := mkImage(t, p, 1)
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cf = cf.DeepCopy()
	cf.Config.Labels = map[string]string{"padding": strings.Repeat("x", 64<<10)}
	if img, err = mutate.ConfigFile(img, cf); err != nil {
		t.Fatal(err)
	}
	ref := tr.host + "/bigconfig:v1"
	pushImage(t, ref, img)
	m, err := img.Manifest()
	if err != nil {
		t.Fatal(err)
	}

	want := "image config size exceeds the limit of 16 KiB (XRUN_MAX_CONFIG_SIZE): set XRUN_MAX_CONFIG_SIZE higher to allow it"
	check := func(s *Client) {
		t.Helper()
		_, err := s.Resolve(context.Background(), ref, testOpts(p)...)
		if err == nil || !strings.Contains(err.Error(), want) || !errors.Is(err, rootfs.ErrTooLarge) || strings.Contains(err.Error(), "\n") {
			t.Fatalf("Resolve with a 64 KiB config and a 16 KiB limit = %v, want %q", err, want)
		}
	}
	s := newClient(t.TempDir())
	t.Setenv(EnvMaxConfigSize, "16K")
	check(s)
	if s.HasBlob(m.Config.Digest) || tr.blobGets(m.Config.Digest) != 0 {
		t.Errorf("the config was downloaded (%d GETs) or cached although it exceeds the limit", tr.blobGets(m.Config.Digest))
	}

	// Under a higher limit it resolves and is cached; lowered again, the
	// cached config is not trusted to be small.
	t.Setenv(EnvMaxConfigSize, "1M")
	if _, err := s.Resolve(context.Background(), ref, testOpts(p)...); err != nil {
		t.Fatal(err)
	}
	t.Setenv(EnvMaxConfigSize, "16K")
	check(s)

	t.Setenv(EnvMaxConfigSize, "big")
	if _, err := s.Resolve(context.Background(), ref, testOpts(p, WithPolicy(PullAlways))...); err == nil ||
		!strings.Contains(err.Error(), `invalid XRUN_MAX_CONFIG_SIZE="big": use a positive number such as 64M`) {
		t.Errorf("Resolve with XRUN_MAX_CONFIG_SIZE=big = %v", err)
	}
}

// TestCapReader: a body longer than its descriptor says is cut at the limit.
func TestCapReader(t *testing.T) {
	limit := configLimitError(10)
	for _, tc := range []struct {
		body string
		ok   bool
	}{{"", true}, {"0123456789", true}, {"0123456789a", false}, {strings.Repeat("x", 1<<20), false}} {
		c := &capReader{ReadCloser: io.NopCloser(strings.NewReader(tc.body)), left: 10, err: limit}
		b, err := io.ReadAll(c)
		if tc.ok && (err != nil || string(b) != tc.body) || !tc.ok && !errors.Is(err, rootfs.ErrTooLarge) {
			t.Errorf("capReader(%d bytes) = %d bytes, %v", len(tc.body), len(b), err)
		}
	}
}
