package doctor

import (
	"strings"
	"syscall"
)

// Rows of the user-namespace table (userns.go) for a surrounding container
// or seccomp filter, and how a container is recognised.

// Runtimes a container is recognised from.
const (
	runtimeDocker     = "docker"
	runtimePodman     = "podman"
	runtimeKubernetes = "Kubernetes"
)

// containerFlags are the settings that let xrun run inside a container of
// each runtime: seccomp that allows unshare and mount, and an unmasked
// /proc (a fresh procfs is refused while parts of /proc are hidden), in
// the order runtimes are listed when the runtime is not known.
//
// procOnly, when set, is enough where only the masked /proc is in the way:
// podman's default seccomp profile allows unshare and mount in a user
// namespace (measured with Debian 12's podman 4.3: integration
// TestNestedPodman), docker's does not.
var containerFlags = []struct{ runtime, flags, procOnly string }{
	{runtimeDocker, "docker run --security-opt seccomp=unconfined --security-opt systempaths=unconfined (and --security-opt apparmor=unconfined on AppArmor hosts)", ""},
	{runtimePodman, "podman run --security-opt seccomp=unconfined --security-opt unmask=/proc/*", "podman run --security-opt unmask=/proc/*"},
	{runtimeKubernetes, "Kubernetes: hostUsers: false in the pod spec, and in the container's securityContext a seccompProfile other than RuntimeDefault (type: Unconfined, or a Localhost profile that allows unshare and mount) and procMount: Unmasked", ""},
}

// maskedProcPaths are the /proc paths container runtimes hide (bind
// /dev/null or a read-only tmpfs over them, or remount them read-only).
var maskedProcPaths = map[string]bool{
	"/proc/kcore": true, "/proc/keys": true, "/proc/timer_list": true, "/proc/sched_debug": true,
	"/proc/acpi": true, "/proc/scsi": true, "/proc/asound": true, "/proc/latency_stats": true,
	"/proc/interrupts": true, "/proc/sysrq-trigger": true, "/proc/bus": true, "/proc/fs": true,
	"/proc/irq": true, "/proc/sys": true, "/proc/firmware": true,
}

// maskedProc returns the first masked /proc path in this process's
// mountinfo, or "".
func (s System) maskedProc() string {
	info, _ := s.read("proc/self/mountinfo")
	for _, line := range strings.Split(info, "\n") {
		f := strings.Fields(line)
		if len(f) > 4 && maskedProcPaths[f[4]] {
			return f[4]
		}
	}
	return ""
}

// container says whether this process runs in a container: the runtime
// ("" when not known) and the evidence.
func (s System) container() (runtime, evidence string, ok bool) {
	cgroup, _ := s.read("proc/1/cgroup")
	self, _ := s.read("proc/self/cgroup")
	cgroup += "\n" + self
	switch {
	case s.Getenv("KUBERNETES_SERVICE_HOST") != "":
		return runtimeKubernetes, "KUBERNETES_SERVICE_HOST is set", true
	case strings.Contains(cgroup, "kubepods"):
		return runtimeKubernetes, "its cgroup is under kubepods", true
	case s.exists("run/.containerenv"):
		return runtimePodman, "/run/.containerenv exists", true
	case s.exists(".dockerenv"):
		return runtimeDocker, "/.dockerenv exists", true
	case strings.Contains(cgroup, "libpod"):
		return runtimePodman, "its cgroup is podman's (libpod)", true
	case strings.Contains(cgroup, "docker"):
		return runtimeDocker, "its cgroup is docker's", true
	case strings.Contains(cgroup, "containerd") || strings.Contains(cgroup, "lxc"):
		return "", "its cgroup is a container runtime's", true
	}
	if p := s.maskedProc(); p != "" {
		return "", p + " is masked", true
	}
	return "", "", false
}

// seccompFiltered reports whether a seccomp filter applies to this process.
func (s System) seccompFiltered() bool {
	status, _ := s.read("proc/self/status")
	for _, line := range strings.Split(status, "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && k == "Seccomp" {
			return strings.TrimSpace(v) == "2"
		}
	}
	return false
}

// refusedSyscall reports whether f is a refusal of unshare/clone such as a
// seccomp filter gives (EPERM; ENOSYS for clone3 under docker's profile).
func refusedSyscall(f UserNSFailure) bool {
	return (f.Step == StepUnshare || f.Step == StepUnknown) &&
		(f.Errno == syscall.EPERM || f.Errno == syscall.ENOSYS || f.Errno == 0)
}

// containerFix returns the one-line fix for runtime (all runtimes when it
// is not known) and the doctor's, one runtime a line, runtime first.
func containerFix(runtime string, procOnly bool) (line, doctor string) {
	var all, first []string
	for _, c := range containerFlags {
		if c.runtime == runtime {
			if procOnly && c.procOnly != "" {
				first = append(first, c.procOnly)
			} else {
				first = append(first, c.flags)
			}
		} else {
			all = append(all, c.flags)
		}
	}
	if len(first) == 1 {
		line = "start the container with " + first[0]
	} else {
		line = "start the container with seccomp unconfined and /proc unmasked: " + strings.Join(all, "; ")
	}
	return line, "start the container with seccomp unconfined and /proc unmasked:\n" + strings.Join(append(first, all...), "\n")
}

func blockContainer(s System, f UserNSFailure) *UserNSBlock {
	runtime, evidence, ok := s.container()
	if !ok {
		return nil
	}
	in := "a container"
	if runtime != "" {
		in = "a " + runtime + " container"
	}
	in += " (" + evidence + ")"
	var cause string
	label := s.appArmorLabel()
	procOnly := false
	switch {
	case refusedSyscall(f) && s.seccompFiltered():
		cause = "xrun runs in " + in + " whose seccomp profile refuses unshare"
	case f.Step == StepProcMount && s.maskedProc() != "":
		cause = "xrun runs in " + in + " whose /proc is partly masked (" + s.maskedProc() + " is hidden), so the kernel refuses a fresh /proc"
		procOnly = !s.seccompFiltered() || runtime == runtimePodman
	case f.Step == StepMount && (f.Errno == syscall.EPERM || f.Errno == syscall.EACCES) &&
		(s.seccompFiltered() || label != "" && label != "unconfined"):
		cause = "xrun runs in " + in + " whose seccomp or AppArmor profile refuses mount"
	default:
		return nil
	}
	line, doctor := containerFix(runtime, procOnly)
	return &UserNSBlock{Cause: cause, Fix: line, DoctorFix: doctor}
}

func blockSeccomp(s System, f UserNSFailure) *UserNSBlock {
	what := "unshare"
	if f.Step >= StepMount && (f.Errno == syscall.EPERM || f.Errno == syscall.EACCES) {
		what = "mount"
	} else if !refusedSyscall(f) {
		return nil
	}
	if !s.seccompFiltered() {
		return nil
	}
	return &UserNSBlock{
		Cause:     "a seccomp filter on xrun (Seccomp: 2 in /proc/self/status) refuses " + what,
		Fix:       "run xrun outside the sandbox that installs the filter (e.g. systemd's RestrictNamespaces=, a CI job's sandbox), or allow unshare, clone and mount in it",
		DoctorFix: "run xrun outside the sandbox that installs the filter (e.g. a systemd unit with RestrictNamespaces= or SystemCallFilter=, a CI job's sandbox), or allow unshare, clone and mount in it",
	}
}
