// Exec interception (emulation strategy "intercept"): foreign binaries run
// under qemu with no binfmt_misc at all. The reaper (reaper.c) starts the
// command with a seccomp filter that stops only execve and execveat
// (SECCOMP_RET_TRACE) and traces the whole process tree; at each stop it
// reads the file being executed and, when its first bytes match the
// emulated architecture's binfmt magic (directly, or as the interpreter of
// a #! script, recursively as the kernel does), rewrites the call into an
// execve of the static qemu bound into the container:
//
//   qemu -0 ARGV0 PATH ARG...      (what binfmt_misc's F and P flags give)
//
// Every other system call runs untraced: the cost is paid per exec. qemu's
// own execve of a guest program is a host execve of the tracee, so it is
// caught the same way.
//
// What it gives up: processes in the container are traced, so they cannot
// ptrace (strace, gdb), and no_new_privs is set, so setuid binaries do not
// gain privileges (a rootless container maps one user anyway).
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/capability.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/user.h>
#include <sys/wait.h>
#include <unistd.h>

#include "intercept.h"

#if defined(__x86_64__) || defined(__aarch64__)

// The registers of a tracee at its syscall-entry stop, per host
// architecture: the syscall number, its arguments, the stack pointer.
#if defined(__x86_64__)
#define XRUN_AUDIT_ARCH AUDIT_ARCH_X86_64
typedef struct user_regs_struct xrun_regs;
static int xrun_getregs(pid_t pid, xrun_regs *r) { return (int)ptrace(PTRACE_GETREGS, pid, 0, r); }
static long xrun_nr(const xrun_regs *r) { return (long)r->orig_rax; }
static uint64_t xrun_arg(const xrun_regs *r, int i)
{
	const uint64_t a[] = {r->rdi, r->rsi, r->rdx, r->r10, r->r8, r->r9};
	return a[i];
}
static uint64_t xrun_sp(const xrun_regs *r) { return r->rsp; }
// xrun_set_execve turns the stopped call into execve(path, argv, envp).
static void xrun_set_execve(pid_t pid, xrun_regs *r, uint64_t path, uint64_t argv, uint64_t envp)
{
	r->orig_rax = __NR_execve;
	r->rdi = path, r->rsi = argv, r->rdx = envp;
	ptrace(PTRACE_SETREGS, pid, 0, r);
}
#else
#include <elf.h>
#define XRUN_AUDIT_ARCH AUDIT_ARCH_AARCH64
typedef struct user_regs_struct xrun_regs; // x0..x30, sp, pc, pstate
static int xrun_getregs(pid_t pid, xrun_regs *r)
{
	struct iovec io = {r, sizeof *r};
	return (int)ptrace(PTRACE_GETREGSET, pid, (void *)NT_PRSTATUS, &io);
}
static long xrun_nr(const xrun_regs *r) { return (long)r->regs[8]; }
static uint64_t xrun_arg(const xrun_regs *r, int i) { return r->regs[i]; }
static uint64_t xrun_sp(const xrun_regs *r) { return r->sp; }
// The syscall number is changed through its own register set
// (NT_ARM_SYSTEM_CALL); x0..x2 are the arguments.
static void xrun_set_execve(pid_t pid, xrun_regs *r, uint64_t path, uint64_t argv, uint64_t envp)
{
	int nr = __NR_execve;
	struct iovec ionr = {&nr, sizeof nr}, io = {r, sizeof *r};
	r->regs[0] = path, r->regs[1] = argv, r->regs[2] = envp;
	ptrace(PTRACE_SETREGSET, pid, (void *)NT_PRSTATUS, &io);
	ptrace(PTRACE_SETREGSET, pid, (void *)NT_ARM_SYSTEM_CALL, &ionr);
}
#endif

#define XRUN_MAGIC_MAX 32
#define XRUN_SCRIPT_DEPTH 4
#define XRUN_ARG_MAX 4096

static unsigned char xrun_magic[XRUN_MAGIC_MAX], xrun_mask[XRUN_MAGIC_MAX];
static size_t xrun_magic_len;
static const char *xrun_qemu;

static int xrun_unhex(const char *s, size_t n, unsigned char *out)
{
	for (size_t i = 0; i < n; i++) {
		unsigned v;
		if (sscanf(s + 2 * i, "%2x", &v) != 1)
			return -1;
		out[i] = (unsigned char)v;
	}
	return 0;
}

// xrun_intercept_parse parses "MAGICHEX:MASKHEX:QEMUPATH".
int xrun_intercept_parse(const char *spec)
{
	const char *c1 = strchr(spec, ':'), *c2;
	size_t n;

	if (c1 == NULL || (c2 = strchr(c1 + 1, ':')) == NULL)
		return -1;
	n = (size_t)(c1 - spec);
	if (n % 2 != 0 || n / 2 > XRUN_MAGIC_MAX || (size_t)(c2 - c1 - 1) != n)
		return -1;
	xrun_magic_len = n / 2;
	if (xrun_unhex(spec, xrun_magic_len, xrun_magic) < 0 || xrun_unhex(c1 + 1, xrun_magic_len, xrun_mask) < 0)
		return -1;
	xrun_qemu = c2 + 1;
	return *xrun_qemu == '/' ? 0 : -1;
}

// xrun_intercept_child runs in the command's process before it executes
// the command: it waits until the reaper traces it (sync is a pipe the
// reaper closes), then installs the filter.
int xrun_intercept_child(int sync)
{
	char c;
	struct sock_filter filter[] = {
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, XRUN_AUDIT_ARCH, 1, 0),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_execve, 2, 0),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_execveat, 1, 0),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_TRACE),
	};
	struct sock_fprog prog = {.len = sizeof filter / sizeof filter[0], .filter = filter};

	struct __user_cap_header_struct hdr = {.version = _LINUX_CAPABILITY_VERSION_3};
	struct __user_cap_data_struct caps[2];

	while (read(sync, &c, 1) < 0 && errno == EINTR)
		;
	close(sync);
	// The reaper keeps CAP_SYS_PTRACE to read the tracees' memory and
	// /proc entries; the command does not get it.
	prctl(PR_CAPBSET_DROP, CAP_SYS_PTRACE, 0, 0, 0);
	if (syscall(SYS_capget, &hdr, caps) == 0) {
		caps[0].effective &= ~(1u << CAP_SYS_PTRACE);
		caps[0].permitted &= ~(1u << CAP_SYS_PTRACE);
		caps[0].inheritable &= ~(1u << CAP_SYS_PTRACE);
		syscall(SYS_capset, &hdr, caps);
	}
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
		return -1;
	return prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog);
}

// xrun_intercept_attach traces child and, through the options, every
// process it starts.
int xrun_intercept_attach(pid_t child)
{
	long opts = PTRACE_O_TRACESECCOMP | PTRACE_O_TRACEFORK | PTRACE_O_TRACEVFORK |
		    PTRACE_O_TRACECLONE | PTRACE_O_TRACEEXEC | PTRACE_O_EXITKILL;
	return (int)ptrace(PTRACE_SEIZE, child, 0, opts);
}

// Tracee memory, through /proc/PID/mem.
static int xrun_mem(pid_t pid, int flags)
{
	char p[64];
	snprintf(p, sizeof p, "/proc/%d/mem", (int)pid);
	return open(p, flags | O_CLOEXEC);
}

static int xrun_read_str(int mem, uint64_t addr, char *buf, size_t n)
{
	size_t got = 0;
	while (got < n) {
		ssize_t r = pread(mem, buf + got, n - got < 256 ? n - got : 256, (off_t)(addr + got));
		if (r <= 0)
			return -1;
		void *z = memchr(buf + got, 0, (size_t)r);
		if (z != NULL)
			return 0;
		got += (size_t)r;
	}
	return -1;
}

// xrun_resolve makes the host path (via /proc/PID/root, cwd or fd) of the
// file an exec names.
static void xrun_resolve(pid_t pid, int dirfd, const char *path, char *out, size_t n)
{
	if (path[0] == '/')
		snprintf(out, n, "/proc/%d/root%s", (int)pid, path);
	else if (dirfd == AT_FDCWD)
		snprintf(out, n, "/proc/%d/cwd/%s", (int)pid, path);
	else if (path[0] == '\0')
		snprintf(out, n, "/proc/%d/fd/%d", (int)pid, dirfd);
	else
		snprintf(out, n, "/proc/%d/fd/%d/%s", (int)pid, dirfd, path);
}

// xrun_head reads the first bytes of an executable regular file; -1 when it
// is not one (the kernel then fails the exec itself).
static ssize_t xrun_head(const char *host, char *buf, size_t n)
{
	struct stat st;
	int fd = open(host, O_RDONLY | O_CLOEXEC);
	ssize_t r;

	if (fd < 0)
		return -1;
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || (st.st_mode & 0111) == 0) {
		close(fd);
		return -1;
	}
	r = pread(fd, buf, n, 0);
	close(fd);
	return r;
}

static int xrun_foreign(const unsigned char *h, ssize_t n)
{
	if (n < (ssize_t)xrun_magic_len)
		return 0;
	for (size_t i = 0; i < xrun_magic_len; i++)
		if ((h[i] ^ xrun_magic[i]) & xrun_mask[i])
			return 0;
	return 1;
}

// A rewritten exec: the strings it adds, and the tracee's original argv
// pointers from index skip on.
struct xrun_exec {
	char path[PATH_MAX];    // what the tracee named (kept for #! scripts)
	char *pre[2 * XRUN_SCRIPT_DEPTH + 4];
	int npre;
	char store[XRUN_SCRIPT_DEPTH][2][PATH_MAX];
	int skip; // original argv entries replaced (argv[0])
};

// xrun_plan decides whether the exec of path (dirfd as for execveat) runs
// under qemu, and with which leading arguments: 1 to rewrite, 0 not.
static int xrun_plan(pid_t pid, int dirfd, struct xrun_exec *x)
{
	char host[PATH_MAX + 64], head[512];
	char *file = x->path;
	// The argument list the kernel would build: scripts prepend their
	// interpreter and optional argument and replace argv[0] by the path.
	char *args[2 * XRUN_SCRIPT_DEPTH + 2];
	int nargs = 0;

	x->skip = 0;
	for (int depth = 0; depth <= XRUN_SCRIPT_DEPTH; depth++) {
		ssize_t n;
		xrun_resolve(pid, depth == 0 ? dirfd : AT_FDCWD, file, host, sizeof host);
		n = xrun_head(host, head, sizeof head - 1);
		if (n < 0)
			return 0;
		if (xrun_foreign((unsigned char *)head, n)) {
			// qemu -0 ARGV0 FILE ARGS: ARGV0 is the first of the
			// built list, or the tracee's own argv[0].
			x->npre = 0;
			x->pre[x->npre++] = (char *)xrun_qemu;
			x->pre[x->npre++] = "-0";
			if (nargs > 0) {
				x->pre[x->npre++] = args[0];
				x->pre[x->npre++] = file;
				for (int i = 1; i < nargs; i++)
					x->pre[x->npre++] = args[i];
			} else {
				x->pre[x->npre++] = NULL; // the tracee's argv[0]
				x->pre[x->npre++] = file;
			}
			x->skip = 1;
			return 1;
		}
		if (n < 2 || head[0] != '#' || head[1] != '!' || depth == XRUN_SCRIPT_DEPTH)
			return 0; // native, or what the kernel will refuse itself
		head[n] = '\0';
		// #!INTERP [ARG]
		char *p = head + 2, *end, *interp, *arg = NULL;
		end = strchr(p, '\n');
		if (end == NULL)
			return 0;
		*end = '\0';
		while (*p == ' ' || *p == '\t')
			p++;
		interp = p;
		while (*p && *p != ' ' && *p != '\t')
			p++;
		if (*p) {
			*p++ = '\0';
			while (*p == ' ' || *p == '\t')
				p++;
			// The kernel keeps the rest of the line, trailing blanks cut.
			char *q = p + strlen(p);
			while (q > p && (q[-1] == ' ' || q[-1] == '\t'))
				*--q = '\0';
			if (*p)
				arg = p;
		}
		if (*interp == '\0')
			return 0;
		// New list: INTERP [ARG] SCRIPT, then the rest of the old list
		// (whose first element, argv[0] or an earlier interpreter, goes).
		char *nl[2 * XRUN_SCRIPT_DEPTH + 2];
		int nn = 0;
		snprintf(x->store[depth][0], PATH_MAX, "%s", interp);
		nl[nn++] = x->store[depth][0];
		if (arg != NULL) {
			snprintf(x->store[depth][1], PATH_MAX, "%s", arg);
			nl[nn++] = x->store[depth][1];
		}
		nl[nn++] = file;
		for (int i = 1; i < nargs; i++)
			nl[nn++] = args[i];
		memcpy(args, nl, sizeof(char *) * (size_t)nn);
		nargs = nn;
		file = x->store[depth][0];
	}
	return 0;
}

// xrun_intercept_exec handles a seccomp stop of pid at execve/execveat.
void xrun_intercept_exec(pid_t pid)
{
	xrun_regs r;
	struct xrun_exec *x;
	uint64_t argvp, envp, pathp;
	int dirfd = AT_FDCWD, mem;
	uint64_t argv0 = 0;

	if (xrun_getregs(pid, &r) < 0)
		return;
	if (xrun_nr(&r) == __NR_execve) {
		pathp = xrun_arg(&r, 0), argvp = xrun_arg(&r, 1), envp = xrun_arg(&r, 2);
	} else if (xrun_nr(&r) == __NR_execveat) {
		dirfd = (int)xrun_arg(&r, 0), pathp = xrun_arg(&r, 1), argvp = xrun_arg(&r, 2), envp = xrun_arg(&r, 3);
		if (xrun_arg(&r, 4) & AT_SYMLINK_NOFOLLOW)
			return; // rare: leave it to the kernel
	} else {
		return;
	}
	x = calloc(1, sizeof *x);
	if (x == NULL)
		return;
	mem = xrun_mem(pid, O_RDWR);
	if (mem < 0 || xrun_read_str(mem, pathp, x->path, sizeof x->path) < 0 || !xrun_plan(pid, dirfd, x))
		goto out;
	// The original argv pointers (argv[0] and the count).
	uint64_t *orig = calloc(XRUN_ARG_MAX + 1, sizeof *orig);
	int argc = 0;
	if (orig == NULL)
		goto out;
	if (argvp != 0) {
		while (argc < XRUN_ARG_MAX) {
			if (pread(mem, &orig[argc], 8, (off_t)(argvp + 8 * (uint64_t)argc)) != 8)
				goto out2;
			if (orig[argc] == 0)
				break;
			argc++;
		}
		if (argc == XRUN_ARG_MAX)
			goto out2;
	}
	argv0 = argc > 0 ? orig[0] : 0;

	// Lay out the new strings and the new argv below the stack pointer,
	// past the red zone: the exec replaces that memory when it succeeds.
	uint64_t sp = (xrun_sp(&r) - 4096) & ~(uint64_t)15;
	uint64_t ptrs[2 * XRUN_SCRIPT_DEPTH + 4];
	char empty = '\0';
	for (int i = 0; i < x->npre; i++) {
		if (x->pre[i] == NULL) { // the tracee's argv[0] (or "")
			if (argv0 != 0) {
				ptrs[i] = argv0;
				continue;
			}
			x->pre[i] = &empty;
		}
		size_t len = strlen(x->pre[i]) + 1;
		sp -= len;
		if (pwrite(mem, x->pre[i], len, (off_t)sp) != (ssize_t)len)
			goto out2;
		ptrs[i] = sp;
	}
	int total = x->npre + (argc > x->skip ? argc - x->skip : 0) + 1;
	sp = (sp - 8 * (uint64_t)total) & ~(uint64_t)15;
	uint64_t *nv = calloc((size_t)total, sizeof *nv);
	if (nv == NULL)
		goto out2;
	int k = 0;
	for (int i = 0; i < x->npre; i++)
		nv[k++] = ptrs[i];
	for (int i = x->skip; i < argc; i++)
		nv[k++] = orig[i];
	nv[k++] = 0;
	if (pwrite(mem, nv, 8 * (size_t)k, (off_t)sp) != (ssize_t)(8 * k)) {
		free(nv);
		goto out2;
	}
	free(nv);
	// execve(qemu, argv, envp), whichever call it was.
	xrun_set_execve(pid, &r, ptrs[0], sp, envp);
out2:
	free(orig);
out:
	if (mem >= 0)
		close(mem);
	free(x);
}

// xrun_intercept_stop handles a ptrace stop of a traced process (status
// from waitpid): every stop is resumed, with the signal it carried when it
// was a signal-delivery stop.
void xrun_intercept_stop(pid_t pid, int status)
{
	int sig = WSTOPSIG(status), event = status >> 16;

	if (sig == SIGTRAP && event == PTRACE_EVENT_SECCOMP) {
		xrun_intercept_exec(pid);
		ptrace(PTRACE_CONT, pid, 0, 0);
	} else if (event == PTRACE_EVENT_STOP) {
		if (sig == SIGSTOP || sig == SIGTSTP || sig == SIGTTIN || sig == SIGTTOU)
			ptrace(PTRACE_LISTEN, pid, 0, 0); // group-stop: stay stopped
		else
			ptrace(PTRACE_CONT, pid, 0, 0);
	} else if (event != 0) {
		ptrace(PTRACE_CONT, pid, 0, 0); // fork, clone, exec events
	} else {
		ptrace(PTRACE_CONT, pid, 0, sig); // deliver the signal
	}
}

#else

int xrun_intercept_parse(const char *spec)
{
	(void)spec;
	return -1;
}
int xrun_intercept_child(int sync)
{
	(void)sync;
	errno = ENOSYS;
	return -1;
}
int xrun_intercept_attach(pid_t child)
{
	(void)child;
	errno = ENOSYS;
	return -1;
}
void xrun_intercept_stop(pid_t pid, int status)
{
	(void)status;
	ptrace(PTRACE_CONT, pid, 0, 0);
}

#endif
