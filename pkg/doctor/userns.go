package doctor

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

// This file is the one table of why user namespaces (or mounting in them)
// are blocked on a machine, and the exact fix of each cause. xrun's error
// line for a failed run (cmd/xrun, via ExplainUserNS) and the doctor's
// "user namespaces" check both use it.

// Step is the part of setting up a user namespace that failed.
type Step int

const (
	StepUnknown   Step = iota
	StepUnshare        // unshare/clone with CLONE_NEWUSER
	StepIDMap          // writing uid_map/gid_map (directly or by newuidmap)
	StepMount          // a mount inside the user namespace
	StepProcMount      // the container's fresh /proc
)

// UserNSFailure is what the kernel refused: a step and its errno.
type UserNSFailure struct {
	Step  Step
	Errno syscall.Errno // 0: not known
}

// System is the machine state the diagnosis reads. The zero value reads
// this machine; tests fake it.
type System struct {
	// FS is the root filesystem: proc/sys/..., proc/self/status,
	// proc/self/attr/..., proc/self/mountinfo, proc/1/cgroup, .dockerenv,
	// run/.containerenv. Default os.DirFS("/").
	FS fs.FS
	// Getenv defaults to os.Getenv.
	Getenv func(string) string
	// Exe is the real path of the xrun binary (for its AppArmor profile).
	// Default: os.Executable with symbolic links resolved.
	Exe string
	// Geteuid defaults to os.Geteuid.
	Geteuid func() int
}

func (s System) fill() System {
	if s.FS == nil {
		s.FS = os.DirFS("/")
	}
	if s.Geteuid == nil {
		s.Geteuid = os.Geteuid
	}
	if s.Getenv == nil {
		s.Getenv = os.Getenv
	}
	if s.Exe == "" {
		s.Exe = "/usr/local/bin/xrun"
		if p, err := os.Executable(); err == nil {
			if r, err := filepath.EvalSymlinks(p); err == nil {
				p = r
			}
			s.Exe = p
		}
	}
	return s
}

func (s System) read(name string) (string, bool) {
	b, err := fs.ReadFile(s.FS, name)
	if err != nil {
		return "", false
	}
	return strings.TrimSpace(string(b)), true
}

func (s System) exists(name string) bool {
	_, err := fs.Stat(s.FS, name)
	return err == nil
}

// sysctl reads a sysctl by its dotted name ("user.max_user_namespaces").
func (s System) sysctl(name string) (string, bool) {
	return s.read("proc/sys/" + strings.ReplaceAll(name, ".", "/"))
}

// UserNSBlock is one diagnosed cause and its fix.
type UserNSBlock struct {
	Cause string // what on this machine blocks it, one line
	Fix   string // the one-line fix for an error line
	// DoctorFix is the doctor's fix, which may span lines (the AppArmor
	// profile to paste) and says how to keep a sysctl after a reboot.
	DoctorFix string
}

// blocker is one row of the table: when it applies, given the machine and
// the failure, it returns the cause and fix.
type blocker struct {
	name  string
	match func(s System, f UserNSFailure) *UserNSBlock
}

// userNSBlockers is the table, most specific first.
var userNSBlockers = []blocker{
	{"user.max_user_namespaces=0", blockMaxZero},
	{"kernel.unprivileged_userns_clone=0", blockUsernsClone},
	{"kernel.apparmor_restrict_unprivileged_userns=1", blockAppArmor},
	{"container seccomp or masked /proc", blockContainer},
	{"seccomp filter", blockSeccomp},
	{"user.max_user_namespaces reached", blockMaxReached},
}

// DiagnoseUserNS returns the cause of f on the machine s, or nil when no
// row of the table explains it.
func DiagnoseUserNS(s System, f UserNSFailure) *UserNSBlock {
	s = s.fill()
	for _, b := range userNSBlockers {
		if r := b.match(s, f); r != nil {
			return r
		}
	}
	return nil
}

// sysctlCmd is the command that sets a sysctl now.
func sysctlCmd(key, value string) string {
	return "sudo sysctl " + key + "=" + value
}

// sysctlFix is sysctlCmd and how to keep the setting after a reboot.
func sysctlFix(key, value string) string {
	return fmt.Sprintf("%s (to keep it after a reboot: echo %s=%s | sudo tee /etc/sysctl.d/50-xrun.conf)",
		sysctlCmd(key, value), key, value)
}

func sysctlBlock(cause, key, value string) *UserNSBlock {
	return &UserNSBlock{Cause: cause, Fix: "run " + sysctlCmd(key, value), DoctorFix: sysctlFix(key, value)}
}

func blockMaxZero(s System, f UserNSFailure) *UserNSBlock {
	if v, _ := s.sysctl("user.max_user_namespaces"); v != "0" || f.Step > StepIDMap {
		return nil
	}
	return sysctlBlock("user.max_user_namespaces is 0, which allows no user namespace",
		"user.max_user_namespaces", "15000")
}

func blockMaxReached(s System, f UserNSFailure) *UserNSBlock {
	v, ok := s.sysctl("user.max_user_namespaces")
	if !ok || f.Errno != syscall.ENOSPC || f.Step > StepIDMap {
		return nil
	}
	return sysctlBlock("the limit user.max_user_namespaces="+v+" is reached (too many user namespaces exist)",
		"user.max_user_namespaces", "15000")
}

func blockUsernsClone(s System, f UserNSFailure) *UserNSBlock {
	if v, _ := s.sysctl("kernel.unprivileged_userns_clone"); v != "0" || s.Geteuid() == 0 || f.Step > StepIDMap {
		return nil
	}
	return sysctlBlock("kernel.unprivileged_userns_clone is 0 (Debian's switch), which forbids unprivileged user namespaces",
		"kernel.unprivileged_userns_clone", "1")
}

// appArmorLabel is the AppArmor confinement of this process ("unconfined",
// "xrun (unconfined)", "podman (enforce)"), or "".
func (s System) appArmorLabel() string {
	for _, f := range []string{"proc/self/attr/apparmor/current", "proc/self/attr/current"} {
		if v, ok := s.read(f); ok && v != "" {
			return strings.TrimRight(v, "\x00")
		}
	}
	return ""
}

// AppArmorProfile is the profile that lets the binary at exe create user
// namespaces with full capabilities in them, ready to paste.
func AppArmorProfile(exe string) string {
	return "abi <abi/4.0>,\ninclude <tunables/global>\nprofile xrun " + exe + " flags=(unconfined) {\n  userns,\n}\n"
}

func blockAppArmor(s System, f UserNSFailure) *UserNSBlock {
	if v, _ := s.sysctl("kernel.apparmor_restrict_unprivileged_userns"); v != "1" || s.Geteuid() == 0 ||
		f.Errno != 0 && f.Errno != syscall.EPERM && f.Errno != syscall.EACCES {
		return nil
	}
	label := s.appArmorLabel()
	const key = "kernel.apparmor_restrict_unprivileged_userns"
	if profile, _, ok := strings.Cut(label, " ("); ok && label != "unconfined" && profile != "xrun" {
		return &UserNSBlock{
			Cause:     "xrun runs under the AppArmor profile " + profile + ", which does not allow user namespaces (" + key + "=1)",
			Fix:       "add the rule userns, to the AppArmor profile " + profile + " and reload it (sudo apparmor_parser -r FILE), or run " + sysctlCmd(key, "0"),
			DoctorFix: "add the rule `userns,` to the AppArmor profile " + profile + " and reload it (sudo apparmor_parser -r FILE); or, for every program: " + sysctlFix(key, "0"),
		}
	}
	return &UserNSBlock{
		Cause: "AppArmor gives unconfined programs no capabilities in a user namespace (" + key + "=1, as on Ubuntu 23.10+, 24.04 and GitHub's ubuntu-24.04 runners)",
		Fix:   "run xrun doctor for an AppArmor profile that allows xrun, or run " + sysctlCmd(key, "0"),
		DoctorFix: "put this AppArmor profile for " + s.Exe + " in /etc/apparmor.d/xrun and load it with sudo apparmor_parser -r /etc/apparmor.d/xrun " +
			"(on GitHub's ubuntu-24.04 runners too; after moving xrun, change the path); or, for every program: " + sysctlFix(key, "0") + "\n" +
			strings.TrimSuffix(AppArmorProfile(s.Exe), "\n"),
	}
}

// userNSErrnos are the errnos with which the kernel refuses a user
// namespace or a mount in it.
var userNSErrnos = []syscall.Errno{syscall.ENOSPC, syscall.EPERM, syscall.EACCES, syscall.ENOSYS}

// stepKeywords find the failed step in a message (lower case), most
// specific first: libcontainer and newuidmap report it only as text.
var stepKeywords = []struct {
	step  Step
	words []string
}{
	{StepIDMap, []string{"uid_map", "gid_map", "setgroups", "newuidmap", "newgidmap"}},
	{StepUnshare, []string{"unshare", "clone", "user namespace"}},
	{StepProcMount, []string{`mounting "proc"`, "src=proc,", "mount proc"}},
	{StepMount, []string{"mount"}},
}

// ClassifyUserNSError says whether err is the kernel refusing to set up a
// user namespace (create it, map ids, mount in it), and which step.
func ClassifyUserNSError(err error) (UserNSFailure, bool) {
	if err == nil {
		return UserNSFailure{}, false
	}
	msg := strings.ToLower(err.Error())
	for _, k := range stepKeywords {
		for _, w := range k.words {
			i := strings.Index(msg, w)
			if i < 0 {
				continue
			}
			e := errnoOf(err, msg[i:])
			mountOnly := e == syscall.EPERM || e == syscall.EACCES
			if e != 0 && (k.step < StepMount || mountOnly) {
				return UserNSFailure{Step: k.step, Errno: e}, true
			}
		}
	}
	return UserNSFailure{}, false
}

// errnoOf returns the first of userNSErrnos in err's chain or, as text, in
// tail (the message after the step's keyword), or 0.
func errnoOf(err error, tail string) syscall.Errno {
	for _, e := range userNSErrnos {
		if errors.Is(err, e) {
			return e
		}
	}
	for _, e := range userNSErrnos {
		if strings.Contains(tail, strings.ToLower(e.Error())) {
			return e
		}
	}
	return 0
}

// genericUserNSBlock is the cause when no row of the table applies to a
// refused user namespace.
var genericUserNSBlock = UserNSBlock{
	Cause:     "this system does not let unprivileged users create user namespaces",
	Fix:       "run xrun doctor, which says which setting to change and how",
	DoctorFix: "check that the kernel has CONFIG_USER_NS and that no security module (AppArmor, SELinux) or seccomp filter of a surrounding container forbids unprivileged user namespaces",
}

// ExplainUserNS returns the one-line message for err when it is the
// kernel refusing a user namespace set-up: "WHAT FAILED: CAUSE: FIX". It
// returns false for other errors, and for a refused mount that no row of
// the table explains (a bind of a directory you cannot read, say).
func ExplainUserNS(err error, s System) (string, bool) {
	f, ok := ClassifyUserNSError(err)
	if !ok {
		return "", false
	}
	b := DiagnoseUserNS(s, f)
	if b == nil {
		if f.Step > StepIDMap {
			return "", false
		}
		b = &genericUserNSBlock
	}
	what := [...]string{
		StepUnknown:   "cannot set up a user namespace",
		StepUnshare:   "cannot create a user namespace",
		StepIDMap:     "cannot map ids into a user namespace",
		StepMount:     "cannot mount in a user namespace",
		StepProcMount: "cannot mount /proc in the container",
	}[f.Step]
	// Keep the caller's context ("start container"), not libcontainer's
	// story of its init stages.
	if head, _, ok := strings.Cut(err.Error(), ": "); ok && len(head) < 40 && !strings.Contains(head, "[") {
		what = head + ": " + what
	}
	return fmt.Sprintf("%s (%s): %s: %s", what, f.Errno.Error(), b.Cause, b.Fix), true
}
