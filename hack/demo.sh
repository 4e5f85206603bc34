#!/usr/bin/env bash
# hack/demo.sh runs xrun on foreign-arch images, as an unprivileged user.
# Run it after hack/setup.sh and make build, as root or as a user with sudo;
# it is idempotent:
#
#   hack/setup.sh && make build && hack/demo.sh
#
# It starts Debian's registry on 127.0.0.1:5000 unless something already
# answers there (config, data, log and PID file under /tmp/xrun-demo), pushes
# the test images (go run ./integration/testimage/push), and runs, as the
# user xruntest (created by hack/setup.sh),
#
#   xrun --platform linux/arm64   127.0.0.1:5000/xrun-test/busybox -- uname -m   # aarch64
#   xrun --platform linux/riscv64 127.0.0.1:5000/xrun-test/busybox -- uname -m   # riscv64
#   xrun --platform linux/s390x   127.0.0.1:5000/xrun-test/busybox -- uname -m   # s390x
#
# The registry keeps running afterwards; the script says how to stop it.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DEMO=/tmp/xrun-demo
ADDR=127.0.0.1:5000
IMAGE="$ADDR/xrun-test/busybox"
DEMO_USER=xruntest
REGISTRY_BIN=${XRUN_REGISTRY_BIN:-/usr/bin/docker-registry}

log() { printf 'demo: %s\n' "$*" >&2; }
die() {
	printf 'demo: error: %s\n' "$*" >&2
	exit 1
}

# as_root runs a command as root: directly, or through sudo.
as_root() {
	if [[ $(id -u) -eq 0 ]]; then
		"$@"
	else
		sudo -- "$@"
	fi
}

# registry_up: something answers GET http://$ADDR/v2/ with 200.
registry_up() {
	[[ $(curl -s -o /dev/null -m 2 -w '%{http_code}' "http://$ADDR/v2/" || true) == 200 ]]
}

# --- Prerequisites ---------------------------------------------------------

[[ -x $REPO/bin/xrun ]] || die "$REPO/bin/xrun is missing: run make build"
id "$DEMO_USER" >/dev/null 2>&1 || die "no user $DEMO_USER: run sudo hack/setup.sh"
command -v curl >/dev/null || die "curl is missing"
command -v setpriv >/dev/null || die "setpriv (util-linux) is missing: run sudo hack/setup.sh"
GO=$(command -v go || true)
[[ -n $GO ]] || GO=/usr/local/go/bin/go
[[ -x $GO ]] || die "the go command is missing (needed to build the test images)"
if [[ $(id -u) -ne 0 ]]; then
	sudo -v || die "run as root or as a user with sudo (to drop to $DEMO_USER)"
fi

mkdir -p "$DEMO"
# /tmp/xrun-demo may be left by another user's run: it must be ours.
[[ -O $DEMO ]] || die "$DEMO belongs to another user; remove it (sudo rm -rf $DEMO)"
chmod 0755 "$DEMO"

# --- Registry --------------------------------------------------------------

if registry_up; then
	log "a registry already answers on $ADDR"
else
	[[ -x $REGISTRY_BIN ]] || die "$REGISTRY_BIN is missing (Debian docker-registry): run sudo hack/setup.sh"
	# A stale PID file of ours: stop that process if it is still a registry.
	if [[ -f $DEMO/registry.pid ]] && kill -0 "$(cat "$DEMO/registry.pid")" 2>/dev/null; then
		pid=$(cat "$DEMO/registry.pid")
		if [[ $pid =~ ^[0-9]+$ ]] && [[ $(readlink "/proc/$pid/exe" 2>/dev/null || true) == "$(readlink -f "$REGISTRY_BIN")" ]]; then
			log "stopping unresponsive registry $pid"
			kill "$pid" 2>/dev/null || true
			sleep 1
		fi
		rm -f "$DEMO/registry.pid"
	fi
	mkdir -p "$DEMO/data"
	cat >"$DEMO/registry.yml" <<CONFIG
version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $DEMO/data
  delete:
    enabled: true
http:
  addr: $ADDR
  secret: xrun-demo
CONFIG
	log "starting $REGISTRY_BIN on $ADDR (log: $DEMO/registry.log)"
	nohup "$REGISTRY_BIN" serve "$DEMO/registry.yml" >"$DEMO/registry.log" 2>&1 </dev/null &
	echo $! >"$DEMO/registry.pid"
	disown
	for _ in $(seq 1 100); do
		registry_up && break
		kill -0 "$(cat "$DEMO/registry.pid")" 2>/dev/null ||
			die "the registry exited at start: $(tail -n 20 "$DEMO/registry.log")"
		sleep 0.2
	done
	registry_up || die "the registry does not answer on $ADDR after 20s: $(tail -n 20 "$DEMO/registry.log")"
fi

# --- Test images -----------------------------------------------------------

log "building and pushing the test images"
(cd "$REPO" && "$GO" run ./integration/testimage/push -registry "$ADDR")

# --- xrun as the unprivileged user -------------------------------------------

# xruntest may not be able to reach the checkout (e.g. under /root): run a
# copy, and give the user its own HOME and cache.
mkdir -p "$DEMO/bin"
install -m 0755 "$REPO/bin/xrun" "$DEMO/bin/xrun"
as_root mkdir -p "$DEMO/home"
as_root chown "$DEMO_USER:" "$DEMO/home"
as_root chmod 0755 "$DEMO/home"

uid=$(id -u "$DEMO_USER")
gid=$(id -g "$DEMO_USER")
xrun_as_user() {
	as_root setpriv --reuid="$uid" --regid="$gid" --init-groups --reset-env -- \
		/usr/bin/env -i HOME="$DEMO/home" PATH=/usr/local/bin:/usr/bin:/bin LANG=C.UTF-8 \
		sh -c 'cd "$HOME" && exec "$0" "$@"' "$DEMO/bin/xrun" "$@"
}

for platform in linux/arm64 linux/riscv64 linux/s390x; do
	printf '$ xrun --platform %s %s -- uname -m\n' "$platform" "$IMAGE"
	xrun_as_user --platform "$platform" "$IMAGE" -- uname -m ||
		die "xrun --platform $platform failed (exit $?)"
done

if [[ -f $DEMO/registry.pid ]] && kill -0 "$(cat "$DEMO/registry.pid")" 2>/dev/null; then
	printf '\nThe registry keeps running on %s. Stop it with:\n  kill $(cat %s/registry.pid)\n' "$ADDR" "$DEMO"
else
	printf '\nThe registry on %s was not started by this script.\n' "$ADDR"
fi
