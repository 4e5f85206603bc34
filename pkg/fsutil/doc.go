// Package fsutil holds the file plumbing that every part of xrun shares,
// each helper once: atomic writes (WriteFileAtomic), flock locks
// (LockFile, TryLockFile, LockDir), removing a tree whatever its modes
// (RemoveAll), and a reader that stops when its context is done.
package fsutil
