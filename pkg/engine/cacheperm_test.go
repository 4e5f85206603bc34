package engine

import (
	"log/slog"
	"os"
	"path/filepath"
	"testing"
)

func TestPrivateCache(t *testing.T) {
	mode := func(t *testing.T, dir string) os.FileMode {
		t.Helper()
		st, err := os.Lstat(dir)
		if err != nil {
			t.Fatal(err)
		}
		return st.Mode().Perm()
	}
	log := slog.New(slog.DiscardHandler)
	t.Run("default cache of an older xrun", func(t *testing.T) {
		home := t.TempDir()
		t.Setenv("XRUN_CACHE", "")
		t.Setenv("XDG_CACHE_HOME", filepath.Join(home, ".cache"))
		dir := filepath.Join(home, ".cache", "xrun")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		privateCache(dir, log)
		if m := mode(t, dir); m != 0o700 {
			t.Errorf("mode %v, want 0700", m)
		}
	})
	t.Run("XRUN_CACHE is left alone", func(t *testing.T) {
		dir := t.TempDir()
		if err := os.Chmod(dir, 0o750); err != nil {
			t.Fatal(err)
		}
		t.Setenv("XRUN_CACHE", dir)
		privateCache(dir, log)
		if m := mode(t, dir); m != 0o750 {
			t.Errorf("mode %v, want 0750 (a directory the user chose)", m)
		}
	})
	t.Run("a symbolic link is left alone", func(t *testing.T) {
		home := t.TempDir()
		t.Setenv("XRUN_CACHE", "")
		t.Setenv("XDG_CACHE_HOME", home)
		target := t.TempDir()
		if err := os.Chmod(target, 0o755); err != nil {
			t.Fatal(err)
		}
		dir := filepath.Join(home, "xrun")
		if err := os.Symlink(target, dir); err != nil {
			t.Fatal(err)
		}
		privateCache(dir, log)
		if m := mode(t, target); m != 0o755 {
			t.Errorf("target mode %v, want 0755", m)
		}
	})
}
