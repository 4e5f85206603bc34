// Package fsutil holds the file-system plumbing every part of xrun shares:
// removing a tree whatever its modes. Each helper exists once, here.
package fsutil
