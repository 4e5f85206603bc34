#!/bin/sh
# probe.sh MODE DIR: runs inside the arm64 container. Records the toolchain's
# self-description into DIR/MODE/ and builds bench/accel/src with several
# flag sets into DIR/MODE/<flags>/ (objects compared afterwards on the host).
set -u
mode=$1 dir=$2 src=$dir/src
o=$dir/$mode; rm -rf "$o"; mkdir -p "$o"
cd "$dir"
gcc -dumpmachine >"$o/dumpmachine" 2>&1
gcc -print-search-dirs >"$o/search-dirs" 2>&1
gcc -print-libgcc-file-name >"$o/libgcc" 2>&1
for p in cc1 cc1plus as ld collect2 lto-wrapper; do printf '%s=%s\n' $p "$(gcc -print-prog-name=$p)"; done >"$o/prog-names"
gcc -dM -E - </dev/null 2>&1 | sort >"$o/macros-c"
g++ -dM -E -x c++ - </dev/null 2>&1 | sort >"$o/macros-cxx"
gcc -O2 -fstack-protector-strong -dM -E - </dev/null 2>&1 | sort >"$o/macros-c-ssp"
gcc --version >"$o/gcc-version" 2>&1; gcc -v >>"$o/gcc-version" 2>&1
as --version >"$o/as-version" 2>&1; ld --version >"$o/ld-version" 2>&1
# The commands the driver runs (-v) and the include search list.
gcc -v -O2 -c "$src/vec.c" -o /dev/null >"$o/gcc-v-c" 2>&1
g++ -v -O2 -c "$src/main.cc" -o /dev/null >"$o/gcc-v-cxx" 2>&1
gcc -v -o "$o/hello" "$src/hello.c" >"$o/gcc-v-link" 2>&1
"$o/hello" >"$o/hello.out" 2>&1
gcc -E "$src/vec.c" >"$o/vec.i" 2>&1; g++ -E "$src/main.cc" >"$o/main.ii" 2>&1
gcc -O2 -S "$src/crc.c" -o "$o/crc.s" 2>&1; g++ -O2 -g -S "$src/main.cc" -o "$o/main.s" 2>&1
# Native-only wrinkles: -march=native, plugins, -print-file-name.
gcc -march=native -Q --help=target 2>&1 | grep -E '^ +-march=|^ +-mcpu=' >"$o/march-native"
gcc -print-file-name=plugin >"$o/plugin-dir" 2>&1
for f in O0 O2 O2g O2sp O3gsp Osg; do
	case $f in
	O0) fl="-O0" ;; O2) fl="-O2" ;; O2g) fl="-O2 -g" ;;
	O2sp) fl="-O2 -fstack-protector-strong" ;; O3gsp) fl="-O3 -g -fstack-protector-all" ;;
	Osg) fl="-Os -g -fstack-clash-protection -fstack-protector-strong" ;;
	esac
	make -s -f "$src/Makefile" SRC="$src" OUT="$o/$f" CFLAGS="$fl" >"$o/$f.log" 2>&1 || echo "build $f failed" >>"$o/$f.log"
	"$o/$f/prog" >>"$o/$f.log" 2>&1
done
