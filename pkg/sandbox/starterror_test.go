package sandbox

import (
	"errors"
	"testing"
)

// TestStartErrorMount: a mount of the container's set-up refused in the
// user namespace (EACCES under Ubuntu's AppArmor restriction, EPERM from a
// container's seccomp profile or a masked /proc) is xrun's failure (125),
// not the command's "cannot execute" (126) or "not found" (127).
func TestStartErrorMount(t *testing.T) {
	for _, tc := range []struct {
		name, msg string
		code      int // 0: xrun's own error
	}{
		{"/bin/true", `unable to start container process: error during container init: error mounting "tmpfs" to rootfs at "/dev": mount src=tmpfs, dst=/dev: permission denied`, 0},
		{"/bin/true", `unable to start container process: error during container init: error mounting "/src" to rootfs at "/src": mount src=/src, dst=/src: no such file or directory`, 0},
		{"/bin/nope", `unable to start container process: exec: "/bin/nope": stat /bin/nope: no such file or directory`, 127},
		{"/etc/passwd", `unable to start container process: exec: "/etc/passwd": permission denied`, 126},
	} {
		err := startError(errors.New(tc.msg), tc.name, "cmd")
		var ce *CommandError
		got := 0
		if errors.As(err, &ce) {
			got = ce.Code
		}
		if got != tc.code {
			t.Errorf("startError(%q) = %v (code %d), want code %d", tc.msg, err, got, tc.code)
		}
	}
}
