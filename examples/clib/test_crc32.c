/* test_crc32: checks the library; prints the machine it ran on. */
#include <stdio.h>
#include <string.h>
#include <sys/utsname.h>
#include "crc32.h"

static int failures;

static void check(const char *what, uint32_t got, uint32_t want)
{
	if (got != want) {
		printf("FAIL %s: got %08x, want %08x\n", what, got, want);
		failures++;
	}
}

int main(void)
{
	struct utsname u;
	const unsigned char le[4] = {0x78, 0x56, 0x34, 0x12};
	uint32_t x = 1;

	check("crc32(\"\")", crc32("", 0), 0x00000000u);
	check("crc32(\"123456789\")", crc32("123456789", 9), 0xcbf43926u);
	check("crc32(\"The quick brown fox...\")",
	      crc32("The quick brown fox jumps over the lazy dog", 43), 0x414fa339u);
	check("load_le32", load_le32(le), 0x12345678u);

	uname(&u);
	printf("%s %s-endian: %s\n", u.machine, *(unsigned char *)&x ? "little" : "big",
	       failures ? "FAIL" : "ok");
	return failures ? 1 : 0;
}
