package fsutil

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestWriteFileAtomic(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "f")
	for _, content := range []string{"one", "two"} {
		if err := WriteFileAtomic(p, ".tmp-*", []byte(content), 0o640); err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(p)
		st, _ := os.Stat(p)
		if err != nil || string(b) != content || st.Mode().Perm() != 0o640 {
			t.Errorf("after writing %q: %q %v, mode %v", content, b, err, st.Mode())
		}
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 1 {
		t.Errorf("temp files left: %v", ents)
	}
	if err := WriteFileAtomic(filepath.Join(dir, "missing", "f"), ".tmp-*", nil, 0o600); err == nil {
		t.Error("write into a missing directory succeeded")
	}
}

func TestLockFile(t *testing.T) {
	p := filepath.Join(t.TempDir(), "locks", "x.lock")
	l, err := LockFile(t.Context(), p, Exclusive)
	if err != nil {
		t.Fatal(err)
	}
	if st, err := os.Stat(filepath.Dir(p)); err != nil || st.Mode().Perm() != 0o700 {
		t.Errorf("locks dir: %v %v, want 0700", st.Mode(), err)
	}
	if _, err := TryLockFile(p, Shared); !errors.Is(err, ErrLocked) {
		t.Errorf("TryLockFile while held = %v, want ErrLocked", err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Millisecond)
	defer cancel()
	if _, err := LockFile(ctx, p, Exclusive); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("LockFile while held = %v, want the context's error", err)
	}
	got := make(chan error)
	go func() {
		l2, err := LockFile(t.Context(), p, Exclusive)
		l2.Unlock()
		got <- err
	}()
	l.Unlock()
	l.Unlock() // twice is fine
	if err := <-got; err != nil {
		t.Errorf("LockFile after Unlock: %v", err)
	}
	a, err := TryLockFile(p, Shared)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Unlock()
	b, err := TryLockFile(p, Shared)
	if err != nil {
		t.Errorf("second shared lock: %v", err)
	}
	b.Unlock()
	link := filepath.Join(filepath.Dir(p), "link.lock")
	os.Symlink(p, link)
	if _, err := TryLockFile(link, Exclusive); err == nil {
		t.Error("locked through a symlink")
	}
}

func TestReadDirIfExists(t *testing.T) {
	dir := t.TempDir()
	if ents, err := ReadDirIfExists(filepath.Join(dir, "missing")); err != nil || ents != nil {
		t.Errorf("missing dir: %v, %v; want nil, nil", ents, err)
	}
	if err := os.WriteFile(filepath.Join(dir, "f"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if ents, err := ReadDirIfExists(dir); err != nil || len(ents) != 1 {
		t.Errorf("dir with one file: %v, %v", ents, err)
	}
	if _, err := ReadDirIfExists(filepath.Join(dir, "f")); err == nil {
		t.Error("a file: no error")
	}
}
