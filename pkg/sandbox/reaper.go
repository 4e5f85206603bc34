package sandbox

// #cgo CFLAGS: -Wall -Wextra -O2
import "C"

import (
	"encoding/hex"
	"fmt"
	"strconv"

	"github.com/xrun-dev/xrun/pkg/binfmt"
)

// The container's PID 1 is this binary, bound at ReaperPath and started
// with reaperArgs. It is written in C (reaper.c) and runs from an ELF
// constructor, before the Go runtime would start.
//
// Why a native init: the kernel drops signals to a pid namespace's init that
// has no handler installed. An emulated PID 1 is qemu, which installs
// handlers, then on delivery resets them and re-raises the signal to itself
// to die "of" it; that re-raise is dropped, so it never exits on Ctrl-C or
// SIGTERM. A native PID 1 that forwards signals keeps qemu out of that role.
//
// With "-u UID:GID[:GROUPS]", the reaper stays root and starts the command
// with those credentials, setting its supplementary groups too (which
// libcontainer does not do for a rootless container; the command would
// otherwise keep root's group).

// reaperArgs is the argv that starts cmd under the reaper as user u.
func reaperArgs(u *User, cmd []string) []string {
	args := []string{ReaperPath}
	if u != nil && (u.UID != 0 || u.GID != 0 || len(u.AdditionalGIDs) > 0) {
		cred := fmt.Sprintf("%d:%d", u.UID, u.GID)
		for i, g := range u.AdditionalGIDs {
			if i == 0 {
				cred += ":"
			} else {
				cred += ","
			}
			cred += strconv.FormatUint(uint64(g), 10)
		}
		args = append(args, "-u", cred)
	}
	return append(append(args, "--"), cmd...)
}

// interceptQemuPath is where the emulator of an intercept plan is bound in
// the container (/dev is a fresh tmpfs).
func interceptQemuPath(p *binfmt.Plan) string { return "/dev/.xrun-qemu-" + p.Arch.Name }

// interceptSpec is the init's -x argument: the arch's binfmt magic and
// mask, and the emulator's path in the container.
func interceptSpec(p *binfmt.Plan) string {
	return hex.EncodeToString(p.Arch.Magic) + ":" + hex.EncodeToString(p.Arch.Mask) + ":" + interceptQemuPath(p)
}
