#!/bin/sh
# drv.sh (in the container): where a compile's time goes. 20 calls each, mean per call: sh alone,
# the driver alone, an empty compile, compile+link, cc1 alone, as alone, the program.
cd /tmp; echo 'int main(void){return 0;}' > /tmp/e.c
t() { s=$(date +%s%N); for i in 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20; do "$@" >/dev/null 2>&1; done; echo "$(( ($(date +%s%N) - s) / 20000000 )) ms/run: $*"; }
t sh -c true
t gcc -dumpversion
t gcc -c /tmp/e.c -o /tmp/e.o
t gcc /tmp/e.c -o /tmp/e
t /usr/lib/gcc/aarch64-linux-gnu/12/cc1 -quiet /tmp/e.c -o /tmp/e.s
t as /tmp/e.s -o /tmp/e.o
t /tmp/e
