package sandbox

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

func TestProtectMounts(t *testing.T) {
	home := t.TempDir()
	cache := filepath.Join(home, ".cache", "xrun")
	run := filepath.Join(home, "run", "xrun")
	for _, d := range []string{cache, run, filepath.Join(home, "src")} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	// A symbolic link to HOME: binding it exposes the cache as well.
	link := filepath.Join(t.TempDir(), "home")
	if err := os.Symlink(home, link); err != nil {
		t.Fatal(err)
	}
	prot := []protected{{cache, "xrun's cache"}, {run, "xrun's run directory"}}
	for _, tc := range []struct {
		name  string
		binds []Bind
		masks []string // destinations
		err   string
	}{
		{"cwd is HOME", []Bind{{Source: home, Destination: home}}, []string{cache, run}, ""},
		{"HOME elsewhere", []Bind{{Source: home, Destination: "/h"}}, []string{"/h/.cache/xrun", "/h/run/xrun"}, ""},
		{"read-only HOME", []Bind{{Source: home, Destination: "/h", ReadOnly: true}}, []string{"/h/.cache/xrun", "/h/run/xrun"}, ""},
		{"through a symlink", []Bind{{Source: link, Destination: "/l"}}, []string{"/l/.cache/xrun", "/l/run/xrun"}, ""},
		{"parent of the cache", []Bind{{Source: filepath.Dir(cache), Destination: "/c"}}, []string{"/c/xrun"}, ""},
		{"root", []Bind{{Source: "/", Destination: "/host"}}, []string{"/host" + cache, "/host" + run}, ""},
		{"twice", []Bind{{Source: home, Destination: home}, {Source: home, Destination: home}}, []string{cache, run}, ""},
		{"shadowed by a later bind", []Bind{{Source: home, Destination: "/h"}, {Source: filepath.Join(home, "src"), Destination: "/h/.cache"}},
			[]string{"/h/run/xrun"}, ""},
		{"a later bind exposes it again", []Bind{{Source: filepath.Join(home, "src"), Destination: home}, {Source: home, Destination: home}},
			[]string{cache, run}, ""},
		{"project", []Bind{{Source: filepath.Join(home, "src"), Destination: "/src"}}, nil, ""},
		{"sibling with a common prefix", []Bind{{Source: filepath.Join(home, ".cache", "xrun2"), Destination: "/x"}}, nil, ""},
		{"the cache itself", []Bind{{Source: cache, Destination: "/c"}}, nil, "cannot bind " + cache + ": it is inside xrun's cache"},
		{"inside the cache", []Bind{{Source: filepath.Join(cache, "rootfs"), Destination: "/r"}}, nil, ":ro"},
		{"inside the run root", []Bind{{Source: filepath.Join(run, "state"), Destination: "/r"}}, nil, "xrun's run directory"},
		{"inside the cache, read-only", []Bind{{Source: filepath.Join(cache, "rootfs"), Destination: "/r", ReadOnly: true}}, nil, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ms, err := protectMounts(tc.binds, prot)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err %v, want one containing %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, m := range ms {
				got = append(got, m.Destination)
				if m.Type != "tmpfs" || !slices.Contains(m.Options, "ro") {
					t.Errorf("mask %+v is not a read-only tmpfs", m)
				}
			}
			if !slices.Equal(got, tc.masks) {
				t.Errorf("masks %q, want %q", got, tc.masks)
			}
		})
	}
}

// TestConfigMasksAfterBinds: the masks come after every bind in the
// container's mounts, so that libcontainer mounts them over what the binds
// exposed.
func TestConfigMasksAfterBinds(t *testing.T) {
	home := t.TempDir()
	cache := filepath.Join(home, ".cache", "xrun")
	if err := os.MkdirAll(cache, 0o700); err != nil {
		t.Fatal(err)
	}
	opts := Options{Args: []string{"true"}, Lower: t.TempDir(), RunRoot: t.TempDir(), CacheDir: cache,
		Binds: []Bind{{Source: home, Destination: home}}, Tmpfs: []Tmpfs{{Destination: "/tmp"}}}
	if err := opts.fill(); err != nil {
		t.Fatal(err)
	}
	ids := []specs.LinuxIDMapping{{ContainerID: 0, HostID: uint32(os.Geteuid()), Size: 1}}
	cfg, err := config(t.TempDir(), "/xrun", false, ids, ids, opts)
	if err != nil {
		t.Fatal(err)
	}
	bind, mask := -1, -1
	for i, m := range cfg.Mounts {
		switch m.Destination {
		case home:
			bind = i
		case cache:
			mask = i
		}
	}
	if bind < 0 || mask < bind {
		t.Fatalf("bind of HOME at %d, mask of the cache at %d: want the mask after the bind", bind, mask)
	}
}
