#!/usr/bin/env python3
"""ab.py N NAME=COMMAND ...: interleaved A/B timing of shell commands.

Runs every command once per round, in turn, for 3 warm-up rounds and N
measured rounds, and prints the median, 25th percentile and minimum wall time
of each. Alternating the commands round by round spreads a drifting machine
(a VM's neighbours) evenly over all of them, which hyperfine's one-command-
after-the-other order does not; use it for differences of a few percent, e.g.

    bench/ab.py 60 old="xrun-old --platform linux/amd64 IMG -- true" \\
                   new="xrun --platform linux/amd64 IMG -- true"

Run it as the user the commands should run as (bench/run.sh's as_user).
A command that fails stops the comparison.
"""
import statistics
import subprocess
import sys
import time


def main():
    if len(sys.argv) < 3 or "=" not in "".join(sys.argv[2:]):
        sys.exit(__doc__.strip().splitlines()[0])
    n = int(sys.argv[1])
    variants = [a.split("=", 1) for a in sys.argv[2:]]
    times = {name: [] for name, _ in variants}
    for i in range(n + 3):
        for name, cmd in variants:
            t = time.perf_counter()
            r = subprocess.run(cmd, shell=True, stdout=subprocess.DEVNULL)
            d = (time.perf_counter() - t) * 1000
            if r.returncode != 0:
                sys.exit(f"ab.py: {name} failed with status {r.returncode}: {cmd}")
            if i >= 3:
                times[name].append(d)
    for name, _ in variants:
        x = sorted(times[name])
        print(f"{name:14s} median {statistics.median(x):8.1f} ms  p25 {x[len(x) // 4]:8.1f} ms  min {x[0]:8.1f} ms  (n={len(x)})")


if __name__ == "__main__":
    main()
