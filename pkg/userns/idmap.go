package userns

import (
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"slices"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/moby/sys/user"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// maxSubIDs is how many subordinate ids a run maps, like rootless podman:
// enough for every system user and group a distribution creates.
const maxSubIDs = 65536

// IDMappings returns the uid and gid maps of a run. Container root is always
// the invoking user, so files written to bound directories are theirs. When
// the user has subordinate ranges in /etc/subuid and /etc/subgid and the
// setuid helpers newuidmap/newgidmap are installed (package uidmap), ids
// 1..65536 map into those ranges so that apt's _apt, useradd and chown work;
// libcontainer runs the helpers. Otherwise only root exists inside.
func IDMappings(log *slog.Logger) (uids, gids []specs.LinuxIDMapping, full bool) {
	uid, gid := uint32(os.Geteuid()), uint32(os.Getegid())
	if uid == 0 {
		// Root needs no helper and no range: map the first ids 1:1, one
		// extent per extent of its own namespace's map (the kernel refuses
		// an extent that spans two of the parent's: root of a rootless
		// podman container has 0 -> the user, 1.. -> the subordinate range).
		return rootMapping("/proc/self/uid_map"), rootMapping("/proc/self/gid_map"), true
	}
	uids = []specs.LinuxIDMapping{{ContainerID: 0, HostID: uid, Size: 1}}
	gids = []specs.LinuxIDMapping{{ContainerID: 0, HostID: gid, Size: 1}}
	su, errU := user.CurrentUserSubUIDs()
	sg, errG := user.CurrentUserSubGIDs()
	if errU != nil || errG != nil || len(su) == 0 || len(sg) == 0 {
		log.Debug("no subordinate id range for this user: only root exists in the container (add NAME:100000:65536 to /etc/subuid and /etc/subgid for more)")
		return uids, gids, false
	}
	for _, tool := range []string{"newuidmap", "newgidmap"} {
		p, err := exec.LookPath(tool)
		if err != nil {
			log.Debug("subordinate ids are configured but "+tool+" is missing (install the uidmap package): only root exists in the container", "err", err)
			return uids, gids, false
		}
		if why, fix := HelperUnusable(p); why != "" {
			log.Debug("subordinate ids are configured but "+why+": only root exists in the container", "fix", fix)
			return uids, gids, false
		}
	}
	uids = append(uids, specs.LinuxIDMapping{ContainerID: 1, HostID: uint32(su[0].SubID), Size: uint32(min(su[0].Count, maxSubIDs))})
	gids = append(gids, specs.LinuxIDMapping{ContainerID: 1, HostID: uint32(sg[0].SubID), Size: uint32(min(sg[0].Count, maxSubIDs))})
	return uids, gids, true
}

// helperCapsFix is how to make newuidmap and newgidmap usable where they
// are setuid root without CAP_SYS_ADMIN.
const helperCapsFix = "give the helpers file capabilities instead of the setuid bit, as root in the container image: " +
	"chmod u-s /usr/bin/newuidmap /usr/bin/newgidmap && setcap cap_setuid+ep /usr/bin/newuidmap && setcap cap_setgid+ep /usr/bin/newgidmap " +
	"(or start the container with --cap-add SYS_ADMIN)"

// HelperUnusable says why the helper newuidmap or newgidmap at path cannot
// map a range of ids for this process, or "", and, when it is not a
// missing package, how to fix it. It must be setuid root or
// have file capabilities. Setuid root is not enough without CAP_SYS_ADMIN
// in the capability bounding set, as in a container's default set: the
// kernel lets a map be written into a new user namespace only by its owner
// or by a process with CAP_SYS_ADMIN over it, and the helper then runs as
// root, who is not the owner. With file capabilities it runs as the user,
// the owner.
func HelperUnusable(path string) (why, fix string) {
	fi, err := os.Stat(path)
	if err != nil {
		return err.Error(), ""
	}
	if sz, err := unix.Getxattr(path, "security.capability", nil); err == nil && sz > 0 {
		return "", ""
	}
	if fi.Mode()&fs.ModeSetuid == 0 {
		return path + " is neither setuid nor has file capabilities", ""
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && st.Uid == 0 && !boundingHas(unix.CAP_SYS_ADMIN) {
		return path + " is setuid root, but this process's capability bounding set has no CAP_SYS_ADMIN (a container's default), so it cannot write the map", helperCapsFix
	}
	return "", ""
}

// boundingHas says whether capability c is in this process's bounding set
// (true when it cannot tell). A variable for tests.
var boundingHas = func(c int) bool {
	in, err := unix.PrctlRetInt(unix.PR_CAPBSET_READ, uintptr(c), 0, 0, 0)
	return err != nil || in == 1
}

// rootMapping maps ids 0..maxSubIDs to themselves, split where the map
// file of this process's user namespace (proc's uid_map or gid_map:
// "inside outside count" lines) splits them; ids it does not map are left
// out. Without the file: one extent.
func rootMapping(mapFile string) []specs.LinuxIDMapping {
	whole := []specs.LinuxIDMapping{{ContainerID: 0, HostID: 0, Size: maxSubIDs + 1}}
	b, err := os.ReadFile(mapFile)
	if err != nil {
		return whole
	}
	var out []specs.LinuxIDMapping
	for _, line := range strings.Split(string(b), "\n") {
		var inside, outside, count uint64
		if n, _ := fmt.Sscan(line, &inside, &outside, &count); n != 3 {
			continue
		}
		end := min(inside+count, maxSubIDs+1)
		if inside < end {
			out = append(out, specs.LinuxIDMapping{ContainerID: uint32(inside), HostID: uint32(inside), Size: uint32(end - inside)})
		}
	}
	if len(out) == 0 {
		return whole
	}
	slices.SortFunc(out, func(a, b specs.LinuxIDMapping) int { return int(a.ContainerID) - int(b.ContainerID) })
	return out
}

// RealRoot reports whether this process is root of the initial user
// namespace (all of the host's ids mapped), not root of a container's
// user namespace, which cannot do what only the host's root can (join
// another namespace's mounts, map ids it does not own).
func RealRoot() bool {
	if os.Geteuid() != 0 {
		return false
	}
	b, err := os.ReadFile("/proc/self/uid_map")
	if err != nil {
		return true
	}
	f := strings.Fields(string(b))
	return len(f) == 3 && f[0] == "0" && f[1] == "0" && f[2] == "4294967295"
}
