// Package cache owns the layout of xrun's on-disk cache: the one place
// that says where each kind of entry lives under the cache directory.
// Every package that reads or writes the cache asks it for paths; the
// layout is public (README "Cache") and existing caches keep working, so
// a path here changes only with a migration.
//
//	blobs/sha256/<hex>          compressed blobs (store), blobs/tmp/ their downloads
//	index/<key>.json            ref@platform -> manifest digest (store)
//	rootfs/<key>/, <key>.used   unpacked images and their use records (rootfs)
//	containers/<name>/          persistent named containers (sandbox)
//	emulators/<GOARCH>/         installed qemu-user binaries (engine, binfmt)
//	accel/<digest>-<arch>/      native toolchains of --accel (accel)
//	shims/<digest>/             directory skeletons over images of shared caches (engine)
//	probes/                     what binfmt probed of this boot
//	run/                        run directories when no runtime dir is usable
//	locks/<name>.lock           flock files (fsutil.LockFile)
package cache

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
)

// EnvDir names the cache directory (public, documented).
const EnvDir = "XRUN_CACHE"

// DefaultDir is $XRUN_CACHE, else $XDG_CACHE_HOME/xrun, else
// ~/.cache/xrun.
func DefaultDir() string {
	if d := os.Getenv(EnvDir); d != "" {
		return d
	}
	if d := os.Getenv("XDG_CACHE_HOME"); d != "" {
		return filepath.Join(d, "xrun")
	}
	if h, err := os.UserHomeDir(); err == nil {
		return filepath.Join(h, ".cache", "xrun")
	}
	return filepath.Join(os.TempDir(), fmt.Sprintf("xrun-cache-%d", os.Getuid()))
}

// BlobsDir holds the blobs of digest algorithm alg ("sha256").
func BlobsDir(root, alg string) string { return filepath.Join(root, "blobs", alg) }

// BlobPath is the blob alg:hex.
func BlobPath(root, alg, hex string) string { return filepath.Join(BlobsDir(root, alg), hex) }

// BlobTmpDir holds blobs being downloaded.
func BlobTmpDir(root string) string { return filepath.Join(root, "blobs", "tmp") }

// IndexDir holds the records of what references resolved to.
func IndexDir(root string) string { return filepath.Join(root, "index") }

// RootfsDir holds the unpacked images, their use records and the temp
// dirs of unpacks in progress.
func RootfsDir(root string) string { return filepath.Join(root, "rootfs") }

// ContainersDir holds the persistent named containers.
func ContainersDir(root string) string { return filepath.Join(root, "containers") }

// EmulatorsDir holds the emulators installed for this host:
// emulators/<host GOARCH>.
func EmulatorsDir(root string) string { return filepath.Join(root, "emulators", runtime.GOARCH) }

// AccelDir holds the native toolchain trees of --accel, one per image
// digest and host architecture.
func AccelDir(root string) string { return filepath.Join(root, "accel") }

// ShimsDir holds, for images run from a read-only shared cache, the
// user-owned directory skeletons laid over them.
func ShimsDir(root string) string { return filepath.Join(root, "shims") }

// ProbesDir holds what binfmt probed of this machine for the current boot.
func ProbesDir(root string) string { return filepath.Join(root, "probes") }

// RunDir holds run directories when no runtime directory is usable.
func RunDir(root string) string { return filepath.Join(root, "run") }

// LocksDir holds the lock files.
func LocksDir(root string) string { return filepath.Join(root, "locks") }

// LockPath is the lock file named name ("rootfs-<key>", "container-<name>",
// "blob-<hex>", "gc", ...).
func LockPath(root, name string) string { return filepath.Join(LocksDir(root), name+".lock") }
