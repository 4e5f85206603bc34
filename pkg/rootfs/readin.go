package rootfs

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"

	"golang.org/x/sys/unix"
)

// Reading an image's files on the host. Everything in an image (and in a
// named container's upper layer, which the container writes) is hostile
// input: /etc/passwd may be a FIFO (an open for reading blocks until a writer
// comes, for ever, and Ctrl-C cannot interrupt it), a symlink to a host path,
// a device node or a file of many gigabytes. ReadFileIn reads such a file
// without trusting any of it.

// DefaultMaxImageFile is the size limit of ReadFileIn's callers for the
// small text files xrun reads from images (/etc/passwd, /etc/group).
const DefaultMaxImageFile = 16 << 20

// ErrWhiteout is returned (wrapped) by ReadFileIn for an overlayfs whiteout
// (a 0/0 character device): the file was deleted in that layer.
var ErrWhiteout = errors.New("deleted (an overlay whiteout)")

// NotRegularError is ReadFileIn's error for a file that exists but is not a
// regular file (a FIFO, socket, device or directory): it is never opened.
type NotRegularError struct {
	Path string // as given, relative to the root
	Mode fs.FileMode
}

func (e *NotRegularError) Error() string {
	return fmt.Sprintf("/%s is %s, not a regular file", e.Path, e.Kind())
}

// Kind names the file's type: "a named pipe (FIFO)", "a directory", ...
func (e *NotRegularError) Kind() string { return typeName(e.Mode) }

// TooLargeFileError is ReadFileIn's error for a file larger than the limit.
type TooLargeFileError struct {
	Path string
	Max  int64
}

func (e *TooLargeFileError) Error() string {
	return fmt.Sprintf("/%s is larger than %s", e.Path, HumanSize(e.Max))
}

func typeName(m fs.FileMode) string {
	switch {
	case m&fs.ModeNamedPipe != 0:
		return "a named pipe (FIFO)"
	case m&fs.ModeSocket != 0:
		return "a socket"
	case m&fs.ModeCharDevice != 0:
		return "a character device"
	case m&fs.ModeDevice != 0:
		return "a block device"
	case m.IsDir():
		return "a directory"
	case m&fs.ModeSymlink != 0:
		return "a symlink"
	}
	return "a special file"
}

// ReadFileIn reads the regular file rel (a slash path; leading "/" and ".."
// stay inside) of the tree at root, resolving symlinks as if root were "/"
// (openat2 RESOLVE_IN_ROOT, else SecureJoin then O_NOFOLLOW), so that no
// host file is ever read. The file is first opened with O_PATH, which opens
// nothing (no FIFO rendezvous, no device open), and checked: a whiteout
// gives ErrWhiteout, anything but a regular file a *NotRegularError. Only a
// regular file is then opened for reading (O_NONBLOCK, in case it was
// swapped for a FIFO meanwhile, and checked to be the same inode), and more
// than max bytes give a *TooLargeFileError. A missing file gives an error
// matching fs.ErrNotExist.
func ReadFileIn(root, rel string, max int64) ([]byte, error) {
	rel = cleanRel(rel)
	if rel == "" {
		return nil, &NotRegularError{Path: rel, Mode: fs.ModeDir}
	}
	pfd, err := openIn(root, rel, unix.O_PATH)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: "/" + rel, Err: err}
	}
	defer unix.Close(pfd)
	var st unix.Stat_t
	if err := unix.Fstat(pfd, &st); err != nil {
		return nil, &os.PathError{Op: "stat", Path: "/" + rel, Err: err}
	}
	if st.Mode&unix.S_IFMT == unix.S_IFCHR && st.Rdev == 0 {
		return nil, fmt.Errorf("/%s: %w", rel, ErrWhiteout)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return nil, &NotRegularError{Path: rel, Mode: fileMode(st.Mode)}
	}
	if st.Size > max {
		return nil, &TooLargeFileError{Path: rel, Max: max}
	}
	fd, err := openIn(root, rel, unix.O_RDONLY|unix.O_NONBLOCK|unix.O_NOCTTY)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: "/" + rel, Err: err}
	}
	f := os.NewFile(uintptr(fd), "/"+rel)
	defer f.Close()
	var st2 unix.Stat_t
	if err := unix.Fstat(fd, &st2); err != nil {
		return nil, &os.PathError{Op: "stat", Path: "/" + rel, Err: err}
	}
	if st2.Mode&unix.S_IFMT != unix.S_IFREG || st2.Ino != st.Ino || st2.Dev != st.Dev {
		return nil, &NotRegularError{Path: rel, Mode: fileMode(st2.Mode)}
	}
	b, err := io.ReadAll(io.LimitReader(f, max+1))
	if err != nil {
		return nil, &os.PathError{Op: "read", Path: "/" + rel, Err: err}
	}
	if int64(len(b)) > max {
		return nil, &TooLargeFileError{Path: rel, Max: max}
	}
	return b, nil
}

// openIn opens the cleaned relative path rel inside root with flags
// (O_CLOEXEC added), symlinks resolved inside root.
func openIn(root, rel string, flags int) (int, error) {
	rfd, err := unix.Open(root, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, err
	}
	defer unix.Close(rfd)
	return openAt(root, rfd, rel, flags)
}

func fileMode(m uint32) fs.FileMode {
	switch m & unix.S_IFMT {
	case unix.S_IFIFO:
		return fs.ModeNamedPipe
	case unix.S_IFSOCK:
		return fs.ModeSocket
	case unix.S_IFCHR:
		return fs.ModeDevice | fs.ModeCharDevice
	case unix.S_IFBLK:
		return fs.ModeDevice
	case unix.S_IFDIR:
		return fs.ModeDir
	case unix.S_IFLNK:
		return fs.ModeSymlink
	}
	return 0
}
