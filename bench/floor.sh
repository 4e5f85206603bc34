#!/bin/sh
# floor.sh: the shell version of floor.c, what one would type by hand:
# unshare(1) + a binfmt_misc instance + register + chroot.
#
#   floor.sh ROOTFS CMD [ARG...]                       native
#   FLOOR_EMU=/usr/bin/qemu-aarch64-static FLOOR_MAGIC=... FLOOR_MASK=... \
#   floor.sh ROOTFS CMD [ARG...]                       emulated
#
# Its cost over floor.c is unshare(1) and one sh: about what the
# KERNEL-NOTES "unshare -Urmpf chroot" timings measured.
exec unshare -Urmpf sh -c '
	if [ -n "$FLOOR_EMU" ]; then
		mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc &&
		printf ":floor:M::%s:%s:%s:FP" "$FLOOR_MAGIC" "$FLOOR_MASK" "$FLOOR_EMU" >/proc/sys/fs/binfmt_misc/register || exit 125
	fi
	root=$1; shift
	mount -t proc proc "$root/proc" || exit 125
	exec /usr/sbin/chroot "$root" "$@"
' floor.sh "$@"
