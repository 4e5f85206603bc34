package rootfs

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestReadFileIn reads files of a hostile tree: symlinks resolve inside the
// root, and a FIFO, a device, a directory or a huge file is refused at once
// (a FIFO used to block the open for ever).
func TestReadFileIn(t *testing.T) {
	for _, sj := range []bool{false, true} {
		t.Run(map[bool]string{false: "openat2", true: "securejoin"}[sj], func(t *testing.T) {
			forceSecureJoin = sj
			defer func() { forceSecureJoin = false }()
			host := t.TempDir()
			secret := filepath.Join(host, "secret")
			if err := os.WriteFile(secret, []byte("host file\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			root := t.TempDir()
			must := func(err error) {
				t.Helper()
				if err != nil {
					t.Fatal(err)
				}
			}
			must(os.MkdirAll(filepath.Join(root, "etc", "sub"), 0o755))
			must(os.MkdirAll(filepath.Join(root, "usr/lib"), 0o755))
			must(os.WriteFile(filepath.Join(root, "etc/passwd"), []byte("root:x:0:0::/root:/bin/sh\n"), 0o644))
			must(os.WriteFile(filepath.Join(root, "usr/lib/os-release"), []byte("ID=test\n"), 0o644))
			must(os.Symlink("/usr/lib/os-release", filepath.Join(root, "etc/os-release")))
			must(os.Symlink(secret, filepath.Join(root, "etc/abs-escape")))
			must(os.Symlink("../../../../../.."+secret, filepath.Join(root, "etc/rel-escape")))
			must(unix.Mkfifo(filepath.Join(root, "etc/fifo"), 0o644))
			must(os.WriteFile(filepath.Join(root, "etc/big"), make([]byte, 5000), 0o644))

			if err := unix.Mknod(filepath.Join(root, "etc/deleted"), unix.S_IFCHR|0o644, 0); err == nil {
				if _, err := ReadFileIn(root, "etc/deleted", 4096); !errors.Is(err, ErrWhiteout) {
					t.Errorf("ReadFileIn of a whiteout: %v, want ErrWhiteout", err)
				}
			}
			for _, tc := range []struct {
				rel   string
				want  string
				check func(error) bool
			}{
				{rel: "etc/passwd", want: "root:x:0:0::/root:/bin/sh\n"},
				{rel: "/etc/os-release", want: "ID=test\n"},
				{rel: "etc/abs-escape", check: func(err error) bool { return errors.Is(err, fs.ErrNotExist) }},
				{rel: "../../etc/rel-escape", check: func(err error) bool { return errors.Is(err, fs.ErrNotExist) }},
				{rel: "etc/missing", check: func(err error) bool { return errors.Is(err, fs.ErrNotExist) }},
				{rel: "etc/fifo", check: func(err error) bool {
					var nr *NotRegularError
					return errors.As(err, &nr) && strings.Contains(err.Error(), "/etc/fifo is a named pipe (FIFO), not a regular file")
				}},
				{rel: "etc/sub", check: func(err error) bool { var nr *NotRegularError; return errors.As(err, &nr) }},
				{rel: "etc/big", check: func(err error) bool {
					var tl *TooLargeFileError
					return errors.As(err, &tl) && err.Error() == "/etc/big is larger than 4 KiB"
				}},
			} {
				done := make(chan struct{})
				var b []byte
				var err error
				go func() {
					b, err = ReadFileIn(root, tc.rel, 4096)
					close(done)
				}()
				select {
				case <-done:
				case <-time.After(10 * time.Second):
					t.Fatalf("ReadFileIn(%q) blocks", tc.rel)
				}
				switch {
				case tc.check == nil && (err != nil || string(b) != tc.want):
					t.Errorf("ReadFileIn(%q) = %q, %v; want %q", tc.rel, b, err, tc.want)
				case tc.check != nil && (err == nil || !tc.check(err)):
					t.Errorf("ReadFileIn(%q) = %q, %v; want the other error", tc.rel, b, err)
				}
			}
		})
	}
}
