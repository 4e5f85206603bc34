package rootfs

import (
	"bytes"
	"crypto/rand"
	"errors"
	"io"
	"testing"
	"testing/iotest"
)

// TestReadAhead checks that the read-ahead reader gives exactly the source's
// bytes, then exactly its error, and that stop ends it mid-stream.
func TestReadAhead(t *testing.T) {
	data := make([]byte, 3<<20+12345)
	if _, err := rand.Read(data); err != nil {
		t.Fatal(err)
	}
	boom := errors.New("boom")
	for _, tc := range []struct {
		name    string
		src     io.Reader
		want    []byte
		wantErr error
	}{
		{"whole", bytes.NewReader(data), data, nil},
		{"one byte at a time", iotest.OneByteReader(bytes.NewReader(data[:100000])), data[:100000], nil},
		{"error after data", io.MultiReader(bytes.NewReader(data[:70000]), iotest.ErrReader(boom)), data[:70000], boom},
		{"data with the error", iotest.DataErrReader(bytes.NewReader(data[:5000])), data[:5000], nil},
		{"empty", bytes.NewReader(nil), []byte{}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ra := newReadAhead(tc.src, 4, 64<<10)
			defer ra.stop()
			got, err := io.ReadAll(iotest.HalfReader(ra))
			if !errors.Is(err, tc.wantErr) {
				t.Errorf("error = %v, want %v", err, tc.wantErr)
			}
			if !bytes.Equal(got, tc.want) {
				t.Errorf("read %d bytes, want the source's %d", len(got), len(tc.want))
			}
			// After the end, the end again.
			if n, err := ra.Read(make([]byte, 10)); n != 0 || err == nil {
				t.Errorf("Read after the end = %d, %v; want 0 and an error", n, err)
			}
		})
	}
	// stop in the middle returns, and reading ahead is bounded.
	src := &countingReader{r: bytes.NewReader(data)}
	ra := newReadAhead(src, 2, 4096)
	if _, err := io.ReadFull(ra, make([]byte, 10000)); err != nil {
		t.Fatal(err)
	}
	ra.stop()
	// 10000 bytes read: at most depth+1 buffers (plus the one in flight)
	// may have been filled beyond them.
	if max := int64(10000 + 4*4096); src.n > max {
		t.Errorf("read ahead %d bytes of the source: want at most %d", src.n, max)
	}
}

type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}
