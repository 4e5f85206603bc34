package binfmt

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// HostEntry is one entry of a binfmt_misc directory, for reports (xrun
// doctor, xrun emulator list).
type HostEntry struct {
	Name        string
	Interpreter string
	Flags       string
	Enabled     bool
	// Arch is the row of Arches whose binaries the handler runs, or nil.
	Arch *Arch
	// Unusable says why xrun cannot use the handler for Arch ("" if it can).
	Unusable string
}

// HostEntries lists the entries of the host's binfmt_misc directory dir
// (default /proc/sys/fs/binfmt_misc). mounted is false when nothing is
// mounted there (no handler can exist); disabled is true when binfmt_misc
// is switched off as a whole (its status file says "disabled").
func HostEntries(dir string) (hs []HostEntry, mounted, disabled bool, err error) {
	if dir == "" {
		dir = "/proc/sys/fs/binfmt_misc"
	}
	st, err := os.ReadFile(filepath.Join(dir, "status"))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, false, false, nil
	} else if err != nil {
		return nil, false, false, err
	}
	disabled = strings.TrimSpace(string(st)) == "disabled"
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, true, disabled, err
	}
	for _, e := range entries {
		if e.Name() == "register" || e.Name() == "status" || e.IsDir() {
			continue
		}
		data, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			continue
		}
		c, err := parseHostHandler(e.Name(), data)
		if err != nil {
			hs = append(hs, HostEntry{Name: e.Name(), Unusable: err.Error()})
			continue
		}
		h := HostEntry{Name: c.name, Interpreter: c.interp, Flags: c.flags, Enabled: c.enabled}
		for i := range Arches {
			a := &Arches[i]
			if c.offset == 0 && slices.ContainsFunc(sampleHeaders(a), func(s []byte) bool { return matches(s, c.magic, c.mask) }) {
				h.Arch = a
				h.Unusable = handlerUnusable(c)
				break
			}
		}
		hs = append(hs, h)
	}
	return hs, true, disabled, nil
}
