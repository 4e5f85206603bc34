//go:build integration

package integration

import (
	"strings"
	"testing"
	"time"
)

// TestSecurityFifoPasswd is the attack of issue 13 item 6: an image whose
// /etc/passwd (or /etc/group) is a named pipe and whose config says
// User: app. xrun reads those files on the host to resolve the user; opening
// a FIFO for reading blocked it for ever, and Ctrl-C could not stop it. It
// must fail at once, exit 125, with one line saying what is wrong.
func TestSecurityFifoPasswd(t *testing.T) {
	needImages(t)
	u := needUser(t, subUserName)
	for _, file := range []string{"passwd", "group"} {
		t.Run(file, func(t *testing.T) {
			ref, err := h.images.PushFifoPasswd(h.reg.addr, file)
			if err != nil {
				t.Fatal(err)
			}
			// Pull (and unpack) first, so that the run below is timed alone.
			if _, _, code := run(t, opts{user: u}, "pull", ref); code != 0 {
				t.Fatalf("xrun pull %s: status %d", ref, code)
			}
			start := time.Now()
			_, stderr, code := run(t, opts{user: u, timeout: 30 * time.Second}, "--no-cwd", ref)
			took := time.Since(start)
			want := "the image's /etc/" + file + " is a named pipe (FIFO), not a regular file: refusing to read it"
			if code != 125 || !strings.Contains(stderr, want) {
				t.Errorf("run of an image with a FIFO at /etc/%s and User app: status %d, stderr %q; want 125 and %q", file, code, stderr, want)
			}
			if n := strings.Count(strings.TrimSpace(stderr), "\n"); n != 0 {
				t.Errorf("the error has %d lines, want one: %q", n+1, stderr)
			}
			if took > 10*time.Second {
				t.Errorf("xrun took %v to refuse the image, want a few seconds", took.Round(time.Millisecond))
			}
		})
	}
}
