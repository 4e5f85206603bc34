//go:build integration

package integration

// Tests of the harness itself (images, registry, dropping to the test
// users, the emulators), runnable before bin/xrun exists:
//
//	go test -tags integration -run TestHarness -v ./integration/

import (
	"archive/tar"
	"bytes"
	"debug/elf"
	"errors"
	"io"
	"net/http"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

func platformString(p *v1.Platform) string {
	if p == nil {
		return "<nil>"
	}
	s := p.OS + "/" + p.Architecture
	if p.Variant != "" {
		s += "/" + p.Variant
	}
	return s
}

// layerFiles reads an image's layers (in order, without applying
// whiteouts) into path -> header and path -> content.
func layerFiles(t *testing.T, img v1.Image) ([]map[string]*tar.Header, map[string][]byte) {
	t.Helper()
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	var hdrs []map[string]*tar.Header
	contents := map[string][]byte{}
	for _, l := range layers {
		rc, err := l.Uncompressed()
		if err != nil {
			t.Fatal(err)
		}
		m := map[string]*tar.Header{}
		tr := tar.NewReader(rc)
		for {
			hdr, err := tr.Next()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			p := strings.TrimSuffix(hdr.Name, "/")
			m[p] = hdr
			if hdr.Typeflag == tar.TypeReg {
				b, err := io.ReadAll(tr)
				if err != nil {
					t.Fatal(err)
				}
				contents[p] = b
			}
		}
		rc.Close()
		hdrs = append(hdrs, m)
	}
	return hdrs, contents
}

// TestHarnessImages checks what the registry serves: the busybox index has
// one manifest per test platform, with the platform in the index descriptor
// and the config, and a /bin binary of the right ELF machine.
func TestHarnessImages(t *testing.T) {
	needImages(t)
	idx, im := pushedIndex(t, busyboxRepo)
	if im.MediaType != types.OCIImageIndex {
		t.Errorf("index media type %q, want %q", im.MediaType, types.OCIImageIndex)
	}
	var got, want []string
	for _, d := range im.Manifests {
		got = append(got, platformString(d.Platform))
	}
	for _, p := range platforms {
		want = append(want, p.Name)
	}
	slices.Sort(got)
	slices.Sort(want)
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("index platforms (-want +got):\n%s", diff)
	}

	for _, d := range im.Manifests {
		p := platformByName(platformString(d.Platform))
		t.Run(strings.ReplaceAll(p.Name, "/", "-"), func(t *testing.T) {
			img, err := idx.Image(d.Digest)
			if err != nil {
				t.Fatal(err)
			}
			cf, err := img.ConfigFile()
			if err != nil {
				t.Fatal(err)
			}
			if got := platformString(cf.Platform()); got != p.Name {
				t.Errorf("config platform %s, want %s", got, p.Name)
			}
			if diff := cmp.Diff([]string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin"}, cf.Config.Env); diff != "" {
				t.Errorf("Env (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff([]string{"/bin/sh"}, cf.Config.Cmd); diff != "" {
				t.Errorf("Cmd (-want +got):\n%s", diff)
			}
			hdrs, contents := layerFiles(t, img)
			if len(hdrs) != 1 {
				t.Fatalf("%d layers, want 1", len(hdrs))
			}
			files := hdrs[0]
			bin := path.Join("bin", p.BinName())
			for _, a := range applets {
				hdr := files["bin/"+a]
				if hdr == nil || hdr.Typeflag != tar.TypeSymlink || hdr.Linkname != p.BinName() {
					t.Errorf("bin/%s: want a symlink to %s, got %+v", a, p.BinName(), hdr)
				}
			}
			for dir, mode := range map[string]int64{"tmp": 0o1777, "proc": 0o555, "dev": 0o755, "sys": 0o555, "etc": 0o755} {
				if hdr := files[dir]; hdr == nil || hdr.Typeflag != tar.TypeDir || hdr.Mode != mode {
					t.Errorf("%s: want a directory mode %o, got %+v", dir, mode, hdr)
				}
			}
			if !strings.HasPrefix(string(contents["etc/passwd"]), "root:x:0:0:") {
				t.Errorf("etc/passwd = %q", contents["etc/passwd"])
			}
			f, err := elf.NewFile(bytes.NewReader(contents[bin]))
			if err != nil {
				t.Fatalf("%s: %v", bin, err)
			}
			if f.Machine != p.Machine || f.Class != p.Class || f.Data != p.Data {
				t.Errorf("%s: ELF %v %v %v, want %v %v %v", bin, f.Machine, f.Class, f.Data, p.Machine, p.Class, p.Data)
			}
			if f.Type != elf.ET_EXEC && f.Type != elf.ET_DYN {
				t.Errorf("%s: ELF type %v", bin, f.Type)
			}
			for _, prog := range f.Progs {
				if prog.Type == elf.PT_INTERP {
					t.Errorf("%s is dynamically linked; the test images need static binaries", bin)
				}
			}
		})
	}
}

// TestHarnessLayersImage checks the two-layer Docker image.
func TestHarnessLayersImage(t *testing.T) {
	needImages(t)
	idx, im := pushedIndex(t, layersRepo)
	if im.MediaType != types.DockerManifestList {
		t.Errorf("media type %q, want %q", im.MediaType, types.DockerManifestList)
	}
	var got []string
	for _, d := range im.Manifests {
		got = append(got, platformString(d.Platform))
		if d.MediaType != types.DockerManifestSchema2 {
			t.Errorf("%s: media type %q", platformString(d.Platform), d.MediaType)
		}
		img, err := idx.Image(d.Digest)
		if err != nil {
			t.Fatal(err)
		}
		hdrs, _ := layerFiles(t, img)
		if len(hdrs) != 2 || hdrs[1]["etc/.wh.removed-by-layer2"] == nil || hdrs[1]["data/.wh..wh..opq"] == nil {
			t.Errorf("%s: want 2 layers, the second with whiteouts", platformString(d.Platform))
		}
	}
	slices.Sort(got)
	if diff := cmp.Diff([]string{"linux/amd64", "linux/arm64/v8"}, got); diff != "" {
		t.Errorf("platforms (-want +got):\n%s", diff)
	}
}

// TestHarnessQemu runs each platform's binary under its static emulator
// directly, as the user with subordinate ids: checks the emulators and the
// `uname -m` column of the platform table.
func TestHarnessQemu(t *testing.T) {
	needImages(t)
	u := needUser(t, subUserName)
	for _, p := range platforms {
		t.Run(strings.ReplaceAll(p.Name, "/", "-"), func(t *testing.T) {
			needQemu(t, p)
			argv := []string{h.images.Bins[p.Name], "uname", "-m"}
			if !p.Native() {
				argv = append([]string{"/usr/bin/" + p.Qemu}, argv...)
			}
			out, _, code := runAs(t, opts{user: u}, argv...)
			if code != 0 || strings.TrimSpace(out) != p.Uname() {
				t.Errorf("uname -m: %q exit %d, want %q", out, code, p.Uname())
			}
		})
	}
}

// TestHarnessUsers checks the drop to each test user: uid, working
// directory, and that a file it creates in its work dir is its own.
func TestHarnessUsers(t *testing.T) {
	for _, name := range []string{subUserName, noSubUserName} {
		t.Run(name, func(t *testing.T) {
			u := needUser(t, name)
			dir := workDir(t, u)
			out, _, code := runAs(t, opts{user: u, dir: dir}, "/bin/sh", "-c", "id -u; id -g; pwd; touch made-here; echo $HOME $XRUN_CACHE")
			want := strings.Join([]string{
				strconv.Itoa(u.uid), strconv.Itoa(u.gid), dir, u.home + " " + u.cache,
			}, "\n") + "\n"
			if code != 0 {
				t.Fatalf("exit %d", code)
			}
			if diff := cmp.Diff(want, out); diff != "" {
				t.Errorf("output (-want +got):\n%s", diff)
			}
			fi, err := os.Stat(filepath.Join(dir, "made-here"))
			if err != nil {
				t.Fatal(err)
			}
			if st := fi.Sys().(*syscall.Stat_t); int(st.Uid) != u.uid {
				t.Errorf("made-here owned by uid %d, want %d", st.Uid, u.uid)
			}
			_, _, sub := subRange("/etc/subuid", u.name, u.uid)
			if sub != (name == subUserName) {
				t.Errorf("%s: has a subuid range = %v", u.name, sub)
			}
		})
	}
}

// TestHarnessRegistryStop starts a second registry, pushes to it, stops it
// and checks it no longer answers (what the offline test relies on).
func TestHarnessRegistryStop(t *testing.T) {
	needImages(t)
	reg, err := startRegistry(filepath.Join(h.base, "registry-stop"))
	if err != nil {
		t.Fatal(err)
	}
	defer reg.Stop()
	if err := h.images.Push(reg.addr); err != nil {
		t.Fatal(err)
	}
	resp, err := http.Get("http://" + reg.addr + "/v2/xrun-test/busybox/tags/list")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(b), `"latest"`) {
		t.Errorf("tags list: %s", b)
	}
	reg.Stop()
	reg.Stop() // idempotent
	if resp, err := http.Get("http://" + reg.addr + "/v2/"); err == nil {
		resp.Body.Close()
		t.Errorf("registry still answers after Stop: %s", resp.Status)
	}
	if reg.cmd.ProcessState == nil || syscall.Kill(reg.cmd.Process.Pid, 0) == nil {
		t.Errorf("registry process %d still exists", reg.cmd.Process.Pid)
	}
}

// pushedIndex fetches the index of repo from the test registry.
func pushedIndex(t *testing.T, repo string) (v1.ImageIndex, *v1.IndexManifest) {
	t.Helper()
	ref, err := name.ParseReference(h.reg.ref(repo))
	if err != nil {
		t.Fatal(err)
	}
	idx, err := remote.Index(ref)
	if err != nil {
		t.Fatal(err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	return idx, im
}
