//go:build integration

package integration

// Fault injection (issue 8): kill -9 of xrun at random points of pull,
// unpack and run; a registry that resets connections, answers 500, cuts or
// corrupts blobs (faultproxy_test.go); a cache on a tmpfs that fills up;
// xrun prune and rmi while runs are active. After each fault the next run
// must work and the cache must be consistent: every blob hashes to its
// name, every published rootfs is complete, nothing of the killed run is
// left running.
//
// The kill delays are random; the seed is logged, and XRUN_FAULT_SEED=N
// replays a run.

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/xrun-dev/xrun/internal/testutil"
)

// faultPlatform is the platform the fault tests run: foreign on the usual
// amd64 CI host, so that a run goes through qemu.
const faultPlatform = "linux/arm64"

// needFault checks what every fault test needs and returns the user with
// subordinate ids.
func needFault(t *testing.T) *testUser {
	t.Helper()
	return needRun(t, subUserName, platformByName(faultPlatform))
}

// archImage returns the image of idx for arch (linux).
func archImage(t *testing.T, idx v1.ImageIndex, arch string) v1.Image {
	t.Helper()
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range im.Manifests {
		if d.Platform != nil && d.Platform.OS == "linux" && d.Platform.Architecture == arch {
			img, err := idx.Image(d.Digest)
			if err != nil {
				t.Fatal(err)
			}
			return img
		}
	}
	t.Fatalf("no linux/%s image in the index", arch)
	return nil
}

// pushFaultImage pushes the arm64 busybox image plus extra layers of
// incompressible data (size bytes each) as repo to the test registry.
func pushFaultImage(t *testing.T, repo string, extra int, size int64) v1.Image {
	t.Helper()
	return pushWithLayers(t, repo, archImage(t, h.images.Busybox, "arm64"), extra, size)
}

// pushWithLayers pushes base plus extra layers of incompressible data (size
// bytes each) as repo to the test registry.
func pushWithLayers(t *testing.T, repo string, base v1.Image, extra int, size int64) v1.Image {
	t.Helper()
	img := base
	for range extra {
		l, err := random.Layer(size, types.DockerLayer)
		if err != nil {
			t.Fatal(err)
		}
		if img, err = mutate.AppendLayers(img, l); err != nil {
			t.Fatal(err)
		}
	}
	ref, err := name.ParseReference(h.reg.ref(repo))
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(ref, img); err != nil {
		t.Fatalf("push %s: %v", ref, err)
	}
	return img
}

// faultCache returns an empty cache directory owned by u, removed at the
// end of the test.
func faultCache(t *testing.T, u *testUser, name string) string {
	t.Helper()
	dir, err := os.MkdirTemp(h.base, "cache-fault-"+name+"-")
	if err != nil {
		t.Fatal(err)
	}
	if err := mkdirOwned(dir, u); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { removeAll(dir) })
	return dir
}

// started is an xrun process started by startFaultXrun.
type started struct {
	cmd            *exec.Cmd
	stdout, stderr *os.File
}

func (s *started) out() string { return readAll(s.stdout) }
func (s *started) err() string { return readAll(s.stderr) }

func readAll(f *os.File) string {
	b, _ := os.ReadFile(f.Name())
	return string(b)
}

// startFaultXrun starts xrun with args as u on cache (not waited for).
// Its output goes to files, not pipes, so that Wait returns when xrun
// exits even if something it started survives it.
func startFaultXrun(t *testing.T, ctx context.Context, u *testUser, cache string, env []string, args ...string) *started {
	t.Helper()
	needXrun(t)
	s := &started{cmd: userCommand(ctx, u, u.home, append([]string{"XRUN_CACHE=" + cache}, env...), append([]string{h.xrun}, args...)...)}
	for _, f := range []**os.File{&s.stdout, &s.stderr} {
		var err error
		if *f, err = os.CreateTemp(h.base, "fault-out-"); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { (*f).Close(); os.Remove((*f).Name()) })
	}
	s.cmd.Stdout, s.cmd.Stderr = s.stdout, s.stderr
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	return s
}

// treeEntry describes one file of a rootfs for comparison.
type treeEntry struct {
	kind fs.FileMode
	perm fs.FileMode
	uid  uint32
	gid  uint32
	size int64
	sum  string // sha256 of a regular file, target of a symlink
}

func (e treeEntry) String() string {
	return fmt.Sprintf("%v %o %d:%d %d %s", e.kind, e.perm, e.uid, e.gid, e.size, e.sum)
}

// listTree lists dir (as root: every file is readable) by relative path.
func listTree(t *testing.T, dir string) map[string]treeEntry {
	t.Helper()
	out := map[string]treeEntry{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		fi, err := d.Info()
		if err != nil {
			return err
		}
		st := fi.Sys().(*syscall.Stat_t)
		e := treeEntry{kind: fi.Mode().Type(), perm: fi.Mode().Perm() | fi.Mode()&(fs.ModeSetuid|fs.ModeSetgid|fs.ModeSticky), uid: st.Uid, gid: st.Gid}
		switch {
		case fi.Mode().IsRegular():
			e.size = fi.Size()
			e.sum = fileSum(t, p)
		case fi.Mode()&fs.ModeSymlink != 0:
			e.sum, _ = os.Readlink(p)
		}
		out[rel] = e
		return nil
	})
	if err != nil {
		t.Errorf("list %s: %v", dir, err)
	}
	return out
}

func fileSum(t *testing.T, p string) string {
	f, err := os.Open(p)
	if err != nil {
		t.Errorf("%v", err)
		return ""
	}
	defer f.Close()
	hh := sha256.New()
	if _, err := io.Copy(hh, f); err != nil {
		t.Errorf("read %s: %v", p, err)
	}
	return hex.EncodeToString(hh.Sum(nil))
}

// cacheWant is what checkCache compares a cache with.
type cacheWant struct {
	img       v1.Image
	reference map[string]treeEntry // listing of a complete rootfs of img (nil: not compared)
	published bool                 // img's rootfs must be published
	noTemps   bool                 // no partial downloads or temp rootfs may be left
}

// checkCache checks what later runs trust, at any time: every blob in
// blobs/sha256 hashes to its name; a published rootfs of img is complete
// (same files, modes and contents as the reference); and, as w asks, that
// img's rootfs is published and no temp files are left.
func checkCache(t *testing.T, cache string, w cacheWant) {
	t.Helper()
	blobs, _ := filepath.Glob(filepath.Join(cache, "blobs", "sha256", "*"))
	for _, b := range blobs {
		if got := fileSum(t, b); got != filepath.Base(b) {
			t.Errorf("blob %s holds sha256:%s", filepath.Base(b), got)
		}
	}
	d, err := w.img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	root := filepath.Join(cache, "rootfs", d.Hex)
	fi, err := os.Lstat(root)
	switch {
	case err == nil && fi.IsDir():
		if w.reference != nil {
			got := listTree(t, root)
			var diffs []string
			for p, e := range w.reference {
				if g, ok := got[p]; !ok {
					diffs = append(diffs, "missing "+p)
				} else if g != e {
					diffs = append(diffs, fmt.Sprintf("%s: %v, want %v", p, g, e))
				}
			}
			for p := range got {
				if _, ok := w.reference[p]; !ok {
					diffs = append(diffs, "extra "+p)
				}
			}
			slices.Sort(diffs)
			if len(diffs) > 0 {
				t.Errorf("published rootfs %s differs from a complete unpack in %d entries: %s", d.Hex[:12], len(diffs), strings.Join(diffs[:min(len(diffs), 10)], "; "))
			}
		}
		if w.published {
			m, _ := w.img.Manifest()
			for _, l := range m.Layers {
				if _, err := os.Stat(filepath.Join(cache, "blobs", "sha256", l.Digest.Hex)); err != nil {
					t.Errorf("layer %s of a published image is not in the blob store: %v", l.Digest, err)
				}
			}
		}
	case err == nil:
		t.Errorf("rootfs %s is a %v, not a directory", d.Hex[:12], fi.Mode().Type())
	case w.published:
		t.Errorf("rootfs %s is not published: %v", d.Hex[:12], err)
	}
	if w.noTemps {
		left, _ := filepath.Glob(filepath.Join(cache, "blobs", "tmp", "*"))
		more, _ := filepath.Glob(filepath.Join(cache, "rootfs", ".tmp-*"))
		if left = append(left, more...); len(left) > 0 {
			t.Errorf("temp files left: %v", left)
		}
	}
}

// markedProcs lists the processes whose environment has FAULT_MARK=mark,
// as "pid uid cmdline". xrun runs with that variable and passes it to the
// container (-e FAULT_MARK), so it finds xrun, its helpers, the container's
// init and the command (qemu passes the environment through), and nothing
// of other tests or sessions of the same user.
func markedProcs(mark string) []string {
	want := []byte("\x00FAULT_MARK=" + mark + "\x00")
	ents, _ := os.ReadDir("/proc")
	var out []string
	for _, e := range ents {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		env, err := os.ReadFile(filepath.Join("/proc", e.Name(), "environ"))
		if err != nil || !bytes.Contains(append([]byte{0}, env...), want) {
			continue
		}
		cl, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		uid := "?"
		if b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "status")); err == nil {
			for _, line := range strings.Split(string(b), "\n") {
				if f := strings.Fields(line); len(f) > 1 && f[0] == "Uid:" {
					uid = f[1]
				}
			}
		}
		out = append(out, fmt.Sprintf("%s uid %s %q", e.Name(), uid, strings.ReplaceAll(strings.TrimRight(string(cl), "\x00"), "\x00", " ")))
	}
	return out
}

// waitNoMarkedProcs waits up to 5 s for the processes marked mark to be
// gone, and kills them if not.
func waitNoMarkedProcs(t *testing.T, mark, after string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		left := markedProcs(mark)
		if len(left) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("%s: processes still running 5s later: %v", after, left)
			for _, p := range left {
				if pid, err := strconv.Atoi(strings.Fields(p)[0]); err == nil {
					syscall.Kill(pid, syscall.SIGKILL)
				}
			}
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitMarkedProc waits up to 10 s for a process marked mark whose command
// line contains word: the container's command has started.
func waitMarkedProc(t *testing.T, mark, word string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !slices.ContainsFunc(markedProcs(mark), func(p string) bool { return strings.Contains(p, word) }) {
		if time.Now().After(deadline) {
			t.Fatalf("no process running %q in the container after 10s (marked processes: %v)", word, markedProcs(mark))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// cacheState says what a cache holds for img, for the log: which of its
// blobs are stored, partial downloads, temp rootfs, and whether its rootfs
// is published.
func cacheState(cache string, img v1.Image) string {
	m, _ := img.Manifest()
	d, _ := img.Digest()
	stored := 0
	for _, l := range append([]v1.Descriptor{m.Config}, m.Layers...) {
		if _, err := os.Stat(filepath.Join(cache, "blobs", "sha256", l.Digest.Hex)); err == nil {
			stored++
		}
	}
	partial, _ := filepath.Glob(filepath.Join(cache, "blobs", "tmp", "*"))
	temps, _ := filepath.Glob(filepath.Join(cache, "rootfs", ".tmp-*"))
	_, err := os.Stat(filepath.Join(cache, "rootfs", d.Hex))
	return fmt.Sprintf("%d/%d config and layer blobs, %d partial downloads, %d temp rootfs entries, rootfs published: %v",
		stored, len(m.Layers)+1, len(partial), len(temps), err == nil)
}

// faultSeed returns the seed of the random kill delays (logged).
func faultSeed(t *testing.T) uint64 {
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("XRUN_FAULT_SEED"); s != "" {
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("XRUN_FAULT_SEED=%q: %v", s, err)
		}
		seed = n
	}
	t.Logf("random seed %d (replay with XRUN_FAULT_SEED=%d)", seed, seed)
	return seed
}

// TestFaultKillRounds kills xrun with SIGKILL 20 times at random points: 14
// times during a cold run (resolve, download, streamed unpack, publish, the
// command's start) of the two-layer image served slowly, 6 times while the
// command runs. After each kill: the cache is consistent (blobs hash to
// their names, a published rootfs is complete), nothing of the run is left
// running, and the next run succeeds with the right output and leaves a
// complete rootfs and no temp files.
func TestFaultKillRounds(t *testing.T) {
	u := needFault(t)
	img := archImage(t, h.images.Layers, "arm64")
	proxy := startFaultProxy(t, h.reg.addr, faultMode{Rate: 2 << 20})
	ref := proxy.ref(layersRepo)
	args := []string{"--platform", faultPlatform, "-e", "FAULT_MARK", ref, "--"}
	check := []string{"cat", "/etc/added-by-layer2"}

	// A reference cold run: how long one takes, and the complete rootfs.
	refCache := faultCache(t, u, "kill-ref")
	start := time.Now()
	out, stderr, code := run(t, opts{user: u, env: []string{"XRUN_CACHE=" + refCache}}, append(args, check...)...)
	cold := time.Since(start)
	if code != 0 || out != "layer2\n" {
		t.Fatalf("cold run: exit %d, %q, %s", code, out, stderr)
	}
	d, _ := img.Digest()
	reference := listTree(t, filepath.Join(refCache, "rootfs", d.Hex))
	if _, ok := reference["bin/busybox"]; !ok || reference["bin/busybox"].perm&0o111 == 0 {
		t.Fatalf("reference rootfs has no executable bin/busybox: %v", reference["bin/busybox"])
	}
	if want := fileSum(t, h.images.Bins[faultPlatform]); reference["bin/busybox"].sum != want {
		t.Fatalf("reference rootfs bin/busybox is not the image's busybox")
	}
	if _, ok := reference["etc/removed-by-layer2"]; ok {
		t.Fatalf("reference rootfs has the file layer 2 deletes")
	}
	start = time.Now()
	if _, stderr, code := run(t, opts{user: u, env: []string{"XRUN_CACHE=" + refCache}}, append(args, "true")...); code != 0 {
		t.Fatalf("warm run: exit %d: %s", code, stderr)
	}
	warm := time.Since(start)
	t.Logf("cold run %v, warm run %v, proxy: %v", cold.Round(time.Millisecond), warm.Round(time.Millisecond), proxy.stats())

	rng := rand.New(rand.NewPCG(faultSeed(t), 8))
	kinds := slices.Repeat([]string{"cold"}, 14)
	kinds = append(kinds, slices.Repeat([]string{"run"}, 6)...)
	rng.Shuffle(len(kinds), func(i, j int) { kinds[i], kinds[j] = kinds[j], kinds[i] })
	for i, kind := range kinds {
		var delay time.Duration
		if kind == "cold" {
			delay = time.Duration(rng.Float64() * float64(cold))
		} else {
			// From the moment the command runs.
			delay = time.Duration(rng.Float64() * float64(time.Second))
		}
		t.Run(fmt.Sprintf("%02d-%s-after-%v", i, kind, delay.Round(time.Millisecond)), func(t *testing.T) {
			cache := refCache
			cmdArgs := append(slices.Clone(args), "sleep", "5")
			if kind == "cold" {
				cache = faultCache(t, u, "kill")
				cmdArgs = append(slices.Clone(args), "true")
			}
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			mark := fmt.Sprintf("%d-%d", os.Getpid(), i)
			x := startFaultXrun(t, ctx, u, cache, []string{"FAULT_MARK=" + mark}, cmdArgs...)
			if kind == "run" {
				waitMarkedProc(t, mark, "sleep")
			}
			time.Sleep(delay)
			x.cmd.Process.Signal(syscall.SIGKILL)
			err := x.cmd.Wait()
			killed := time.Now()
			if err == nil {
				t.Logf("finished before the kill: %s", x.err())
			} else if code := exitCode(t, err); code != 128+int(syscall.SIGKILL) {
				t.Errorf("killed xrun: exit %d, want %d (the kill came after it failed?): %s", code, 128+int(syscall.SIGKILL), x.err())
			}
			waitNoMarkedProcs(t, mark, "kill -9 of xrun")
			t.Logf("all processes of the run gone %v after the kill", time.Since(killed).Round(time.Millisecond))
			// What the kill left: consistent, if incomplete.
			t.Logf("left by the kill: %s", cacheState(cache, img))
			checkCache(t, cache, cacheWant{img: img, reference: reference})
			// The next run completes what is missing and runs.
			out, stderr2, code := run(t, opts{user: u, env: []string{"XRUN_CACHE=" + cache, "FAULT_MARK=" + mark}}, append(args, check...)...)
			if code != 0 || out != "layer2\n" {
				t.Fatalf("run after kill -9: exit %d, stdout %q, stderr %s", code, out, stderr2)
			}
			checkCache(t, cache, cacheWant{img: img, reference: reference, published: true, noTemps: true})
			waitNoMarkedProcs(t, mark, "the run after the kill")
		})
	}
}

// arm64LastLayer is the arm64 busybox test image and the digest of its last
// layer, the one the fault tests damage.
func arm64LastLayer(t *testing.T) (v1.Image, v1.Hash) {
	t.Helper()
	img := archImage(t, h.images.Busybox, "arm64")
	m, err := img.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	return img, m.Layers[len(m.Layers)-1].Digest
}

// TestFaultRegistry runs cold pulls through a proxy that injects faults.
// Transient ones (resets, a few 500s, a body cut mid-way) are retried and
// the run succeeds; persistent 500s and a corrupted layer fail with one
// line and exit 125, leave nothing corrupt or half-published in the cache,
// and the next run against the healed registry succeeds.
func TestFaultRegistry(t *testing.T) {
	u := needFault(t)
	img, layer := arm64LastLayer(t)
	for _, tc := range []struct {
		name     string
		mode     faultMode
		fail     bool     // the run must fail (exit 125, one line)
		wants    []string // in the error line
		injected func(faultStats) int
		maxTime  time.Duration
	}{
		{name: "reset-connections", mode: faultMode{ResetFirst: 2},
			injected: func(s faultStats) int { return s.Resets }},
		{name: "500-then-ok", mode: faultMode{Fail500Blobs: 2},
			injected: func(s faultStats) int { return s.Fails }},
		{name: "body-cut", mode: faultMode{TruncateBlobs: 2},
			injected: func(s faultStats) int { return s.Truncated }},
		{name: "500-always", mode: faultMode{Fail500Blobs: -1}, fail: true,
			wants:    []string{"HTTP 500", "retried", "try again later"},
			injected: func(s faultStats) int { return s.Fails }, maxTime: 15 * time.Second},
		{name: "corrupt-layer", mode: faultMode{CorruptBlob: layer.String()}, fail: true,
			wants:    []string{layer.String(), "does not match the digest", "layer 1/1"},
			injected: func(s faultStats) int { return s.Corrupted }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			proxy := startFaultProxy(t, h.reg.addr, tc.mode)
			cache := faultCache(t, u, tc.name)
			o := opts{user: u, env: []string{"XRUN_CACHE=" + cache}}
			argv := []string{"--platform", faultPlatform, proxy.ref(busyboxRepo), "--", "uname", "-m"}
			start := time.Now()
			out, stderr, code := run(t, o, argv...)
			took := time.Since(start)
			st := proxy.stats()
			t.Logf("took %v; proxy: %v", took.Round(time.Millisecond), st)
			if tc.injected(st) == 0 {
				t.Errorf("no fault was injected")
			}
			if tc.maxTime > 0 && took > tc.maxTime {
				t.Errorf("xrun took %v to give up, want at most %v", took, tc.maxTime)
			}
			if !tc.fail {
				if code != 0 || out != "aarch64\n" {
					t.Fatalf("run through %s: exit %d, %q, %s", tc.name, code, out, stderr)
				}
				checkCache(t, cache, cacheWant{img: img, published: true, noTemps: true})
				return
			}
			t.Logf("error line: %s", strings.TrimSpace(stderr))
			wantXrunError(t, stderr, code, tc.wants...)
			checkCache(t, cache, cacheWant{img: img, noTemps: true})
			d, _ := img.Digest()
			if _, err := os.Lstat(filepath.Join(cache, "rootfs", d.Hex)); err == nil {
				t.Errorf("rootfs published after a failed pull")
			}
			if _, err := os.Stat(filepath.Join(cache, "blobs", "sha256", layer.Hex)); err == nil {
				t.Errorf("layer %s is in the blob store after a failed pull", layer)
			}
			// The registry heals: the next run works.
			proxy.setMode(faultMode{})
			out, stderr, code = run(t, o, argv...)
			if code != 0 || out != "aarch64\n" {
				t.Fatalf("run after the registry healed: exit %d, %q, %s", code, out, stderr)
			}
			checkCache(t, cache, cacheWant{img: img, published: true, noTemps: true})
		})
	}
}

// TestFaultDiskFull puts the cache on a tmpfs too small for the image: the
// run fails with exit 125 and one line that says the cache is full and
// what to do, publishes no rootfs and leaves no temp files; first with a
// filesystem too small for the download, then for the unpack. Once the
// filesystem is larger, the next run works.
func TestFaultDiskFull(t *testing.T) {
	u := needFault(t)
	if os.Geteuid() != 0 {
		testutil.SkipOrFail(t, "mounting a tmpfs for the cache needs root")
	}
	// 1 MiB of busybox (1.9 MiB unpacked) and 3 MiB of random data:
	// about 4 MiB of blobs and 4.9 MiB unpacked.
	const repo = "xrun-test/fault-big:1"
	img := pushFaultImage(t, repo, 1, 3<<20)
	d, _ := img.Digest()
	cache := filepath.Join(h.base, "cache-fault-tmpfs")
	if err := os.Mkdir(cache, 0o755); err != nil {
		t.Fatal(err)
	}
	mount := func(args ...string) {
		t.Helper()
		if out, err := exec.Command("mount", args...).CombinedOutput(); err != nil {
			testutil.SkipOrFail(t, "mount %v: %v: %s", args, err, out)
		}
	}
	mount("-t", "tmpfs", "-o", fmt.Sprintf("size=3m,mode=0755,uid=%d,gid=%d", u.uid, u.gid), "xrun-fault", cache)
	t.Cleanup(func() {
		if out, err := exec.Command("umount", "-l", cache).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", cache, err, out)
		}
		os.Remove(cache)
	})
	o := opts{user: u, env: []string{"XRUN_CACHE=" + cache}}
	argv := []string{"--platform", faultPlatform, h.reg.ref(repo), "--", "uname", "-m"}

	remount := func(size string) {
		t.Helper()
		mount("-o", "remount,size="+size, cache)
	}
	runFull := func(t *testing.T, wants ...string) {
		t.Helper()
		_, stderr, code := run(t, o, argv...)
		t.Logf("error line: %s", strings.TrimSpace(stderr))
		wantXrunError(t, stderr, code, append([]string{"no space left on device", "the cache at " + cache + " is full", "XRUN_CACHE"}, wants...)...)
		if strings.Contains(stderr, "network") {
			t.Errorf("the error blames the network for a full disk: %s", stderr)
		}
		if _, err := os.Lstat(filepath.Join(cache, "rootfs", d.Hex)); err == nil {
			t.Errorf("rootfs published although xrun ran out of space")
		}
		checkCache(t, cache, cacheWant{img: img, noTemps: true})
		t.Logf("after the failure: %s; %s", cacheState(cache, img), fsUsage(cache))
	}
	runOK := func(t *testing.T) {
		t.Helper()
		out, stderr, code := run(t, o, argv...)
		if code != 0 || out != "aarch64\n" {
			t.Fatalf("run with space freed: exit %d, %q, %s", code, out, stderr)
		}
		checkCache(t, cache, cacheWant{img: img, published: true, noTemps: true})
	}

	// Too small for the blobs and the rootfs: the download or the
	// (streamed) unpack fails, whichever fills it first.
	t.Run("cold", func(t *testing.T) { runFull(t) })
	remount("64m")
	t.Run("cold-larger", runOK)

	// The blobs are stored, the rootfs is not: only the unpack needs room,
	// and there is too little.
	if _, stderr, code := run(t, o, "rmi", h.reg.ref(repo)); code != 0 {
		t.Fatalf("rmi: exit %d: %s", code, stderr)
	}
	var sfs syscall.Statfs_t
	if err := syscall.Statfs(cache, &sfs); err != nil {
		t.Fatal(err)
	}
	used := (sfs.Blocks - sfs.Bfree) * uint64(sfs.Bsize)
	remount(fmt.Sprintf("%dk", used>>10+2<<10)) // 2 MiB free, for 4.9 MiB of files
	t.Run("unpack", func(t *testing.T) { runFull(t, "unpack rootfs") })
	remount("64m")
	t.Run("unpack-larger", runOK)
}

// fsUsage says how full the filesystem of dir is.
func fsUsage(dir string) string {
	var sfs syscall.Statfs_t
	if err := syscall.Statfs(dir, &sfs); err != nil {
		return err.Error()
	}
	return fmt.Sprintf("%d KiB of %d KiB used", (sfs.Blocks-sfs.Bfree)*uint64(sfs.Bsize)>>10, sfs.Blocks*uint64(sfs.Bsize)>>10)
}

// TestFaultPruneWhileRunning starts 3 cold runs of one image at once (the
// pull served slowly) and, while they pull, unpack and run, calls xrun
// prune over and over and xrun rmi once: the runs finish with exit 0 and
// the right output, prune and rmi either work or refuse cleanly, and a run
// afterwards works (pulling again if rmi and prune removed the image).
func TestFaultPruneWhileRunning(t *testing.T) {
	u := needFault(t)
	cache := faultCache(t, u, "prune")
	o := opts{user: u, env: []string{"XRUN_CACHE=" + cache}}
	if _, stderr, code := run(t, o, "prune", "--help"); code != 0 {
		testutil.SkipOrFail(t, "this xrun has no prune command: %s", stderr)
	}
	_, _, rmiCode := run(t, o, "rmi", "--help")
	img := archImage(t, h.images.Busybox, "arm64")
	proxy := startFaultProxy(t, h.reg.addr, faultMode{Rate: 1 << 20})
	ref := proxy.ref(busyboxRepo)
	argv := []string{"--platform", faultPlatform, "-e", "FAULT_MARK", ref, "--", "sh", "-c", "sleep 3; cat /etc/passwd"}
	mark := fmt.Sprintf("%d-prune", os.Getpid())

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	const n = 3
	runs := make([]*started, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		runs[i] = startFaultXrun(t, ctx, u, cache, []string{"FAULT_MARK=" + mark}, argv...)
		wg.Go(func() { errs[i] = runs[i].cmd.Wait() })
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()

	var prunes, pruneFails int
	var longest time.Duration
	var pruneErrs []string
	rmiDone := false
	start := time.Now()
loop:
	for {
		select {
		case <-done:
			break loop
		default:
		}
		// Not run(): its log line per prune would drown the rest.
		pstart := time.Now()
		out, err := userCommand(ctx, u, u.home, o.env, h.xrun, "prune").CombinedOutput()
		prunes++
		longest = max(longest, time.Since(pstart))
		if err != nil {
			pruneFails++
			pruneErrs = append(pruneErrs, fmt.Sprintf("%v: %s", err, out))
		} else if !strings.HasPrefix(string(out), "freed 0 B") {
			t.Logf("prune during the runs: %s", bytes.TrimSpace(out))
		}
		if !rmiDone && rmiCode == 0 && time.Since(start) > 1500*time.Millisecond {
			rmiDone = true
			_, stderr, code := run(t, o, "rmi", ref)
			if code != 0 && !(code == 125 && strings.Contains(stderr, "in use")) {
				t.Errorf("rmi while the image runs: exit %d, %q; want 0 or 125 'in use'", code, stderr)
			}
		}
		time.Sleep(150 * time.Millisecond)
	}
	t.Logf("%d prunes during the runs (%d failed, the longest took %v), proxy: %v", prunes, pruneFails, longest.Round(time.Millisecond), proxy.stats())
	if pruneFails > 0 {
		t.Errorf("prune failed %d times while runs were active: %q", pruneFails, pruneErrs)
	}
	for i, r := range runs {
		if errs[i] != nil || !strings.HasPrefix(r.out(), "root:x:0:0:") {
			t.Errorf("run %d during prune: %v, stdout %q, stderr %q", i, errs[i], r.out(), r.err())
		}
	}
	waitNoMarkedProcs(t, mark, "the runs")
	checkCache(t, cache, cacheWant{img: img})
	// Afterwards a run works (and re-pulls what rmi and prune removed).
	if _, stderr, code := run(t, o, "prune"); code != 0 {
		t.Errorf("prune after the runs: exit %d: %s", code, stderr)
	}
	out, stderr, code := run(t, o, "--platform", faultPlatform, ref, "--", "cat", "/etc/passwd")
	if code != 0 || !strings.HasPrefix(out, "root:x:0:0:") {
		t.Fatalf("run after prune: exit %d, %q, %s", code, out, stderr)
	}
	checkCache(t, cache, cacheWant{img: img, published: true, noTemps: true})
}
