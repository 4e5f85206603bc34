/*
 * floor: the least work that runs a command in an image's rootfs, rootless,
 * with a qemu handler registered in the run's own user namespace. It is the
 * reference ("floor") xrun's start-up is measured against in bench/run.sh:
 * anything xrun spends above it is container plumbing, not emulation.
 *
 *   floor [-e EMULATOR -m MAGIC -k MASK] [-b SRC:DST]... [-t DIR]... [-w DIR]
 *         ROOTFS CMD [ARG...]
 *
 * What it does, in order (one unshare, one fork, no exec of anything but
 * CMD):
 *   1. unshare(user, mount, pid); map the caller's uid and gid to 0
 *   2. fork (the child is PID 1 of the new pid namespace)
 *   3. with -e: mount a binfmt_misc instance (per user namespace, Linux
 *      6.7+) and register EMULATOR for MAGIC/MASK with flags F (opened now,
 *      so it works after chroot) and P (argv[0] kept, for busybox applets)
 *   4. -b: recursive binds into ROOTFS; -t: tmpfs on ROOTFS/DIR
 *   5. chroot(ROOTFS), mount /proc when the image has that directory
 *   6. exec CMD (as PID 1: no reaper) and return its status
 * MAGIC and MASK are written as binfmt_misc reads them, e.g. the fields of
 * /usr/lib/binfmt.d/qemu-aarch64.conf (\x escapes).
 *
 * Not done, on purpose (xrun does them): overlay, /dev, /sys, hostname,
 * capabilities, a native PID 1, cleanup of state. No error recovery: this is
 * a measuring stick.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static void die(const char *what)
{
	fprintf(stderr, "floor: %s: %s\n", what, strerror(errno));
	exit(125);
}

static void writefile(const char *path, const char *s)
{
	int fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0 || write(fd, s, strlen(s)) != (ssize_t)strlen(s))
		die(path);
	close(fd);
}

#define MAXM 16

int main(int argc, char **argv)
{
	const char *emu = NULL, *magic = NULL, *mask = NULL, *wd = "/";
	char *binds[MAXM], *tmpfs[MAXM];
	int nb = 0, nt = 0, opt;
	char buf[4096];

	while ((opt = getopt(argc, argv, "+e:m:k:b:t:w:")) != -1) {
		switch (opt) {
		case 'e': emu = optarg; break;
		case 'm': magic = optarg; break;
		case 'k': mask = optarg; break;
		case 'b': if (nb < MAXM) binds[nb++] = optarg; break;
		case 't': if (nt < MAXM) tmpfs[nt++] = optarg; break;
		case 'w': wd = optarg; break;
		default: goto usage;
		}
	}
	if (argc - optind < 2 || (emu && (!magic || !mask)))
		goto usage;
	const char *root = argv[optind];
	char **cmd = argv + optind + 1;

	uid_t uid = getuid();
	gid_t gid = getgid();
	if (unshare(CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWPID) < 0)
		die("unshare");
	writefile("/proc/self/setgroups", "deny");
	snprintf(buf, sizeof buf, "0 %u 1", uid);
	writefile("/proc/self/uid_map", buf);
	snprintf(buf, sizeof buf, "0 %u 1", gid);
	writefile("/proc/self/gid_map", buf);

	pid_t pid = fork();
	if (pid < 0)
		die("fork");
	if (pid > 0) {
		int st;
		while (waitpid(pid, &st, 0) < 0)
			if (errno != EINTR)
				die("waitpid");
		if (WIFSIGNALED(st))
			return 128 + WTERMSIG(st);
		return WEXITSTATUS(st);
	}

	if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
		die("make / private");
	if (emu) {
		/* The instance lives while it is mounted: mount it on the host's
		 * (now private) binfmt_misc directory, which stays mounted (out of
		 * sight) after chroot. */
		const char *dir = "/proc/sys/fs/binfmt_misc";
		if (mount("binfmt_misc", dir, "binfmt_misc", 0, NULL) < 0)
			die("mount binfmt_misc");
		snprintf(buf, sizeof buf, ":floor:M::%s:%s:%s:FP", magic, mask, emu);
		writefile("/proc/sys/fs/binfmt_misc/register", buf);
	}
	for (int i = 0; i < nb; i++) {
		char *colon = strchr(binds[i], ':');
		if (!colon)
			goto usage;
		*colon = 0;
		snprintf(buf, sizeof buf, "%s/%s", root, colon + 1);
		if (mount(binds[i], buf, NULL, MS_BIND | MS_REC, NULL) < 0)
			die(buf);
	}
	for (int i = 0; i < nt; i++) {
		snprintf(buf, sizeof buf, "%s/%s", root, tmpfs[i]);
		if (mount("tmpfs", buf, "tmpfs", 0, "mode=1777") < 0)
			die(buf);
	}
	if (chroot(root) < 0)
		die("chroot");
	struct stat st;
	if (stat("/proc", &st) == 0 && mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) < 0)
		die("mount /proc");
	if (chdir(wd) < 0)
		die(wd);
	execvp(cmd[0], cmd);
	die(cmd[0]);

usage:
	fprintf(stderr, "usage: floor [-e EMULATOR -m MAGIC -k MASK] [-b SRC:DST]... [-t DIR]... [-w DIR] ROOTFS CMD [ARG...]\n");
	return 125;
}
