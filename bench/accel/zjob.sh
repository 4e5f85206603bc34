#!/bin/sh
# zjob.sh SRCDIR DIR: copy the unpacked zlib source to DIR, then ./configure, make, make
# check, printing the seconds of each phase (date +%s.%N) on one line.
set -e
rm -rf "$2"; cp -a "$1" "$2"; cd "$2"
t0=$(date +%s.%N)
./configure >configure.log 2>&1
t1=$(date +%s.%N)
make >make.log 2>&1
t2=$(date +%s.%N)
make check >check.log 2>&1
t3=$(date +%s.%N)
test -x example
echo "$t0 $t1 $t2 $t3" | awk '{printf "configure %.2f make %.2f check %.2f total %.2f\n", $2-$1, $3-$2, $4-$3, $4-$1}'
