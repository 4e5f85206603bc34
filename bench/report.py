#!/usr/bin/env python3
"""report.py RESULTS_DIR: bench/RESULTS.md from what bench/run.sh measured.

Reads hyperfine's JSON exports (start-arm64, start-native, start-arm64-ch,
pull, build, make), machine.tsv, mem.tsv, notes.tsv and breakdown.md; prints
Markdown. Every ratio is between two numbers of the same run. Rows that
could not be measured come from notes.tsv and say why.
"""
import json
import os
import statistics
import sys

res = sys.argv[1]


def load(name):
    p = os.path.join(res, name + ".json")
    if not os.path.exists(p):
        return {}
    with open(p) as f:
        return {r["command"]: r for r in json.load(f)["results"]}


def tsv(name):
    p = os.path.join(res, name)
    if not os.path.exists(p):
        return []
    with open(p) as f:
        return [line.rstrip("\n").split("\t") for line in f if line.strip()]


notes = tsv("notes.tsv")


def why(section, row):
    for s, r, w in notes:
        if (s == section or s.startswith(section) or section.startswith(s)) and (r == row or r == "all"):
            return w
    return None


def med(r):
    return statistics.median(r["times"])


def fmt(sec):
    if sec is None:
        return "n/a"
    if sec < 1:
        return f"{sec * 1000:.1f} ms"
    return f"{sec:.2f} s"


def cell(r):
    if r is None:
        return "n/a"
    return f"{fmt(med(r))} (min {fmt(r['min'])}, σ {fmt(r['stddev'])}, n={len(r['times'])})"


def time_rows(results, tools, missing):
    """The rows of a "| tool | time |" table; missing(tool) says why a tool has no result."""
    p("| tool | time |")
    p("|---|---|")
    for tool in tools:
        r = results.get(tool)
        p(f"| {tool} | {cell(r) if r else missing(tool)} |")


def ratio(a, b):
    if a is None or b is None:
        return None
    return med(a) / med(b)


def verdict(x, limit, op):
    if x is None:
        return "n/a"
    ok = x <= limit if op == "<=" else x >= limit
    return f"**{x:.2f}x** ({'met' if ok else 'NOT met'}: target {op} {limit}x)"


out = []
p = out.append
p("# xrun benchmark results")
p("")
p("Written by `bench/run.sh` (see bench/README.md); every number below was measured in one run,")
p("on one machine, against images served by one local registry (Debian's docker-registry on")
p("127.0.0.1), with every tool running as an unprivileged user. Times are medians.")
p("")
p("## Machine")
p("")
p("| | |")
p("|---|---|")
for k, v in tsv("machine.tsv"):
    p(f"| {k} | {v} |")
p("")

# ---- warm start
arm, nat, ch = load("start-arm64"), load("start-native"), load("start-arm64-ch")
if arm or nat:
    p("## Warm start (`-- true`, image cached)")
    p("")
    p("Image: `xrun-test/busybox` (Debian's busybox-static, one layer). `floor` is bench/floor.c")
    p("(unshare user+mount+pid, uid map, fork, binfmt_misc mount + register F/P, chroot, /proc, exec);")
    p("`floor.sh` is the same with unshare(1) and sh. ch-run on arm64 runs inside a user namespace")
    p("that already holds a qemu handler (charliecloud registers none), like a host handler would.")
    p("")
    p("| tool | arm64 (qemu) | native (amd64) |")
    p("|---|---|---|")
    for tool in ["floor", "floor.sh", "xrun", "ch-run", "podman"]:
        a = arm.get(tool) or (ch.get(tool) if tool == "ch-run" else None)
        n = nat.get(tool)
        ca = cell(a) if a else "not measured: " + (why("start-arm64", tool) or why("start", tool) or "?")
        cn = cell(n) if n else "not measured: " + (why("start-native", tool) or why("start", tool) or "?")
        p(f"| {tool} | {ca} | {cn} |")
    p("")
    p("| ratio | value |")
    p("|---|---|")
    p(f"| xrun / floor, arm64 | {verdict(ratio(arm.get('xrun'), arm.get('floor')), 1.2, '<=')} |")
    p(f"| xrun / floor.sh, arm64 | {verdict(ratio(arm.get('xrun'), arm.get('floor.sh')), 1.2, '<=')} |")
    p(f"| xrun / floor, native | {verdict(ratio(nat.get('xrun'), nat.get('floor')), 3, '<=')} |")
    p(f"| xrun / floor.sh, native | {verdict(ratio(nat.get('xrun'), nat.get('floor.sh')), 3, '<=')} |")
    pr = ratio(nat.get("podman"), nat.get("xrun"))
    p(f"| podman / xrun, native (speed-up) | {verdict(pr, 10, '>=') if pr else 'n/a: ' + (why('start-native', 'podman') or '?')} |")
    cr = ratio(nat.get("xrun"), nat.get("ch-run"))
    p(f"| xrun / ch-run, native | {f'{cr:.2f}x' if cr else 'n/a'} |")
    cr = ratio(arm.get("xrun"), ch.get("ch-run"))
    p(f"| xrun / ch-run, arm64 | {f'{cr:.2f}x' if cr else 'n/a'} |")
    p("")

# ---- cold pull
pull = load("pull")
if pull:
    p("## Cold pull + unpack (Debian bookworm minbase arm64, 2 layers, empty caches)")
    p("")
    tools = ["xrun pull", "skopeo copy + umoci unpack", "skopeo copy + umoci unpack, then sync", "podman pull", "crane export | tar"]
    # The "then sync" row exists only where skopeo and umoci do (its note is theirs).
    tools = [t for t in tools if not t.endswith("then sync") or t in pull]
    time_rows(pull, tools, lambda t: "not measured: " + (why("pull", t) or "?"))
    p("")
    x = pull.get("xrun pull")
    p("| ratio | value |")
    p("|---|---|")
    p(f"| xrun / (skopeo + umoci) | {verdict(ratio(x, pull.get('skopeo copy + umoci unpack')), 0.7, '<=')} |")
    r = ratio(x, pull.get("skopeo copy + umoci unpack, then sync"))
    if r:
        p(f"| xrun / (skopeo + umoci, then sync: both on disk) | {r:.2f}x |")
    r = ratio(x, pull.get("podman pull"))
    p(f"| xrun / podman pull | {f'{r:.2f}x' if r else 'n/a'} |")
    r = ratio(x, pull.get("crane export | tar"))
    p(f"| xrun / crane export \\| tar | {f'{r:.2f}x' if r else 'n/a'} |")
    p("")

pt = load("pull-tmpfs")
if pt:
    p("### The same, caches on a tmpfs (the work itself, without disk writeback)")
    p("")
    time_rows(pt, ["xrun pull", "skopeo copy + umoci unpack"], lambda t: "not measured")
    p("")
    p(f"xrun / (skopeo + umoci), tmpfs: {verdict(ratio(pt.get('xrun pull'), pt.get('skopeo copy + umoci unpack')), 0.7, '<=')}")
    p("")

# ---- build
# Pairs of runs (build-1.json, build-2.json, ...): one result per tool each.
build, pairs = {}, []
i = 1
while os.path.exists(os.path.join(res, f"build-{i}.json")):
    one = load(f"build-{i}")
    for tool, r in one.items():
        b = build.setdefault(tool, {"times": []})
        b["times"] += r["times"]
    if "floor" in one and "xrun" in one:
        pairs.append(med(one["xrun"]) / med(one["floor"]))
    i += 1
for b in build.values():
    b["min"] = min(b["times"])
    b["stddev"] = statistics.stdev(b["times"]) if len(b["times"]) > 1 else 0.0
# Pairs started at the same time: "floor seconds<TAB>xrun seconds" lines.
conc_all = tsv("build-conc.tsv")
bn = why("build", "zlib")
if build or bn or conc_all:
    p("## Emulated build: zlib (Debian's 1.2.13 source) `./configure && make && make check`, arm64 gcc")
    p("")
    if bn:
        p(f"Not measured: {bn}")
    else:
        p("Image: Debian bookworm arm64, debootstrap variant buildd (build-essential), second stage")
        p("run under qemu. floor: the same rootfs (xrun's cache), with /dev bound, the source at /mnt, /tmp a tmpfs.")
        p("")
        time_rows(build, ["floor", "xrun"], lambda t: "n/a")
        p("")
        p(f"xrun / floor (medians): {verdict(ratio(build.get('xrun'), build.get('floor')), 1.02, '<=')}")
        if pairs:
            p("")
            p(f"Runs were made in pairs, alternating which of the two went first; per-pair ratios "
              f"{', '.join(f'{x:.3f}' for x in pairs)}: median **{statistics.median(pairs):.3f}x**.")
        conc = [(a, b) for a, b in conc_all if a != "failed" and b != "failed"]
        failed = len(conc_all) - len(conc)
        if conc or failed:
            p("")
            p("The same builds in pairs started *at the same time* (each build is mostly serial; two of them")
            p("on this 2-vCPU machine see the same machine, whatever its neighbours do meanwhile):")
            p("")
            p("| pair | floor | xrun | xrun / floor |")
            p("|---|---|---|---|")
            rs = []
            for i, (a, b) in enumerate(conc, 1):
                rs.append(float(b) / float(a))
                p(f"| {i} | {fmt(float(a))} | {fmt(float(b))} | {rs[-1]:.3f} |")
            if failed:
                p(f"| - | {failed} pair(s) failed | | |")
            if rs:
                p("")
                p(f"xrun / floor, concurrent pairs: {verdict(statistics.median(rs), 1.02, '<=')} (median of {len(rs)})")
    p("")

# ---- make
mk = load("make")
if mk:
    p("## `make -j8`, 32 recipes, each `xrun --platform linux/arm64 busybox -- busybox sha256sum /bin/busybox`")
    p("")
    p("| variant | time | per recipe |")
    p("|---|---|---|")
    for tool in ["xrun, cold", "xrun, warm", "floor"]:
        r = mk.get(tool)
        p(f"| {tool} | {cell(r)} | {fmt(med(r) / 32) if r else 'n/a'} |")
    p("")
    r = ratio(mk.get("xrun, warm"), mk.get("floor"))
    p(f"xrun warm / floor: {f'{r:.2f}x' if r else 'n/a'}; "
      f"cold - warm (one shared pull + unpack): {fmt(med(mk['xrun, cold']) - med(mk['xrun, warm'])) if 'xrun, cold' in mk and 'xrun, warm' in mk else 'n/a'}")
    p("")

# ---- runner
rn = load("runner")
if rn:
    p("## xrun as the emulator of build systems: the cost of one call")
    p("")
    p("Prebuilt arm64 programs run one after the other (ctest -j8: eight at a time), by bare")
    p("qemu-user and by xrun (the program bound into the image, runner mode).")
    p("")
    p("| case | bare qemu | xrun | per call, xrun - qemu |")
    p("|---|---|---|---|")
    for case, calls in [("go test binaries, 20 packages", 20), ("ctest, 50 tests", 50), ("ctest -j8, 50 tests", 50)]:
        q, x = rn.get(case + ": bare qemu") or rn.get(case + ": bare qemu -L"), rn.get(case + ": xrun")
        extra = fmt((med(x) - med(q)) / calls) if q and x else "n/a"
        p(f"| {case} | {cell(q)} | {cell(x)} | {extra} |")
    p("")

# ---- memory
mem = tsv("mem.tsv")
if mem or why("mem", "all"):
    p("## Peak memory (GNU time max RSS, median of 5)")
    p("")
    p("Max RSS as GNU time reports it: the largest of the process and the descendants it waited for")
    p("(for a run: xrun, its re-executed init and the command; for a pull: xrun alone).")
    p("")
    p("| run | max RSS |")
    p("|---|---|")
    for name, kb in mem:
        p(f"| {name} | {int(kb) / 1024:.1f} MiB |")
    if why("mem", "all"):
        p(f"| all | not measured: {why('mem', 'all')} |")
    p("")

bd = os.path.join(res, "breakdown.md")
if os.path.exists(bd):
    with open(bd) as f:
        p(f.read())

others = [n for n in notes if n[0] not in ("start", "start-arm64", "start-native", "pull", "build", "mem")]
if others:
    p("## Other notes")
    for s, r, w in others:
        p(f"- {s} / {r}: {w}")
print("\n".join(out))
