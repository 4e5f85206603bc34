package store

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

func bytesOpener(b []byte) func() (io.ReadCloser, error) {
	return func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil }
}

func TestPutBlobCleansStaleTemp(t *testing.T) {
	s := New(t.TempDir())
	tmp := filepath.Join(s.Root, "blobs", "tmp")
	if err := os.MkdirAll(tmp, 0o755); err != nil {
		t.Fatal(err)
	}
	stale, fresh := filepath.Join(tmp, "blob-stale"), filepath.Join(tmp, "blob-fresh")
	for _, f := range []string{stale, fresh} {
		if err := os.WriteFile(f, []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	old := time.Now().Add(-2 * staleTemp)
	if err := os.Chtimes(stale, old, old); err != nil {
		t.Fatal(err)
	}
	data := []byte("hello")
	sum := sha256.Sum256(data)
	h := v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(sum[:])}
	if _, err := s.PutBlob(context.Background(), h, bytesOpener(data), Watch{}); err != nil {
		t.Fatalf("PutBlob = %v", err)
	}
	if _, err := os.Stat(stale); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("stale temp file: stat = %v, want removed", err)
	}
	if _, err := os.Stat(fresh); err != nil {
		t.Errorf("fresh temp file: stat = %v, want kept", err)
	}
	// A wrong digest never enters the store.
	other := v1.Hash{Algorithm: "sha256", Hex: strings.Repeat("0", 64)}
	if _, err := s.PutBlob(context.Background(), other, bytesOpener(data), Watch{}); !errors.Is(err, ErrDigestMismatch) {
		t.Errorf("PutBlob(wrong digest) = %v, want ErrDigestMismatch", err)
	}
	if s.HasBlob(other) {
		t.Errorf("PutBlob(wrong digest) stored the blob")
	}
}
