#ifndef VEC_H
#define VEC_H
#include <stddef.h>
struct vec { double *v; size_t n, cap; };
int vec_push(struct vec *a, double x);
double vec_sum(const struct vec *a);
void vec_sort(struct vec *a);
unsigned long crc32_of(const void *p, size_t n);
const char *where(void);
#endif
