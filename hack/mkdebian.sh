#!/usr/bin/env bash
# hack/mkdebian.sh builds the minimal Debian bookworm arm64 root filesystem
# that the integration test TestSeedScenario (integration/seed_test.go) turns
# into an image: apt-get installs gcc in it under emulation, as an
# unprivileged user. Run it as root; it is idempotent (an existing tarball is
# kept) and hack/setup.sh calls it, so CI builds it once per machine.
#
#   ${XRUN_TEST_CACHE:-/var/tmp/xrun-test-cache}/debian-bookworm-arm64.tar
#
# How: `debootstrap --arch=arm64 --foreign --variant=minbase` unpacks the
# packages on the host, then debootstrap's second stage runs under
# qemu-aarch64-static in a user namespace that maps ids 0-65535 to themselves
# and has its own binfmt_misc instance (Linux 6.7+), where the emulator is
# registered. Nothing is registered in the host's binfmt_misc (the
# integration tests check that it stays untouched). The apt lists are left
# out of the tarball: the test's apt-get update fetches them.
#
# The same script builds the other Debian trees the tests need, chosen by
# environment: the --accel tests use an arm64 tree with the C/C++ toolchain
# and an amd64 (host) tree, pushed together as one multi-platform image:
#
#   XRUN_MKDEBIAN_INCLUDE=gcc,g++,libc6-dev,make XRUN_MKDEBIAN_NAME=gcc hack/mkdebian.sh
#       -> debian-bookworm-arm64-gcc.tar
#   XRUN_MKDEBIAN_ARCH=amd64 hack/mkdebian.sh -> debian-bookworm-amd64.tar
#
# Environment:
#   XRUN_MKDEBIAN_ARCH   Debian architecture (default arm64); the host's own
#                        needs no emulator for the second stage
#   XRUN_MKDEBIAN_INCLUDE packages to add (debootstrap --include, comma list)
#   XRUN_MKDEBIAN_NAME   suffix of the tarball's name (-NAME)
#   XRUN_TEST_CACHE      cache directory (default /var/tmp/xrun-test-cache)
#   XRUN_DEBIAN_MIRROR   Debian mirror (default: the one the host's apt uses,
#                        else http://deb.debian.org/debian)
#   XRUN_SETUP_SKIP_APT=1 do not apt-get install debootstrap/qemu-user-static
set -euo pipefail

SUITE=bookworm
ARCH=${XRUN_MKDEBIAN_ARCH:-arm64}
INCLUDE=${XRUN_MKDEBIAN_INCLUDE:-}
NAME=debian-$SUITE-$ARCH${XRUN_MKDEBIAN_NAME:+-$XRUN_MKDEBIAN_NAME}
CACHE=${XRUN_TEST_CACHE:-/var/tmp/xrun-test-cache}
OUT=$CACHE/$NAME.tar
QEMU=/usr/bin/qemu-aarch64-static
BINFMT_CONF=/usr/lib/binfmt.d/qemu-aarch64.conf

log() { printf 'mkdebian: %s\n' "$*" >&2; }
die() { printf 'mkdebian: error: %s\n' "$*" >&2; exit 1; }

if [[ -s $OUT ]]; then
	log "ok: $OUT exists"
	exit 0
fi
[[ $(id -u) -eq 0 ]] || die "run as root (debootstrap, and the second stage maps ids 0-65535)"

# host_mirror prints the Debian archive URI the host's apt uses (deb822
# sources, then one-line sources.list), or nothing: the first URI with
# "debian" in it that is not the security archive.
host_mirror() {
	local f uri
	for f in /etc/apt/sources.list.d/debian.sources /etc/apt/sources.list.d/*.sources; do
		[[ -f $f ]] || continue
		uri=$(awk '/^URIs:/ { for (i = 2; i <= NF; i++) if ($i ~ /debian/ && $i !~ /security/) { print $i; exit } }' "$f")
		[[ -n $uri ]] && { echo "${uri%/}"; return; }
	done
	for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
		[[ -f $f ]] || continue
		uri=$(awk '$1 == "deb" { for (i = 2; i <= NF; i++) if ($i ~ /^[a-z]+:\/\//) { if ($i ~ /debian/ && $i !~ /security/) print $i; break } }' "$f" | head -1)
		[[ -n $uri ]] && { echo "${uri%/}"; return; }
	done
	return 0
}
MIRROR=${XRUN_DEBIAN_MIRROR:-$(host_mirror)}
MIRROR=${MIRROR:-http://deb.debian.org/debian}

export DEBIAN_FRONTEND=noninteractive
if ! command -v debootstrap >/dev/null || [[ ! -x $QEMU || ! -f $BINFMT_CONF ]]; then
	[[ ${XRUN_SETUP_SKIP_APT:-} == 1 ]] && die "XRUN_SETUP_SKIP_APT=1 and debootstrap or qemu-user-static is missing"
	log "installing debootstrap, qemu-user-static"
	apt-get install -y -q --no-install-recommends debootstrap qemu-user-static >&2 ||
		die "apt-get install debootstrap qemu-user-static failed"
fi
[[ -x $QEMU && -f $BINFMT_CONF ]] || die "missing $QEMU or $BINFMT_CONF (qemu-user-static)"
unshare --help 2>/dev/null | grep -q -- --kill-child || die "unshare (util-linux) is too old: no --kill-child"

mkdir -p "$CACHE"
# Leftovers of an earlier failed run of this tree (kept for their logs).
rm -rf "$CACHE/.mkdebian-$NAME".*
work=$(mktemp -d "$CACHE/.mkdebian-$NAME.XXXXXX")
root=$work/root
start=$SECONDS

log "debootstrap --foreign --variant=minbase ${INCLUDE:+--include=$INCLUDE }$SUITE $ARCH from $MIRROR"
debootstrap --arch="$ARCH" --foreign --variant=minbase ${INCLUDE:+--include="$INCLUDE"} "$SUITE" "$root" "$MIRROR" >"$work/debootstrap.log" 2>&1 ||
	die "debootstrap failed (log: $work/debootstrap.log): $(tail -5 "$work/debootstrap.log")"
log "first stage: $((SECONDS - start)) s; second stage"

# Second stage: the maps are written from outside (unshare --map-users would
# go through newuidmap, which wants a /etc/subuid entry for root) once the
# child exists; it waits on a fifo for them. container=lxc makes debootstrap
# skip its mknod checks (no mknod in a user namespace) and use the bound /dev.
magic=$(cut -d: -f5 "$BINFMT_CONF")
mask=$(cut -d: -f6 "$BINFMT_CONF")
fifo=$work/go
mkfifo "$fifo"
s2=$SECONDS
unshare --user --mount --pid --fork --kill-child \
	env -i container=lxc PATH=/usr/sbin:/usr/bin:/sbin:/bin DIR="$root" QEMU="$QEMU" \
	MAGIC="$magic" MASK="$mask" FIFO="$fifo" sh -euc '
	read go <"$FIFO"
	mount --make-rprivate /
	mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
	printf ":xrun-mkdebian:M::%s:%s:%s:FP" "$MAGIC" "$MASK" "$QEMU" >/proc/sys/fs/binfmt_misc/register
	mount --rbind /dev "$DIR/dev"
	mount -t proc proc "$DIR/proc"
	chroot "$DIR" /debootstrap/debootstrap --second-stage
' >"$work/second-stage.log" 2>&1 &
pid=$!
# Wait for the child to be in its new user namespace, then map it.
for _ in $(seq 100); do
	[[ $(readlink "/proc/$pid/ns/user" 2>/dev/null) != "$(readlink /proc/self/ns/user)" ]] && break
	sleep 0.05
done
echo "0 0 65536" >"/proc/$pid/uid_map"
echo "0 0 65536" >"/proc/$pid/gid_map"
echo go >"$fifo"
wait "$pid" || die "second stage failed (log: $work/second-stage.log): $(tail -5 "$work/second-stage.log")"
log "second stage: $((SECONDS - s2)) s"

# (The /dev bind mount lived only in the namespace's mount namespace, gone
# now: removing the tree cannot reach the host's /dev.)
# Image hygiene: an empty /dev and /proc, no apt lists or downloaded .debs.
grep -q " $root/" /proc/self/mountinfo && die "something is still mounted under $root"
rm -rf "${root:?}/debootstrap" "$root"/dev/* "$root"/proc/* \
	"$root"/var/lib/apt/lists/* "$root"/var/cache/apt/archives/*.deb \
	"$root"/var/cache/apt/*.bin "$root"/var/log/bootstrap.log
mkdir -p "$root/var/lib/apt/lists/partial"
[[ -x $root/usr/bin/apt-get && -x $root/bin/bash ]] || die "the tree has no apt-get or bash"

tar -C "$root" --numeric-owner -cf "$work/out.tar" .
mv "$work/out.tar" "$OUT" # same file system: atomic
rm -rf "$work"
log "ok: $OUT ($(du -h "$OUT" | cut -f1), $((SECONDS - start)) s)"
