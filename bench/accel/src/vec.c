#include <stdlib.h>
#include <string.h>
#include "vec.h"
int vec_push(struct vec *a, double x) {
	if (a->n == a->cap) {
		size_t c = a->cap ? 2 * a->cap : 8;
		double *v = realloc(a->v, c * sizeof *v);
		if (!v) return -1;
		a->v = v; a->cap = c;
	}
	a->v[a->n++] = x;
	return 0;
}
double vec_sum(const struct vec *a) {
	double s = 0;
	for (size_t i = 0; i < a->n; i++) s += a->v[i] * a->v[i];
	return s;
}
static int cmp(const void *x, const void *y) {
	double a = *(const double *)x, b = *(const double *)y;
	return (a > b) - (a < b);
}
void vec_sort(struct vec *a) { qsort(a->v, a->n, sizeof *a->v, cmp); }
