#!/usr/bin/env python3
"""patchinc.py FILE...: rewrite, in place, the built-in include directories of
Debian's cross cc1/cc1plus (for aarch64, gcc 12) to the native compiler's
(same or shorter strings, NUL-padded). Prints what it replaced."""
import sys
X = "/usr/lib/gcc-cross/aarch64-linux-gnu/12"
N = "/usr/lib/gcc/aarch64-linux-gnu/12"
PAIRS = [
    (X + "/include", N + "/include"),
    (X + "/include-fixed", N + "/include-fixed"),
    (X + "/../../../../aarch64-linux-gnu/include", N + "/../../../../aarch64-linux-gnu/include"),
    (X + "/../../../../aarch64-linux-gnu/include/c++/12", "/usr/include/c++/12"),
    (X + "/../../../../aarch64-linux-gnu/include/c++/12/aarch64-linux-gnu", "/usr/include/aarch64-linux-gnu/c++/12"),
    (X + "/../../../../aarch64-linux-gnu/include/c++/12/backward", "/usr/include/c++/12/backward"),
]
for path in sys.argv[1:]:
    b = bytearray(open(path, "rb").read())
    for old, new in PAIRS:
        o = b"\0" + old.encode() + b"\0"
        n = b"\0" + new.encode().ljust(len(old), b"\0") + b"\0"
        assert len(new) <= len(old)
        k = b.count(o)
        b = b.replace(o, n)
        print(f"{path}: {old} -> {new}: {k}")
    open(path, "wb").write(b)
