#include <stdio.h>
#include "calc.h"

int main(void) {
	int got = calc_add(40, 2);
	printf("calc_add(40, 2) = %d\n", got);
	return got == 42 ? 0 : 1;
}
