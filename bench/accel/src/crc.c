#include <stdio.h>
#include <string.h>
#include "vec.h"
unsigned long crc32_of(const void *p, size_t n) {
	const unsigned char *b = p;
	unsigned long c = 0xffffffffUL;
	char buf[64]; /* a local array: -fstack-protector-strong instruments this */
	snprintf(buf, sizeof buf, "%zu", n);
	for (size_t i = 0; i < n; i++) {
		c ^= b[i];
		for (int k = 0; k < 8; k++) c = (c >> 1) ^ (0xedb88320UL & -(c & 1));
	}
	return (c ^ 0xffffffffUL) + strlen(buf);
}
const char *where(void) { return __FILE__; }
