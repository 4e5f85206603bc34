package accel

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// The self-check compiles a small corpus twice in the image, with the
// image's own toolchain (emulated) and through the tree, and compares
// every output byte for byte: what `gcc -v`, `-dumpmachine`,
// `-print-search-dirs`, `-print-libgcc-file-name` and the predefined
// macros say, preprocessed output (its line markers name every include
// directory), assembly, objects with and without the stack protector, and
// linked programs and what they print. A tree is used only when all are
// identical.

// CheckScript runs in the image as root: sh -c CheckScript sh DIR OUT,
// sources in DIR, results into DIR/OUT.
const CheckScript = `set -eu
cd "$1"; o=$2; rm -rf "$o"; mkdir "$o"
gcc -v >"$o/gcc-v" 2>&1
gcc -dumpmachine >"$o/dumpmachine"
gcc -print-search-dirs >"$o/search-dirs"
gcc -print-libgcc-file-name >"$o/libgcc"
gcc -dM -E - </dev/null | LC_ALL=C sort >"$o/macros-c"
gcc -E check.c >"$o/check.i"
gcc -O2 -S check.c -o "$o/check.s"
gcc -O2 -g -c check.c -o "$o/check.o"
gcc -O2 -fstack-protector-strong -c check.c -o "$o/check-ssp.o"
gcc -O3 -fstack-clash-protection -c check.c -o "$o/check-clash.o"
gcc -g "$o/check.o" -o "$o/check-c"
"$o/check-c" >"$o/check-c.out"
if command -v g++ >/dev/null; then
	g++ -dM -E -x c++ - </dev/null | LC_ALL=C sort >"$o/macros-cxx"
	g++ -E check.cc >"$o/checkcc.ii"
	g++ -O2 -g -c check.cc -o "$o/checkcc.o"
	g++ "$o/checkcc.o" -o "$o/check-cc"
	"$o/check-cc" >"$o/check-cc.out"
fi
`

// CheckFiles are the corpus's sources (name -> text).
var CheckFiles = map[string]string{
	"check.c": `#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>

static int sum(int n, ...) {
	va_list ap;
	int s = 0;
	va_start(ap, n);
	while (n-- > 0)
		s += va_arg(ap, int);
	va_end(ap);
	return s;
}

static int vla(int n) {
	int v[n];
	int *w = __builtin_alloca(n * sizeof *w);
	for (int i = 0; i < n; i++)
		v[i] = i * i, w[i] = v[i] + 1;
	return v[n - 1] + w[0];
}

static unsigned crc(const char *p, size_t n) {
	char buf[64];
	unsigned c = ~0u;
	memcpy(buf, p, n < sizeof buf ? n : sizeof buf);
	for (size_t i = 0; i < n && i < sizeof buf; i++) {
		c ^= (unsigned char)buf[i];
		for (int k = 0; k < 8; k++)
			c = (c >> 1) ^ (0xEDB88320u & -(c & 1));
	}
	return ~c;
}

int main(void) {
	struct utsname u;
	double v[16];
	for (int i = 0; i < 16; i++)
		v[i] = i * 0.5;
	uname(&u);
	printf("machine=%s sum=%d crc=%08x v=%g off=%zu vla=%d\n", u.machine, sum(3, 1, 2, 3),
	       crc("xrun", 4), v[7] * v[9], offsetof(struct utsname, release), vla(u.machine[0] & 15));
	return 0;
}
`,
	"check.cc": `#include <algorithm>
#include <cstdio>
#include <map>
#include <string>
#include <vector>

template <typename T> static T total(const std::vector<T> &v) {
	T s{};
	for (const auto &x : v)
		s += x;
	return s;
}

int main() {
	std::vector<int> v{5, 3, 9, 1};
	std::sort(v.begin(), v.end());
	std::map<std::string, int> m{{"a", 1}, {"b", 2}};
	std::string s = "xrun";
	s += std::to_string(total(v));
	std::printf("%s %d %zu\n", s.c_str(), m["b"], v.size());
	return 0;
}
`,
}

// WriteCheck writes the corpus into dir.
func WriteCheck(dir string) error {
	for name, text := range CheckFiles {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			return err
		}
	}
	return nil
}

// CompareFiles compares the self-check's outputs of the emulated (a)
// and accelerated (b) runs, file by file.
func CompareFiles(a, b string) (same, differ []string, err error) {
	ea, err := os.ReadDir(a)
	if err != nil {
		return nil, nil, err
	}
	for _, e := range ea {
		x, _ := os.ReadFile(filepath.Join(a, e.Name()))
		y, err := os.ReadFile(filepath.Join(b, e.Name()))
		if err != nil || !bytes.Equal(x, y) {
			differ = append(differ, e.Name())
		} else {
			same = append(same, e.Name())
		}
	}
	if eb, err := os.ReadDir(b); err == nil && len(eb) != len(ea) {
		differ = append(differ, fmt.Sprintf("(%d files vs %d)", len(ea), len(eb)))
	}
	sort.Strings(same)
	return same, differ, nil
}

// CompareCheck is CompareFiles that returns the names compared, or a
// Refusal naming those that differ.
func CompareCheck(a, b string) ([]string, error) {
	same, differ, err := CompareFiles(a, b)
	if err != nil {
		return nil, err
	}
	if len(differ) > 0 {
		return nil, refuse("self-check: the native toolchain's %s differ from the image's: running emulated (xrun doctor --accel IMAGE shows more)", strings.Join(differ, ", "))
	}
	if len(same) == 0 {
		return nil, fmt.Errorf("self-check produced nothing")
	}
	return same, nil
}
