//go:build integration

package integration

import (
	"strings"
	"syscall"
	"testing"
)

// interceptEnv forces exec interception (issue 16) on this 6.7+ machine.
var interceptEnv = []string{"XRUN_BINFMT_STRATEGY=intercept"}

// TestIntercept runs the test images with no binfmt_misc handler at all:
// the container's init traces the execs and runs foreign programs under
// qemu. Both users, every foreign platform: uname, exec chains, #! scripts
// (also through env), exit codes and signals, /proc/self/exe, a non-root
// user, and no handler inside.
func TestIntercept(t *testing.T) {
	img := h.reg.ref(busyboxRepo)
	for _, user := range testUsers {
		t.Run(user, func(t *testing.T) {
			for _, p := range platforms {
				if p.Native() {
					continue
				}
				t.Run(subtestName(p), func(t *testing.T) {
					u := needRun(t, user, p)
					o := opts{user: u, env: interceptEnv}
					xrun := func(cmd ...string) (string, string, int) {
						t.Helper()
						return run(t, o, append([]string{"--platform", p.Name, img, "--"}, cmd...)...)
					}
					out, stderr, code := run(t, o, "--verbose", "--platform", p.Name, img, "--", "uname", "-m")
					if code != 0 || out != p.Uname()+"\n" || !strings.Contains(stderr, "strategy=intercept") {
						t.Fatalf("uname -m: %q, exit %d, want %q and --verbose naming the strategy:\n%s", out, code, p.Uname(), stderr)
					}
					if p.Deb == "" {
						// The riscv64 image's minibox has a few applets
						// only: the shell and an exit code.
						if out, _, code := xrun("sh", "-c", "uname -m; exit 3"); code != 3 || out != p.Uname()+"\n" {
							t.Errorf("uname -m; exit 3: exit %d, %q", code, out)
						}
						return
					}
					script := `mkdir -p /usr/bin && ln -sf /bin/busybox /usr/bin/env
printf '#!/bin/sh\necho script "$1" $(uname -m)\n' >/tmp/s1
printf '#!/usr/bin/env sh\necho env-script $(uname -m)\n' >/tmp/s2
chmod +x /tmp/s1 /tmp/s2
env uname -m | cat
/tmp/s1 "a b"
/tmp/s2
readlink /proc/self/exe
cat /etc/group | head -1
test -e /proc/sys/fs/binfmt_misc/status && echo handler-inside || echo no-handler`
					want := p.Uname() + "\nscript a b " + p.Uname() + "\nenv-script " + p.Uname() + "\n/bin/busybox\nroot:x:0:\nno-handler\n"
					if out, stderr, code := xrun("sh", "-c", script); code != 0 || out != want {
						t.Errorf("exec chains and scripts: exit %d\n got %q\nwant %q\n%s", code, out, want, stderr)
					}
					for _, c := range []struct {
						script string
						want   int
					}{
						{"exit 3", 3},
						{"kill -TERM $$", 128 + int(syscall.SIGTERM)},
						{"kill -KILL $$", 128 + int(syscall.SIGKILL)},
						{"sh -c 'exit 7'", 7},
					} {
						if _, _, code := xrun("sh", "-c", c.script); code != c.want {
							t.Errorf("sh -c %q: exit %d, want %d", c.script, code, c.want)
						}
					}
					if !u.subIDs {
						return // only root exists in its containers
					}
					out, stderr, code = run(t, o, "--platform", p.Name, "--user", "1000:1000", img, "--", "sh", "-c", "id -u; uname -m")
					if code != 0 || out != "1000\n"+p.Uname()+"\n" {
						t.Errorf("as uid 1000: exit %d, %q\n%s", code, out, stderr)
					}
				})
			}
		})
	}
}

// TestInterceptAuxv checks what a foreign dynamic program sees of its own
// exec under interception against the namespaced binfmt handler, in
// Debian arm64: AT_EXECFN (glibc's loader prints the auxiliary vector with
// LD_SHOW_AUXV) for a relative, an absolute and a PATH-searched exec, and
// /proc/self/exe. Seen from another process, /proc/PID/exe of an emulated
// program is qemu in both (at another path: README).
func TestInterceptAuxv(t *testing.T) {
	p := platformByName("linux/arm64")
	needEmulated(t, p)
	u := needUser(t, subUserName)
	img := pushDebian(t)
	script := `auxv() { LD_SHOW_AUXV=1 "$@" | awk '$1 == "AT_EXECFN:" || $1 == "AT_PLATFORM:" { print $1, $2 }'; }
cd /usr/bin && auxv ./ls -d /
auxv /bin/ls -d /
auxv ls -d /
readlink /proc/self/exe
sh -c 'case $(readlink /proc/$$/exe) in *qemu-aarch64*) echo "another process: qemu";; *) readlink /proc/$$/exe;; esac'`
	want := "AT_EXECFN: ./ls\nAT_PLATFORM: aarch64\nAT_EXECFN: /bin/ls\nAT_PLATFORM: aarch64\n" +
		"AT_EXECFN: /usr/bin/ls\nAT_PLATFORM: aarch64\n/usr/bin/readlink\nanother process: qemu\n"
	got := map[string]string{}
	for _, c := range []struct {
		name string
		env  []string
	}{{"binfmt", nil}, {"intercept", interceptEnv}} {
		out, stderr, code := run(t, opts{user: u, env: c.env}, "--platform", p.Name, img, "--", "sh", "-c", script)
		if code != 0 {
			t.Fatalf("%s: exit %d\n%s", c.name, code, stderr)
		}
		got[c.name] = out
	}
	if got["intercept"] != got["binfmt"] {
		t.Errorf("under interception a program sees another exec than under binfmt_misc:\nintercept %q\nbinfmt    %q", got["intercept"], got["binfmt"])
	}
	if got["intercept"] != want {
		t.Errorf("intercept:\n got %q\nwant %q", got["intercept"], want)
	}
}
