// The container's native PID 1, in C, run from an ELF constructor before the
// Go runtime starts: when the xrun binary is executed as /dev/.xrun-init (see
// reaper.go), it never becomes a Go program, which saves a Go start-up on
// every run.
//
// Argument vector: /dev/.xrun-init [-u UID:GID[:GID,...]] -- COMMAND [ARG...]
//
// It starts COMMAND as its child (with the credentials of -u, including the
// supplementary groups libcontainer does not set in a rootless container),
// forwards every signal it receives to it, reaps every zombie of the pid
// namespace, and exits with the child's status: its code, or 128+N when it
// died of signal N. 127 when COMMAND is not found, 126 when it cannot be
// executed.
#define _GNU_SOURCE
#include <errno.h>
#include <grp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

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
	int ngroups = 0, cred = 0, first = 2, tty;
	sigset_t all, none;
	pid_t child;

	if (strcmp(argv[1], "-u") == 0) {
		if (argc < 5 || strcmp(argv[3], "--") != 0 ||
		    xrun_parse_cred(argv[2], &uid, &gid, groups, &ngroups) < 0) {
			fprintf(stderr, "xrun: [internal error] bad init arguments\n");
			_exit(125);
		}
		cred = 1;
		first = 4;
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
		execvp(argv[first], argv + first);
		if (errno == ENOENT)
			fprintf(stderr, "xrun: %s: command not found in the image: check the name and the image's PATH\n", argv[first]);
		else
			fprintf(stderr, "xrun: %s: cannot execute: %s\n", argv[first], strerror(errno));
		_exit(errno == ENOENT ? 127 : 126);
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
			pid_t p = waitpid(-1, &status, WNOHANG);

			if (p <= 0)
				break;
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
