#!/bin/bash
# bench/accel/bench.sh: issue 15's benchmark. Debian's zlib source,
# `./configure && make && make check`, built three ways in one run, every
# build through xrun as the unprivileged user $BENCH_USER:
#
#   native       xrun --platform linux/amd64 IMG    (the host's gcc 12, same Debian release)
#   accelerated  xrun --accel --platform linux/arm64 IMG
#   emulated     xrun --platform linux/arm64 IMG
#
# IMG is one reference with hack/mkdebian.sh's bookworm trees with gcc for
# arm64 and amd64, pushed to a docker-registry on 127.0.0.1 started here.
# The accelerator is prepared first (timed on its own); then BENCH_ACCEL_RUNS
# rounds, alternating the order (native, accelerated, emulated, then the
# reverse), each on a fresh copy of the source bound at the same container
# path (/src), so that debug information is comparable. After each round the
# accelerated build's objects are compared byte for byte with the emulated
# build's. Ratios are of medians measured in this run. Run as root after
# hack/setup.sh and make build:
#
#   sudo bench/accel/bench.sh        # writes bench/accel/RESULTS.md
#
# Environment: XRUN_BIN (bin/xrun), BENCH_USER (xruntest), BENCH_ACCEL_RUNS
# (2), BENCH_WORK (/var/tmp/xrun-bench-accel), BENCH_ACCEL_OUT
# (bench/accel/RESULTS.md), XRUN_TEST_CACHE (hack/mkdebian.sh's cache),
# BENCH_ACCEL_MODES (native accelerated emulated; add "intercepted", the
# emulated build with XRUN_BINFMT_STRATEGY=intercept, for issue 16's
# comparison: BENCH_ACCEL_MODES="emulated intercepted" compares only those).
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
XRUN_SRC=${XRUN_BIN:-$REPO/bin/xrun}
BUSER=${BENCH_USER:-xruntest}
RUNS=${BENCH_ACCEL_RUNS:-2}
read -r -a MODES <<<"${BENCH_ACCEL_MODES:-native accelerated emulated}"
WORK=${BENCH_WORK:-/var/tmp/xrun-bench-accel}
OUT=${BENCH_ACCEL_OUT:-$HERE/RESULTS.md}
TREES=${XRUN_TEST_CACHE:-/var/tmp/xrun-test-cache}
SUITE=bookworm
MIRROR=${BENCH_MIRROR:-http://deb.debian.org/debian}

log() { printf '== %s\n' "$*" >&2; }
die() { printf 'bench/accel: %s\n' "$*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || die "run as root (the builds run as the unprivileged user $BUSER)"
id "$BUSER" >/dev/null 2>&1 || die "user $BUSER does not exist: run hack/setup.sh"
[ -x "$XRUN_SRC" ] || die "$XRUN_SRC not found: run make build"

# --- the image: bookworm with gcc, arm64 and amd64 ---------------------------
XRUN_MKDEBIAN_INCLUDE=gcc,g++,libc6-dev,make XRUN_MKDEBIAN_NAME=gcc "$REPO/hack/mkdebian.sh"
XRUN_MKDEBIAN_ARCH=amd64 XRUN_MKDEBIAN_INCLUDE=gcc,g++,libc6-dev,make XRUN_MKDEBIAN_NAME=gcc "$REPO/hack/mkdebian.sh"

U=$WORK/u
rm -rf "$WORK"
mkdir -p "$WORK/bin" "$U" "$WORK/reg"
chmod 755 "$WORK" "$WORK/bin"
chown "$BUSER:" "$U"
install -m 755 "$XRUN_SRC" "$WORK/bin/xrun"
UENV=(HOME="$U" USER="$BUSER" PATH="$WORK/bin:/usr/bin:/bin" XRUN_CACHE="$U/cache" LANG=C.UTF-8)
as_user() { (cd "$U" && setpriv --reuid="$BUSER" --regid="$BUSER" --init-groups env -i "${UENV[@]}" "$@"); }

PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
REG=127.0.0.1:$PORT
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
  secret: xrun-bench-accel
EOF
docker-registry serve "$WORK/reg/config.yml" >"$WORK/reg/log" 2>&1 &
REGPID=$!
trap 'kill $REGPID 2>/dev/null || true' EXIT
for _ in $(seq 100); do curl -fs "http://$REG/v2/" >/dev/null && break; sleep 0.1; done
IMG=$REG/bench/debian-gcc:$SUITE
(cd "$REPO" && go run ./bench/accel/pushdebian "$IMG" \
	"$TREES/debian-$SUITE-arm64-gcc.tar:arm64" "$TREES/debian-$SUITE-amd64-gcc.tar:amd64") || die "push failed"
log "image $IMG"

# --- zlib: Debian's source -----------------------------------------------------
SRC=$WORK/src
mkdir -p "$SRC/lists/partial"
echo "deb-src $MIRROR $SUITE main" >"$SRC/sources.list"
O=(-o "Dir::Etc::SourceList=$SRC/sources.list" -o Dir::Etc::SourceParts=/nonexistent -o "Dir::State::Lists=$SRC/lists")
apt-get -q "${O[@]}" update >/dev/null 2>&1 || true
(cd "$SRC" && apt-get -q "${O[@]}" source --download-only zlib >/dev/null 2>&1) || true
ZSRC=$(ls "$SRC"/zlib_*.orig.tar.* 2>/dev/null | head -1 || true)
[ -n "$ZSRC" ] || die "could not download Debian's zlib source (deb-src from $MIRROR)"
chmod -R a+rX "$SRC"
log "source $(basename "$ZSRC")"

JOB='./configure >/dev/null && make -s >/dev/null 2>&1 && make -s check >/dev/null 2>&1 && test -x example'
B=$U/b
as_user mkdir -p "$B"
# build MODE N: a fresh source at $B/src-MODE-N, built at /src; prints seconds.
build() {
	local mode=$1 n=$2 d=$B/src-$1-$2 t0 t1 plat=(--platform linux/arm64) pre=()
	as_user sh -c "rm -rf $d && mkdir $d && tar -xf $ZSRC -C $d --strip-components=1"
	case $mode in
	native) plat=(--platform linux/amd64) ;;
	accelerated) plat+=(--accel) ;;
	intercepted) pre=(env XRUN_BINFMT_STRATEGY=intercept) ;;
	esac
	t0=$EPOCHREALTIME
	as_user "${pre[@]}" xrun "${plat[@]}" -v "$d:/src" -w /src "$IMG" -- sh -c "$JOB" || die "$mode build $n failed"
	t1=$EPOCHREALTIME
	python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.2f}')" "$t0" "$t1"
}

LOAD0=$(cut -d' ' -f1-3 /proc/loadavg)
PREP=0
if [[ " ${MODES[*]} " == *" accelerated "* ]]; then
log "preparing the accelerator (first --accel run)"
as_user xrun --platform linux/arm64 "$IMG" -- true
as_user xrun --platform linux/amd64 "$IMG" -- true
t0=$EPOCHREALTIME
as_user xrun --accel --verbose --platform linux/arm64 "$IMG" -- true 2>"$WORK/prep.log" || die "accel preparation failed: $(tail -3 "$WORK/prep.log")"
PREP=$(python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.1f}')" "$t0" "$EPOCHREALTIME")
grep -q "native toolchain prepared" "$WORK/prep.log" || die "the accelerator was not prepared: $(grep -- --accel "$WORK/prep.log" | tail -3)"
else
as_user xrun --platform linux/arm64 "$IMG" -- true
fi

: >"$WORK/times.tsv"
ident=()
for i in $(seq "$RUNS"); do
	order=("${MODES[@]}")
	if [ $((i % 2)) = 0 ]; then
		order=()
		for ((k = ${#MODES[@]} - 1; k >= 0; k--)); do order+=("${MODES[k]}"); done
	fi
	for m in "${order[@]}"; do
		log "round $i: $m"
		printf '%s\t%s\t%s\n' "$i" "$m" "$(build "$m" "$i")" >>"$WORK/times.tsv"
	done
	# The accelerated build's outputs against the emulated build's.
	[[ " ${MODES[*]} " == *" accelerated "* && " ${MODES[*]} " == *" emulated "* ]] || continue
	same=0 total=0 differ=""
	for f in $(cd "$B/src-emulated-$i" && ls -- *.o libz.a libz.so* example minigzip examplesh minigzipsh 2>/dev/null); do
		total=$((total + 1))
		if cmp -s "$B/src-emulated-$i/$f" "$B/src-accelerated-$i/$f"; then same=$((same + 1)); else differ="$differ $f"; fi
	done
	ident+=("round $i: $same/$total identical${differ:+ (differ:$differ)}")
	[ "$same" = "$total" ] && [ "$total" -gt 10 ] || die "round $i: accelerated and emulated outputs differ:${differ:- none built}"
done
LOAD1=$(cut -d' ' -f1-3 /proc/loadavg)

python3 - "$WORK/times.tsv" "$PREP" "$LOAD0" "$LOAD1" "$(basename "$ZSRC")" "$(nproc)" "$(uname -r)" ${ident[@]+"${ident[@]}"} >"$OUT" <<'PY'
import statistics, sys, datetime
times, prep, load0, load1, src, ncpu, kernel = sys.argv[1:8]
ident = sys.argv[8:]
t = {}
rows = []
for line in open(times):
    i, m, s = line.split("\t")
    t.setdefault(m, []).append(float(s))
    rows.append((int(i), m, float(s)))
med = {m: statistics.median(v) for m, v in t.items()}
p = print
p("# zlib builds through xrun: " + ", ".join(sorted(t)) + " (bench/accel/bench.sh)")
p()
p(f"{datetime.datetime.utcnow():%Y-%m-%d %H:%MZ}; {ncpu} vCPU, Linux {kernel}; load average {load0} before, {load1} after.")
p(f"Debian's zlib source ({src}), `./configure && make && make check`, every build through xrun as an")
p("unprivileged user, in Debian bookworm images with gcc 12 (arm64 and amd64 under one reference);")
p("rounds alternate the order." + (" The accelerator was prepared before the timed builds in" if float(prep) > 0 else ""))
if float(prep) > 0:
    p(f"{prep} s (download of the cross packages in the native container, self-check).")
p()
p("| round | build | seconds |")
p("|---|---|---|")
for i, m, s in rows:
    p(f"| {i} | {m} | {s:.2f} |")
p()
p("| measure | median (s) | ratio |")
p("|---|---|---|")
if "native" in med:
    p(f"| native amd64 | {med['native']:.2f} | 1 |")
    if "accelerated" in med:
        p(f"| accelerated arm64 (`--accel`) | {med['accelerated']:.2f} | **{med['accelerated'] / med['native']:.2f}x** native |")
    if "emulated" in med:
        p(f"| emulated arm64 | {med['emulated']:.2f} | {med['emulated'] / med['native']:.2f}x native |")
if "emulated" in med and "accelerated" in med:
    p(f"| emulated / accelerated | | {med['emulated'] / med['accelerated']:.2f}x |")
if "emulated" in med and "intercepted" in med:
    if "native" not in med:
        p(f"| emulated arm64, namespaced binfmt handler | {med['emulated']:.2f} | 1 |")
    p(f"| emulated arm64, exec interception (`XRUN_BINFMT_STRATEGY=intercept`) | {med['intercepted']:.2f} | **{med['intercepted'] / med['emulated']:.3f}x** namespaced |")
if ident:
    p()
    p("Objects (`*.o`, `libz.a`, `libz.so*`, `example`, `minigzip`, `*sh`) of the accelerated build")
    p("against the emulated build of the same round: " + "; ".join(ident) + ".")
PY
cat "$OUT"
log "wrote $OUT"
