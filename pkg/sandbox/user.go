package sandbox

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"strings"

	"github.com/moby/sys/user"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/xrun-dev/xrun/pkg/rootfs"
)

// User is the identity the command runs as inside the container.
type User struct {
	// Spec is what was asked for (--user or the image's User), for messages.
	Spec     string
	UID, GID uint32
	// AdditionalGIDs are the supplementary groups of the user in the image's
	// /etc/group.
	AdditionalGIDs []uint32
	// Home is the user's home directory from /etc/passwd ("" if unknown).
	Home string
}

// ResolveUser turns a user spec (UID[:GID] or NAME[:GROUP], or a mix) into
// ids, looking names up in the container's /etc/passwd and /etc/group: the
// copy in upper (a named container's upper layer, where useradd may have
// changed it) when there is one, else the image's in lower. An empty spec is
// root.
func ResolveUser(spec, lower, upper string) (*User, error) {
	if spec == "" {
		return &User{Spec: "root", Home: "/root"}, nil
	}
	if err := CheckUserSpec(spec); err != nil {
		return nil, err
	}
	passwd, err := readInImage("etc/passwd", lower, upper)
	if err != nil {
		return nil, err
	}
	group, err := readInImage("etc/group", lower, upper)
	if err != nil {
		return nil, err
	}
	eu, err := user.GetExecUser(spec, &user.ExecUser{Home: "/"}, passwd, group)
	if err != nil {
		return nil, fmt.Errorf("--user %s: %w (names are looked up in the image's /etc/passwd and /etc/group)", spec, err)
	}
	if eu.Uid < 0 || eu.Gid < 0 {
		return nil, fmt.Errorf("--user %s: negative id", spec)
	}
	u := &User{Spec: spec, UID: uint32(eu.Uid), GID: uint32(eu.Gid), Home: eu.Home}
	for _, g := range eu.Sgids {
		if g >= 0 && uint32(g) != u.GID {
			u.AdditionalGIDs = append(u.AdditionalGIDs, uint32(g))
		}
	}
	return u, nil
}

// CheckUserSpec checks the syntax of a --user value: UID, NAME, UID:GID,
// NAME:GROUP (or mixed), each part non-empty and without blanks.
func CheckUserSpec(spec string) error {
	u, g, hasGroup := strings.Cut(spec, ":")
	bad := func(s string) bool { return s == "" || strings.ContainsAny(s, ": \t\n") }
	if bad(u) || (hasGroup && bad(g)) {
		return fmt.Errorf("invalid --user %q: use UID[:GID] or NAME[:GROUP]", spec)
	}
	return nil
}

// readInImage returns a reader of rel (e.g. "etc/passwd") from upper (a
// named container's upper layer) if it has the file, else from lower (the
// image). A missing file, or one deleted in upper, reads as empty. Both
// trees are hostile input: the file is read through rootfs.ReadFileIn
// (symlinks resolved inside the tree, nothing but a regular file of at most
// rootfs.DefaultMaxImageFile opened), so a FIFO, device or huge file there
// fails the run at once instead of hanging it.
func readInImage(rel, lower, upper string) (io.Reader, error) {
	for _, root := range []string{upper, lower} {
		if root == "" {
			continue
		}
		b, err := rootfs.ReadFileIn(root, rel, rootfs.DefaultMaxImageFile)
		var nr *rootfs.NotRegularError
		var tl *rootfs.TooLargeFileError
		switch {
		case err == nil:
			return bytes.NewReader(b), nil
		case errors.Is(err, rootfs.ErrWhiteout):
			return strings.NewReader(""), nil
		case errors.Is(err, fs.ErrNotExist) || errors.Is(err, unix.ENOTDIR):
			continue
		case errors.As(err, &nr):
			return nil, fmt.Errorf("the image's /%s is %s, not a regular file: refusing to read it (the image is broken or hostile): use another image", rel, nr.Kind())
		case errors.As(err, &tl):
			return nil, fmt.Errorf("the image's /%s is larger than %s: refusing to read it (the image is broken or hostile): use another image", rel, rootfs.HumanSize(tl.Max))
		default:
			return nil, fmt.Errorf("read the image's /%s: %w", rel, err)
		}
	}
	return strings.NewReader(""), nil
}

// subIDHint says why only root exists in the container and how to change it.
const subIDHint = "only uid and gid 0 exist in the container without a subordinate id range: " +
	"add YOURNAME:100000:65536 to /etc/subuid and /etc/subgid (and install newuidmap/newgidmap, package uidmap)"

// checkUser checks that the user's ids exist in the container's id maps,
// and drops supplementary groups that do not (with a single-id map, only
// root exists and setgroups is denied).
func checkUser(u *User, uids, gids []specs.LinuxIDMapping) error {
	if u == nil {
		return nil
	}
	if !mapped(u.UID, uids) || !mapped(u.GID, gids) {
		if len(uids) == 1 && uids[0].Size == 1 {
			return fmt.Errorf("cannot run as user %s (uid %d, gid %d): %s; or run as root (--user 0)", u.Spec, u.UID, u.GID, subIDHint)
		}
		return fmt.Errorf("cannot run as user %s (uid %d, gid %d): the container maps ids 0-%d only", u.Spec, u.UID, u.GID, lastMapped(uids))
	}
	var keep []uint32
	for _, g := range u.AdditionalGIDs {
		if mapped(g, gids) {
			keep = append(keep, g)
		}
	}
	if len(gids) == 1 && gids[0].Size == 1 {
		keep = nil // setgroups(2) is denied with a single-id map
	}
	u.AdditionalGIDs = keep
	return nil
}

func mapped(id uint32, m []specs.LinuxIDMapping) bool {
	for _, e := range m {
		if id >= e.ContainerID && id-e.ContainerID < e.Size {
			return true
		}
	}
	return false
}

func lastMapped(m []specs.LinuxIDMapping) uint32 {
	var last uint32
	for _, e := range m {
		last = max(last, e.ContainerID+e.Size-1)
	}
	return last
}
