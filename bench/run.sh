#!/bin/bash
# bench/run.sh: xrun's benchmarks (issue 8). Run as root from a checkout after
# hack/setup.sh and `make build`:
#
#   sudo bench/run.sh            # everything; prints the table, writes bench/RESULTS.md
#   sudo BENCH_ONLY=start bench/run.sh
#
# Every measured tool runs as the unprivileged user $BENCH_USER (xruntest),
# against images served by one local registry started here, and every ratio
# is computed from baselines measured in this same run. A baseline that cannot
# be installed or run is reported in the table as such. See bench/README.md.
#
# Environment (all optional):
#   XRUN_BIN          xrun binary (default bin/xrun of this checkout)
#   BENCH_WORK        work dir, kept between runs for the image cache (/var/tmp/xrun-bench)
#   BENCH_USER        unprivileged user with a subuid range (xruntest)
#   BENCH_ONLY        comma list of sections: start,pull,build,make,runner,mem,breakdown,accel (all)
#                     (accel runs bench/accel/bench.sh, which writes bench/accel/RESULTS.md)
#   BENCH_RUNS        hyperfine runs for start times (30)
#   BENCH_COLD_RUNS   runs of each cold pull (5)
#   BENCH_BUILD_RUNS  pairs of emulated builds, floor and xrun in alternating order (2)
#   BENCH_BUILD_CONC  pairs of emulated builds, floor and xrun at the same time (3)
#   BENCH_HOST_BINFMT=1  also time podman on arm64, which needs a *host*
#                     binfmt_misc handler: registers one (as root, machine-wide)
#                     for the duration of that measurement. Off by default: it
#                     changes the host, which xrun's integration tests check.
#   BENCH_OUT         results file (bench/RESULTS.md)
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(dirname "$HERE")
XRUN_SRC=${XRUN_BIN:-$REPO/bin/xrun}
WORK=${BENCH_WORK:-/var/tmp/xrun-bench}
BUSER=${BENCH_USER:-xruntest}
ONLY=${BENCH_ONLY:-start,pull,build,make,runner,mem,breakdown,accel}
RUNS=${BENCH_RUNS:-30}
COLD_RUNS=${BENCH_COLD_RUNS:-5}
BUILD_RUNS=${BENCH_BUILD_RUNS:-2}
BUILD_CONC=${BENCH_BUILD_CONC:-3}
OUT=${BENCH_OUT:-$HERE/RESULTS.md}
QEMU=/usr/bin/qemu-aarch64-static
BINFMT_CONF=/usr/lib/binfmt.d/qemu-aarch64.conf
SUITE=bookworm
MIRROR=${BENCH_MIRROR:-http://deb.debian.org/debian}

log() { printf '== %s\n' "$*" >&2; }
die() { printf 'bench: %s\n' "$*" >&2; exit 1; }
want() { [[ ,$ONLY, == *,$1,* ]]; }

[ "$(id -u)" = 0 ] || die "run as root (tools are measured as the unprivileged user $BUSER)"
id "$BUSER" >/dev/null 2>&1 || die "user $BUSER does not exist: run hack/setup.sh"
[ -x "$XRUN_SRC" ] || die "$XRUN_SRC not found: run make build"
command -v hyperfine >/dev/null || die "hyperfine not installed: apt-get install hyperfine"

BIN=$WORK/bin          # root-owned, world-readable copies of what is measured
IMG=$WORK/img          # cached image trees and layer tarballs (root-owned)
U=$WORK/u              # $BUSER's home for this run: caches, podman storage
# xrun binds the current directory only outside system directories (/usr,
# /var, ...): the build and make projects live here instead.
SRCW=${BENCH_SRC:-/tmp/xrun-bench-src}
RES=$WORK/results      # hyperfine JSON/markdown, notes for the report
mkdir -p "$WORK" "$BIN" "$IMG"
chmod 755 "$WORK" "$BIN"
if [ -d "$U" ]; then
	# Files unpacked under sub-ids (podman) can only be removed from a
	# namespace of the user.
	setpriv --reuid="$BUSER" --regid="$BUSER" --init-groups env HOME="$U" \
		podman unshare rm -rf "$U" 2>/dev/null || true
	rm -rf "$U"
fi
rm -rf "$RES" "$SRCW"
mkdir -p "$U" "$RES" "$SRCW"
chown "$BUSER:" "$U" "$RES" "$SRCW"
: >"$RES/notes.tsv" # section<TAB>row<TAB>why it has no number
note() { printf '%s\t%s\t%s\n' "$1" "$2" "$3" >>"$RES/notes.tsv"; log "not measured: $2: $3"; }

# as_user CMD...: run CMD as $BUSER with a clean environment.
UENV=(HOME="$U" USER="$BUSER" LOGNAME="$BUSER" PATH="$BIN:/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin"
	XDG_RUNTIME_DIR="$U/run" XDG_CONFIG_HOME="$U/.config" XDG_DATA_HOME="$U/.local/share"
	XRUN_CACHE="$U/cache" LANG=C.UTF-8)
as_user() { (cd "$U" && setpriv --reuid="$BUSER" --regid="$BUSER" --init-groups env -i "${UENV[@]}" "$@"); }
as_user mkdir -p -m 700 "$U/run"

# ---------------------------------------------------------------- binaries
install -m 755 "$XRUN_SRC" "$BIN/xrun"
install -m 755 "$HERE/floor.sh" "$BIN/floor.sh"
gcc -O2 -static -o "$BIN/floor" "$HERE/floor.c" || die "cannot build bench/floor.c (gcc, static libc)"
CRANE=$(command -v crane || true)
if [ -z "$CRANE" ]; then
	[ -x "$WORK/gobin/crane" ] || GOBIN=$WORK/gobin go install github.com/google/go-containerregistry/cmd/crane@v0.22.1
	CRANE=$WORK/gobin/crane
fi
install -m 755 "$CRANE" "$BIN/crane"
MAGIC=$(cut -d: -f5 "$BINFMT_CONF")
MASK=$(cut -d: -f6 "$BINFMT_CONF")

# ---------------------------------------------------------------- registry
REGPID=
HOSTBINFMT=
HOSTTHP=
cleanup() {
	[ -n "$REGPID" ] && kill "$REGPID" 2>/dev/null || true
	[ -n "$HOSTTHP" ] && echo "$HOSTTHP" >/sys/kernel/mm/transparent_hugepage/shmem_enabled || true
	[ -n "$HOSTBINFMT" ] && [ -e "$HOSTBINFMT" ] && echo -1 >"$HOSTBINFMT" || true
}
trap cleanup EXIT
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
REG=127.0.0.1:$PORT
rm -rf "$WORK/reg"
mkdir -p "$WORK/reg"
cat >"$WORK/reg/config.yml" <<EOF
version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $WORK/reg/data
http:
  addr: $REG
  secret: xrun-bench
EOF
docker-registry serve "$WORK/reg/config.yml" >"$WORK/reg/log" 2>&1 &
REGPID=$!
for _ in $(seq 100); do curl -fs "http://$REG/v2/" >/dev/null && break; sleep 0.1; done
curl -fs "http://$REG/v2/" >/dev/null || die "registry did not start: $(tail -3 "$WORK/reg/log")"
log "registry on $REG"

# ---------------------------------------------------------------- images
# 1. xrun-test/busybox: the integration tests' 6-platform busybox image.
(cd "$REPO" && go run ./integration/testimage/push -registry "$REG" >/dev/null) || die "push of the test images failed"
BUSYBOX=$REG/xrun-test/busybox:latest
GLIBC=$REG/xrun-test/glibc:latest # busybox + Debian's arm64/riscv64 glibc (from the cross packages)

# debian_tree NAME VARIANT: a debootstrap'd arm64 tree in $IMG/NAME (cached).
debian_tree() {
	local name=$1 variant=$2 dir=$IMG/$1
	[ -e "$dir/.bench-done" ] && return 0
	rm -rf "$dir"
	command -v debootstrap >/dev/null || die "debootstrap not installed"
	log "debootstrap --foreign $variant $SUITE arm64 -> $dir"
	debootstrap --arch=arm64 --foreign --variant="$variant" --cache-dir="$IMG/debs" "$SUITE" "$dir" "$MIRROR" >"$IMG/$name.log" 2>&1 ||
		die "debootstrap failed: $(tail -3 "$IMG/$name.log")"
	if [ "$name" = buildd ]; then
		# gcc must run: finish the installation under qemu.
		log "debootstrap --second-stage under qemu (several minutes)"
		"$HERE/second-stage.sh" "$dir" >>"$IMG/$name.log" 2>&1 || die "second stage failed: $(tail -3 "$IMG/$name.log")"
	fi
	touch "$dir/.bench-done"
}
# debian_image NAME VARIANT: push $IMG/NAME as $REG/bench/debian-NAME:arm64 in
# two layers (usr/, everything else), as a real image of that size would be.
debian_image() {
	local name=$1 dir=$IMG/$1 ref=$REG/bench/debian-$1:arm64
	debian_tree "$@"
	if [ ! -e "$IMG/$name-usr.tar.gz" ]; then
		log "layers of $name"
		local ex=(--exclude=./.bench-done --exclude='./dev/*' --exclude='./proc/*' --exclude='./sys/*'
			--exclude=./debootstrap --exclude='./var/cache/apt/archives/*.deb')
		tar -C "$dir" --numeric-owner "${ex[@]}" --exclude=./usr -czf "$IMG/$name-rest.tar.gz" . 
		tar -C "$dir" --numeric-owner -czf "$IMG/$name-usr.tar.gz" ./usr
	fi
	"$BIN/crane" append --platform linux/arm64 -f "$IMG/$name-usr.tar.gz" -f "$IMG/$name-rest.tar.gz" -t "$ref.tmp" >/dev/null
	"$BIN/crane" mutate --set-platform linux/arm64 --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin --cmd /bin/bash -t "$ref" "$ref.tmp" >/dev/null
	echo "$ref"
}
if want pull || want build; then
	MINBASE=$(debian_image minbase minbase)
fi
if want build; then
	BUILDD=$(debian_image buildd buildd)
fi

# rootfs_of REF PLATFORM: xrun's unpacked rootfs of REF (pulling it first).
rootfs_of() {
	as_user xrun pull --platform "$2" "$1" >/dev/null || die "xrun pull $1 ($2) failed"
	local d
	d=$("$BIN/crane" digest --platform "$2" "$1")
	echo "$U/cache/rootfs/${d#sha256:}"
}

# timed FILE CMD...: run CMD as $BUSER; its wall time in seconds (or "failed")
# goes to FILE.
timed() {
	local f=$1 t0
	shift
	t0=$EPOCHREALTIME
	if as_user "$@" >/dev/null 2>&1; then
		python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.3f}')" "$t0" "$EPOCHREALTIME" >"$f"
	else
		echo failed >"$f"
	fi
}

# hf NAME [hyperfine args...]: hyperfine as $BUSER, results in $RES/NAME.{json,md}.
hf() {
	local name=$1
	shift
	as_user hyperfine --style basic --export-json "$RES/$name.json" --export-markdown "$RES/$name.md" "$@" >&2
}

# ---------------------------------------------------------------- machine
{
	echo "cpu	$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
	echo "nproc	$(nproc)"
	echo "memory	$(free -h | awk '/^Mem:/{print $2}')"
	echo "kernel	$(uname -r)"
	echo "os	$(. /etc/os-release && echo "$PRETTY_NAME")"
	echo "xrun	$("$BIN/xrun" --version 2>/dev/null | head -1) ($(stat -c %s "$BIN/xrun") bytes)"
	echo "qemu	$($QEMU --version | head -1)"
	for t in hyperfine podman ch-run skopeo umoci; do
		command -v $t >/dev/null && echo "$t	$($t --version 2>&1 | head -1)"
	done
	echo "date	$(date -u +%Y-%m-%dT%H:%MZ)"
	echo "load average at start	$(cut -d' ' -f1-3 /proc/loadavg)"
} >"$RES/machine.tsv"

# ---------------------------------------------------------------- podman
PODMAN_OK=
if command -v podman >/dev/null; then
	mkdir -p "$U/.config/containers"
	# No systemd here: cgroupfs and file events; runc, because Debian's crun
	# refuses a hybrid cgroup v1/v2 host (runc then runs without cgroups).
	cat >"$U/.config/containers/containers.conf" <<'EOF'
[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
runtime = "runc"
EOF
	chown -R "$BUSER:" "$U/.config"
	if as_user podman pull -q --tls-verify=false --platform linux/amd64 "$BUSYBOX" >"$RES/podman.log" 2>&1 &&
		as_user podman run --rm --network=host --pull=never --platform linux/amd64 "$BUSYBOX" true >>"$RES/podman.log" 2>&1; then
		PODMAN_OK=1
	else
		PODMAN_WHY="podman run fails as $BUSER: $(tail -1 "$RES/podman.log")"
	fi
else
	PODMAN_WHY="podman not installed (apt-get install podman)"
fi

# ---------------------------------------------------------------- 1. warm start
if want start; then
	log "warm start"
	ARM=$(rootfs_of "$BUSYBOX" linux/arm64)
	NAT=$(rootfs_of "$BUSYBOX" linux/amd64)
	FLOOR_ARM="floor -e $QEMU -m '$MAGIC' -k '$MASK' $ARM true"
	FLOORSH_ARM="env FLOOR_EMU=$QEMU FLOOR_MAGIC='$MAGIC' FLOOR_MASK='$MASK' floor.sh $ARM true"
	for arch in arm64 native; do
		if [ $arch = arm64 ]; then
			cmds=(-n floor "$FLOOR_ARM" -n floor.sh "$FLOORSH_ARM" -n xrun "xrun --platform linux/arm64 $BUSYBOX -- true")
		else
			cmds=(-n floor "floor $NAT true" -n floor.sh "floor.sh $NAT true" -n xrun "xrun --platform linux/amd64 $BUSYBOX -- true")
			if command -v ch-run >/dev/null; then
				cmds+=(-n ch-run "ch-run $NAT -- true")
			fi
		fi
		if [ -n "$PODMAN_OK" ]; then
			if [ $arch = native ]; then
				cmds+=(-n podman "podman run --rm --network=host --pull=never --platform linux/amd64 $BUSYBOX true")
			elif [ "${BENCH_HOST_BINFMT:-}" = 1 ]; then
				[ -e /proc/sys/fs/binfmt_misc/register ] || mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
				printf ':xrun-bench-aarch64:M::%s:%s:%s:F' "$MAGIC" "$MASK" "$QEMU" >/proc/sys/fs/binfmt_misc/register
				HOSTBINFMT=/proc/sys/fs/binfmt_misc/xrun-bench-aarch64
				as_user podman pull -q --tls-verify=false --platform linux/arm64 "$BUSYBOX" >/dev/null
				cmds+=(-n podman "podman run --rm --network=host --pull=never --platform linux/arm64 $BUSYBOX true")
			else
				note start-arm64 podman "needs a host-wide binfmt_misc handler (root; BENCH_HOST_BINFMT=1 registers one)"
			fi
		else
			note start-$arch podman "$PODMAN_WHY"
		fi
		hf start-$arch -N --warmup 5 --runs "$RUNS" "${cmds[@]}"
		if [ -n "$HOSTBINFMT" ]; then echo -1 >"$HOSTBINFMT"; HOSTBINFMT=; fi
	done
	# charliecloud registers nothing: time it, on arm64, inside a user
	# namespace that already holds a handler (as a host handler would be),
	# so that the registration is not counted.
	if command -v ch-run >/dev/null; then
		as_user unshare -Urm sh -c '
			mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc &&
			printf ":bench:M::%s:%s:%s:FP" "$1" "$2" "$3" >/proc/sys/fs/binfmt_misc/register &&
			shift 3 && exec "$@"' sh "$MAGIC" "$MASK" "$QEMU" \
			hyperfine --style basic -N --warmup 5 --runs "$RUNS" --export-json "$RES/start-arm64-ch.json" \
			-n ch-run "ch-run $ARM -- true" >&2 ||
			note start-arm64 ch-run "ch-run in a user namespace with a binfmt handler failed"
	else
		note start ch-run "charliecloud not installed (apt-get install charliecloud)"
	fi
fi

# ---------------------------------------------------------------- 2. cold pull + unpack
if want pull; then
	log "cold pull + unpack of $MINBASE"
	P=$U/pull
	# Every prepare ends with sync: one tool's dirty pages would otherwise be
	# written back during the next one's measurement (xrun's syncfs waits for
	# all of them). "then sync" rows time the data reaching the disk, which is
	# what xrun's pull guarantees (fsync'd blobs, syncfs'd rootfs).
	cmds=(-n "xrun pull" --prepare "rm -rf $P/xrun && sync" "env XRUN_CACHE=$P/xrun xrun pull --platform linux/arm64 $MINBASE")
	if command -v skopeo >/dev/null && command -v umoci >/dev/null; then
		su="skopeo copy -q --src-tls-verify=false --override-arch arm64 docker://$MINBASE oci:$P/oci:bench && umoci raw unpack --rootless --image $P/oci:bench $P/umoci"
		cmds+=(-n "skopeo copy + umoci unpack" --prepare "rm -rf $P/oci $P/umoci && sync" "$su"
			-n "skopeo copy + umoci unpack, then sync" --prepare "rm -rf $P/oci $P/umoci && sync" "$su && sync")
	else
		note pull "skopeo copy + umoci unpack" "skopeo or umoci not installed (apt-get install skopeo umoci)"
	fi
	if [ -n "$PODMAN_OK" ]; then
		cmds+=(-n "podman pull" --prepare "podman rmi -a -f >/dev/null 2>&1; sync"
			"podman pull -q --tls-verify=false --platform linux/arm64 $MINBASE >/dev/null")
	else
		note pull "podman pull" "$PODMAN_WHY"
	fi
	cmds+=(-n "crane export | tar" --prepare "rm -rf $P/crane && mkdir -p $P/crane && sync"
		"crane export --platform linux/arm64 $MINBASE - | tar -x -C $P/crane")
	as_user mkdir -p "$P"
	hf pull --runs "$COLD_RUNS" "${cmds[@]}"
	as_user rm -rf "$P"

	# The same on a tmpfs: on this kind of VM disk writeback dominates and
	# varies by seconds between runs; in memory the work itself is compared
	# (download, digests, decompression, unpack).
	T=$U/pull-tmpfs
	as_user mkdir -p "$T"
	mount -t tmpfs -o "size=2g,mode=0755,uid=$(id -u "$BUSER"),gid=$(id -g "$BUSER")" tmpfs "$T"
	tcmds=(-n "xrun pull" --prepare "rm -rf $T/xrun" "env XRUN_CACHE=$T/xrun xrun pull --platform linux/arm64 $MINBASE")
	if command -v skopeo >/dev/null && command -v umoci >/dev/null; then
		tcmds+=(-n "skopeo copy + umoci unpack" --prepare "rm -rf $T/oci $T/umoci"
			"skopeo copy -q --src-tls-verify=false --override-arch arm64 docker://$MINBASE oci:$T/oci:bench && umoci raw unpack --rootless --image $T/oci:bench $T/umoci")
	fi
	hf pull-tmpfs --runs 8 --warmup 1 "${tcmds[@]}"
	umount "$T"
fi

# ---------------------------------------------------------------- 3. emulated build
if want build; then
	log "emulated build of zlib in $BUILDD"
	ZSRC=$(ls "$IMG"/src/zlib_*.orig.tar.* 2>/dev/null | head -1 || true)
	if [ -z "$ZSRC" ]; then
		# Debian's zlib source (the mirror of sources.list, deb-src).
		mkdir -p "$IMG/aptsrc/lists/partial" "$IMG/src"
		echo "deb-src $MIRROR $SUITE main" >"$IMG/aptsrc/sources.list"
		O=(-o "Dir::Etc::SourceList=$IMG/aptsrc/sources.list" -o Dir::Etc::SourceParts=/nonexistent -o "Dir::State::Lists=$IMG/aptsrc/lists")
		apt-get -q "${O[@]}" update >/dev/null 2>&1 || true
		(cd "$IMG/src" && apt-get -q "${O[@]}" source --download-only zlib >/dev/null 2>&1) || true
		ZSRC=$(ls "$IMG"/src/zlib_*.orig.tar.* 2>/dev/null | head -1 || true)
	fi
	if [ -z "$ZSRC" ]; then
		note build "zlib" "could not download Debian's zlib source"
	else
		BROOT=$(rootfs_of "$BUILDD" linux/arm64)
		W=$SRCW/build
		as_user mkdir -p "$W"
		prep="rm -rf $W/z && mkdir $W/z && tar -xf $ZSRC -C $W/z --strip-components=1"
		job='./configure >/dev/null && make -s >/dev/null 2>&1 && make -s check >/dev/null 2>&1 && test -x example'
		# A first run checks the workload itself and warms the page cache.
		as_user sh -c "$prep && cd $W/z && xrun --platform linux/arm64 $BUILDD -- sh -c '$job'" ||
			die "zlib build under xrun failed"
		# Builds last minutes and this machine drifts by several percent over
		# that time: measure in pairs, alternating which goes first, and
		# report the median of the per-pair ratios besides the medians.
		fl=(-n floor --prepare "$prep" "floor -e $QEMU -m '$MAGIC' -k '$MASK' -b /dev:/dev -b $W/z:/mnt -t /tmp -w /mnt $BROOT sh -c '$job'")
		xr=(-n xrun --prepare "$prep" "cd $W/z && xrun --platform linux/arm64 $BUILDD -- sh -c '$job'")
		for i in $(seq "$BUILD_RUNS"); do
			if [ $((i % 2)) = 1 ]; then
				hf "build-$i" --runs 1 "${fl[@]}" "${xr[@]}"
			else
				hf "build-$i" --runs 1 "${xr[@]}" "${fl[@]}"
			fi
		done
		# The same pairs run at the same time (two mostly serial builds on
		# this 2-vCPU machine): both see the same machine, whatever its
		# neighbours do during those minutes.
		for i in $(seq "$BUILD_CONC"); do
			as_user sh -c "rm -rf $W/cf $W/cx && mkdir $W/cf $W/cx && tar -xf $ZSRC -C $W/cf --strip-components=1 && tar -xf $ZSRC -C $W/cx --strip-components=1"
			timed "$RES/conc-floor" floor -e "$QEMU" -m "$MAGIC" -k "$MASK" -b /dev:/dev -b "$W/cf:/mnt" -t /tmp -w /mnt "$BROOT" sh -c "$job" &
			fpid=$!
			timed "$RES/conc-xrun" sh -c "cd $W/cx && xrun --platform linux/arm64 $BUILDD -- sh -c '$job'" &
			wait "$fpid" $! # not a bare wait: the registry is a background job too
			printf '%s\t%s\n' "$(cat "$RES/conc-floor")" "$(cat "$RES/conc-xrun")" >>"$RES/build-conc.tsv"
		done
		rm -f "$RES/conc-floor" "$RES/conc-xrun"
		echo "zlib	$(basename "$ZSRC")" >>"$RES/machine.tsv"
	fi
fi

# ---------------------------------------------------------------- 4. make -j8
if want make; then
	log "make -j8, every recipe in a container"
	M=$SRCW/mk
	ARM=${ARM:-$(rootfs_of "$BUSYBOX" linux/arm64)}
	as_user mkdir -p "$M"
	# 32 recipes, each one emulated arm64 command.
	{
		echo 'all: $(addprefix t,$(shell seq 32))'
		echo 't%:'
		printf '\t@$(RUN) busybox sha256sum /bin/busybox >/dev/null\n'
		echo '.PHONY: all'
	} >"$M/Makefile"
	chown "$BUSER:" "$M/Makefile"
	X="xrun --platform linux/arm64 $BUSYBOX --"
	# One --prepare per command (hyperfine applies a single one to all), one
	# global --warmup: the cold case empties its own cache before every run.
	hf make --runs 5 --warmup 1 \
		--prepare "rm -rf $M/cache" --prepare true --prepare true \
		-n "xrun, cold" "env XRUN_CACHE=$M/cache make -s -j8 -C $M RUN='$X'" \
		-n "xrun, warm" "make -s -j8 -C $M RUN='$X'" \
		-n "floor" "make -s -j8 -C $M RUN=\"floor -e $QEMU -m '$MAGIC' -k '$MASK' $ARM\""
	as_user rm -rf "$M/cache"
fi

# ---------------------------------------------------------------- 4b. runner
# xrun as the emulator of build systems: the cost of one call, which go test
# (one binary per package) and ctest (one per test) pay every time. The same
# programs run under bare qemu-user in the same run are the baseline.
if want runner; then
	log "runner mode: go test -exec and ctest, xrun vs bare qemu-user"
	R=$SRCW/runner
	as_user mkdir -p "$R/mod" "$R/bins" "$R/ctest"
	# 20 Go packages with a trivial test each, cross-compiled once for arm64.
	as_user sh -c "printf 'module example.com/m\n\ngo 1.22\n' > $R/mod/go.mod"
	for i in $(seq -w 1 20); do
		as_user mkdir -p "$R/mod/p$i"
		as_user sh -c "printf 'package p$i\n\nimport \"testing\"\n\nfunc TestOK(t *testing.T) {}\n' > $R/mod/p$i/p_test.go"
	done
	GO=$(command -v go || echo /usr/local/go/bin/go)
	as_user env -C "$R/mod" GOARCH=arm64 CGO_ENABLED=0 GOTOOLCHAIN=local GOFLAGS= "$GO" test -c -o "$R/bins/" ./... >/dev/null ||
		note runner go "go test -c failed"
	# 50 ctest tests of one dynamically linked C program, built by cmake.
	{
		echo 'cmake_minimum_required(VERSION 3.20)'
		echo 'project(r C)'
		echo 'enable_testing()'
		echo 'add_executable(t t.c)'
		for i in $(seq 1 50); do echo "add_test(NAME t$i COMMAND t $i)"; done
	} >"$R/ctest/CMakeLists.txt"
	echo 'int main(int c, char **v) { (void)v; return c == 2 ? 0 : 1; }' >"$R/ctest/t.c"
	chown -R "$BUSER:" "$R/ctest"
	as_user xrun pull --platform linux/arm64 "$GLIBC" >/dev/null
	as_user xrun pull --platform linux/arm64 "$BUSYBOX" >/dev/null
	emu_build() { # NAME EMULATOR...: a build dir of the ctest project with that emulator
		local name=$1
		shift
		as_user cmake -S "$R/ctest" -B "$R/ctest/$name" -DCMAKE_SYSTEM_NAME=Linux -DCMAKE_SYSTEM_PROCESSOR=aarch64 \
			-DCMAKE_C_COMPILER=aarch64-linux-gnu-gcc "-DCMAKE_CROSSCOMPILING_EMULATOR=$*" >/dev/null &&
			as_user cmake --build "$R/ctest/$name" >/dev/null
	}
	if ! command -v cmake >/dev/null || ! command -v aarch64-linux-gnu-gcc >/dev/null; then
		note runner ctest "cmake or aarch64-linux-gnu-gcc missing (hack/setup.sh installs them)"
	elif emu_build xrun "xrun;--platform;linux/arm64;$GLIBC;--" &&
		emu_build qemu "$QEMU;-L;/usr/aarch64-linux-gnu"; then
		CT=1
	else
		note runner ctest "configuring the ctest project failed"
	fi
	GOLOOP='for b in '$R'/bins/*.test; do $E $b -test.run=. >/dev/null || exit 1; done'
	hf runner --warmup 1 --runs 5 \
		-n "go test binaries, 20 packages: bare qemu" "E='$QEMU' sh -c '$GOLOOP'" \
		-n "go test binaries, 20 packages: xrun" "cd $R/mod && E='xrun --platform linux/arm64 $BUSYBOX --' sh -c '$GOLOOP'" \
		${CT:+-n "ctest, 50 tests: bare qemu -L" "ctest --test-dir $R/ctest/qemu -Q"} \
		${CT:+-n "ctest, 50 tests: xrun" "ctest --test-dir $R/ctest/xrun -Q"} \
		${CT:+-n "ctest -j8, 50 tests: bare qemu -L" "ctest --test-dir $R/ctest/qemu -Q -j8"} \
		${CT:+-n "ctest -j8, 50 tests: xrun" "ctest --test-dir $R/ctest/xrun -Q -j8"}
fi

# ---------------------------------------------------------------- 5. memory
if want mem; then
	log "peak memory"
	ARM=${ARM:-$(rootfs_of "$BUSYBOX" linux/arm64)}
	NAT=${NAT:-$(rootfs_of "$BUSYBOX" linux/amd64)}
	mem() { # NAME CMD...: max RSS (KiB) by GNU time, median of 5
		local name=$1
		shift
		for _ in 1 2 3 4 5; do
			as_user /usr/bin/time -f %M -o "$RES/mem.tmp" "$@" >/dev/null 2>&1 || true
			cat "$RES/mem.tmp"
		done | sort -n | sed -n 3p | sed "s|^|$name	|" >>"$RES/mem.tsv"
	}
	: >"$RES/mem.tsv"
	if [ -x /usr/bin/time ]; then
		mem "xrun, warm, arm64 true" xrun --platform linux/arm64 "$BUSYBOX" -- true
		mem "xrun, warm, native true" xrun --platform linux/amd64 "$BUSYBOX" -- true
		mem "floor, arm64 true" floor -e "$QEMU" -m "$MAGIC" -k "$MASK" "$ARM" true
		mem "floor, native true" floor "$NAT" true
		if [ -n "${MINBASE:-}" ]; then
			mem "xrun pull (cold), Debian arm64" sh -c "rm -rf $U/memcache && XRUN_CACHE=$U/memcache exec xrun pull --platform linux/arm64 $MINBASE"
			as_user rm -rf "$U/memcache"
		fi
	else
		note mem "all" "/usr/bin/time not installed (apt-get install time)"
	fi
fi

# ---------------------------------------------------------------- 6. start-up breakdown
# build_noseal OUT: xrun built with libcontainer's exeseal.IsSelfExeCloned()
# gate forced true, so "runc init" is /proc/self/exe itself (no memfd copy).
build_noseal() {
	local out=$1 mod t
	mod=$(cd "$REPO" && go list -m -f '{{.Dir}}' github.com/opencontainers/runc) || return 1
	t=$(mktemp -d)
	cp -r "$mod" "$t/runc" && chmod -R u+w "$t/runc" || return 1
	sed -i 's/if exeseal.IsSelfExeCloned() {/if true || exeseal.IsSelfExeCloned() {/' "$t/runc/libcontainer/container_linux.go"
	grep -q 'if true || exeseal.IsSelfExeCloned()' "$t/runc/libcontainer/container_linux.go" || { rm -rf "$t"; return 1; }
	cp "$REPO/go.mod" "$REPO/go.sum" "$t/"
	(cd "$REPO" && go mod edit -modfile="$t/go.mod" -replace "github.com/opencontainers/runc=$t/runc" &&
		GOFLAGS="-modfile=$t/go.mod" make -s build BIN_OUT="$out") >&2
	local rc=$?
	rm -rf "$t"
	return $rc
}
if want breakdown; then
	log "start-up breakdown"
	ARM=${ARM:-$(rootfs_of "$BUSYBOX" linux/arm64)}
	NAT=${NAT:-$(rootfs_of "$BUSYBOX" linux/amd64)}
	as_user xrun --platform linux/arm64 "$BUSYBOX" -- true
	# strace runs as root and drops to $BUSER itself (-u): a traced setuid
	# newuidmap would lose its privileges.
	(cd "$U" && strace -u "$BUSER" -f -ttt -T -o "$RES/strace.txt" \
		-e trace=execve,clone,clone3,unshare,setns,mount,pivot_root,memfd_create,sendfile,copy_file_range,openat,write,exit_group,wait4,waitid \
		env -i "${UENV[@]}" "$BIN/xrun" --platform linux/arm64 "$BUSYBOX" -- true >/dev/null 2>&1) ||
		note breakdown strace "strace of a warm run failed"
	# Experiments without strace: the Go start of the 14 MB binary, and the
	# same runs as a user without a subuid range (no newuidmap/newgidmap).
	hf exp -N --warmup 5 --runs "$RUNS" \
		-n "xrun --version (Go runtime + package inits, no container)" "xrun --version" \
		-n "xrun native -- true ($BUSER, 65536 ids via newuidmap)" "xrun --platform linux/amd64 $BUSYBOX -- true" \
		-n "xrun arm64 -- true ($BUSER, 65536 ids via newuidmap)" "xrun --platform linux/arm64 $BUSYBOX -- true" \
		-n "qemu-aarch64-static busybox true (no container)" "$QEMU $ARM/bin/busybox true"
	exps=("$RES/exp.json")
	# What libcontainer's copy of the binary into a sealed memfd costs on
	# every run: the same xrun built against a copy of libcontainer whose
	# exeseal gate is patched out. An experiment only: that copy is what keeps
	# a container from rewriting a binary the user can write (CVE-2019-5736).
	if build_noseal "$BIN/xrun-noseal"; then
		hf exp-noseal -N --warmup 5 --runs "$RUNS" \
			-n "xrun native -- true (as shipped)" "xrun --platform linux/amd64 $BUSYBOX -- true" \
			-n "xrun native -- true (libcontainer patched: no memfd copy; experiment)" "xrun-noseal --platform linux/amd64 $BUSYBOX -- true"
		exps+=("$RES/exp-noseal.json")
	else
		note breakdown noseal "could not build the patched-libcontainer variant (go, module cache)"
	fi
	# The same copy when shared memory may use transparent huge pages (a
	# machine-wide setting: changed for this one measurement, then restored;
	# `xrun doctor` tells users about it).
	THP=/sys/kernel/mm/transparent_hugepage/shmem_enabled
	thp_was=$(sed -n 's/.*\[\(.*\)\].*/\1/p' "$THP" 2>/dev/null || true)
	if [ -n "$thp_was" ] && [ "$thp_was" != within_size ] && echo within_size >"$THP" 2>/dev/null; then
		HOSTTHP=$thp_was
		hf exp-thp -N --warmup 5 --runs "$RUNS" \
			-n "xrun native -- true (shmem huge pages within_size, was $thp_was; separate run)" "xrun --platform linux/amd64 $BUSYBOX -- true"
		echo "$thp_was" >"$THP" && HOSTTHP=
		exps+=("$RES/exp-thp.json")
	fi
	if id xrunnosub >/dev/null 2>&1; then
		NS=$WORK/nosub
		rm -rf "$NS"; mkdir -p "$NS"; chown xrunnosub: "$NS"
		nosub() { (cd "$NS" && setpriv --reuid=xrunnosub --regid=xrunnosub --init-groups env -i HOME="$NS" PATH="$BIN:/usr/bin:/bin" XRUN_CACHE="$NS/cache" "$@"); }
		nosub xrun pull --platform linux/amd64 "$BUSYBOX" >/dev/null && nosub xrun pull --platform linux/arm64 "$BUSYBOX" >/dev/null
		nosub hyperfine --style basic -N --warmup 5 --runs "$RUNS" --export-json "$NS/exp-nosub.json" \
			-n "xrun native -- true (xrunnosub: one id, no newuidmap)" "xrun --platform linux/amd64 $BUSYBOX -- true" \
			-n "xrun arm64 -- true (xrunnosub: one id, no newuidmap)" "xrun --platform linux/arm64 $BUSYBOX -- true" >&2 &&
			cp "$NS/exp-nosub.json" "$RES/" && exps+=("$RES/exp-nosub.json")
		rm -rf "$NS"
	fi
	python3 "$HERE/breakdown.py" "$RES/strace.txt" "${exps[@]}" >"$RES/breakdown.md" || note breakdown all "breakdown.py failed"
fi

# ---------------------------------------------------------------- 7. --accel
# zlib native vs accelerated vs emulated, its own script and results file.
if want accel; then
	log "--accel: bench/accel/bench.sh"
	XRUN_BIN=$XRUN_SRC BENCH_USER=$BUSER "$HERE/accel/bench.sh" >&2 || note accel all "bench/accel/bench.sh failed"
fi

python3 "$HERE/report.py" "$RES" >"$OUT"
cat "$OUT"
log "wrote $OUT (raw results in $RES)"
