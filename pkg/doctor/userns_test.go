package doctor

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"syscall"
	"testing"
	"testing/fstest"
	"time"

	"github.com/xrun-dev/xrun/pkg/binfmt"
)

// Machines the user-namespace table is tested on, as the files it reads.
// None of them can be produced on the test machine (no AppArmor, no
// Debian-patched kernel, not in a docker container with its seccomp
// profile), so each is simulated through System.
var (
	hostMountinfo   = "21 26 0:20 / /proc rw,relatime - proc proc rw\n22 26 0:21 / /sys rw,relatime - sysfs sysfs rw\n"
	dockerMountinfo = hostMountinfo +
		"30 21 0:5 /null /proc/kcore rw,nosuid - devtmpfs udev rw\n" +
		"31 21 0:40 / /proc/acpi ro,relatime - tmpfs tmpfs ro\n"
	seccompStatus   = "Name:\txrun\nNoNewPrivs:\t1\nSeccomp:\t2\nSeccomp_filters:\t1\n"
	noSeccompStatus = "Name:\txrun\nNoNewPrivs:\t0\nSeccomp:\t0\n"
)

// machine returns a System with the given files (path: content) over a
// plain host: sysctls at their defaults, no seccomp, nothing masked.
func machine(files map[string]string, env map[string]string) System {
	fs := fstest.MapFS{
		"proc/sys/user/max_user_namespaces": {Data: []byte("63459\n")},
		"proc/self/status":                  {Data: []byte(noSeccompStatus)},
		"proc/self/mountinfo":               {Data: []byte(hostMountinfo)},
		"proc/1/cgroup":                     {Data: []byte("0::/init.scope\n")},
		"proc/self/cgroup":                  {Data: []byte("0::/user.slice/user-1000.slice/session-2.scope\n")},
	}
	for name, data := range files {
		if data == "-" {
			delete(fs, name)
			continue
		}
		fs[name] = &fstest.MapFile{Data: []byte(data)}
	}
	return System{
		FS:      fs,
		Getenv:  func(k string) string { return env[k] },
		Exe:     "/home/u/.local/bin/xrun",
		Geteuid: func() int { return 1000 },
	}
}

const wantProfile = "abi <abi/4.0>,\ninclude <tunables/global>\nprofile xrun /home/u/.local/bin/xrun flags=(unconfined) {\n  userns,\n}"

// Realistic failures, as libcontainer (runc 1.5), newuidmap and Go report them.
var (
	errUnshareENOSPC = errors.New(`start container: unable to start container process: can't get final child's PID from pipe: EOF; runc init error(s): nsexec-1[10210]: failed to unshare user namespace: No space left on device; nsexec-0[10209]: failed to sync with stage-1: next state (got 0 of 4 bytes)`)
	errUnshareEPERM  = errors.New(`start container: unable to start container process: can't get final child's PID from pipe: EOF; runc init error(s): nsexec-1[311]: failed to unshare user namespace: Operation not permitted`)
	errUIDMapEPERM   = errors.New(`start container: unable to start container process: runc init error(s): nsexec-0[52]: failed to update /proc/53/uid_map: Operation not permitted`)
	errMountEACCES   = errors.New(`start container: unable to start container process: error during container init: error mounting "tmpfs" to rootfs at "/dev": mount src=tmpfs, dst=/dev, flags=MS_NOSUID|MS_STRICTATIME: permission denied`)
	errProcEPERM     = errors.New(`start container: unable to start container process: error during container init: error mounting "proc" to rootfs at "/proc": mount src=proc, dst=/proc, dstFd=/proc/thread-self/fd/8, flags=MS_NOSUID|MS_NODEV|MS_NOEXEC: operation not permitted`)
	errBindEACCES    = errors.New(`start container: unable to start container process: error during container init: error mounting "/home/u/secret" to rootfs at "/home/u/secret": mount src=/home/u/secret, dst=/home/u/secret: permission denied`)
	errGoForkENOSPC  = fmt.Errorf("start the user namespace helper: %w", &osPathError{"fork/exec", "/proc/self/exe", syscall.ENOSPC})
)

type osPathError struct {
	op, path string
	err      error
}

func (e *osPathError) Error() string { return e.op + " " + e.path + ": " + e.err.Error() }
func (e *osPathError) Unwrap() error { return e.err }

func TestClassifyUserNSError(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want UserNSFailure
		ok   bool
	}{
		{errUnshareENOSPC, UserNSFailure{StepUnshare, syscall.ENOSPC}, true},
		{errUnshareEPERM, UserNSFailure{StepUnshare, syscall.EPERM}, true},
		{errUIDMapEPERM, UserNSFailure{StepIDMap, syscall.EPERM}, true},
		{errMountEACCES, UserNSFailure{StepMount, syscall.EACCES}, true},
		{errProcEPERM, UserNSFailure{StepProcMount, syscall.EPERM}, true},
		{errGoForkENOSPC, UserNSFailure{StepUnshare, syscall.ENOSPC}, true},
		{errors.New("newuidmap: write to uid_map failed: Operation not permitted"), UserNSFailure{StepIDMap, syscall.EPERM}, true},
		{errors.New("unshare: function not implemented"), UserNSFailure{StepUnshare, syscall.ENOSYS}, true},
		// Not a refused user namespace.
		{errors.New(`mount overlay on the image (is rootless overlayfs supported? Linux 5.11+): invalid argument`), UserNSFailure{}, false},
		{errors.New(`error mounting "/x" to rootfs at "/x": no space left on device`), UserNSFailure{}, false},
		{errors.New(`write /cache/blobs/x: no space left on device`), UserNSFailure{}, false},
		{errors.New(`nsexec-0: mapping tool not present`), UserNSFailure{}, false},
		{nil, UserNSFailure{}, false},
	} {
		got, ok := ClassifyUserNSError(tc.err)
		if got != tc.want || ok != tc.ok {
			t.Errorf("ClassifyUserNSError(%v) = %+v, %v; want %+v, %v", tc.err, got, ok, tc.want, tc.ok)
		}
	}
}

// TestUserNSTable feeds each blocked machine and failure through the seam
// and checks the cause found and the exact fix, for the error line and for
// the doctor.
func TestUserNSTable(t *testing.T) {
	docker := map[string]string{".dockerenv": "", "proc/self/status": seccompStatus, "proc/self/mountinfo": dockerMountinfo}
	for _, tc := range []struct {
		name      string
		sys       System
		f         UserNSFailure
		cause     string // "" = no row applies
		fix       string // exact one-line fix
		doctorFix []string
	}{
		{
			name:  "max_user_namespaces=0",
			sys:   machine(map[string]string{"proc/sys/user/max_user_namespaces": "0\n"}, nil),
			f:     UserNSFailure{StepUnshare, syscall.ENOSPC},
			cause: "user.max_user_namespaces is 0, which allows no user namespace",
			fix:   "run sudo sysctl user.max_user_namespaces=15000",
			doctorFix: []string{"sudo sysctl user.max_user_namespaces=15000",
				"echo user.max_user_namespaces=15000 | sudo tee /etc/sysctl.d/50-xrun.conf"},
		},
		{
			name:      "max_user_namespaces reached",
			sys:       machine(map[string]string{"proc/sys/user/max_user_namespaces": "20\n"}, nil),
			f:         UserNSFailure{StepUnshare, syscall.ENOSPC},
			cause:     "the limit user.max_user_namespaces=20 is reached (too many user namespaces exist)",
			fix:       "run sudo sysctl user.max_user_namespaces=15000",
			doctorFix: []string{"sudo sysctl user.max_user_namespaces=15000"},
		},
		{
			name:      "debian unprivileged_userns_clone=0",
			sys:       machine(map[string]string{"proc/sys/kernel/unprivileged_userns_clone": "0\n"}, nil),
			f:         UserNSFailure{StepUnshare, syscall.EPERM},
			cause:     "kernel.unprivileged_userns_clone is 0 (Debian's switch), which forbids unprivileged user namespaces",
			fix:       "run sudo sysctl kernel.unprivileged_userns_clone=1",
			doctorFix: []string{"sudo sysctl kernel.unprivileged_userns_clone=1 (to keep it after a reboot"},
		},
		{
			name: "ubuntu apparmor, uid_map EPERM",
			sys: machine(map[string]string{
				"proc/sys/kernel/apparmor_restrict_unprivileged_userns": "1\n",
				"proc/self/attr/apparmor/current":                       "unconfined\n",
			}, nil),
			f:     UserNSFailure{StepIDMap, syscall.EPERM},
			cause: "AppArmor gives unconfined programs no capabilities in a user namespace (kernel.apparmor_restrict_unprivileged_userns=1, as on Ubuntu 23.10+, 24.04 and GitHub's ubuntu-24.04 runners)",
			fix:   "run xrun doctor for an AppArmor profile that allows xrun, or run sudo sysctl kernel.apparmor_restrict_unprivileged_userns=0",
			doctorFix: []string{"in /etc/apparmor.d/xrun and load it with sudo apparmor_parser -r /etc/apparmor.d/xrun",
				"sudo sysctl kernel.apparmor_restrict_unprivileged_userns=0", "GitHub's ubuntu-24.04 runners", "\n" + wantProfile},
		},
		{
			name: "ubuntu apparmor, mount EACCES (old attr file)",
			sys: machine(map[string]string{
				"proc/sys/kernel/apparmor_restrict_unprivileged_userns": "1\n",
				"proc/self/attr/current":                                "unconfined",
			}, nil),
			f:         UserNSFailure{StepMount, syscall.EACCES},
			cause:     "AppArmor gives unconfined programs no capabilities in a user namespace",
			fix:       "run xrun doctor for an AppArmor profile that allows xrun, or run sudo sysctl kernel.apparmor_restrict_unprivileged_userns=0",
			doctorFix: []string{wantProfile},
		},
		{
			name: "apparmor profile without userns",
			sys: machine(map[string]string{
				"proc/sys/kernel/apparmor_restrict_unprivileged_userns": "1\n",
				"proc/self/attr/apparmor/current":                       "ci-sandbox (enforce)\n",
			}, nil),
			f:         UserNSFailure{StepIDMap, syscall.EPERM},
			cause:     "xrun runs under the AppArmor profile ci-sandbox, which does not allow user namespaces",
			fix:       "add the rule userns, to the AppArmor profile ci-sandbox and reload it (sudo apparmor_parser -r FILE), or run sudo sysctl kernel.apparmor_restrict_unprivileged_userns=0",
			doctorFix: []string{"add the rule `userns,` to the AppArmor profile ci-sandbox"},
		},
		{
			name:  "docker default seccomp, unshare EPERM",
			sys:   machine(docker, nil),
			f:     UserNSFailure{StepUnshare, syscall.EPERM},
			cause: "xrun runs in a docker container (/.dockerenv exists) whose seccomp profile refuses unshare",
			fix:   "start the container with docker run --security-opt seccomp=unconfined --security-opt systempaths=unconfined (and --security-opt apparmor=unconfined on AppArmor hosts)",
			doctorFix: []string{"start the container with seccomp unconfined and /proc unmasked:\ndocker run --security-opt seccomp=unconfined --security-opt systempaths=unconfined",
				"podman run --security-opt seccomp=unconfined --security-opt unmask=/proc/*", "procMount: Unmasked"},
		},
		{
			name:  "docker default seccomp, clone3 ENOSYS",
			sys:   machine(docker, nil),
			f:     UserNSFailure{StepUnshare, syscall.ENOSYS},
			cause: "xrun runs in a docker container (/.dockerenv exists) whose seccomp profile refuses unshare",
			fix:   "start the container with docker run --security-opt seccomp=unconfined --security-opt systempaths=unconfined (and --security-opt apparmor=unconfined on AppArmor hosts)",
		},
		{
			name:  "docker masked /proc",
			sys:   machine(map[string]string{".dockerenv": "", "proc/self/mountinfo": dockerMountinfo}, nil),
			f:     UserNSFailure{StepProcMount, syscall.EPERM},
			cause: "xrun runs in a docker container (/.dockerenv exists) whose /proc is partly masked (/proc/kcore is hidden), so the kernel refuses a fresh /proc",
			fix:   "start the container with docker run --security-opt seccomp=unconfined --security-opt systempaths=unconfined (and --security-opt apparmor=unconfined on AppArmor hosts)",
		},
		{
			name:      "podman masked /proc",
			sys:       machine(map[string]string{"run/.containerenv": "engine=\"podman-4.3.1\"\n", "proc/self/mountinfo": dockerMountinfo}, nil),
			f:         UserNSFailure{StepProcMount, syscall.EPERM},
			cause:     "xrun runs in a podman container (/run/.containerenv exists) whose /proc is partly masked (/proc/kcore is hidden)",
			fix:       "start the container with podman run --security-opt unmask=/proc/*",
			doctorFix: []string{"unmasked:\npodman run --security-opt unmask=/proc/*\ndocker run"},
		},
		{
			name: "kubernetes RuntimeDefault",
			sys: machine(map[string]string{"proc/self/status": seccompStatus, "proc/self/mountinfo": dockerMountinfo,
				"proc/1/cgroup": "0::/kubepods.slice/kubepods-burstable.slice/cri-containerd-0123.scope\n"}, nil),
			f:     UserNSFailure{StepUnshare, syscall.EPERM},
			cause: "xrun runs in a Kubernetes container (its cgroup is under kubepods) whose seccomp profile refuses unshare",
			fix:   "start the container with Kubernetes: hostUsers: false in the pod spec, and in the container's securityContext a seccompProfile other than RuntimeDefault (type: Unconfined, or a Localhost profile that allows unshare and mount) and procMount: Unmasked",
		},
		{
			name:  "kubernetes from the environment, masked /proc",
			sys:   machine(map[string]string{"proc/self/mountinfo": dockerMountinfo}, map[string]string{"KUBERNETES_SERVICE_HOST": "10.0.0.1"}),
			f:     UserNSFailure{StepProcMount, syscall.EPERM},
			cause: "xrun runs in a Kubernetes container (KUBERNETES_SERVICE_HOST is set) whose /proc is partly masked",
			fix:   "start the container with Kubernetes: hostUsers: false",
		},
		{
			name:  "unknown container runtime",
			sys:   machine(map[string]string{"proc/self/status": seccompStatus, "proc/1/cgroup": "0::/system.slice/containerd.service/abc\n"}, nil),
			f:     UserNSFailure{StepUnshare, syscall.EPERM},
			cause: "xrun runs in a container (its cgroup is a container runtime's) whose seccomp profile refuses unshare",
			fix:   "start the container with seccomp unconfined and /proc unmasked: docker run --security-opt seccomp=unconfined --security-opt systempaths=unconfined (and --security-opt apparmor=unconfined on AppArmor hosts); podman run --security-opt seccomp=unconfined --security-opt unmask=/proc/*; Kubernetes: hostUsers: false",
		},
		{
			name:  "seccomp filter outside a container",
			sys:   machine(map[string]string{"proc/self/status": seccompStatus}, nil),
			f:     UserNSFailure{StepUnshare, syscall.EPERM},
			cause: "a seccomp filter on xrun (Seccomp: 2 in /proc/self/status) refuses unshare",
			fix:   "run xrun outside the sandbox that installs the filter (e.g. systemd's RestrictNamespaces=, a CI job's sandbox), or allow unshare, clone and mount in it",
		},
		{
			name:  "seccomp filter outside a container, mount EACCES",
			sys:   machine(map[string]string{"proc/self/status": seccompStatus}, nil),
			f:     UserNSFailure{StepMount, syscall.EACCES},
			cause: "a seccomp filter on xrun (Seccomp: 2 in /proc/self/status) refuses mount",
			fix:   "run xrun outside the sandbox that installs the filter",
		},
		{
			name:  "docker default AppArmor profile, mount EACCES",
			sys:   machine(map[string]string{".dockerenv": "", "proc/self/attr/apparmor/current": "docker-default (enforce)\n"}, nil),
			f:     UserNSFailure{StepMount, syscall.EACCES},
			cause: "xrun runs in a docker container (/.dockerenv exists) whose seccomp or AppArmor profile refuses mount",
			fix:   "start the container with docker run --security-opt seccomp=unconfined --security-opt systempaths=unconfined (and --security-opt apparmor=unconfined on AppArmor hosts)",
		},
		// What the table must not claim.
		{name: "plain host, unshare EPERM", sys: machine(nil, nil), f: UserNSFailure{StepUnshare, syscall.EPERM}},
		{name: "docker marker alone, unshare EPERM", sys: machine(map[string]string{".dockerenv": ""}, nil), f: UserNSFailure{StepUnshare, syscall.EPERM}},
		{name: "docker marker alone, bind EACCES", sys: machine(map[string]string{".dockerenv": ""}, nil), f: UserNSFailure{StepMount, syscall.EACCES}},
		{name: "docker marker alone, proc EPERM", sys: machine(map[string]string{".dockerenv": ""}, nil), f: UserNSFailure{StepProcMount, syscall.EPERM}},
		{
			name: "apparmor sysctl, mount ENOSPC", f: UserNSFailure{StepMount, syscall.ENOSPC},
			sys: machine(map[string]string{"proc/sys/kernel/apparmor_restrict_unprivileged_userns": "1\n"}, nil),
		},
		{
			name: "clone sysctl as root", f: UserNSFailure{StepUnshare, syscall.EPERM},
			sys: func() System {
				s := machine(map[string]string{"proc/sys/kernel/unprivileged_userns_clone": "0\n"}, nil)
				s.Geteuid = func() int { return 0 }
				return s
			}(),
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := DiagnoseUserNS(tc.sys, tc.f)
			if tc.cause == "" {
				if b != nil {
					t.Fatalf("diagnosed %+v, want nothing", b)
				}
				return
			}
			if b == nil {
				t.Fatalf("no cause found, want %q", tc.cause)
			}
			if !strings.HasPrefix(b.Cause, tc.cause) {
				t.Errorf("cause %q, want %q", b.Cause, tc.cause)
			}
			if !strings.HasPrefix(b.Fix, tc.fix) || strings.Contains(b.Fix, "\n") {
				t.Errorf("fix %q, want one line starting %q", b.Fix, tc.fix)
			}
			for _, w := range tc.doctorFix {
				if !strings.Contains(b.DoctorFix, w) {
					t.Errorf("doctor fix %q lacks %q", b.DoctorFix, w)
				}
			}
		})
	}
}

// TestExplainUserNS: the run error of each cause is one line, "what
// failed (errno): cause: fix", without libcontainer's story of its stages.
func TestExplainUserNS(t *testing.T) {
	apparmor := machine(map[string]string{"proc/sys/kernel/apparmor_restrict_unprivileged_userns": "1\n", "proc/self/attr/apparmor/current": "unconfined\n"}, nil)
	docker := machine(map[string]string{".dockerenv": "", "proc/self/status": seccompStatus, "proc/self/mountinfo": dockerMountinfo}, nil)
	for _, tc := range []struct {
		err  error
		sys  System
		want string // "" = not explained
	}{
		{errUnshareENOSPC, machine(map[string]string{"proc/sys/user/max_user_namespaces": "0"}, nil),
			"start container: cannot create a user namespace (no space left on device): user.max_user_namespaces is 0, which allows no user namespace: run sudo sysctl user.max_user_namespaces=15000"},
		{errUnshareEPERM, machine(map[string]string{"proc/sys/kernel/unprivileged_userns_clone": "0"}, nil),
			"start container: cannot create a user namespace (operation not permitted): kernel.unprivileged_userns_clone is 0 (Debian's switch), which forbids unprivileged user namespaces: run sudo sysctl kernel.unprivileged_userns_clone=1"},
		{errUIDMapEPERM, apparmor,
			"start container: cannot map ids into a user namespace (operation not permitted): AppArmor gives unconfined programs no capabilities in a user namespace (kernel.apparmor_restrict_unprivileged_userns=1, as on Ubuntu 23.10+, 24.04 and GitHub's ubuntu-24.04 runners): run xrun doctor for an AppArmor profile that allows xrun, or run sudo sysctl kernel.apparmor_restrict_unprivileged_userns=0"},
		{errMountEACCES, apparmor, "start container: cannot mount in a user namespace (permission denied): AppArmor gives"},
		{errUnshareEPERM, docker, "start container: cannot create a user namespace (operation not permitted): xrun runs in a docker container (/.dockerenv exists) whose seccomp profile refuses unshare: start the container with docker run --security-opt seccomp=unconfined --security-opt systempaths=unconfined"},
		{errProcEPERM, docker, "start container: cannot mount /proc in the container (operation not permitted): xrun runs in a docker container"},
		{errUnshareEPERM, machine(nil, nil), "start container: cannot create a user namespace (operation not permitted): this system does not let unprivileged users create user namespaces: run xrun doctor, which says which setting to change and how"},
		{errBindEACCES, machine(nil, nil), ""},
		{errBindEACCES, machine(map[string]string{".dockerenv": ""}, nil), ""},
		{errors.New("pull x: no space left on device"), machine(nil, nil), ""},
	} {
		got, ok := ExplainUserNS(tc.err, tc.sys)
		if tc.want == "" {
			if ok {
				t.Errorf("ExplainUserNS(%v) = %q, want nothing", tc.err, got)
			}
			continue
		}
		if !ok || !strings.HasPrefix(got, tc.want) || strings.Contains(got, "\n") || strings.Contains(got, "nsexec") {
			t.Errorf("ExplainUserNS(%v) =\n  %q\nwant one line starting\n  %q", tc.err, got, tc.want)
		}
	}
}

// TestDoctorUserNSCheck: the doctor's check fails with the table's cause
// and the multi-line fix (the AppArmor profile, printed indented under
// "fix:"), and a probe that cannot mount /proc fails with the container
// flags.
func TestDoctorUserNSCheck(t *testing.T) {
	apparmor := machine(map[string]string{"proc/sys/kernel/apparmor_restrict_unprivileged_userns": "1\n", "proc/self/attr/apparmor/current": "unconfined\n"}, nil)
	podman := machine(map[string]string{"run/.containerenv": "", "proc/self/mountinfo": dockerMountinfo}, nil)
	for _, tc := range []struct {
		name  string
		sys   System
		probe func(context.Context, string) (*probeResult, error)
		want  []string
	}{
		{"apparmor", apparmor, func(context.Context, string) (*probeResult, error) {
			return nil, &osPathError{"fork/exec", "/usr/bin/xrun", syscall.EPERM}
		}, []string{
			"FAIL  user namespaces: cannot create a user namespace: fork/exec /usr/bin/xrun: operation not permitted (user.max_user_namespaces=63459, kernel.apparmor_restrict_unprivileged_userns=1): AppArmor gives",
			"      fix: put this AppArmor profile for /home/u/.local/bin/xrun in /etc/apparmor.d/xrun",
			"\n      abi <abi/4.0>,\n      include <tunables/global>\n      profile xrun /home/u/.local/bin/xrun flags=(unconfined) {\n        userns,\n      }\n",
		}},
		{"podman masked proc", podman, func(context.Context, string) (*probeResult, error) {
			return &probeResult{Proc: "mount proc: operation not permitted"}, nil
		}, []string{
			"FAIL  user namespaces: created a user namespace but cannot mount a fresh /proc in it (a run needs one): mount proc: operation not permitted (user.max_user_namespaces=63459): xrun runs in a podman container",
			"      fix: start the container with seccomp unconfined and /proc unmasked:\n      podman run --security-opt unmask=/proc/*\n      docker run",
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, etc := fakeMachine(t, nil, "ID=ubuntu\n")
			var out strings.Builder
			r := Run(context.Background(), Options{
				Platforms: []Platform{{GOARCH: "arm64"}},
				CacheDir:  t.TempDir(),
				Binfmt:    binfmt.Options{KernelRelease: "6.8.0", Emulator: "/nonexistent/qemu"},
				Out:       &out,
				sys:       tc.sys, etc: etc, probe: tc.probe,
				smoke: func(context.Context, *binfmt.Plan, *slog.Logger) (time.Duration, error) { return 0, nil },
			})
			if c := find(r, "user namespaces"); c == nil || c.Status != Fail {
				t.Errorf("user namespaces check = %+v, want a failure", c)
			}
			for _, w := range tc.want {
				if !strings.Contains(out.String(), w) {
					t.Errorf("doctor output lacks %q:\n%s", w, out.String())
				}
			}
		})
	}
}
