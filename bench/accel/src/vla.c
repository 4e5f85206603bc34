/* Dynamic stack allocation: what CVE-2023-4039 (aarch64 stack protector) is about. */
#include <alloca.h>
#include <string.h>
int vla_sum(int n, const char *s) {
	char v[n];
	char *w = alloca(n + 16);
	memset(v, 0, n);
	strncpy(w, s, n + 15);
	int t = 0;
	for (int i = 0; i < n; i++) t += v[i] + w[i];
	return t;
}
