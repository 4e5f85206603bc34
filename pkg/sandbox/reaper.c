// The container's native PID 1, in C, run from an ELF constructor before the
// Go runtime starts: when the xrun binary is executed as /dev/.xrun-init (see
// reaper.go), it never becomes a Go program, which saves a Go start-up on
// every run.
//
// Argument vector: /dev/.xrun-init [-x MAGIC:MASK:QEMU] [-u UID:GID[:GID,...]] -- COMMAND [ARG...]
//
// With -x, foreign programs run under QEMU by exec interception
// (intercept.c).
//
// It starts COMMAND as its child (with the credentials of -u, including the
// supplementary groups libcontainer does not set in a rootless container),
// forwards every signal it receives to it, reaps every zombie of the pid
// namespace, and exits with the child's status: its code, or 128+N when it
// died of signal N. 127 when COMMAND is not found, 126 when it cannot be
// executed.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#include "intercept.h"

#define XRUN_REAPER_PATH "/dev/.xrun-init"
#define XRUN_MAX_GROUPS 256

static unsigned long xrun_num(const char **s, int *ok)
{
	char *end;
	unsigned long v;

	errno = 0;
	v = strtoul(*s, &end, 10);
	if (end == *s || errno != 0)
		*ok = 0;
	*s = end;
	return v;
}

// xrun_parse_cred parses "UID:GID[:GID,...]".
static int xrun_parse_cred(const char *s, uid_t *uid, gid_t *gid, gid_t *groups, int *ngroups)
{
	int ok = 1;

	*ngroups = 0;
	*uid = (uid_t)xrun_num(&s, &ok);
	if (!ok || *s++ != ':')
		return -1;
	*gid = (gid_t)xrun_num(&s, &ok);
	if (!ok)
		return -1;
	if (*s == '\0')
		return 0;
	if (*s++ != ':')
		return -1;
	for (;;) {
		if (*ngroups == XRUN_MAX_GROUPS)
			return -1;
		groups[(*ngroups)++] = (gid_t)xrun_num(&s, &ok);
		if (!ok)
			return -1;
		if (*s == '\0')
			return 0;
		if (*s++ != ',')
			return -1;
	}
}

static void xrun_reap(int argc, char **argv)
{
	uid_t uid = 0;
	gid_t gid = 0, groups[XRUN_MAX_GROUPS];
	int ngroups = 0, cred = 0, first = 1, tty, intercept = 0, sync[2] = {-1, -1};
	sigset_t all, none;
	pid_t child;

	if (first + 1 < argc && strcmp(argv[first], "-x") == 0) {
		if (xrun_intercept_parse(argv[first + 1]) < 0) {
			fprintf(stderr, "xrun: [internal error] bad init arguments\n");
			_exit(125);
		}
		intercept = 1;
		first += 2;
	}
	if (first + 1 < argc && strcmp(argv[first], "-u") == 0) {
		if (xrun_parse_cred(argv[first + 1], &uid, &gid, groups, &ngroups) < 0) {
			fprintf(stderr, "xrun: [internal error] bad init arguments\n");
			_exit(125);
		}
		cred = 1;
		first += 2;
	}
	if (first >= argc || strcmp(argv[first], "--") != 0) {
		fprintf(stderr, "xrun: [internal error] bad init arguments\n");
		_exit(125);
	}
	first++;
	if (intercept && pipe2(sync, O_CLOEXEC) < 0) {
		fprintf(stderr, "xrun: start %s: %s\n", argv[first], strerror(errno));
		_exit(125);
	}
	if (first >= argc) {
		fprintf(stderr, "xrun: [internal error] no command\n");
		_exit(125);
	}
	tty = isatty(STDIN_FILENO);

	// Block everything: signals are taken one by one with sigwaitinfo, so
	// none is lost between fork and the loop, and none kills this init.
	sigfillset(&all);
	sigemptyset(&none);
	sigprocmask(SIG_BLOCK, &all, NULL);

	child = fork();
	if (child < 0) {
		fprintf(stderr, "xrun: start %s: %s\n", argv[first], strerror(errno));
		_exit(125);
	}
	if (child == 0) {
		if (tty) {
			// Own process group in the terminal's foreground: Ctrl-C and
			// Ctrl-Z reach the command and its children, not this init.
			// (SIGTTOU is still blocked, so tcsetpgrp cannot stop us.)
			setpgid(0, 0);
			tcsetpgrp(STDIN_FILENO, getpid());
		}
		if (cred) {
			if (setgroups((size_t)ngroups, groups) < 0 || setgid(gid) < 0 || setuid(uid) < 0) {
				fprintf(stderr, "xrun: switch to user %u:%u: %s\n", (unsigned)uid, (unsigned)gid, strerror(errno));
				_exit(125);
			}
		}
		sigprocmask(SIG_SETMASK, &none, NULL);
		if (intercept) {
			close(sync[1]);
			if (xrun_intercept_child(sync[0]) < 0) {
				fprintf(stderr, "xrun: start %s: exec interception: %s\n", argv[first], strerror(errno));
				_exit(125);
			}
		}
		execvp(argv[first], argv + first);
		if (errno == ENOENT)
			fprintf(stderr, "xrun: %s: command not found in the image: check the name and the image's PATH\n", argv[first]);
		else
			fprintf(stderr, "xrun: %s: cannot execute: %s\n", argv[first], strerror(errno));
		_exit(errno == ENOENT ? 127 : 126);
	}

	if (intercept) {
		close(sync[0]);
		if (xrun_intercept_attach(child) < 0) {
			fprintf(stderr, "xrun: start %s: exec interception: trace the command: %s (ptrace is refused here: kernel.yama.ptrace_scope=3, or a seccomp profile)\n",
				argv[first], strerror(errno));
			kill(child, SIGKILL);
			_exit(125);
		}
		close(sync[1]);
	}
	for (;;) {
		siginfo_t si;
		int sig = sigwaitinfo(&all, &si);

		if (sig < 0)
			continue;
		if (sig != SIGCHLD) {
			kill(child, sig);
			continue;
		}
		for (;;) {
			int status;
			pid_t p = waitpid(-1, &status, WNOHANG | __WALL);

			if (p <= 0)
				break;
			if (WIFSTOPPED(status)) {
				xrun_intercept_stop(p, status);
				continue;
			}
			if (p != child)
				continue;
			if (WIFSIGNALED(status))
				_exit(128 + WTERMSIG(status));
			_exit(WEXITSTATUS(status));
		}
	}
}

// glibc passes argc, argv and envp to constructors.
__attribute__((constructor)) static void xrun_reaper_init(int argc, char **argv, char **envp)
{
	(void)envp;
	if (argc >= 3 && argv[0] != NULL && strcmp(argv[0], XRUN_REAPER_PATH) == 0)
		xrun_reap(argc, argv);
}
