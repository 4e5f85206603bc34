package binfmt

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// HandlerName is the binfmt_misc entry name xrun registers for an arch.
func HandlerName(a *Arch) string { return "xrun-" + a.Name }

// RegisterLine returns the line to write to binfmt_misc's register file:
// ":xrun-NAME:M::<magic>:<mask>:<interp>:<flags>", with every magic and mask
// byte escaped as \xHH (the kernel unescapes them; raw bytes could contain
// the ':' separator). See Documentation/admin-guide/binfmt-misc.rst.
func RegisterLine(a *Arch, interp, flags string) string {
	var b strings.Builder
	b.WriteString(":" + HandlerName(a) + ":M::")
	escapeHex(&b, a.Magic)
	b.WriteString(":")
	escapeHex(&b, a.Mask)
	b.WriteString(":" + interp + ":" + flags)
	return b.String()
}

func escapeHex(b *strings.Builder, p []byte) {
	const digits = "0123456789abcdef"
	for _, c := range p {
		b.WriteString(`\x`)
		b.WriteByte(digits[c>>4])
		b.WriteByte(digits[c&0xf])
	}
}

// MountAndRegister mounts a binfmt_misc instance at dir and registers
// plan.Emulator for plan.Arch in it, with flags (F is always added; e.g.
// "F" when only one id is mapped, "FC" for set-id binaries in the guest,
// "FP" to keep argv[0]).
//
// It must run inside a new user and mount namespace, on Linux 6.7+, before
// pivot_root while plan.Emulator is still reachable, and dir must stay
// mounted for as long as the handler is needed (e.g. mount it at the
// container's /proc/sys/fs/binfmt_misc): unmounting the last mount of the
// instance drops its handlers. Registering again (in the same user
// namespace) replaces xrun's handler for the arch.
func MountAndRegister(dir string, plan *Plan, flags string) error {
	if plan == nil || plan.Strategy != Namespaced || plan.Arch == nil || plan.Emulator == "" {
		return fmt.Errorf("[internal error] MountAndRegister needs a namespaced plan, got %+v", plan)
	}
	if !strings.Contains(flags, "F") {
		flags = "F" + flags
	}
	if strings.Trim(flags, "POCF") != "" {
		return fmt.Errorf("[internal error] binfmt_misc flags %q: only P, O, C, F exist", flags)
	}
	if strings.ContainsAny(plan.Emulator, ":\n") {
		return fmt.Errorf("emulator path %q: binfmt_misc cannot register a path containing ':' or a newline", plan.Emulator)
	}

	/*
	   Why this is safe and needs no privilege: since Linux 6.7 binfmt_misc
	   is per user namespace ("binfmt_misc: enable sandboxed mounts").
	   Mounting binfmt_misc from a non-initial user
	   namespace creates that namespace's own instance, keyed on the user
	   namespace; handlers registered there apply to processes of this
	   namespace and of nested ones that mount no instance of their own, and
	   the host's instance is no longer consulted. In the initial user
	   namespace (as host root) the same mount would be the host's instance,
	   so refuse there rather than change the host.
	   https://docs.kernel.org/admin-guide/binfmt-misc.html
	*/
	initNS, err := inInitialUserNS()
	if err != nil {
		return err
	}
	if initNS {
		return errors.New("refusing to mount binfmt_misc in the initial user namespace: it would register the handler on the host; call MountAndRegister in a new user namespace")
	}
	if err := unix.Mount("binfmt_misc", dir, "binfmt_misc", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""); err != nil {
		if errors.Is(err, unix.EPERM) {
			return fmt.Errorf("mount binfmt_misc on %s: %w (binfmt_misc in a user namespace needs Linux 6.7+ and a new user and mount namespace)", dir, err)
		}
		return fmt.Errorf("mount binfmt_misc on %s: %w", dir, err)
	}

	/*
	   Why F: with the F ("fix binary") flag the kernel opens the interpreter
	   now, at registration, and keeps the open file; each exec of a matching
	   binary uses that file instead of looking the path up. So after
	   pivot_root into the guest rootfs, where the host path of qemu does not
	   exist, foreign binaries still run, and the image needs no copy of qemu.
	   That is also why the emulator must be static: its own loader would
	   still be looked up by path, in the guest.
	*/
	line := RegisterLine(plan.Arch, plan.Emulator, flags)
	err = writeFile(filepath.Join(dir, "register"), line)
	if errors.Is(err, unix.EEXIST) {
		// An earlier registration in this user namespace (the instance is
		// shared by all its mounts): drop it and register ours.
		if err := writeFile(filepath.Join(dir, HandlerName(plan.Arch)), "-1"); err != nil {
			err = fmt.Errorf("remove old binfmt_misc handler %s: %w", HandlerName(plan.Arch), err)
			return errors.Join(err, unmount(dir))
		}
		err = writeFile(filepath.Join(dir, "register"), line)
	}
	if err != nil {
		switch {
		case errors.Is(err, unix.ENOENT):
			err = fmt.Errorf("register %s for %s: emulator %s not found: %w", HandlerName(plan.Arch), plan.Arch.GOARCH, plan.Emulator, err)
		default:
			err = fmt.Errorf("register %s for %s (%q): %w", HandlerName(plan.Arch), plan.Arch.GOARCH, line, err)
		}
		return errors.Join(err, unmount(dir))
	}
	return nil
}

// writeFile writes s in a single write(2), as binfmt_misc requires: it
// parses each write as one whole command.
func writeFile(path, s string) error {
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	_, err = f.Write([]byte(s))
	return errors.Join(err, f.Close())
}

func unmount(dir string) error {
	if err := unix.Unmount(dir, unix.MNT_DETACH); err != nil {
		return fmt.Errorf("unmount %s: %w", dir, err)
	}
	return nil
}

// inInitialUserNS reports whether this process is in the initial user
// namespace, whose uid_map is the identity map of all 2^32-1 ids.
func inInitialUserNS() (bool, error) {
	data, err := os.ReadFile("/proc/self/uid_map")
	if err != nil {
		return false, fmt.Errorf("read uid_map: %w", err)
	}
	return isIdentityMap(string(data)), nil
}

func isIdentityMap(uidMap string) bool {
	f := strings.Fields(uidMap)
	return len(f) == 3 && f[0] == "0" && f[1] == "0" && f[2] == "4294967295"
}
