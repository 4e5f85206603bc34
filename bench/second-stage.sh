#!/bin/sh
# second-stage.sh DIR: finish a `debootstrap --foreign --arch=arm64` tree
# (run its second stage under qemu), as root, without touching the host's
# binfmt_misc: a user namespace that maps ids 0-65535 to themselves gets its
# own binfmt_misc instance (Linux 6.7+), where qemu-aarch64-static is
# registered. (unshare --map-users would go through newuidmap, which wants a
# /etc/subuid entry for root: the maps are written from outside instead.)
# container=lxc makes debootstrap skip its mknod checks (no mknod in a user
# namespace) and bind the host's device nodes instead.
set -eu
dir=$1
conf=/usr/lib/binfmt.d/qemu-aarch64.conf
magic=$(cut -d: -f5 "$conf"); mask=$(cut -d: -f6 "$conf")
fifo=$(mktemp -u); mkfifo "$fifo"
unshare --user --mount --pid --fork --kill-child \
	env -i container=lxc PATH=/usr/sbin:/usr/bin:/sbin:/bin DIR="$dir" MAGIC="$magic" MASK="$mask" FIFO="$fifo" sh -euc '
	read go <"$FIFO"
	mount --make-rprivate /
	mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
	printf ":bench:M::%s:%s:/usr/bin/qemu-aarch64-static:FP" "$MAGIC" "$MASK" >/proc/sys/fs/binfmt_misc/register
	mount --rbind /dev "$DIR/dev"
	mount -t proc proc "$DIR/proc"
	chroot "$DIR" /debootstrap/debootstrap --second-stage
' &
pid=$!
sleep 0.2
echo "0 0 65536" >/proc/$pid/uid_map
echo "0 0 65536" >/proc/$pid/gid_map
echo go >"$fifo"
rm -f "$fifo"
wait $pid
