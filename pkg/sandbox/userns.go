package sandbox

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/xrun-dev/xrun/pkg/rootfs"
)

// RemoveHelperCommand is the hidden command under which the xrun binary
// removes a tree from inside a user namespace (see removeInUserNS). The CLI
// registers it; it is not meant to be typed.
const RemoveHelperCommand = "__userns-rm"

// removeInUserNS removes dir from a new user namespace that maps the
// invoking user to root and its subordinate ranges to 1..65536, as a run
// does: there, files that a run created as another user (owned by
// subordinate ids on the host) belong to mapped ids, over which the
// namespace's root has CAP_DAC_OVERRIDE and CAP_FOWNER.
//
// Only setuid newuidmap/newgidmap may write such maps, and they can only do
// so for a process that already exists, so this is done in two stages:
// the xrun binary is started in a new user namespace (stage "wait") and
// blocks on its stdin; the maps are written; it is released and re-executes
// itself (stage "run"), because capabilities in the namespace are granted
// at execve only to a process whose uid is mapped to 0 there.
func removeInUserNS(dir string) error {
	uids, gids, full := idMappings(slog.New(slog.DiscardHandler))
	if !full || os.Geteuid() == 0 {
		return errors.New("some files are owned by ids outside your own and no subordinate id range is configured " +
			"(/etc/subuid, /etc/subgid) to reach them")
	}
	r, w, err := os.Pipe()
	if err != nil {
		return err
	}
	defer r.Close()
	defer w.Close()
	var stderr bytes.Buffer
	cmd := exec.Command("/proc/self/exe", RemoveHelperCommand, "wait", dir)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = r, io.Discard, &stderr
	cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin"}
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWUSER, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start the removal helper: %w", err)
	}
	r.Close()
	pid := strconv.Itoa(cmd.Process.Pid)
	mapErr := writeMap("newuidmap", pid, uids)
	if mapErr == nil {
		mapErr = writeMap("newgidmap", pid, gids)
	}
	if mapErr == nil {
		_, mapErr = w.Write([]byte{1})
	}
	w.Close()
	werr := cmd.Wait()
	switch {
	case mapErr != nil:
		return mapErr
	case werr != nil:
		msg := strings.TrimSpace(stderr.String())
		if msg == "" {
			msg = werr.Error()
		}
		return errors.New(msg)
	}
	return nil
}

// writeMap runs newuidmap or newgidmap for pid with the mappings m.
func writeMap(tool, pid string, m []specs.LinuxIDMapping) error {
	args := []string{pid}
	for _, e := range m {
		args = append(args, strconv.FormatUint(uint64(e.ContainerID), 10),
			strconv.FormatUint(uint64(e.HostID), 10), strconv.FormatUint(uint64(e.Size), 10))
	}
	out, err := exec.Command(tool, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s: %v: %s", tool, err, bytes.TrimSpace(out))
	}
	return nil
}

// RemoveHelper is the body of the hidden command RemoveHelperCommand:
// args are STAGE DIR.
func RemoveHelper(args []string) error {
	if len(args) != 2 || !strings.HasPrefix(args[1], "/") {
		return errors.New("[internal error] usage: xrun " + RemoveHelperCommand + " wait|run /DIR")
	}
	stage, dir := args[0], args[1]
	switch stage {
	case "wait":
		b := make([]byte, 1)
		if n, _ := os.Stdin.Read(b); n != 1 {
			return errors.New("the id maps were not written")
		}
		return syscall.Exec("/proc/self/exe", []string{"xrun", RemoveHelperCommand, "run", dir}, os.Environ())
	case "run":
		return rootfs.RemoveAll(dir)
	}
	return fmt.Errorf("[internal error] unknown stage %q", stage)
}
