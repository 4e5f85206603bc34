// Exec interception: see intercept.c.
#ifndef XRUN_INTERCEPT_H
#define XRUN_INTERCEPT_H
#include <sys/types.h>

int xrun_intercept_parse(const char *spec);
int xrun_intercept_child(int sync);
int xrun_intercept_attach(pid_t child);
void xrun_intercept_stop(pid_t pid, int status);
#endif
