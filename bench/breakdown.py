#!/usr/bin/env python3
"""breakdown.py STRACE [EXPERIMENTS.json...]: where a warm xrun run spends its time.

STRACE is `strace -f -ttt` of one warm run (run.sh traces execve, clone*,
unshare, mount, pivot_root, memfd_create, sendfile, openat, write,
exit_group, wait*). Prints a Markdown timeline of the landmarks, relative to
xrun's execve, and the phases between them. strace slows every syscall, so
the absolute times are inflated (compare the hyperfine medians); the
proportions and the order are what this is for. EXPERIMENTS.json are
hyperfine's exports of run.sh's start-up experiments (no strace).
"""
import json
import re
import statistics
import sys

lines = open(sys.argv[1]).read().splitlines()
ev = []  # (t, pid, text)
for ln in lines:
    m = re.match(r"(\d+)\s+(\d+\.\d+) (.*)", ln)
    if m:
        ev.append((float(m.group(2)), int(m.group(1)), m.group(3)))


def first(pred, after=0.0):
    for t, pid, s in ev:
        if t >= after and pred(s):
            return t
    return None


def last(pred):
    r = None
    for t, pid, s in ev:
        if pred(s):
            r = t
    return r


t0 = first(lambda s: s.startswith('execve("') and "xrun" in s and " init" not in s and "/usr/bin/env" not in s)
marks = [
    ("xrun starts (execve)", t0),
    ("memfd copy of the binary begins (memfd_create)", first(lambda s: s.startswith("memfd_create("))),
    ("init re-exec'd from the memfd (execve /proc/self/fd/N init)", first(lambda s: "execve(\"/proc/self/fd/" in s)),
    ("nsexec: unshare(CLONE_NEWUSER)", first(lambda s: s.startswith("unshare(CLONE_NEWUSER)"))),
    ("newuidmap runs", first(lambda s: "execve(\"/usr/bin/newuidmap\"" in s)),
    ("newgidmap done", last(lambda s: "execve(\"/usr/bin/newgidmap\"" in s)),
    ("nsexec: unshare(mount, uts, ipc, pid)", first(lambda s: s.startswith("unshare(CLONE_NEWNS"))),
    ("Go init stage reads init.json (xrun's prepare)", first(lambda s: "init.json\", O_RDONLY" in s)),
    ("overlay mounted", first(lambda s: s.startswith('mount("overlay"'))),
    ("binfmt_misc registered (write to register)", first(lambda s: "binfmt_misc/register" in s)),
    ("libcontainer rootfs set-up starts (/ made slave)", first(lambda s: "MS_REC|MS_SLAVE" in s)),
    ("pivot_root", first(lambda s: s.startswith("pivot_root("))),
    ("exec of the native PID 1 (/dev/.xrun-init)", first(lambda s: "execve(\"/dev/.xrun-init\"" in s)),
    ("exec of the command", first(lambda s: s.startswith("execve(") and "/proc/self/fd" not in s and "xrun" not in s
                                   and "newuidmap" not in s and "newgidmap" not in s and "/usr/bin/env" not in s,
                                   after=(t0 or 0) + 0.001)),
    ("xrun exits", last(lambda s: s.startswith("exit_group("))),
]
mounts = sum(1 for _, _, s in ev if s.startswith("mount("))
print("## Where a warm `xrun --platform linux/arm64 ... -- true` spends its time")
print()
print("One run under `strace -f -ttt` (bench/run.sh, section breakdown). strace inflates every")
print("syscall, so read the proportions; the hyperfine medians are the real totals.")
print()
print("| landmark | t (ms) | since previous (ms) |")
print("|---|---|---|")
prev = None
for name, t in marks:
    if t is None or t0 is None:
        print(f"| {name} | - | - |")
        continue
    d = "" if prev is None else f"{(t - prev) * 1000:.1f}"
    print(f"| {name} | {(t - t0) * 1000:.1f} | {d} |")
    prev = t
print()
sf = [s for _, _, s in ev if s.startswith("sendfile(")]
if sf:
    m = re.search(r"= (\d+)", sf[0])
    tm = re.search(r"<([\d.]+)>", sf[0])
    size = int(m.group(1)) if m else 0
    print(f"- libcontainer copies the whole binary into a sealed memfd each run: {size / 1e6:.1f} MB"
          + (f" in {float(tm.group(1)) * 1000:.1f} ms (sendfile)" if tm else ""))
print(f"- mount(2) calls in the run: {mounts}")
cg = sum(1 for _, _, s in ev if s.startswith('mount("/sys/fs/cgroup'))
if cg:
    print(f"- of which cgroup v1 hierarchies bound into the container (and remounted read-only): {cg} x 2")
cgr = sum(1 for _, _, s in ev if "/proc/self/cgroup" in s)
print(f"- reads of /proc/self/cgroup: {cgr}")
print()

if len(sys.argv) > 2:
    print("### Start-up experiments (hyperfine, no strace)")
    print()
    print("| experiment | median | min |")
    print("|---|---|---|")
    med = {}
    for path in sys.argv[2:]:
        with open(path) as f:
            for r in json.load(f)["results"]:
                med[r["command"]] = statistics.median(r["times"])
                print(f"| {r['command']} | {med[r['command']] * 1000:.1f} ms | {r['min'] * 1000:.1f} ms |")
    print()
    shipped = next((v for k, v in med.items() if "(as shipped)" in k), None)
    patched = next((v for k, v in med.items() if "(libcontainer patched" in k), None)
    if shipped and patched:
        print(f"- libcontainer's per-run memfd copy of the binary (same hyperfine run): "
              f"{(shipped - patched) * 1000:.1f} ms of {shipped * 1000:.1f} ms "
              f"({(shipped - patched) / shipped * 100:.0f}%)")
        print()
    thp = next((v for k, v in med.items() if "(shmem huge pages" in k), None)
    if shipped and thp:
        print(f"- with shared-memory huge pages (`within_size`, a machine setting; `xrun doctor` mentions it), "
              f"the same run as shipped: {thp * 1000:.1f} ms instead of {shipped * 1000:.1f} ms "
              f"(separate hyperfine runs)")
        print()
