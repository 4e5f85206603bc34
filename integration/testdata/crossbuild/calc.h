/* calc: a tiny library for the build-system emulator tests. */
#ifndef CALC_H
#define CALC_H
int calc_add(int a, int b);
const char *calc_machine(void);
#endif
