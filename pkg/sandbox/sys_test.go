package sandbox

import (
	"os"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

func TestConfigSysRecursiveReadOnly(t *testing.T) {
	ids := []specs.LinuxIDMapping{{ContainerID: 0, HostID: uint32(os.Geteuid()), Size: 1}}
	cfg, err := config(t.TempDir(), "/xrun", false, ids, ids, Options{Network: NetworkHost})
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range cfg.Mounts {
		if m.Destination == "/sys" {
			if m.RecAttr == nil || m.RecAttr.Attr_set&unix.MOUNT_ATTR_RDONLY == 0 {
				t.Errorf("/sys is not read-only recursively: %+v", m)
			}
			return
		}
	}
	t.Error("no /sys mount")
}
