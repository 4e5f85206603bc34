#include <stdio.h>
#include <sys/utsname.h>
int main(void) { struct utsname u; uname(&u); printf("hello machine=%s\n", u.machine); return 0; }
