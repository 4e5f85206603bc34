/* test_machine WANT "ARG WITH SPACES": the machine it runs on is WANT and
 * the second argument arrived as one. Reads data.txt from the current
 * directory (the build directory, where the build system runs tests). */
#include <stdio.h>
#include <string.h>
#include "calc.h"

int main(int argc, char **argv) {
	char line[64] = "";
	FILE *f = fopen("data.txt", "r");
	if (argc != 3 || f == NULL || fgets(line, sizeof line, f) == NULL) {
		fprintf(stderr, "usage: test_machine WANT ARG, with data.txt in the cwd\n");
		return 2;
	}
	printf("machine=%s arg=[%s] data=%s", calc_machine(), argv[2], line);
	return strcmp(calc_machine(), argv[1]) == 0 && strcmp(argv[2], "two words") == 0 ? 0 : 1;
}
