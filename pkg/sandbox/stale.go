package sandbox

import (
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/opencontainers/runc/libcontainer"

	"github.com/xrun-dev/xrun/pkg/binfmt"
)

// collectStale removes what runs killed with SIGKILL left behind: their
// libcontainer state dir (state.json) and their run dir. A run is stale when
// libcontainer says it is stopped, or when its run dir has no state and is
// older than a minute (a run still being set up has a young run dir).
func collectStale(runRoot string, log *slog.Logger) {
	entries, err := os.ReadDir(runRoot)
	if err != nil {
		return
	}
	stateRoot := filepath.Join(runRoot, stateDir)
	for _, e := range entries {
		id := e.Name()
		if !strings.HasPrefix(id, "xrun-") {
			continue
		}
		c, err := libcontainer.Load(stateRoot, id)
		if err == nil {
			st, err := c.Status()
			if err != nil || st != libcontainer.Stopped {
				continue
			}
			_ = c.Destroy()
		} else {
			info, err := e.Info()
			if err != nil || time.Since(info.ModTime()) < time.Minute {
				continue
			}
			_ = os.RemoveAll(filepath.Join(stateRoot, id))
		}
		log.Debug("collected state of an interrupted run", "id", id)
		_ = os.RemoveAll(filepath.Join(runRoot, id))
	}
}

// reaperUsable reports whether the xrun binary can serve as PID 1 inside an
// arbitrary image: only a static binary runs without the image's loader.
func reaperUsable(exe string) bool {
	ok, err := binfmt.IsStatic(exe)
	return err == nil && ok
}
