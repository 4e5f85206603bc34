package userns

import (
	"log/slog"
	"os"
	"os/exec"

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
		// Real root needs no helper and no range: map the first ids 1:1.
		m := []specs.LinuxIDMapping{{ContainerID: 0, HostID: 0, Size: maxSubIDs + 1}}
		return m, m, true
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
		if _, err := exec.LookPath(tool); err != nil {
			log.Debug("subordinate ids are configured but "+tool+" is missing (install the uidmap package): only root exists in the container", "err", err)
			return uids, gids, false
		}
	}
	uids = append(uids, specs.LinuxIDMapping{ContainerID: 1, HostID: uint32(su[0].SubID), Size: uint32(min(su[0].Count, maxSubIDs))})
	gids = append(gids, specs.LinuxIDMapping{ContainerID: 1, HostID: uint32(sg[0].SubID), Size: uint32(min(sg[0].Count, maxSubIDs))})
	return uids, gids, true
}
