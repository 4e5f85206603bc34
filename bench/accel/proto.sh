#!/bin/bash
# bench/accel/proto.sh: the --accel prototype of issue 15, with its measurements
# (bench/accel/NOTES.md has the figures and the conclusions). Run as root on a
# machine prepared by hack/setup.sh, after `make build`, from a checkout:
#
#   sudo bench/accel/proto.sh              # everything (20-30 minutes on 2 loaded vCPUs)
#   sudo ACCEL_ONLY=probe bench/accel/proto.sh   # sections: setup,probe,ssp,zlib,drv
#
# Every xrun run is as the unprivileged user xruntest, in one named arm64
# container (accel-proto) where apt installed gcc g++ libc6-dev make.
# "acc" runs bind a native toolchain tree read-only into that container:
#   /.xrun-accel                      the tree (cc1, cc1plus, collect2, lto*, as, ld.bfd,
#                                     the x86-64 libraries, the image's own cc1/cc1plus in emu/)
#   /lib64/ld-linux-x86-64.so.2       the x86-64 loader (its PT_INTERP path; no clash with arm64)
#   /usr/lib/x86_64-linux-gnu         the libraries (a default path of that loader)
#   /usr/lib/gcc/aarch64-linux-gnu/12/{cc1,cc1plus}   cc1wrap (static x86-64)
#   /usr/lib/gcc/aarch64-linux-gnu/12/{collect2,lto-wrapper,lto1,liblto_plugin.so}
#   /usr/bin/aarch64-linux-gnu-{as,ld.bfd}            the cross binutils (same 2.40-2)
# The tree is made here from the host's Debian 12 cross packages (installed:
# gcc-12-aarch64-linux-gnu; g++-12-aarch64-linux-gnu is only downloaded and
# unpacked): a prototype shortcut, see NOTES.md for how pkg/accel should get it.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
W=${ACCEL_WORK:-/var/tmp/xrun-accel}     # root-owned: registry, tree, sources
U=${ACCEL_USERDIR:-/tmp/xacc}            # xruntest's: cache, the bound work dir
ONLY=${ACCEL_ONLY:-setup,probe,ssp,zlib,drv}
PORT=${ACCEL_PORT:-5517}
IMG=127.0.0.1:$PORT/xrun-test/debian:bookworm-arm64
BUSER=xruntest
G=/usr/lib/gcc/aarch64-linux-gnu/12
T=$W/tree
want() { [[ ,$ONLY, == *,$1,* ]]; }
log() { printf '== %s\n' "$*" >&2; }
[ "$(id -u)" = 0 ] || { echo "run as root" >&2; exit 1; }

mkdir -p "$W" "$U/w" && chmod 755 "$W"
chown "$BUSER:" "$U" "$U/w"
install -m 755 "$REPO/bin/xrun" "$W/xrun"
asu() { (cd "$U/w" && setpriv --reuid=$BUSER --regid=$BUSER --init-groups env -i HOME="$U/home" USER=$BUSER \
	LOGNAME=$BUSER PATH="$W:/usr/bin:/bin" XDG_RUNTIME_DIR="$U/run" XRUN_CACHE="$U/cache" LANG=C.UTF-8 "$@"); }
asu mkdir -p -m 700 "$U/home" "$U/run"
# Wall and CPU time (user+sys of xrun and everything under it: less load-dependent than wall time).
XT=(/usr/bin/time -f "  time: %e s wall, %U s user, %S s sys")
# xr emu|acc|accssp CMD: CMD (a shell line) in the container, emulated or accelerated.
xr() {
	local mode=$1 v=()
	shift
	if [ "$mode" != emu ]; then
		v=(-v "$T:/.xrun-accel:ro" -v "$T/lib64/ld-linux-x86-64.so.2:/lib64/ld-linux-x86-64.so.2:ro"
			-v "$T/lib:/usr/lib/x86_64-linux-gnu:ro" -v "$T/cc1wrap:$G/cc1:ro" -v "$T/cc1wrap:$G/cc1plus:ro"
			-v "$T/bin/as:/usr/bin/aarch64-linux-gnu-as:ro" -v "$T/bin/ld.bfd:/usr/bin/aarch64-linux-gnu-ld.bfd:ro")
		for f in collect2 lto-wrapper lto1 liblto_plugin.so; do v+=(-v "$T/gcc/$f:$G/$f:ro"); done
	fi
	[ "$mode" = accssp ] && v+=(-e XRUN_ACCEL_SSP_NATIVE=1)
	asu "${XT[@]}" xrun --platform linux/arm64 --name accel-proto -e DEBIAN_FRONTEND=noninteractive "${v[@]}" "$IMG" -- sh -c "$*"
}

# timed LABEL CMD...: run CMD (a function is fine), then print LABEL and its wall time.
timed() {
	local label=$1 t0 rc=0
	shift
	t0=$(date +%s.%N)
	"$@" || rc=$?
	echo "$label: $(echo "$(date +%s.%N) - $t0" | bc) s (exit $rc)"
	return $rc
}

# ------------------------------------------------------------ registry
mkdir -p "$W/reg"
cat >"$W/reg/config.yml" <<EOR
version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $W/reg/data
http:
  addr: 127.0.0.1:$PORT
  secret: xrun-accel
EOR
if ! curl -fs "http://127.0.0.1:$PORT/v2/" >/dev/null; then
	docker-registry serve "$W/reg/config.yml" >"$W/reg/log" 2>&1 &
	REGPID=$!
	trap 'kill $REGPID' EXIT
	for _ in $(seq 100); do curl -fs "http://127.0.0.1:$PORT/v2/" >/dev/null && break; sleep 0.1; done
fi

if want setup; then
	log "push the Debian arm64 image (hack/mkdebian.sh's tarball)"
	(cd "$REPO" && go run ./bench/accel/pushdebian "$IMG")
	log "apt-get install gcc g++ libc6-dev make in container accel-proto (emulated)"
	asu xrun rm accel-proto 2>/dev/null || true
	t0=$SECONDS
	xr emu 'apt-get -o Acquire::Retries=3 update; apt-get -o Acquire::Retries=3 install -y --no-install-recommends gcc g++ libc6-dev make' >"$W/install.log" 2>&1
	echo "install: $((SECONDS - t0)) s"
	log "versions and changelogs of the image's toolchain"
	xr emu "dpkg-query -W -f='\${Package} \${Version}\n' gcc-12 cpp-12 g++-12 binutils-aarch64-linux-gnu libc6-dev
		mkdir -p $U/w/cl $U/w/emu-bin; cp /usr/share/doc/gcc-12/changelog.Debian.gz $U/w/cl/img-gcc-12.gz
		cp /usr/share/doc/binutils-aarch64-linux-gnu/changelog.Debian.gz $U/w/cl/img-binutils.gz
		cp $G/cc1 $G/cc1plus $U/w/emu-bin/" | tee "$W/image-versions.txt"
	dpkg-query -W -f='${Package} ${Version}\n' gcc-12-aarch64-linux-gnu cpp-12-aarch64-linux-gnu binutils-aarch64-linux-gnu | tee "$W/host-versions.txt"
	diff <(zcat "$U/w/cl/img-gcc-12.gz") <(zcat /usr/share/doc/gcc-12-aarch64-linux-gnu/changelog.Debian.gz) >"$W/changelog-gcc.diff" || true
	cmp "$U/w/cl/img-binutils.gz" /usr/share/doc/binutils-aarch64-linux-gnu/changelog.Debian.gz && echo "binutils changelogs identical"
	cat "$W/changelog-gcc.diff"

	log "the native tree in $T"
	rm -rf "$T" "$W/debs"
	mkdir -p "$T/lib64" "$T/lib" "$T/gcc" "$T/bin" "$T/emu" "$W/debs"
	(cd "$W/debs" && apt-get download g++-12-aarch64-linux-gnu >/dev/null 2>&1 && dpkg -x g++-12-aarch64-linux-gnu_*.deb x)
	X=/usr/lib/gcc-cross/aarch64-linux-gnu/12
	cp -L $X/cc1 $X/collect2 $X/lto-wrapper $X/lto1 $X/liblto_plugin.so "$W"/debs/x$X/cc1plus "$T/gcc/"
	cp -L /usr/bin/aarch64-linux-gnu-as "$T/bin/as"
	cp -L /usr/bin/aarch64-linux-gnu-ld.bfd "$T/bin/ld.bfd"
	cp -L /lib64/ld-linux-x86-64.so.2 "$T/lib64/"
	for f in "$T"/gcc/* "$T"/bin/*; do ldd "$f" | awk '$3 ~ /^\// {print $3}'; done | sort -u | xargs -I{} cp -L {} "$T/lib/"
	python3 "$HERE/patchinc.py" "$T/gcc/cc1" "$T/gcc/cc1plus"
	gcc -O2 -static -o "$T/cc1wrap" "$HERE/cc1wrap.c"
	cp "$U/w/emu-bin/cc1" "$U/w/emu-bin/cc1plus" "$T/emu/"
	du -sh "$T"
fi

if want probe; then
	log "probe: toolchain self-description and 6 flag sets, emulated then accelerated"
	rm -rf "$U/w/src" && cp -r "$HERE/src" "$U/w/src" && cp "$HERE/probe.sh" "$U/w/" && chown -R $BUSER: "$U/w"
	for m in emu acc; do
		timed "probe $m" xr $m "sh $U/w/probe.sh $m $U/w"
	done
	cd "$U/w"
	for f in dumpmachine search-dirs libgcc prog-names macros-c macros-cxx macros-c-ssp gcc-version as-version \
		ld-version march-native plugin-dir hello.out vec.i main.ii crc.s main.s gcc-v-c gcc-v-cxx gcc-v-link; do
		cmp -s emu/$f acc/$f && echo "same $f" || echo "DIFF $f"
	done
	for o in emu/*/*.o emu/*/*.a emu/*/*.so emu/*/prog; do
		cmp -s "$o" "acc/${o#emu/}" && echo "same ${o#emu/}" || echo "DIFF ${o#emu/}"
	done | sort | tee "$W/probe-cmp.txt" | awk '{print $1}' | uniq -c
fi

if want ssp; then
	log "stack protector: the cross cc1 (no CVE-2023-4039 fix) forced native"
	timed "probe accssp" xr accssp "sh $U/w/probe.sh accssp $U/w"
	cd "$U/w"
	for o in emu/*/*.o; do cmp -s "$o" "accssp/${o#emu/}" && echo "same ${o#emu/}" || echo "DIFF ${o#emu/}"; done | tee "$W/ssp-cmp.txt"
fi

if want zlib; then
	log "zlib 1.2.13 (Debian's source): ./configure && make && make check"
	S=$W/src
	if ! ls "$S"/zlib_*.orig.tar.* >/dev/null 2>&1; then
		mkdir -p "$S/aptsrc/lists/partial"
		echo "deb-src http://deb.debian.org/debian bookworm main" >"$S/aptsrc/sources.list"
		O=(-o "Dir::Etc::SourceList=$S/aptsrc/sources.list" -o Dir::Etc::SourceParts=/nonexistent -o "Dir::State::Lists=$S/aptsrc/lists")
		apt-get -q "${O[@]}" update >/dev/null 2>&1 || true
		(cd "$S" && apt-get -q "${O[@]}" source --download-only zlib >/dev/null 2>&1)
	fi
	rm -rf "$U/w/zsrc" && mkdir "$U/w/zsrc" && tar -xf "$S"/zlib_*.orig.tar.* -C "$U/w/zsrc" --strip-components=1
	cp "$HERE/zjob.sh" "$U/w/" && chown -R $BUSER: "$U/w"
	# The machine is shared and drifts: emu once, then acc and native in ABBA order.
	for m in emu acc native native acc; do
		if [ $m = native ]; then
			echo "zlib native (host gcc, no container):"
			asu "${XT[@]}" sh "$U/w/zjob.sh" "$U/w/zsrc" "$U/w/z-native"
		else
			echo "zlib $m:"
			xr $m "sh $U/w/zjob.sh $U/w/zsrc $U/w/z-$m"
		fi
	done 2>&1 | tee "$W/zlib-times.txt"
	cd "$U/w"
	for o in z-emu/*.o z-emu/*.a z-emu/libz.so.*.*.* z-emu/example z-emu/minigzip; do cmp -s "$o" "z-acc/${o#z-emu/}" && echo "same ${o#z-emu/}" || echo "DIFF ${o#z-emu/}"; done |
		tee "$W/zlib-cmp.txt" | awk '{print $1}' | uniq -c
fi

if want drv; then
	log "per-call costs in the container (drv.sh), accelerated then emulated"
	cp "$HERE/drv.sh" "$U/w/" && chown $BUSER: "$U/w/drv.sh"
	for m in acc emu; do echo "$m:"; xr $m "sh $U/w/drv.sh"; done 2>&1 | tee "$W/drv.txt"
fi
