//go:build integration

package integration

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// The attacks of issue 13 item 2 (a .xrun.yaml the victim did not write
// decides what the victim's run binds) and item 10 (env: [KEY]). The
// victim is xruntest, the attacker xrunnosub; each test runs the built
// binary as them.

// TestSecurityConfigSharedParent is the attack of a local user who plants
// a .xrun.yaml in a directory shared like /tmp (world-writable, sticky,
// root's), binding the victim's home read-write and setting variables. The
// victim runs xrun in a directory of their own below it: the file must be
// ignored, with a note, and nothing of the victim's home may be reachable.
// (The shared directory is made under the test's base directory rather
// than at /tmp itself, so that the planted file cannot reach other runs of
// xrun on this machine; it has /tmp's owner and mode.)
func TestSecurityConfigSharedParent(t *testing.T) {
	needImages(t)
	victim := needUser(t, subUserName)
	attacker := needUser(t, noSubUserName)

	shared, err := os.MkdirTemp(h.base, "shared-")
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Chmod(shared, 0o1777); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(shared, ".xrun.yaml")
	writeAs(t, attacker, cfg, "image: "+h.reg.ref(busyboxRepo)+`
volumes: ["`+victim.home+`:/victim-home"]
env: [PLANTED=attacker, "LD_PRELOAD=/victim-home/evil.so"]
`)
	if _, stderr, code := runAs(t, opts{user: victim, dir: shared}, "mkdir", "work"); code != 0 {
		t.Fatalf("mkdir as the victim: %s", stderr)
	}
	work := filepath.Join(shared, "work")

	// The victim names the image: the attacker's volumes and env would
	// still apply if the file were read.
	out, stderr, code := run(t, opts{user: victim, dir: work}, "--platform", "linux/amd64", h.reg.ref(busyboxRepo), "--",
		"sh", "-c", `echo "planted=$PLANTED preload=$LD_PRELOAD"; ls /victim-home 2>/dev/null && echo VISIBLE; touch /victim-home/pwned 2>/dev/null && echo WRITTEN; echo end`)
	if code != 0 || out != "planted= preload=\nend\n" {
		t.Errorf("victim's run below the planted file = %d, %q; want 0, %q (no bind, no variables)", code, out, "planted= preload=\nend\n")
	}
	note := "xrun: ignoring " + cfg + ": it is owned by uid " + strconv.Itoa(attacker.uid) + ", not by you or root; if you trust it: xrun config trust " + cfg + "\n"
	if strings.Count(stderr, "ignoring") != 1 || !strings.Contains(stderr, note) {
		t.Errorf("stderr = %q, want the note once: %q", stderr, note)
	}
	if _, err := os.Lstat(filepath.Join(victim.home, "pwned")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the planted bind wrote into the victim's home (%v)", err)
	}

	// Without an image on the command line the file's is not used either.
	_, stderr, code = run(t, opts{user: victim, dir: work}, "--", "true")
	if code != 125 || !strings.Contains(stderr, "no image given") {
		t.Errorf("xrun -- true below the planted file = %d, %q; want 125, no image given", code, stderr)
	}

	// The victim's own file directly in a shared directory is ignored too:
	// the sticky bit is no exception (see pkg/config/safety.go).
	shared2, err := os.MkdirTemp(h.base, "shared-")
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Chmod(shared2, 0o1777); err != nil {
		t.Fatal(err)
	}
	own := filepath.Join(shared2, ".xrun.yaml")
	writeAs(t, victim, own, "image: "+h.reg.ref(busyboxRepo)+"\nenv: [OWN=1]\n")
	out, stderr, code = run(t, opts{user: victim, dir: shared2}, "--platform", "linux/amd64", h.reg.ref(busyboxRepo), "--", "sh", "-c", `echo "own=$OWN"`)
	if code != 0 || out != "own=\n" || !strings.Contains(stderr, "xrun: ignoring "+own+": it is in "+shared2+", which is writable by others (mode 1777)") {
		t.Errorf("the victim's own file in a shared directory = %d, %q, %q; want it ignored with the reason", code, out, stderr)
	}
}

// TestSecurityConfigClonedRepo is the attack of a repository that ships a
// .xrun.yaml binding the victim's home: the file is the victim's (they
// cloned it), so only trust can make its out-of-project volume work.
// The victim's run is refused until `xrun config trust`, works after, and
// is refused again once the file changes. A file above the repository
// root is never read.
func TestSecurityConfigClonedRepo(t *testing.T) {
	needImages(t)
	victim := needUser(t, subUserName)
	dir := workDir(t, victim)
	// Above the repository: must not apply inside it.
	writeAs(t, victim, filepath.Join(dir, ".xrun.yaml"), "image: "+h.reg.ref(busyboxRepo)+"\nenv: [ABOVE=1]\n")
	repo := filepath.Join(dir, "repo")
	if _, stderr, code := runAs(t, opts{user: victim, dir: dir}, "mkdir", "-p", "repo/.git", "repo/src"); code != 0 {
		t.Fatalf("mkdir: %s", stderr)
	}
	src := filepath.Join(repo, "src")
	out, stderr, code := run(t, opts{user: victim, dir: src}, "--platform", "linux/amd64", h.reg.ref(busyboxRepo), "--", "sh", "-c", `echo "above=$ABOVE"`)
	if code != 0 || out != "above=\n" {
		t.Errorf("in a repository below a .xrun.yaml = %d, %q, %q; want the file above the repository root unread", code, out, stderr)
	}

	cfg := filepath.Join(repo, ".xrun.yaml")
	content := "image: " + h.reg.ref(busyboxRepo) + "\nplatform: linux/amd64\nvolumes:\n  - " + victim.home + ":/h\n"
	writeAs(t, victim, cfg, content)
	touch := []string{"--", "sh", "-c", "touch /h/from-repo && echo written"}
	marker := filepath.Join(victim.home, "from-repo")

	_, stderr, code = run(t, opts{user: victim, dir: src}, touch...)
	want := cfg + ":4: volume \"" + victim.home + ":/h\" binds " + victim.home + ", outside the project " + repo + ": review the file, then run xrun config trust " + cfg
	if code != 125 || stderr != "xrun: "+want+"\n" {
		t.Errorf("untrusted repository file = %d, %q; want 125, %q", code, stderr, want)
	}
	if _, err := os.Lstat(marker); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("the repository's bind wrote into the victim's home before any trust (%v)", err)
	}

	out, stderr, code = run(t, opts{user: victim, dir: src}, "config", "trust")
	if code != 0 || !strings.HasPrefix(out, "trusted "+cfg+" (sha256 ") {
		t.Fatalf("xrun config trust = %d, %q, %q", code, out, stderr)
	}
	out, stderr, code = run(t, opts{user: victim, dir: src}, touch...)
	if code != 0 || out != "written\n" {
		t.Errorf("trusted repository file = %d, %q, %q; want the bind", code, out, stderr)
	}
	if _, err := os.Lstat(marker); err != nil {
		t.Errorf("trusted bind: %v", err)
	}
	os.Remove(marker)

	// A pull that changes the file withdraws the trust.
	writeAs(t, victim, cfg, content+"env: [CHANGED=1]\n")
	_, stderr, code = run(t, opts{user: victim, dir: src}, touch...)
	if code != 125 || !strings.Contains(stderr, "outside the project") {
		t.Errorf("edited trusted file = %d, %q; want it refused again", code, stderr)
	}
	if _, err := os.Lstat(marker); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the edited file's bind wrote into the victim's home (%v)", err)
	}
	out, _, _ = run(t, opts{user: victim, dir: src}, "config", "show")
	if !strings.Contains(out, "trusted: no, it changed since it was trusted") {
		t.Errorf("xrun config show = %q", out)
	}
}

// TestSecurityConfigEnvKey checks issue 13 item 10: env: [KEY] in
// .xrun.yaml means -e KEY (the user's value; nothing when unset) instead of
// breaking every run with "missing '='", and needs a trusted file, since
// it copies the user's environment into the container.
func TestSecurityConfigEnvKey(t *testing.T) {
	needImages(t)
	u := needUser(t, subUserName)
	dir := workDir(t, u)
	cfg := filepath.Join(dir, ".xrun.yaml")
	writeAs(t, u, cfg, "image: "+h.reg.ref(busyboxRepo)+"\nplatform: linux/amd64\nenv: [GREETING=hi, XRUN_IT_HOSTVAR, XRUN_IT_UNSET]\n")
	o := opts{user: u, dir: dir, env: []string{"XRUN_IT_HOSTVAR=from host"}}
	show := []string{"--", "sh", "-c", `echo "$GREETING/$XRUN_IT_HOSTVAR/${XRUN_IT_UNSET-unset}"`}

	_, stderr, code := run(t, o, show...)
	want := cfg + ":3: env: XRUN_IT_HOSTVAR copies your environment's value into the container, which needs a trusted file: review the file, then run xrun config trust " + cfg
	if code != 125 || stderr != "xrun: "+want+"\n" {
		t.Errorf("untrusted env: [KEY] = %d, %q; want 125, %q", code, stderr, want)
	}
	if _, stderr, code := run(t, o, "config", "trust"); code != 0 {
		t.Fatalf("xrun config trust = %d, %q", code, stderr)
	}
	out, stderr, code := run(t, o, show...)
	if code != 0 || out != "hi/from host/unset\n" {
		t.Errorf("trusted env: [KEY] = %d, %q, %q; want 0, %q", code, out, stderr, "hi/from host/unset\n")
	}
}
