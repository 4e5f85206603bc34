/* cc1wrap: bound (static, x86-64) over the image's cc1 and cc1plus. Runs the
 * native cross cc1 of the accelerator tree so that it behaves like the image's
 * own (its built-in include directories are patched to the native ones by patchinc.py),
 * the image's .ident string, and the emulated cc1 for what the native one
 * compiles differently (stack protector: CVE-2023-4039, fixed only in the
 * image's 12.2.0-14+deb12u1). Prototype: the lists are compiled in.
 *
 *   cc -O2 -static -o cc1wrap cc1wrap.c
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/wait.h>
#include <dirent.h>

#define TREE "/.xrun-accel"
static const char ident_cross[] = "\t.ident\t\"GCC: (Debian 12.2.0-14) 12.2.0\"\n";
static const char ident_image[] = "\t.ident\t\"GCC: (Debian 12.2.0-14+deb12u1) 12.2.0\"\n";

static void fix_ident(const char *path) {
	FILE *f = fopen(path, "r");
	if (!f) return;
	size_t cap = 1 << 16, n = 0, k;
	char *b = malloc(cap);
	while ((k = fread(b + n, 1, cap - n, f)) > 0) { n += k; if (n == cap) b = realloc(b, cap *= 2); }
	fclose(f);
	size_t li = strlen(ident_cross);
	/* .ident is the last directive but one (.section .note.GNU-stack follows) */
	for (size_t i = n >= 4096 ? n - 4096 : 0; i + li <= n; i++) {
		if (memcmp(b + i, ident_cross, li) == 0) {
			f = fopen(path, "w");
			fwrite(b, 1, i, f);
			fputs(ident_image, f);
			fwrite(b + i + li, 1, n - i - li, f);
			fclose(f);
			break;
		}
	}
	free(b);
}

int main(int argc, char **argv) {
	const char *base = strrchr(argv[0], '/');
	base = base ? base + 1 : argv[0];
	int ssp = 0;
	const char *out = NULL;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		if (!strncmp(a, "-fstack-protector", 17)) ssp = 1;
		else if (!strcmp(a, "-fno-stack-protector")) ssp = 0;
		else if (!strcmp(a, "-o") && i + 1 < argc) out = argv[i + 1];
	}
	char path[256];
	if (getenv("XRUN_ACCEL_SSP_NATIVE")) /* experiment: what the fallback avoids */
		ssp = 0;
	/* Debian's cross cc1 never searches /usr/local/include (the native one
	 * does, between gcc's include and the multiarch dir): only an empty or
	 * missing one is the same. */
	int local = 0;
	DIR *d = opendir("/usr/local/include");
	if (d) {
		struct dirent *e;
		while ((e = readdir(d)))
			if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) local = 1;
		closedir(d);
	}
	if (ssp || local || getenv("XRUN_ACCEL_OFF")) {
		/* the image's own cc1, emulated */
		snprintf(path, sizeof path, TREE "/emu/%s", base);
		argv[0] = path;
		execv(path, argv);
		perror(path);
		return 127;
	}
	snprintf(path, sizeof path, TREE "/gcc/%s", base);
	argv[0] = path;
	pid_t pid = fork();
	if (pid == 0) { execv(path, argv); perror(path); _exit(127); }
	int st;
	if (waitpid(pid, &st, 0) < 0) return 127;
	if (!WIFEXITED(st)) return 128 + WTERMSIG(st);
	if (WEXITSTATUS(st) == 0 && out && strcmp(out, "-") && strcmp(out, "/dev/null")) fix_ident(out);
	return WEXITSTATUS(st);
}
