//go:build integration

package integration

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/xrun-dev/xrun/integration/testimage"
	"github.com/xrun-dev/xrun/internal/testutil"
)

// oldKernelDir is where hack/setup.sh unpacks Debian 12's own 6.1 kernel
// (linux-image-6.1.*-cloud-amd64): boot/vmlinuz-* and the overlay module.
func oldKernelDir() string {
	return filepath.Join(filepath.Dir(testimage.DebianPath()), "kernel-6.1")
}

// vmInit moves the initramfs into a tmpfs (pivot_root, which every
// container start uses, refuses the initramfs itself) and goes on with
// vmInit2 there.
const vmInit = `#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t tmpfs -o size=768m root /newroot
cp -a /bin /sbin /usr /etc /home /cache /modules /init2 /newroot/
mkdir -p /newroot/proc /newroot/sys /newroot/dev /newroot/tmp
exec switch_root /newroot /init2
`

// vmInit2 runs xrun as the unprivileged user u (one id, no subordinate
// range, no binfmt_misc mounted anywhere) for each platform, from the
// read-only cache root baked: no network in the VM. Then, from u's own
// cache on an ext4 disk (/home), apt-get installs a package in the Debian
// arm64 image: Linux 6.1's tmpfs has no user xattrs, so the run's upper
// layer goes to that disk.
const vmInit2 = `#!/bin/sh
mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev
mount -t tmpfs tmp /tmp; chmod 1777 /tmp; mount -t cgroup2 cgroup2 /sys/fs/cgroup
# The modules in any order: a pass loads those whose dependencies are in.
for pass in 1 2 3 4; do for m in /modules/*.ko; do insmod $m 2>/dev/null; done; done
mount -t ext4 /dev/vda /home || echo "VM ERROR: cannot mount the disk"
echo "VM kernel $(uname -r)"
for p in %s; do
	out=$(su -s /bin/sh u -c "cd /home/u; HOME=/home/u XRUN_CACHE=/home/u/cache XRUN_ADDITIONAL_CACHES=/cache PATH=/usr/bin:/bin xrun --verbose --pull=never --platform $p %s -- uname -m" 2>/tmp/err)
	echo "VM RESULT $p: $out"
	grep -E "strategy=|xrun:" /tmp/err | sed "s|^|VM LOG $p: |"
done
su -s /bin/sh u -c "cd /home/u; HOME=/home/u XRUN_CACHE=/home/u/cache PATH=/usr/bin:/bin xrun --pull=never --platform linux/arm64 -e DEBIAN_FRONTEND=noninteractive %s -- sh -c 'apt-get install -y ./busybox-static.deb >/tmp/apt.log 2>&1 || cat /tmp/apt.log; dpkg -s busybox-static | grep ^Status; busybox uname -m'" 2>&1 | sed "s|^|VM APT: |"
echo "VM SCRATCH LEFT: $(ls /home/u/cache/run 2>/dev/null | grep -c scratch-)"
poweroff -f
`

// TestOldKernelVM boots Debian 12's own 6.1 kernel under qemu-system-x86_64
// (TCG) with an initramfs this test builds: busybox, xrun, the static
// qemus, and a cache root baked with the test images. As an unprivileged
// user, with no binfmt_misc handler anywhere, xrun picks exec
// interception by itself and runs arm64, armv7, ppc64le and s390x.
func TestOldKernelVM(t *testing.T) {
	needXrun(t)
	needRegistry(t)
	needImages(t)
	if os.Geteuid() != 0 {
		testutil.SkipOrFail(t, "the test bakes the VM's cache as root")
	}
	qemuSystem, err := exec.LookPath("qemu-system-x86_64")
	if err != nil {
		testutil.SkipOrFail(t, "qemu-system-x86_64 (qemu-system-x86; hack/setup.sh installs it): %v", err)
	}
	kernels, _ := filepath.Glob(filepath.Join(oldKernelDir(), "boot", "vmlinuz-6.1.*"))
	blk, _ := filepath.Glob(filepath.Join(oldKernelDir(), "lib", "modules", "6.1.*", "kernel", "drivers", "block", "virtio_blk.ko"))
	overlay, _ := filepath.Glob(filepath.Join(oldKernelDir(), "lib", "modules", "6.1.*", "kernel", "fs", "overlayfs", "overlay.ko"))
	if len(kernels) == 0 || len(overlay) == 0 || len(blk) == 0 {
		testutil.SkipOrFail(t, "Debian 12's 6.1 kernel in %s (hack/setup.sh downloads it)", oldKernelDir())
	}
	debs, err := testimage.DebsDir()
	if err != nil {
		testutil.SkipOrFail(t, "busybox .debs: %v", err)
	}
	bbDeb, _ := filepath.Glob(filepath.Join(debs, "busybox-static_*_amd64.deb"))
	bbArm64, _ := filepath.Glob(filepath.Join(debs, "busybox-static_*_arm64.deb"))
	if len(bbDeb) == 0 || len(bbArm64) == 0 {
		testutil.SkipOrFail(t, "busybox-static amd64 and arm64 .debs in %s", debs)
	}
	mkfs, err := exec.LookPath("mkfs.ext4")
	if err != nil {
		testutil.SkipOrFail(t, "mkfs.ext4 (e2fsprogs): %v", err)
	}
	// The disk's driver, from the same kernel package (ext4 is built in).
	var modules []string
	for _, pat := range []string{"drivers/virtio/virtio.ko", "drivers/virtio/virtio_ring.ko",
		"drivers/virtio/virtio_pci*.ko", "drivers/block/virtio_blk.ko"} {
		m, _ := filepath.Glob(filepath.Join(oldKernelDir(), "lib", "modules", "6.1.*", "kernel", pat))
		modules = append(modules, m...)
	}
	plats := []string{"linux/arm64", "linux/arm/v7", "linux/ppc64le", "linux/s390x"}
	ref := h.reg.ref(busyboxRepo)
	dir := t.TempDir()
	ir := filepath.Join(dir, "ir")
	sh := func(script string, env ...string) { t.Helper(); vmShell(t, script, env...) }
	var qemus []string
	for _, p := range plats {
		tp := platformByName(p)
		needQemu(t, tp)
		q, err := exec.LookPath(tp.Qemu)
		if err != nil {
			testutil.SkipOrFail(t, "qemu for %s: %v", p, err)
		}
		qemus = append(qemus, q)
	}
	debRef := pushDebian(t)
	sh(fmt.Sprintf(`mkdir -p %[1]s/bin %[1]s/sbin %[1]s/usr/bin %[1]s/proc %[1]s/sys %[1]s/dev %[1]s/tmp %[1]s/etc %[1]s/home/u %[1]s/newroot %[1]s/modules
dpkg-deb -x %[2]s %[3]s/bb && cp %[3]s/bb/bin/busybox %[1]s/bin/busybox
cp %[4]s %[1]s/usr/bin/xrun && cp %[5]s %[1]s/usr/bin/ && cp %[6]s %[7]s %[1]s/modules/
printf 'root:x:0:0:root:/root:/bin/sh\nu:x:1000:1000:u:/home/u:/bin/sh\n' >%[1]s/etc/passwd
printf 'root:x:0:\nu:x:1000:\n' >%[1]s/etc/group
chown 1000:1000 %[1]s/home/u`, ir, bbDeb[0], dir, h.xrun, strings.Join(qemus, " "), overlay[0], strings.Join(modules, " ")))
	// u's own cache on the ext4 disk: the Debian image, pulled as root and
	// given to u (its layer blobs are not needed once unpacked).
	home := filepath.Join(dir, "home")
	sh(fmt.Sprintf("mkdir -p %s/u", home))
	sh(fmt.Sprintf("%s pull -q --platform linux/arm64 %s", h.xrun, debRef), "XRUN_CACHE="+filepath.Join(home, "u", "cache"))
	sh(fmt.Sprintf(`find %[1]s/u/cache/blobs -type f -size +1M -delete
cp %[2]s %[1]s/u/busybox-static.deb && chown -R 1000:1000 %[1]s/u
truncate -s $(( $(du -sm %[1]s | cut -f1) + 512 ))M %[3]s/disk.img
%[4]s -q -F -d %[1]s %[3]s/disk.img`, home, bbArm64[0], dir, mkfs))
	// README's shared-cache recipe, as root, for the VM's /cache.
	for _, p := range plats {
		sh(fmt.Sprintf("%s pull -q --platform %s %s", h.xrun, p, ref), "XRUN_CACHE="+filepath.Join(ir, "cache"))
	}
	sh(fmt.Sprintf("find %s/cache -path '*/rootfs/*' -prune -o -exec chmod go+rX {} +", ir))
	initrd := vmInitrd(t, ir, filepath.Join(dir, "bb", "bin", "busybox"), fmt.Sprintf(vmInit2, strings.Join(plats, " "), ref, debRef))
	out := bootVM(t, 12*time.Minute, qemuSystem, "-m", "1536", "-smp", "2",
		"-drive", "file="+filepath.Join(dir, "disk.img")+",format=raw,if=virtio",
		"-kernel", kernels[0], "-initrd", initrd, "-append", "console=ttyS0 quiet panic=-1")
	for _, p := range plats {
		tp := platformByName(p)
		if !strings.Contains(out, "VM RESULT "+p+": "+tp.Uname()+"\n") {
			t.Errorf("%s in the VM: no %q:\n%s", p, tp.Uname(), tailOf(out, 3000))
		}
		if !strings.Contains(out, "VM LOG "+p+": level=INFO msg=emulation prog=xrun strategy=intercept") {
			t.Errorf("%s in the VM: the automatic strategy was not intercept:\n%s", p, tailOf(out, 3000))
		}
	}
	for _, want := range []string{"VM APT: Status: install ok installed\n", "VM APT: aarch64\n", "VM SCRATCH LEFT: 0\n"} {
		if !strings.Contains(out, want) {
			t.Errorf("apt-get install in the Debian arm64 image in the VM: no %q:\n%s", strings.TrimSpace(want), tailOf(out, 3000))
		}
	}
}

// vmShell runs a shell script on the host for a VM test.
func vmShell(t *testing.T, script string, env ...string) {
	t.Helper()
	cmd := exec.Command("sh", "-euc", script)
	cmd.Env = append(os.Environ(), env...)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", script, err, out)
	}
}

// vmInitrd writes the init scripts into the tree ir (init2 given) and packs
// it with busybox's cpio into ir's parent directory: the path of the
// initramfs.
func vmInitrd(t *testing.T, ir, busybox, init2 string) string {
	t.Helper()
	if err := os.WriteFile(filepath.Join(ir, "init"), []byte(vmInit), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(ir, "init2"), []byte(init2), 0o755); err != nil {
		t.Fatal(err)
	}
	initrd := filepath.Join(filepath.Dir(ir), "initrd.gz")
	vmShell(t, fmt.Sprintf("cd %s && find . | %s cpio -o -H newc 2>/dev/null | gzip -1 >%s", ir, busybox, initrd))
	return initrd
}

// bootVM runs a VM under TCG until it powers off and returns its console
// output, checked to come from Debian's 6.1 kernel.
func bootVM(t *testing.T, timeout time.Duration, qemu string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	start := time.Now()
	cmd := exec.CommandContext(ctx, qemu, append([]string{"-nographic", "-no-reboot"}, args...)...)
	outB, err := cmd.CombinedOutput()
	out := strings.ReplaceAll(string(outB), "\r", "")
	t.Logf("timing: the VM (TCG) booted and ran in %v", time.Since(start).Round(time.Millisecond))
	if err != nil {
		t.Fatalf("%s: %v\n%s", filepath.Base(qemu), err, tailOf(out, 3000))
	}
	if !strings.Contains(out, "VM kernel 6.1.") {
		t.Fatalf("the VM did not run Debian's 6.1 kernel:\n%s", tailOf(out, 3000))
	}
	return out
}

// vmInitArm64 runs, as u in the arm64 VM, the amd64 image: exec chains, a
// script and an exit code, under the strategy xrun picks by itself.
const vmInitArm64 = `#!/bin/sh
mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev
mount -t tmpfs tmp /tmp; chmod 1777 /tmp; mount -t cgroup2 cgroup2 /sys/fs/cgroup
insmod /modules/overlay.ko
echo "VM kernel $(uname -r) on $(uname -m)"
su -s /bin/sh u -c "cd /home/u; HOME=/home/u XRUN_CACHE=/home/u/cache XRUN_ADDITIONAL_CACHES=/cache PATH=/usr/bin:/bin xrun --verbose --pull=never --platform linux/amd64 %s -- sh -c 'uname -m; env uname -m | cat; printf \"#!/bin/sh\\necho script \\\$(uname -m)\\n\" >/tmp/s; chmod +x /tmp/s; /tmp/s; exit 3'" >/tmp/out 2>/tmp/err
echo "VM EXIT $?"
sed "s|^|VM RESULT: |" /tmp/out
grep -E "strategy=|xrun:" /tmp/err | sed "s|^|VM LOG: |"
poweroff -f
`

// oldKernelArm64Dir is where hack/setup.sh unpacks Debian 12's 6.1 arm64
// kernel and the arm64 build of qemu-x86_64-static.
func oldKernelArm64Dir() string {
	return filepath.Join(filepath.Dir(testimage.DebianPath()), "kernel-6.1-arm64")
}

// TestOldKernelVMArm64Host is exec interception on an arm64 host: Debian
// 12's 6.1 arm64 kernel under qemu-system-aarch64 (TCG), xrun built for
// arm64, and an unprivileged user running the amd64 image there, with no
// binfmt_misc handler: xrun picks interception and the arm64 build of
// qemu-x86_64-static runs it.
func TestOldKernelVMArm64Host(t *testing.T) {
	needXrun(t)
	needRegistry(t)
	needImages(t)
	if os.Geteuid() != 0 {
		testutil.SkipOrFail(t, "the test bakes the VM's cache as root")
	}
	for _, tool := range []string{"qemu-system-aarch64", "aarch64-linux-gnu-gcc", "make"} {
		if _, err := exec.LookPath(tool); err != nil {
			testutil.SkipOrFail(t, "%s (hack/setup.sh installs it): %v", tool, err)
		}
	}
	kdir := oldKernelArm64Dir()
	kernels, _ := filepath.Glob(filepath.Join(kdir, "boot", "vmlinuz-6.1.*"))
	overlay, _ := filepath.Glob(filepath.Join(kdir, "lib", "modules", "6.1.*", "kernel", "fs", "overlayfs", "overlay.ko"))
	qemuX86 := filepath.Join(kdir, "usr", "bin", "qemu-x86_64-static")
	if _, err := os.Stat(qemuX86); len(kernels) == 0 || len(overlay) == 0 || err != nil {
		testutil.SkipOrFail(t, "Debian 12's 6.1 arm64 kernel and arm64 qemu-x86_64-static in %s (hack/setup.sh downloads them)", kdir)
	}
	debs, err := testimage.DebsDir()
	if err != nil {
		testutil.SkipOrFail(t, "busybox .debs: %v", err)
	}
	bbArm64, _ := filepath.Glob(filepath.Join(debs, "busybox-static_*_arm64.deb"))
	bbHost, _ := filepath.Glob(filepath.Join(debs, "busybox-static_*_amd64.deb"))
	if len(bbArm64) == 0 || len(bbHost) == 0 {
		testutil.SkipOrFail(t, "busybox-static arm64 and amd64 .debs in %s", debs)
	}
	dir := t.TempDir()
	ir := filepath.Join(dir, "ir")
	// xrun for arm64, as make builds it (static, cgo with the cross gcc).
	xrunArm64 := filepath.Join(dir, "xrun-arm64")
	build := exec.Command("make", "-C", "..", "build", "BIN_OUT="+xrunArm64)
	build.Env = append(os.Environ(), "GOARCH=arm64", "CC=aarch64-linux-gnu-gcc")
	start := time.Now()
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build xrun for arm64: %v\n%s", err, out)
	}
	t.Logf("timing: xrun built for arm64 in %v", time.Since(start).Round(time.Millisecond))
	ref := h.reg.ref(busyboxRepo)
	vmShell(t, fmt.Sprintf(`mkdir -p %[1]s/bin %[1]s/sbin %[1]s/usr/bin %[1]s/proc %[1]s/sys %[1]s/dev %[1]s/tmp %[1]s/etc %[1]s/home/u %[1]s/newroot %[1]s/modules
dpkg-deb -x %[2]s %[3]s/bb && cp %[3]s/bb/bin/busybox %[1]s/bin/busybox
dpkg-deb -x %[4]s %[3]s/bbhost
cp %[5]s %[1]s/usr/bin/xrun && cp %[6]s %[1]s/usr/bin/ && cp %[7]s %[1]s/modules/
printf 'root:x:0:0:root:/root:/bin/sh\nu:x:1000:1000:u:/home/u:/bin/sh\n' >%[1]s/etc/passwd
printf 'root:x:0:\nu:x:1000:\n' >%[1]s/etc/group
chown 1000:1000 %[1]s/home/u`, ir, bbArm64[0], dir, bbHost[0], xrunArm64, qemuX86, overlay[0]))
	// The amd64 image in a cache baked as root (README's recipe).
	vmShell(t, fmt.Sprintf("%s pull -q --platform linux/amd64 %s", h.xrun, ref), "XRUN_CACHE="+filepath.Join(ir, "cache"))
	vmShell(t, fmt.Sprintf("find %s/cache -path '*/rootfs/*' -prune -o -exec chmod go+rX {} +", ir))
	initrd := vmInitrd(t, ir, filepath.Join(dir, "bbhost", "bin", "busybox"), fmt.Sprintf(vmInitArm64, ref))
	out := bootVM(t, 12*time.Minute, "qemu-system-aarch64", "-M", "virt", "-cpu", "cortex-a57", "-m", "1024", "-smp", "2",
		"-kernel", kernels[0], "-initrd", initrd, "-append", "console=ttyAMA0 quiet panic=-1")
	for _, want := range []string{"on aarch64\n", "VM EXIT 3\n", "VM RESULT: x86_64\nVM RESULT: x86_64\nVM RESULT: script x86_64\n",
		"VM LOG: level=INFO msg=emulation prog=xrun strategy=intercept"} {
		if !strings.Contains(out, want) {
			t.Errorf("the amd64 image on the arm64 VM: no %q:\n%s", strings.TrimSpace(want), tailOf(out, 3000))
		}
	}
}
