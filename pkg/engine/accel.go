package engine

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/xrun-dev/xrun/pkg/accel"
	"github.com/xrun-dev/xrun/pkg/binfmt"
	"github.com/xrun-dev/xrun/pkg/fsutil"
	"github.com/xrun-dev/xrun/pkg/pull"
	"github.com/xrun-dev/xrun/pkg/sandbox"
)

// accelOut and accelCheck are where the preparation's native container
// and the self-check see their work directories.
const (
	accelOut   = "/xrun-accel-out"
	accelCheck = "/xrun-accel-check"
)

// downloadScript runs as root in a native container of the image's
// distribution and release: it downloads the cross packages ("$@") and the
// host's runtime libraries they depend on, and unpacks them (dpkg-deb -x:
// no maintainer scripts, no dpkg database) into $OUT/root. Exit 20: apt
// could not update its lists; 21: a package is missing.
const downloadScript = `set -eu
OUT=` + accelOut + `
export DEBIAN_FRONTEND=noninteractive
apt-get -q -o Acquire::Retries=3 update >"$OUT/apt.log" 2>&1 || { tail -3 "$OUT/apt.log" >&2; exit 20; }
for p in "$@"; do
	apt-cache show --no-all-versions "$p" >/dev/null 2>&1 || { echo "no package $p" >&2; exit 21; }
done
libs=$(apt-cache depends --recurse --no-recommends --no-suggests --no-conflicts --no-breaks --no-replaces --no-enhances "$@" 2>/dev/null |
	sed -n 's/^\([a-z0-9][a-z0-9.+-]*\)$/\1/p' | grep -E '^(lib|zlib)|-base$' | grep -vE -- '-(cross|dev)$|-dev-' | sort -u)
mkdir -p /tmp/xrun-debs "$OUT/root"
chmod 0777 /tmp/xrun-debs
cd /tmp/xrun-debs
apt-get -q -o Acquire::Retries=3 download "$@" $libs >>"$OUT/apt.log" 2>&1 || { tail -3 "$OUT/apt.log" >&2; exit 22; }
for f in *.deb; do
	dpkg-deb -x "$f" "$OUT/root"
	dpkg-deb -W --showformat='${Package} ${Version}\n' "$f" >>"$OUT/debs.txt"
done
`

// accelerate gives the run of o (image p, emulated by plan) the native
// toolchain of --accel: the overlay layer to lay over the image and the
// release of its hold, which rmi and prune respect. When there is none
// (a refusal, or preparing it failed), it says why in one line and returns
// "": the run goes on emulated. Concurrent first runs prepare the tree
// once: the others wait on its lock.
func accelerate(ctx context.Context, o Options, p *Prepared, plan *binfmt.Plan) (string, func()) {
	log := o.Logger
	if plan.Strategy == binfmt.Native {
		log.Info("--accel: the image runs natively; nothing to accelerate")
		return "", func() {}
	}
	c := accel.Cache{Root: o.CacheDir}
	key := accel.Key(p.Image.Digest.Hex, runtime.GOARCH)
	for attempt := 0; attempt < 3; attempt++ {
		t0 := time.Now()
		st, prepared, err := ensureAccel(ctx, o, p, c, key)
		if err != nil {
			log.Warn("--accel: " + err.Error() + "; running emulated")
			return "", func() {}
		}
		if st.Refused != "" {
			log.Warn("--accel: " + st.Refused)
			return "", func() {}
		}
		lk, err := c.Lock(ctx, key, fsutil.Shared)
		if err != nil {
			log.Warn("--accel: " + err.Error() + "; running emulated")
			return "", func() {}
		}
		if now, _ := c.State(key); now == nil || now.Refused != "" {
			lk.Unlock() // removed (rmi, prune) in between: again
			continue
		}
		how := "cached"
		if prepared {
			how = "prepared"
		}
		log.Info("--accel: native toolchain "+how, "took", time.Since(t0).Round(time.Millisecond),
			"native", strings.Join(st.Native, " "), "rules", strings.Join(st.Rules.Why, "; "))
		return c.Tree(key), lk.Unlock
	}
	log.Warn("--accel: the accelerator kept being removed while this run started; running emulated")
	return "", func() {}
}

// ensureAccel returns key's state, preparing it (under its lock) when the
// cache has none; prepared says whether this call did. A refusal is
// remembered; an error (no network, a full disk) is not.
func ensureAccel(ctx context.Context, o Options, p *Prepared, c accel.Cache, key string) (*accel.State, bool, error) {
	lk, err := c.Lock(ctx, key, fsutil.Exclusive)
	if err != nil {
		return nil, false, err
	}
	defer lk.Unlock()
	if st, err := c.State(key); err != nil || st != nil {
		return st, false, err
	}
	t0 := time.Now()
	tmp, err := c.TempDir(key)
	if err != nil {
		return nil, false, err
	}
	defer fsutil.RemoveAll(tmp)
	// The containers' work directories are bound writable: outside the
	// cache, which no container may write.
	work, err := os.MkdirTemp("", "xrun-accel-")
	if err != nil {
		return nil, false, err
	}
	defer fsutil.RemoveAll(work)
	st, tree, err := prepareAccel(ctx, o, p, tmp, work)
	if err != nil && !accel.IsRefusal(err) {
		return nil, false, err
	}
	if err != nil {
		st, tree = &accel.State{Refused: err.Error()}, ""
	}
	st.Prepared, st.Took = time.Now().UTC(), time.Since(t0).Round(time.Millisecond)
	if err := c.Publish(key, tree, st); err != nil {
		return nil, false, fmt.Errorf("save the accelerator: %w", err)
	}
	return st, true, nil
}

// prepareAccel builds the tree in tmp, a work directory of the cache (work
// is one outside it, for the containers to write), and returns its state
// and the tree's path (to publish).
func prepareAccel(ctx context.Context, o Options, p *Prepared, tmp, work string) (*accel.State, string, error) {
	log := o.Logger
	plat := p.Image.Platform
	t, err := accel.Inspect(p.Rootfs, accel.DebArch(plat.Architecture, plat.Variant))
	if err != nil {
		return nil, "", err
	}
	hostTriplet := accel.Triplet(accel.DebArch(runtime.GOARCH, ""))
	if hostTriplet == "" {
		return nil, "", &accel.Refusal{Reason: "no Debian architecture for this host (" + runtime.GOARCH + ")"}
	}
	out := filepath.Join(work, "out")
	if err := os.Mkdir(out, 0o755); err != nil {
		return nil, "", err
	}
	t0 := time.Now()
	ref, err := downloadCross(ctx, o, t, out)
	if err != nil {
		return nil, "", err
	}
	log.Info("--accel: cross packages downloaded", "image", ref, "took", time.Since(t0).Round(time.Millisecond))
	debs, err := readDebs(filepath.Join(out, "debs.txt"))
	if err != nil {
		return nil, "", err
	}
	rules, err := accel.Match(t, p.Rootfs, filepath.Join(out, "root"), debs)
	if err != nil {
		return nil, "", err
	}
	self, err := os.Executable()
	if err != nil {
		return nil, "", err
	}
	tree := filepath.Join(tmp, "tree")
	tr, err := accel.Assemble(accel.Assembly{Toolchain: t, Rules: rules, Image: p.Rootfs, Src: filepath.Join(out, "root"),
		Dst: tree, HostTriplet: hostTriplet, Wrapper: self})
	if err != nil {
		return nil, "", err
	}
	_ = fsutil.RemoveAll(out)
	checked, err := selfCheck(ctx, o, t, tree, work)
	if err != nil {
		return nil, "", err
	}
	st := &accel.State{Tool: t, Cross: debs, Rules: rules, Native: tr.Native, Checked: checked}
	return st, tree, nil
}

// downloadCross runs downloadScript in a native container of the image's
// distribution: the image's own reference for the host platform when its
// index has it, else <distro>:<codename> (through the configured mirrors).
// It returns the reference it used.
func downloadCross(ctx context.Context, o Options, t *accel.Toolchain, out string) (string, error) {
	host := pull.PlatformString(pull.HostPlatform())
	var ref string
	var errs []string
	for _, r := range []string{o.Image, t.Distro + ":" + t.Codename} {
		no := Options{CacheDir: o.CacheDir, Image: r, Platform: host, Pull: o.Pull, Logger: o.Logger, Insecure: o.Insecure}
		hp, err := PrepareWith(ctx, no, PullOptions{Insecure: o.Insecure, PullOnly: true})
		if err != nil {
			errs = append(errs, fmt.Sprintf("%s for %s: %v", r, host, err))
			continue
		}
		if err := accel.SameRelease(hp.Rootfs, t); err != nil {
			errs = append(errs, fmt.Sprintf("%s for %s: %v", r, host, err))
			continue
		}
		ref = r
		break
	}
	if ref == "" {
		return "", fmt.Errorf("no %s %s image for %s to take the cross compiler from (%s)", t.Distro, t.Codename, host, strings.Join(errs, "; "))
	}
	var buf bytes.Buffer
	args := append([]string{"sh", "-c", downloadScript, "sh"}, t.CrossPackages()...)
	err := Run(ctx, Options{CacheDir: o.CacheDir, Image: ref, Platform: host, Pull: pull.PullMissing, Insecure: o.Insecure,
		Args: args, User: "0", Volumes: []sandbox.Bind{{Source: out, Destination: accelOut}},
		Stdout: &buf, Stderr: &buf, Logger: o.Logger})
	var ee *sandbox.ExitError
	switch {
	case errors.As(err, &ee) && ee.Code == 21:
		return "", &accel.Refusal{Reason: fmt.Sprintf("%s %s has no cross compiler for this host (%s): running emulated",
			t.Distro, t.Codename, strings.TrimSpace(buf.String()))}
	case err != nil:
		return "", fmt.Errorf("download the cross packages in %s: %v: %s", ref, err, lastLine(buf.String()))
	}
	return ref, nil
}

func lastLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		s = s[i+1:]
	}
	return s
}

// readDebs reads downloadScript's "package version" lines.
func readDebs(path string) (map[string]string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read the downloaded packages' list: %w", err)
	}
	m := map[string]string{}
	for _, l := range strings.Split(string(b), "\n") {
		if n, v, ok := strings.Cut(strings.TrimSpace(l), " "); ok {
			m[n] = v
		}
	}
	return m, nil
}

// selfCheck compiles accel.CheckFiles in the image twice, emulated and
// through tree, and compares the outputs (accel.CompareCheck).
func selfCheck(ctx context.Context, o Options, t *accel.Toolchain, tree, work string) ([]string, error) {
	dir, err := compileCheck(ctx, o, t, tree, work)
	if err != nil {
		return nil, err
	}
	return accel.CompareCheck(filepath.Join(dir, "out-emulated"), filepath.Join(dir, "out-accelerated"))
}

// compileCheck runs the self-check's compiles into work/check and returns
// that directory.
func compileCheck(ctx context.Context, o Options, t *accel.Toolchain, tree, work string) (string, error) {
	dir := filepath.Join(work, "check")
	if err := os.Mkdir(dir, 0o755); err != nil {
		return "", err
	}
	if err := accel.WriteCheck(dir); err != nil {
		return "", err
	}
	for _, mode := range []string{"emulated", "accelerated"} {
		var buf bytes.Buffer
		ro := Options{CacheDir: o.CacheDir, Image: o.Image, Platform: o.Platform, Pull: pull.PullMissing, Insecure: o.Insecure,
			Args: []string{"sh", "-c", accel.CheckScript, "sh", accelCheck, "out-" + mode}, User: "0",
			Volumes: []sandbox.Bind{{Source: dir, Destination: accelCheck}}, Stdout: &buf, Stderr: &buf, Logger: o.Logger}
		if mode == "accelerated" {
			ro.accelLayer = tree
		}
		t0 := time.Now()
		if err := Run(ctx, ro); err != nil {
			var ee *sandbox.ExitError
			if errors.As(err, &ee) {
				return "", &accel.Refusal{Reason: fmt.Sprintf("self-check: the %s %s toolchain failed to compile the check (%s): running emulated", mode, t.Distro, lastLine(buf.String()))}
			}
			return "", fmt.Errorf("self-check (%s): %w", mode, err)
		}
		o.Logger.Info("--accel: self-check compiled", "toolchain", mode, "took", time.Since(t0).Round(time.Millisecond))
	}
	return dir, nil
}

// AccelReport is what `xrun doctor --accel IMAGE` shows of an image's
// accelerator: its state (prepared now when the cache had none) and a
// self-check run now.
type AccelReport struct {
	Ref, Platform, Digest string
	State                 *accel.State
	// Same and Differ are the self-check's outputs, compared now.
	Same, Differ []string
}

// CheckAccel prepares o.Image's accelerator if needed and runs the
// self-check again.
func CheckAccel(ctx context.Context, o Options) (*AccelReport, error) {
	o.fill()
	r, err := resolve(ctx, o, PullOptions{Insecure: o.Insecure})
	if err != nil {
		return nil, err
	}
	plat := r.img.Platform
	plan, err := decide(ctx, &o, plat.Architecture, plat.Variant)
	if err != nil {
		return nil, err
	}
	if plan.Strategy == binfmt.Native {
		return nil, fmt.Errorf("%s runs natively here: nothing to accelerate", o.Image)
	}
	p, err := r.ensure(ctx)
	if err != nil {
		return nil, err
	}
	defer p.Release()
	rep := &AccelReport{Ref: p.Image.Ref, Platform: pull.PlatformString(plat), Digest: p.Image.Digest.String()}
	c := accel.Cache{Root: o.CacheDir}
	key := accel.Key(p.Image.Digest.Hex, runtime.GOARCH)
	st, _, err := ensureAccel(ctx, o, p, c, key)
	if err != nil {
		return nil, err
	}
	rep.State = st
	if st.Refused != "" {
		return rep, nil
	}
	lk, err := c.Lock(ctx, key, fsutil.Shared)
	if err != nil {
		return nil, err
	}
	defer lk.Unlock()
	work, err := os.MkdirTemp("", "xrun-accel-")
	if err != nil {
		return nil, err
	}
	defer fsutil.RemoveAll(work)
	dir, err := compileCheck(ctx, o, st.Tool, c.Tree(key), work)
	if err != nil {
		return nil, err
	}
	rep.Same, rep.Differ, err = accel.CompareFiles(filepath.Join(dir, "out-emulated"), filepath.Join(dir, "out-accelerated"))
	return rep, err
}
