package rootfs

import (
	"archive/tar"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/maphash"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"

	securejoin "github.com/cyphar/filepath-securejoin"
	"golang.org/x/sys/unix"

	"github.com/xrun-dev/xrun/pkg/fsutil"
)

const (
	whiteoutPrefix = ".wh."
	whiteoutMeta   = ".wh..wh."
	opaqueMarker   = ".wh..wh..opq"
	rootlessXattr  = "user.rootlesscontainers"
	paxXattrPrefix = "SCHILY.xattr."
)

// Unpack applies one uncompressed tar stream (a layer) onto dir, which must
// exist. Directory modes and times are applied when the stream ends.
//
// Unpack is a single-layer convenience (tests, fuzzing). Cache.Ensure applies
// all layers with one unpacker, so that a directory made 0555 by layer 1 can
// still be written by layer 2 when unprivileged; calling Unpack repeatedly on
// one dir works too, except through directories whose owner lacks r or x.
func Unpack(ctx context.Context, dir string, r io.Reader, opts Options) (Stats, error) {
	opts, err := opts.fill()
	if err != nil {
		return Stats{}, err
	}
	u, err := newUnpacker(dir, opts)
	if err != nil {
		return Stats{}, err
	}
	defer u.close()
	lr := &limitReader{ctx: ctx, r: r, max: opts.MaxBytes, errf: layerSizeError}
	err = u.apply(ctx, lr, lr)
	if ferr := u.finish(); err == nil {
		err = ferr
	}
	return u.stats, err
}

// unpacker applies layers onto one directory tree.
//
// Its memory is bounded by Options' limits: pending and fixed hold one
// entry per directory (MaxDirs), added one per entry of the current layer
// (MaxEntries), each a few dozen bytes plus the map's overhead.
type unpacker struct {
	root    string
	rootFD  int
	opts    Options
	log     *slog.Logger
	stats   Stats
	pending map[string]dirMeta  // directory modes/times applied by finish, by cleaned path
	added   map[entKey]struct{} // entries written by the current layer (whiteouts spare them)
	fixed   map[uint64]struct{} // inodes of directories already checked for owner rwx
	seed    maphash.Seed        // of added's name hashes
	layerSz int64               // sum of file sizes in the current layer
	totalSz int64               // sum of file sizes in all layers so far
	streamN int64               // uncompressed bytes of the layers before the current one
	entries int64               // tar entries of all layers so far
	noXattr bool                // the filesystem refused user xattrs: stop trying
	noChown bool                // Options.Chown, but chown is not permitted here: stop trying
}

// dirMeta is what finish applies to a directory. Times are Unix
// nanoseconds (a time.Time is three times larger).
type dirMeta struct {
	ino          uint64
	atime, mtime int64
	mode         uint32
	hasTime      bool
}

// entKey names a directory entry by its parent's inode, so that an entry
// reached through a symlinked parent is still recognised, and a hash of its
// name (seeded per unpack, so a layer cannot aim at collisions; a collision
// would only spare one lower entry from a whiteout).
type entKey struct {
	dir  uint64
	name uint64
}

func (u *unpacker) key(dir uint64, name string) entKey {
	return entKey{dir, maphash.String(u.seed, name)}
}

func newUnpacker(root string, opts Options) (*unpacker, error) {
	fd, err := unix.Open(root, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: root, Err: err}
	}
	return &unpacker{
		root:    root,
		rootFD:  fd,
		opts:    opts,
		log:     opts.Logger,
		pending: map[string]dirMeta{},
		fixed:   map[uint64]struct{}{},
		seed:    maphash.MakeSeed(),
	}, nil
}

func (u *unpacker) close() { unix.Close(u.rootFD) }

// apply reads one tar stream to its end-of-archive marker. lr is the
// limitReader somewhere below r: its error explains a failed read.
func (u *unpacker) apply(ctx context.Context, r io.Reader, lr *limitReader) error {
	u.added = map[entKey]struct{}{}
	u.layerSz = 0
	tr := tar.NewReader(r)
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			if lr.err != nil {
				return lr.err
			}
			return fmt.Errorf("read tar: %w", err)
		}
		if err := u.entry(hdr, tr); err != nil {
			if lr.err != nil {
				return lr.err
			}
			if errors.Is(err, ErrTooLarge) {
				return err // a limit of the layer or the image: *LimitError
			}
			return fmt.Errorf("entry %q: %w", hdr.Name, err)
		}
	}
}

func unsafeErr(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrUnsafeEntry, fmt.Sprintf(format, args...))
}

func (u *unpacker) entry(hdr *tar.Header, r io.Reader) error {
	u.entries++
	if u.entries > u.opts.MaxEntries {
		return entriesError(u.opts.MaxEntries)
	}
	rel := cleanRel(hdr.Name)
	dir, base := splitRel(rel)
	if strings.HasPrefix(base, whiteoutPrefix) {
		return u.whiteout(dir, base)
	}
	if u.skipped(hdr) {
		return nil
	}
	if err := u.countSize(hdr); err != nil {
		return err
	}
	if rel == "" {
		return u.rootEntry(hdr)
	}

	pfd, pino, err := u.ensureDir(dir)
	if err != nil {
		return fmt.Errorf("parent directory: %w", err)
	}
	defer unix.Close(pfd)

	var st unix.Stat_t
	exists := true
	if err := unix.Fstatat(pfd, base, &st, unix.AT_SYMLINK_NOFOLLOW); errors.Is(err, unix.ENOENT) {
		exists = false
	} else if err != nil {
		return err
	}

	var target linkTarget
	if hdr.Typeflag == tar.TypeLink {
		target, err = u.openLinkTarget(hdr.Linkname)
		if err != nil {
			return err
		}
		defer unix.Close(target.dfd)
		if exists && st.Ino == target.st.Ino && st.Dev == target.st.Dev {
			// Already the same inode (a link to itself or through a
			// symlinked parent): nothing to do, and unlinking it first
			// would lose the target.
			u.added[u.key(pino, base)] = struct{}{}
			u.stats.Hardlinks++
			return nil
		}
	}

	if exists && !(hdr.Typeflag == tar.TypeDir && isDirMode(st.Mode)) {
		if err := fsutil.RemoveAllAt(pfd, base); err != nil {
			return fmt.Errorf("remove existing entry: %w", err)
		}
	}

	switch hdr.Typeflag {
	case tar.TypeDir:
		err = u.createDir(pfd, base, rel, hdr, exists && isDirMode(st.Mode))
	case tar.TypeReg:
		err = u.createFile(pfd, base, rel, hdr, r)
	case tar.TypeSymlink:
		err = u.createSymlink(pfd, base, hdr)
	case tar.TypeLink:
		err = u.createLink(target, pfd, base, hdr)
	case tar.TypeFifo:
		err = u.createFifo(pfd, base, hdr)
	}
	if err != nil {
		return err
	}
	u.added[u.key(pino, base)] = struct{}{}
	return nil
}

// skipped reports whether hdr is of a type that is not unpacked (and
// counts it): device nodes cannot be created rootless, unknown types are
// ignored.
func (u *unpacker) skipped(hdr *tar.Header) bool {
	switch hdr.Typeflag {
	case tar.TypeReg, tar.TypeDir, tar.TypeSymlink, tar.TypeLink, tar.TypeFifo:
		return false
	case tar.TypeChar, tar.TypeBlock:
		u.stats.SkippedDevices++
		return true
	}
	u.stats.SkippedOther++
	u.log.Debug("skipping tar entry of unknown type", "entry", hdr.Name, "type", string(hdr.Typeflag))
	return true
}

// countSize adds a regular file's size to the layer's and the image's,
// and fails when either goes over its limit.
func (u *unpacker) countSize(hdr *tar.Header) error {
	if hdr.Typeflag != tar.TypeReg {
		return nil
	}
	if hdr.Size < 0 {
		return fmt.Errorf("negative size %d", hdr.Size)
	}
	u.layerSz += hdr.Size
	if u.layerSz > u.opts.MaxBytes || u.layerSz < 0 {
		return layerSizeError(u.opts.MaxBytes)
	}
	u.totalSz += hdr.Size
	if u.totalSz > u.opts.MaxTotalBytes || u.totalSz < 0 {
		return imageSizeError(u.opts.MaxTotalBytes)
	}
	return nil
}

// rootEntry applies an entry for the root itself. The root keeps the
// unpacking user as owner (the cache must be able to rename and remove
// it), and no xattr: only its mode and times are applied.
func (u *unpacker) rootEntry(hdr *tar.Header) error {
	if hdr.Typeflag != tar.TypeDir {
		return unsafeErr("refusing to replace the root with a non-directory")
	}
	var st unix.Stat_t
	if err := unix.Fstat(u.rootFD, &st); err != nil {
		return err
	}
	u.stats.Dirs++
	return u.setPending("", st.Ino, hdr)
}

// createDir creates the directory base in pfd (unless existed: it is
// one already) and applies hdr to it; its mode and times are applied at
// the end of the unpack (see setPending).
func (u *unpacker) createDir(pfd int, base, rel string, hdr *tar.Header, existed bool) error {
	if !existed {
		if err := unix.Mkdirat(pfd, base, 0o700); err != nil {
			return err
		}
	}
	fd, err := fsutil.OpenDirAt(pfd, base)
	if err != nil {
		return err
	}
	var dst unix.Stat_t
	err = unix.Fstat(fd, &dst)
	owned := false
	if err == nil {
		// Before makeWritable and finish's chmod: chown clears setgid.
		owned = u.applyOwner(fd, -1, "", hdr)
		err = u.makeWritable(fd, &dst, rel)
	}
	if err == nil {
		err = u.setXattrs(fd, hdr, owned, existed)
	}
	unix.Close(fd)
	if err != nil {
		return err
	}
	if err := u.setPending(rel, dst.Ino, hdr); err != nil {
		return err
	}
	u.stats.Dirs++
	return nil
}

// createFile creates the regular file base in pfd (O_EXCL, never through
// a symlink) with the content r.
func (u *unpacker) createFile(pfd int, base, rel string, hdr *tar.Header, r io.Reader) error {
	fd, err := unix.Openat(pfd, base, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return err
	}
	f := os.NewFile(uintptr(fd), rel)
	n, err := io.Copy(f, r)
	if err == nil {
		err = u.setXattrs(fd, hdr, u.applyOwner(fd, -1, "", hdr), false)
	}
	if err == nil {
		// After the write, the owner (chown clears setuid and setgid)
		// and the xattrs (user xattrs need write permission), so
		// setuid bits survive and 0444 is no obstacle.
		err = unix.Fchmod(fd, uint32(hdr.Mode)&0o7777)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	u.stats.Bytes += n
	if err := setTimes(pfd, base, hdr); err != nil {
		return err
	}
	u.stats.Files++
	return nil
}

// createSymlink creates the symlink base in pfd. The target is stored
// verbatim and never followed by us.
func (u *unpacker) createSymlink(pfd int, base string, hdr *tar.Header) error {
	if err := unix.Symlinkat(hdr.Linkname, pfd, base); err != nil {
		return err
	}
	// A symlink cannot hold a user xattr: an owner that cannot be
	// applied is lost (it matters to nobody: symlink permissions are
	// never checked).
	u.applyOwner(-1, pfd, base, hdr)
	if err := setTimes(pfd, base, hdr); err != nil {
		return err
	}
	u.stats.Symlinks++
	return nil
}

// createLink creates base in pfd as a hard link to target. Flags 0: a
// link to a symlink links the symlink itself.
func (u *unpacker) createLink(target linkTarget, pfd int, base string, hdr *tar.Header) error {
	if err := unix.Linkat(target.dfd, target.base, pfd, base, 0); err != nil {
		return fmt.Errorf("hardlink to %q: %w", hdr.Linkname, err)
	}
	u.stats.Hardlinks++
	return nil
}

// createFifo creates the named pipe base in pfd.
func (u *unpacker) createFifo(pfd int, base string, hdr *tar.Header) error {
	if err := unix.Mknodat(pfd, base, unix.S_IFIFO|0o600, 0); err != nil {
		return err
	}
	u.applyOwner(-1, pfd, base, hdr)
	if err := unix.Fchmodat(pfd, base, uint32(hdr.Mode)&0o7777, 0); err != nil {
		return err
	}
	if err := setTimes(pfd, base, hdr); err != nil {
		return err
	}
	u.stats.Fifos++
	return nil
}

type linkTarget struct {
	dfd  int
	base string
	st   unix.Stat_t
}

// openLinkTarget resolves a hardlink target inside the root: "../../x" and
// "/etc/passwd" name <root>/x and <root>/etc/passwd, never host files.
func (u *unpacker) openLinkTarget(name string) (linkTarget, error) {
	rel := cleanRel(name)
	if rel == "" {
		return linkTarget{}, unsafeErr("hardlink to the root %q", name)
	}
	dir, base := splitRel(rel)
	dfd, err := openDirIn(u.root, u.rootFD, dir)
	if err != nil {
		return linkTarget{}, fmt.Errorf("hardlink target %q: %w", name, err)
	}
	t := linkTarget{dfd: dfd, base: base}
	if err := unix.Fstatat(dfd, base, &t.st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		unix.Close(dfd)
		return linkTarget{}, fmt.Errorf("hardlink target %q: %w", name, err)
	}
	if isDirMode(t.st.Mode) {
		unix.Close(dfd)
		return linkTarget{}, fmt.Errorf("hardlink target %q is a directory", name)
	}
	return t, nil
}

// ensureDir opens directory rel (resolved inside the root), creating missing
// components as 0755 directories, and makes it owner-writable. It returns the
// fd and the directory's inode.
func (u *unpacker) ensureDir(rel string) (int, uint64, error) {
	fd, err := openDirIn(u.root, u.rootFD, rel)
	if errors.Is(err, unix.ENOENT) && rel != "" {
		fd, err = u.mkdirImplicit(rel)
	}
	if err != nil {
		return -1, 0, err
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		unix.Close(fd)
		return -1, 0, err
	}
	if err := u.makeWritable(fd, &st, rel); err != nil {
		unix.Close(fd)
		return -1, 0, err
	}
	return fd, st.Ino, nil
}

// mkdirImplicit creates the missing directories of rel, which may lead
// through symlinks (even dangling ones such as "var/run -> /run" before /run
// exists): SecureJoin resolves it to a symlink-free path inside the root,
// which is then walked component by component with O_NOFOLLOW.
func (u *unpacker) mkdirImplicit(rel string) (int, error) {
	p, err := securejoin.SecureJoin(u.root, rel)
	if err != nil {
		return -1, err
	}
	r, err := filepath.Rel(u.root, p)
	if err != nil || r == ".." || strings.HasPrefix(r, "../") {
		return -1, fmt.Errorf("[internal error] %q resolved outside the root: %q", rel, p)
	}
	fd, err := unix.Dup(u.rootFD)
	if err != nil {
		return -1, err
	}
	cur := ""
	for c := range strings.SplitSeq(filepath.ToSlash(r), "/") {
		if c == "." || c == "" {
			continue
		}
		var st unix.Stat_t
		err := unix.Fstat(fd, &st)
		if err == nil {
			err = u.makeWritable(fd, &st, cur)
		}
		if err == nil {
			err = unix.Mkdirat(fd, c, 0o755)
			if err == nil {
				// Exact mode whatever the umask; also clears a setgid
				// inherited from the parent.
				err = unix.Fchmodat(fd, c, 0o755, 0)
			} else if errors.Is(err, unix.EEXIST) {
				err = nil // the O_NOFOLLOW open below refuses anything but a directory
			}
		}
		var nfd int
		if err == nil {
			nfd, err = unix.Openat(fd, c, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		}
		unix.Close(fd)
		if err != nil {
			return -1, err
		}
		fd, cur = nfd, joinRel(cur, c)
	}
	return fd, nil
}

// makeWritable gives the directory fd owner rwx while unpacking, so that an
// unprivileged unpacker can write into a lower layer's 0555 directory. A mode
// changed here is restored by finish unless an entry sets it.
func (u *unpacker) makeWritable(fd int, st *unix.Stat_t, rel string) error {
	if _, ok := u.fixed[st.Ino]; ok {
		return nil
	}
	if int64(len(u.fixed)) >= u.opts.MaxDirs {
		return dirsError(u.opts.MaxDirs)
	}
	if st.Mode&0o700 != 0o700 {
		if _, ok := u.pending[rel]; !ok {
			if err := u.track(); err != nil {
				return err
			}
			u.pending[rel] = dirMeta{ino: st.Ino, mode: st.Mode & 0o7777}
		}
		if err := unix.Fchmod(fd, st.Mode&0o7777|0o700); err != nil {
			return err
		}
	}
	u.fixed[st.Ino] = struct{}{}
	return nil
}

func (u *unpacker) setPending(rel string, ino uint64, hdr *tar.Header) error {
	if _, ok := u.pending[rel]; !ok {
		if err := u.track(); err != nil {
			return err
		}
	}
	m := dirMeta{ino: ino, mode: uint32(hdr.Mode) & 0o7777}
	if !hdr.ModTime.IsZero() {
		m.mtime, m.atime, m.hasTime = hdr.ModTime.UnixNano(), hdr.ModTime.UnixNano(), true
		if !hdr.AccessTime.IsZero() {
			m.atime = hdr.AccessTime.UnixNano()
		}
	}
	u.pending[rel] = m
	return nil
}

// track checks that one more directory may be added to pending.
func (u *unpacker) track() error {
	if int64(len(u.pending)) >= u.opts.MaxDirs {
		return dirsError(u.opts.MaxDirs)
	}
	return nil
}

// whiteout applies ".wh.NAME" (delete NAME from lower layers) or
// ".wh..wh..opq" (empty the directory's lower contents). Entries the current
// layer wrote are spared whatever the tar order; the ones it writes later
// are unaffected anyway.
func (u *unpacker) whiteout(dir, base string) error {
	u.stats.Whiteouts++
	if base != opaqueMarker && strings.HasPrefix(base, whiteoutMeta) {
		return nil // other aufs metadata (.wh..wh.plnk, ...): ignore
	}
	name := strings.TrimPrefix(base, whiteoutPrefix)
	if base != opaqueMarker && (name == "" || name == "." || name == "..") {
		return unsafeErr("invalid whiteout name")
	}
	dfd, err := openDirIn(u.root, u.rootFD, dir)
	if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENOTDIR) {
		return nil // nothing below to hide
	}
	if err != nil {
		return err
	}
	defer unix.Close(dfd)
	var st unix.Stat_t
	if err := unix.Fstat(dfd, &st); err != nil {
		return err
	}
	if err := u.makeWritable(dfd, &st, dir); err != nil {
		return err
	}
	if base != opaqueMarker {
		return u.removeLowerAt(dfd, st.Ino, name, joinRel(dir, name))
	}
	return u.removeLowerChildren(dfd, st.Ino, dir)
}

// removeLowerAt removes name from dfd unless the current layer wrote it;
// a directory is walked so that the layer's own entries inside survive.
func (u *unpacker) removeLowerAt(dfd int, dino uint64, name, rel string) error {
	var st unix.Stat_t
	if err := unix.Fstatat(dfd, name, &st, unix.AT_SYMLINK_NOFOLLOW); errors.Is(err, unix.ENOENT) {
		return nil
	} else if err != nil {
		return err
	}
	_, added := u.added[u.key(dino, name)]
	if !isDirMode(st.Mode) {
		if added {
			return nil
		}
		return unix.Unlinkat(dfd, name, 0)
	}
	fd, err := fsutil.OpenDirAt(dfd, name)
	if err != nil {
		return err
	}
	var dst unix.Stat_t
	if err := unix.Fstat(fd, &dst); err != nil {
		unix.Close(fd)
		return err
	}
	if err := u.makeWritable(fd, &dst, rel); err != nil {
		unix.Close(fd)
		return err
	}
	err = u.removeLowerChildren(fd, dst.Ino, rel)
	unix.Close(fd)
	if err != nil || added {
		return err
	}
	err = unix.Unlinkat(dfd, name, unix.AT_REMOVEDIR)
	if errors.Is(err, unix.ENOTEMPTY) || errors.Is(err, unix.EEXIST) {
		return nil // holds entries of the current layer: keep it
	}
	return err
}

func (u *unpacker) removeLowerChildren(fd int, ino uint64, rel string) error {
	nfd, err := unix.Dup(fd)
	if err != nil {
		return err
	}
	f := os.NewFile(uintptr(nfd), rel)
	names, err := f.Readdirnames(-1)
	f.Close()
	if err != nil {
		return err
	}
	for _, n := range names {
		if err := u.removeLowerAt(fd, ino, n, joinRel(rel, n)); err != nil {
			return err
		}
	}
	return nil
}

// applyOwner gives the entry (fd, or name in dfd when fd < 0, not followed)
// the header's uid and gid when Options.Chown is set, and reports whether it
// did. It never fails: an owner it cannot apply is recorded by setXattrs.
func (u *unpacker) applyOwner(fd, dfd int, name string, hdr *tar.Header) bool {
	if !u.opts.Chown || u.noChown {
		return false
	}
	// -1 means "unchanged" to chown(2); 0xffffffff is not a valid id either.
	if hdr.Uid < 0 || hdr.Gid < 0 || int64(hdr.Uid) >= 0xffffffff || int64(hdr.Gid) >= 0xffffffff {
		return false
	}
	var err error
	if fd >= 0 {
		err = unix.Fchown(fd, hdr.Uid, hdr.Gid)
	} else {
		err = unix.Fchownat(dfd, name, hdr.Uid, hdr.Gid, unix.AT_SYMLINK_NOFOLLOW)
	}
	switch {
	case err == nil:
		return true
	case errors.Is(err, unix.EINVAL) || errors.Is(err, unix.EOVERFLOW):
		// An id the user namespace does not map: keep it in the xattr.
		u.log.Debug("owner not mapped here; recording it", "entry", hdr.Name, "uid", hdr.Uid, "gid", hdr.Gid)
	case errors.Is(err, unix.EPERM):
		u.noChown = true
		u.log.Debug("chown not permitted; recording owners instead", "entry", hdr.Name, "err", err)
	default:
		u.log.Debug("chown failed; recording the owner", "entry", hdr.Name, "err", err)
	}
	return false
}

// setXattrs sets the entry's user.* xattrs from the header's PAX records,
// and, unless owned (its owner was applied), records a non-root owner in
// user.rootlesscontainers. existed says fd is an earlier layer's directory,
// whose recorded owner the header replaces.
func (u *unpacker) setXattrs(fd int, hdr *tar.Header, owned, existed bool) error {
	if u.noXattr {
		return nil
	}
	set := func(name string, val []byte) error {
		err := unix.Fsetxattr(fd, name, val, 0)
		switch {
		case err == nil:
			return nil
		case errors.Is(err, unix.ENOTSUP) || errors.Is(err, unix.EOPNOTSUPP):
			u.noXattr = true
			u.log.Debug("filesystem does not support user xattrs; not recording them", "root", u.root)
			return nil
		case errors.Is(err, unix.EPERM) || errors.Is(err, unix.E2BIG) || errors.Is(err, unix.ERANGE):
			u.log.Debug("xattr not set", "entry", hdr.Name, "xattr", name, "err", err)
			return nil
		}
		return fmt.Errorf("set xattr %s: %w", name, err)
	}
	haveOwner := false
	for k, v := range hdr.PAXRecords {
		name, ok := strings.CutPrefix(k, paxXattrPrefix)
		if !ok || !strings.HasPrefix(name, "user.") {
			continue
		}
		haveOwner = haveOwner || name == rootlessXattr
		if err := set(name, []byte(v)); err != nil || u.noXattr {
			return err
		}
	}
	// Unless applied (Options.Chown), ownership is not kept in the inode
	// (rootless: everything belongs to the invoking user, mapped to root in
	// the container); the original owner is recorded the way umoci and
	// rootless tools record it.
	if !haveOwner && !owned && (hdr.Uid != 0 || hdr.Gid != 0) && hdr.Uid >= 0 && hdr.Gid >= 0 &&
		int64(hdr.Uid) <= 0xffffffff && int64(hdr.Gid) <= 0xffffffff {
		return set(rootlessXattr, encodeRootless(uint32(hdr.Uid), uint32(hdr.Gid)))
	}
	if existed && !haveOwner {
		// A directory re-declared by this layer: an owner recorded by an
		// earlier one is stale.
		if err := unix.Fremovexattr(fd, rootlessXattr); err != nil && !errors.Is(err, unix.ENODATA) {
			u.log.Debug("stale owner xattr not removed", "entry", hdr.Name, "err", err)
		}
	}
	return nil
}

// encodeRootless encodes the rootlesscontainers.Resource protobuf
// (uint32 uid = 1; uint32 gid = 2; zero fields omitted as in proto3).
func encodeRootless(uid, gid uint32) []byte {
	var b []byte
	if uid != 0 {
		b = append(b, 0x08)
		b = binary.AppendUvarint(b, uint64(uid))
	}
	if gid != 0 {
		b = append(b, 0x10)
		b = binary.AppendUvarint(b, uint64(gid))
	}
	return b
}

func setTimes(dfd int, name string, hdr *tar.Header) error {
	if hdr.ModTime.IsZero() {
		return nil
	}
	at := hdr.AccessTime
	if at.IsZero() {
		at = hdr.ModTime
	}
	ts := []unix.Timespec{unix.NsecToTimespec(at.UnixNano()), unix.NsecToTimespec(hdr.ModTime.UnixNano())}
	err := unix.UtimesNanoAt(dfd, name, ts, unix.AT_SYMLINK_NOFOLLOW)
	if errors.Is(err, unix.EPERM) || errors.Is(err, unix.EOPNOTSUPP) {
		return nil // e.g. symlink times on a filesystem without support
	}
	return err
}

// finish applies directory modes and times, deepest first (so a 0000 or
// 0555 directory is set after everything below it), and logs the summary.
func (u *unpacker) finish() error {
	rels := make([]string, 0, len(u.pending))
	for rel := range u.pending {
		rels = append(rels, rel)
	}
	depth := func(s string) int {
		if s == "" {
			return -1
		}
		return strings.Count(s, "/")
	}
	sort.Slice(rels, func(i, j int) bool {
		di, dj := depth(rels[i]), depth(rels[j])
		if di != dj {
			return di > dj
		}
		return rels[i] < rels[j]
	})
	var firstErr error
	for _, rel := range rels {
		if err := u.finishDir(rel, u.pending[rel]); err != nil && firstErr == nil {
			firstErr = fmt.Errorf("set mode of directory %q: %w", rel, err)
		}
	}
	u.pending = map[string]dirMeta{}
	logSkipped(u.log, u.stats)
	return firstErr
}

// logSkipped says what an unpack left out.
func logSkipped(log *slog.Logger, st Stats) {
	if n := st.SkippedDevices; n > 0 {
		log.Info("skipped device nodes (cannot be created rootless; /dev is provided at run time)", "count", n)
	}
	if n := st.SkippedOther; n > 0 {
		log.Info("skipped tar entries of unknown type", "count", n)
	}
}

func (u *unpacker) finishDir(rel string, m dirMeta) error {
	var ts []unix.Timespec
	if m.hasTime {
		ts = []unix.Timespec{unix.NsecToTimespec(m.atime), unix.NsecToTimespec(m.mtime)}
	}
	if rel == "" {
		var st unix.Stat_t
		if err := unix.Fstat(u.rootFD, &st); err != nil || st.Ino != m.ino {
			return err
		}
		if err := unix.Fchmod(u.rootFD, m.mode); err != nil {
			return err
		}
		if ts != nil {
			return unix.UtimesNanoAt(unix.AT_FDCWD, u.root, ts, 0)
		}
		return nil
	}
	dir, base := splitRel(rel)
	dfd, err := openDirIn(u.root, u.rootFD, dir)
	if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENOTDIR) {
		return nil // removed by a later layer
	}
	if err != nil {
		return err
	}
	defer unix.Close(dfd)
	var st unix.Stat_t
	if err := unix.Fstatat(dfd, base, &st, unix.AT_SYMLINK_NOFOLLOW); errors.Is(err, unix.ENOENT) {
		return nil
	} else if err != nil {
		return err
	}
	if !isDirMode(st.Mode) || st.Ino != m.ino {
		return nil // replaced since
	}
	if err := unix.Fchmodat(dfd, base, m.mode, 0); err != nil {
		return err
	}
	if ts != nil {
		return unix.UtimesNanoAt(dfd, base, ts, unix.AT_SYMLINK_NOFOLLOW)
	}
	return nil
}

// limitReader counts bytes, fails past max with errf(limit) (decompression
// bombs) and stops when ctx is done.
type limitReader struct {
	ctx  context.Context
	r    io.Reader
	n    int64
	max  int64
	errf func(limit int64) error
	// limit is what errf reports (default max): the image-wide limit
	// when that is what max is derived from.
	limit int64
	err   error
}

func (l *limitReader) Read(p []byte) (int, error) {
	if l.err != nil {
		return 0, l.err
	}
	if err := l.ctx.Err(); err != nil {
		l.err = err
		return 0, err
	}
	n, err := l.r.Read(p)
	l.n += int64(n)
	if l.n > l.max {
		lim := l.limit
		if lim == 0 {
			lim = l.max
		}
		l.err = l.errf(lim)
		return n, l.err
	}
	return n, err
}
