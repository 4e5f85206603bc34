package progress

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/xrun-dev/xrun/pkg/pull"
)

func TestBars(t *testing.T) {
	var buf bytes.Buffer
	b := newForTest(&buf)
	b.Start(3, 3000)
	layers := make([]pull.LayerProgress, 3)
	for i := range layers {
		layers[i] = b.Layer(i, 3, pull.Layer{Digest: v1.Hash{Algorithm: "sha256", Hex: strings.Repeat("ab", 32)}, Size: 1000})
	}
	layers[0].Add(600)
	layers[0].Add(400)
	layers[0].Done(nil)
	layers[1].Done(nil) // stored by another process: no bytes
	layers[2].Add(10)
	layers[2].Done(errors.New("boom"))
	b.Wait()
	out := buf.String()
	for _, want := range []string{"pull", "layer 1/3 abababababab", "KiB"} {
		if !strings.Contains(out, want) {
			t.Errorf("bars output lacks %q:\n%s", want, out)
		}
	}
}

func TestNothingWithoutStart(t *testing.T) {
	var buf bytes.Buffer
	b := New(&buf)
	b.Layer(0, 1, pull.Layer{}).Add(5)
	b.Wait()
	if buf.Len() != 0 || IsTerminal(&buf) {
		t.Errorf("output without Start: %q", buf.String())
	}
}
