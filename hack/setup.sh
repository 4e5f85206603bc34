#!/usr/bin/env bash
# hack/setup.sh prepares a Debian 12 machine (a fresh one, or CI) for xrun's
# integration tests. Run it as root; it is idempotent.
#
# It installs the host tools the tests use (static qemu emulators, newuidmap,
# Debian's registry server, setpriv), downloads Debian's busybox-static for
# several architectures into integration/testdata/debs/ (the tests build their
# images from them), and creates two unprivileged users the tests drop to:
#
#   xruntest   with a subordinate id range (xruntest:200000:65536)
#   xrunnosub  without any range (single-uid map path)
#
# Environment:
#   XRUN_SETUP_SKIP_APT=1   do not run apt-get update/install (tools present)
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DEBS_DIR="$REPO/integration/testdata/debs"

# Debian architecture names. amd64 is the host; the rest are foreign.
FOREIGN_ARCHES=(arm64 armhf ppc64el s390x i386)
DEB_ARCHES=(amd64 "${FOREIGN_ARCHES[@]}")
# gcc-*-linux-gnu: the cross compilers of the examples/ project and of the
# build-system tests (CMake, Meson), whose programs the integration suite
# runs under xrun; their cross glibc also makes the glibc test image. Debian's
# rustc, cargo and the arm64 Rust standard library: the Cargo runner test.
PACKAGES=(qemu-user-static uidmap docker-registry util-linux ca-certificates gcc make libc6-dev debootstrap
	gcc-aarch64-linux-gnu libc6-dev-arm64-cross gcc-riscv64-linux-gnu libc6-dev-riscv64-cross
	cmake meson ninja-build rustc cargo libstd-rust-dev:arm64 podman runc qemu-system-x86 qemu-system-arm)

TEST_USER=xruntest
TEST_USER_SUBIDS="200000:65536"
NOSUB_USER=xrunnosub

log() { printf 'setup: %s\n' "$*" >&2; }
die() { printf 'setup: error: %s\n' "$*" >&2; exit 1; }

# It installs packages and creates users: as a user, go through sudo (the
# README's command works as written for root, who may have no sudo, and for
# a sudo user).
if [[ $(id -u) -ne 0 ]]; then
	command -v sudo >/dev/null 2>&1 || die "run as root (it installs packages and creates users); sudo is not installed"
	exec sudo --preserve-env=XRUN_SETUP_SKIP_APT -- "${BASH_SOURCE[0]}" "$@"
fi

export DEBIAN_FRONTEND=noninteractive

# wait_for_apt waits while another apt/dpkg run holds the locks (for example a
# provisioning step still installing packages in the background).
wait_for_apt() {
	local i
	for i in $(seq 1 600); do
		if ! fuser /var/lib/dpkg/lock-frontend /var/lib/dpkg/lock \
			/var/lib/apt/lists/lock /var/cache/apt/archives/lock >/dev/null 2>&1; then
			return 0
		fi
		((i % 15 == 1)) && log "waiting for another apt/dpkg to finish..."
		sleep 1
	done
	die "apt/dpkg locks still held after 10 minutes"
}

# fuser comes from psmisc; without it fall back to looking for apt processes.
if ! command -v fuser >/dev/null 2>&1; then
	fuser() { pgrep -x 'apt|apt-get|dpkg' >/dev/null; }
fi

# has_candidate PKG: apt knows a version of PKG it could install or download.
has_candidate() {
	local out
	out="$(apt-cache policy "$1" 2>/dev/null)" || return 1
	[[ $out =~ Candidate:\ [^\(] ]]
}

# apt_update runs apt-get update and tolerates a non-zero exit when the
# lists the tests need arrived anyway. Known cause: the security mirror's
# index for a foreign architecture fails ("File has unexpected size ...
# Mirror sync in progress?"); third-party sources without network fail too.
apt_update() {
	wait_for_apt
	local rc=0
	apt-get update -q || rc=$?
	if ((rc != 0)); then
		log "apt-get update exited $rc; checking that the main archive lists arrived"
	fi
	local missing=() p
	for p in "${PACKAGES[@]}" "${DEB_ARCHES[@]/#/busybox-static:}"; do
		has_candidate "$p" || missing+=("$p")
	done
	if ((${#missing[@]} > 0)); then
		die "apt-get update (exit $rc) left no candidate for: ${missing[*]}"
	fi
	((rc == 0)) || log "continuing: every needed package has a candidate"
}

# --- architectures and packages ----------------------------------------------
# (Command output goes to variables first: with pipefail, "cmd | grep -q"
# fails when grep exits early and cmd gets SIGPIPE.)
added=0
foreign="$(dpkg --print-foreign-architectures)"
for a in "${FOREIGN_ARCHES[@]}"; do
	if ! grep -qx "$a" <<<"$foreign"; then
		dpkg --add-architecture "$a"
		added=1
	fi
done

need_debs=0
for a in "${DEB_ARCHES[@]}"; do
	compgen -G "$DEBS_DIR/busybox-static_*_$a.deb" >/dev/null || need_debs=1
done

need_pkgs=0
for p in "${PACKAGES[@]}"; do
	st="$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)"
	[[ $st == "install ok installed" ]] || need_pkgs=1
done

if [[ ${XRUN_SETUP_SKIP_APT:-} == 1 ]]; then
	log "XRUN_SETUP_SKIP_APT=1: not running apt-get"
elif ((added || need_debs || need_pkgs)); then
	apt_update
	if ((need_pkgs)); then
		wait_for_apt
		apt-get install -y -q --no-install-recommends "${PACKAGES[@]}"
	fi
fi

# --- busybox-static .debs for the test images --------------------------------
mkdir -p "$DEBS_DIR"
for a in "${DEB_ARCHES[@]}"; do
	if compgen -G "$DEBS_DIR/busybox-static_*_$a.deb" >/dev/null; then
		continue
	fi
	[[ ${XRUN_SETUP_SKIP_APT:-} == 1 ]] && die "missing $DEBS_DIR/busybox-static_*_$a.deb"
	log "downloading busybox-static:$a"
	# apt-get download writes into the current directory; a world-writable
	# temp dir keeps apt's _apt sandbox from warning about permissions.
	tmp="$(mktemp -d)"
	chmod 0777 "$tmp"
	(cd "$tmp" && apt-get download -q "busybox-static:$a")
	mv "$tmp"/busybox-static_*_"$a".deb "$DEBS_DIR/"
	rm -rf "$tmp"
done

# --- users ---------------------------------------------------------------------
# set_subids FILE USER [RANGE]: drop USER's lines (by name or uid) from FILE and,
# given RANGE, add exactly "USER:RANGE".
set_subids() {
	local file=$1 user=$2 range=${3:-} uid
	uid="$(id -u "$user")"
	touch "$file"
	local want=""
	[[ -n $range ]] && want="$user:$range"
	if [[ -n $want ]] && grep -qx "$want" "$file" &&
		[[ $(grep -cE "^($user|$uid):" "$file") -eq 1 ]]; then
		return 0
	fi
	sed -i -E "/^($user|$uid):/d" "$file"
	[[ -n $want ]] && echo "$want" >>"$file"
	return 0
}

for u in "$TEST_USER" "$NOSUB_USER"; do
	if ! id -u "$u" >/dev/null 2>&1; then
		log "creating user $u"
		# useradd may allocate a subid range by itself; set_subids fixes it below.
		useradd --create-home --user-group --shell /bin/sh "$u"
	fi
done
for f in /etc/subuid /etc/subgid; do
	set_subids "$f" "$TEST_USER" "$TEST_USER_SUBIDS"
	set_subids "$f" "$NOSUB_USER"
done

# --- tools the tests need --------------------------------------------------------
for t in /usr/bin/docker-registry /usr/bin/newuidmap /usr/bin/newgidmap /usr/bin/setpriv \
	/usr/bin/qemu-aarch64-static /usr/bin/qemu-arm-static /usr/bin/qemu-ppc64le-static \
	/usr/bin/qemu-s390x-static /usr/bin/qemu-riscv64-static; do
	[[ -x $t ]] || die "missing $t after install"
done
[[ -u /usr/bin/newuidmap && -u /usr/bin/newgidmap ]] || die "newuidmap/newgidmap are not setuid"

# --- the Debian arm64 image of the seed scenario test ---------------------------
# Built once (debootstrap, second stage under qemu in a private binfmt_misc
# instance) and cached in /var/tmp/xrun-test-cache.
# The --accel tests' image: arm64 with gcc/g++ (second stage under qemu,
# ~4 min) and amd64 (the host's platform, where the cross packages come
# from, ~1 min), pushed together as one reference by integration/accel_test.go.
# The three are built at the same time (each second stage is one emulated
# dpkg at a time, in its own namespaces and work directory).
mkdebian_pids=()
"$REPO/hack/mkdebian.sh" &
mkdebian_pids+=($!)
XRUN_MKDEBIAN_INCLUDE=gcc,g++,libc6-dev,make XRUN_MKDEBIAN_NAME=gcc "$REPO/hack/mkdebian.sh" &
mkdebian_pids+=($!)
XRUN_MKDEBIAN_ARCH=amd64 "$REPO/hack/mkdebian.sh" &
mkdebian_pids+=($!)
for pid in "${mkdebian_pids[@]}"; do
	wait "$pid" || die "hack/mkdebian.sh failed (its error is above)"
done

# --- Debian 12's own 6.1 kernel, for the exec-interception test in a VM --------
# (integration/oldkernel_test.go boots it under qemu-system-x86_64, TCG).
KDIR=${XRUN_TEST_CACHE:-/var/tmp/xrun-test-cache}/kernel-6.1
if ! compgen -G "$KDIR/boot/vmlinuz-6.1.*" >/dev/null; then
	[[ ${XRUN_SETUP_SKIP_APT:-} == 1 ]] && die "missing $KDIR (Debian's 6.1 kernel)"
	kpkg=$(apt-cache depends linux-image-cloud-amd64 2>/dev/null | awk '$1 == "Depends:" && $2 ~ /^linux-image-6\.1/ { print $2; exit }')
	[[ -n $kpkg ]] || die "cannot find Debian's 6.1 kernel package (linux-image-cloud-amd64's dependency)"
	log "downloading $kpkg"
	tmp="$(mktemp -d)"
	chmod 0777 "$tmp"
	(cd "$tmp" && apt-get download -q "$kpkg") || die "apt-get download $kpkg failed"
	rm -rf "$KDIR.tmp" && mkdir -p "$KDIR.tmp"
	dpkg-deb -x "$tmp"/linux-image-*.deb "$KDIR.tmp"
	rm -rf "$tmp" "$KDIR" && mv "$KDIR.tmp" "$KDIR"
fi

# The same for an arm64 host: Debian 12's 6.1 arm64 kernel and the arm64 build
# of qemu-x86_64-static (integration/oldkernel_test.go boots it under
# qemu-system-aarch64, TCG, and runs the amd64 image there).
KDIR64=${XRUN_TEST_CACHE:-/var/tmp/xrun-test-cache}/kernel-6.1-arm64
if ! compgen -G "$KDIR64/boot/vmlinuz-6.1.*" >/dev/null || [[ ! -x $KDIR64/usr/bin/qemu-x86_64-static ]]; then
	[[ ${XRUN_SETUP_SKIP_APT:-} == 1 ]] && die "missing $KDIR64 (Debian's 6.1 arm64 kernel)"
	kpkg=$(apt-cache depends linux-image-cloud-arm64:arm64 2>/dev/null | awk '$1 == "Depends:" && $2 ~ /^linux-image-6\.1/ { print $2; exit }')
	[[ -n $kpkg ]] || die "cannot find Debian's 6.1 arm64 kernel package (linux-image-cloud-arm64's dependency)"
	log "downloading $kpkg and qemu-user-static:arm64"
	tmp="$(mktemp -d)"
	chmod 0777 "$tmp"
	(cd "$tmp" && apt-get download -q "$kpkg" qemu-user-static:arm64) || die "apt-get download $kpkg qemu-user-static:arm64 failed"
	rm -rf "$KDIR64.tmp" && mkdir -p "$KDIR64.tmp"
	dpkg-deb -x "$tmp"/linux-image-*.deb "$KDIR64.tmp"
	dpkg-deb --fsys-tarfile "$tmp"/qemu-user-static_*.deb | tar -x -C "$KDIR64.tmp" ./usr/bin/qemu-x86_64-static
	rm -rf "$tmp" "$KDIR64" && mv "$KDIR64.tmp" "$KDIR64"
fi

# --- Go ---------------------------------------------------------------------------
# The tests build with the Go toolchain (1.26, cgo on): this machine kind ships
# it at /usr/local/go; elsewhere install it first.
GO=/usr/local/go/bin/go
command -v go >/dev/null 2>&1 && GO=$(command -v go)
"$GO" version >/dev/null 2>&1 || die "Go is not installed: install Go 1.26 (with gcc for cgo) first"

# --- kernel ----------------------------------------------------------------------
if ! setpriv --reuid="$TEST_USER" --regid="$TEST_USER" --init-groups --reset-env \
	unshare -Urm true 2>/dev/null; then
	log "warning: $TEST_USER cannot create a user namespace (kernel.unprivileged_userns_clone," \
		"user.max_user_namespaces or an AppArmor policy); rootless tests will fail"
fi

log "ok: $("$GO" version), debs in ${DEBS_DIR#"$REPO"/}: $(cd "$DEBS_DIR" && echo *.deb)"
