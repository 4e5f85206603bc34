package sandbox

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

func TestContainerLifecycle(t *testing.T) {
	cache := t.TempDir()
	lower := t.TempDir()
	meta := ContainerMeta{Name: "dev", Image: "busybox", Platform: "linux/arm64", Digest: "sha256:" + strings.Repeat("a", 64)}

	c, err := OpenContainer(cache, "dev")
	if err != nil {
		t.Fatal(err)
	}
	if c.Meta != nil {
		t.Fatalf("new container has metadata %+v", c.Meta)
	}
	// A second run of the same name is refused while the first holds it.
	if _, err := OpenContainer(cache, "dev"); err == nil || !strings.Contains(err.Error(), "in use") {
		t.Errorf("second OpenContainer: %v, want an in-use error", err)
	}
	if err := c.Attach(meta, lower); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(c.Upper, "file"), []byte("kept"), 0o644); err != nil {
		t.Fatal(err)
	}
	// A directory the owner cannot enter: rm must get through it.
	if err := os.Mkdir(filepath.Join(c.Upper, "locked"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(c.Upper, "locked", "f"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Join(c.Upper, "locked"), 0); err != nil {
		t.Fatal(err)
	}
	if err := RemoveContainer(cache, "dev"); err == nil || !strings.Contains(err.Error(), "in use") {
		t.Errorf("RemoveContainer while in use: %v, want an in-use error", err)
	}
	c.Close()

	list, err := ListContainers(cache)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 1 || list[0].Name != "dev" || list[0].Image != "busybox" || list[0].Size == 0 || list[0].InUse {
		t.Errorf("ListContainers = %+v", list)
	}

	// The same image reuses it; another one is refused.
	c, err = OpenContainer(cache, "dev")
	if err != nil {
		t.Fatal(err)
	}
	if c.Meta == nil || c.Meta.Digest != meta.Digest {
		t.Fatalf("reopened container meta = %+v", c.Meta)
	}
	other := meta
	other.Image, other.Digest = "debian", "sha256:"+strings.Repeat("b", 64)
	if err := c.Attach(other, lower); err == nil || !strings.Contains(err.Error(), "was created from busybox") {
		t.Errorf("Attach with another image: %v", err)
	}
	if err := c.Attach(meta, lower); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(c.Upper, "file")); err != nil || string(b) != "kept" {
		t.Errorf("upper file after reopening: %q, %v", b, err)
	}
	c.Close()

	// The remains of an interrupted rm (its pid is gone) are collected.
	trash := filepath.Join(cache, "containers", ".rm-old-999999999")
	if err := os.MkdirAll(filepath.Join(trash, "upper"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := RemoveContainer(cache, "dev"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(trash); err == nil {
		t.Error("the remains of an interrupted rm were not collected")
	}
	if list, _ := ListContainers(cache); len(list) != 0 {
		t.Errorf("after rm, ListContainers = %+v", list)
	}
	if err := RemoveContainer(cache, "dev"); !errors.Is(err, ErrNoContainer) {
		t.Errorf("RemoveContainer of a removed container: %v, want ErrNoContainer", err)
	}
}

func TestCheckName(t *testing.T) {
	for name, ok := range map[string]bool{
		"dev": true, "arm64-dev_1.2": true, "A": true,
		"": false, "-x": false, ".x": false, "a/b": false, "..": false, "a b": false, strings.Repeat("a", 129): false,
	} {
		if err := CheckName(name); (err == nil) != ok {
			t.Errorf("CheckName(%q) = %v, want ok %v", name, err, ok)
		}
	}
}

func TestResolveUser(t *testing.T) {
	lower, upper := t.TempDir(), t.TempDir()
	write := func(root, rel, content string) {
		t.Helper()
		p := filepath.Join(root, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(lower, "etc/passwd", "root:x:0:0:root:/root:/bin/sh\nbob:x:1000:1000::/home/bob:/bin/sh\n")
	write(lower, "etc/group", "root:x:0:\nbob:x:1000:\nstaff:x:50:bob\n")
	for _, tc := range []struct {
		spec    string
		upper   string
		want    User
		wantErr bool
	}{
		{spec: "", want: User{Spec: "root", Home: "/root"}},
		{spec: "0", want: User{Spec: "0", Home: "/root"}},
		{spec: "bob", want: User{Spec: "bob", UID: 1000, GID: 1000, AdditionalGIDs: []uint32{50}, Home: "/home/bob"}},
		{spec: "bob:staff", want: User{Spec: "bob:staff", UID: 1000, GID: 50, Home: "/home/bob"}},
		{spec: "1234:5", want: User{Spec: "1234:5", UID: 1234, GID: 5, Home: "/"}},
		{spec: "alice", wantErr: true},
		{spec: "alice", upper: upper, want: User{Spec: "alice", UID: 1001, GID: 1001, Home: "/home/alice"}},
		{spec: "bob:nogroup", wantErr: true},
	} {
		if tc.upper != "" {
			// useradd in a named container changed /etc/passwd in its upper layer.
			write(upper, "etc/passwd", "root:x:0:0:root:/root:/bin/sh\nalice:x:1001:1001::/home/alice:/bin/sh\n")
		}
		got, err := ResolveUser(tc.spec, lower, tc.upper)
		if (err != nil) != tc.wantErr {
			t.Errorf("ResolveUser(%q) error = %v, want error %v", tc.spec, err, tc.wantErr)
			continue
		}
		if !tc.wantErr && (got.UID != tc.want.UID || got.GID != tc.want.GID || got.Home != tc.want.Home ||
			len(got.AdditionalGIDs) != len(tc.want.AdditionalGIDs)) {
			t.Errorf("ResolveUser(%q) = %+v, want %+v", tc.spec, *got, tc.want)
		}
	}
}

func TestCheckUser(t *testing.T) {
	single := []specs.LinuxIDMapping{{ContainerID: 0, HostID: 1000, Size: 1}}
	full := []specs.LinuxIDMapping{{ContainerID: 0, HostID: 1000, Size: 1}, {ContainerID: 1, HostID: 200000, Size: 65536}}
	if err := checkUser(&User{Spec: "root", AdditionalGIDs: []uint32{5}}, single, single); err != nil {
		t.Errorf("root with a single map: %v", err)
	}
	err := checkUser(&User{Spec: "bob", UID: 1000, GID: 1000}, single, single)
	if err == nil || !strings.Contains(err.Error(), "subordinate id range") {
		t.Errorf("bob with a single map: %v, want a subordinate range hint", err)
	}
	u := &User{Spec: "bob", UID: 1000, GID: 1000, AdditionalGIDs: []uint32{50, 70000}}
	if err := checkUser(u, full, full); err != nil {
		t.Errorf("bob with a full map: %v", err)
	}
	if len(u.AdditionalGIDs) != 1 || u.AdditionalGIDs[0] != 50 {
		t.Errorf("unmapped supplementary groups kept: %v", u.AdditionalGIDs)
	}
	if err := checkUser(&User{Spec: "70000", UID: 70000}, full, full); err == nil || !strings.Contains(err.Error(), "0-65536") {
		t.Errorf("uid 70000 with a full map: %v", err)
	}
}

func TestWriteAptConfig(t *testing.T) {
	root := t.TempDir()
	if hasAptConfig(root) {
		t.Error("hasAptConfig on an image without /etc/apt")
	}
	if err := os.MkdirAll(filepath.Join(root, "etc/apt"), 0o755); err != nil {
		t.Fatal(err)
	}
	if !hasAptConfig(root) {
		t.Error("hasAptConfig = false with /etc/apt")
	}
	// An absolute symlink must resolve inside the root, not on the host.
	if err := os.Symlink("/nonexistent-xrun-test", filepath.Join(root, "etc/apt/apt.conf.d")); err != nil {
		t.Fatal(err)
	}
	if err := writeAptConfig(root); err == nil {
		if _, err := os.Stat("/nonexistent-xrun-test"); err == nil {
			t.Fatal("writeAptConfig followed a symlink out of the root")
		}
	}
	os.Remove(filepath.Join(root, "etc/apt/apt.conf.d"))
	if err := writeAptConfig(root); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(root, aptConfPath))
	if err != nil || !strings.Contains(string(b), `APT::Sandbox::User "root";`) {
		t.Errorf("apt config = %q, %v", b, err)
	}
}

// TestResolveUserHostileFiles: an image whose /etc/passwd or /etc/group is a
// FIFO used to block ResolveUser in open(2) for ever (Ctrl-C could not stop
// it). It must fail at once with a one-line error; so must a huge file.
func TestResolveUserHostileFiles(t *testing.T) {
	for _, tc := range []struct {
		file, kind, want string
	}{
		{"etc/passwd", "fifo", "the image's /etc/passwd is a named pipe (FIFO), not a regular file: refusing to read it (the image is broken or hostile): use another image"},
		{"etc/group", "fifo", "the image's /etc/group is a named pipe (FIFO), not a regular file"},
		{"etc/passwd", "huge", "the image's /etc/passwd is larger than 16 MiB: refusing to read it"},
		{"etc/passwd", "dir", "the image's /etc/passwd is a directory, not a regular file"},
	} {
		t.Run(tc.file+" "+tc.kind, func(t *testing.T) {
			lower := t.TempDir()
			if err := os.MkdirAll(filepath.Join(lower, "etc"), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(lower, "etc/passwd"), []byte("app:x:1000:1000::/home/app:/bin/sh\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			p := filepath.Join(lower, tc.file)
			os.Remove(p)
			var err error
			switch tc.kind {
			case "fifo":
				err = unix.Mkfifo(p, 0o644)
			case "huge":
				err = os.WriteFile(p, make([]byte, 17<<20), 0o644)
			case "dir":
				err = os.Mkdir(p, 0o755)
			}
			if err != nil {
				t.Fatal(err)
			}
			done := make(chan error, 1)
			go func() {
				_, err := ResolveUser("app", lower, "")
				done <- err
			}()
			select {
			case err = <-done:
			case <-time.After(10 * time.Second):
				t.Fatal("ResolveUser blocks on the image's " + tc.file)
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "\n") {
				t.Fatalf("ResolveUser error = %v, want one line containing %q", err, tc.want)
			}
		})
	}
	// A file deleted in a named container's upper layer (an overlay
	// whiteout) is missing, not the image's, and not an error.
	lower, upper := t.TempDir(), t.TempDir()
	for _, d := range []string{lower, upper} {
		if err := os.MkdirAll(filepath.Join(d, "etc"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(lower, "etc/passwd"), []byte("app:x:1000:1000::/home/app:/bin/sh\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mknod(filepath.Join(upper, "etc/passwd"), unix.S_IFCHR|0o644, 0); err != nil {
		t.Skipf("cannot create a whiteout here: %v", err)
	}
	if _, err := ResolveUser("app", lower, upper); err == nil || !strings.Contains(err.Error(), "--user app") {
		t.Errorf("ResolveUser with /etc/passwd deleted in the upper layer: %v, want an unknown-user error", err)
	}
	if u, err := ResolveUser("0", lower, upper); err != nil || u.UID != 0 {
		t.Errorf("ResolveUser(0) with /etc/passwd deleted: %v, %v", u, err)
	}
}
