#!/usr/bin/env python3
"""Top self-time symbols of the samples whose call stack passes through a
given function: `perf script -i DATA | crates/omendb-bench/scripts/perf_top.py omen_put_batch`.
perf report cannot restrict a profile to one entry point when the benchmark
also generates its data in the same process; this does.
Prints: samples in scope, % of the scope per leaf symbol (self time), per
frame anywhere on the stack (inclusive time), and per leaf <- caller pair."""
import collections
import re
import sys

want = re.compile(sys.argv[1])
limit = float(sys.argv[2]) if len(sys.argv) > 2 else 1.0
leaf = collections.Counter()
incl = collections.Counter()
pair = collections.Counter()
total = scoped = 0


def clean(sym):
    sym = re.sub(r"\+0x[0-9a-f]+$", "", sym)
    sym = re.sub(r"::h[0-9a-f]{16}$", "", sym)
    sym = re.sub(r"<.*?>::", "", sym) if len(sym) > 90 else sym
    return sym


def flush(stack):
    global total, scoped
    if not stack:
        return
    total += 1
    if any(want.search(f) for f in stack):
        scoped += 1
        leaf[stack[0]] += 1
        for f in set(stack):
            incl[f] += 1
        if len(stack) > 1:
            pair[f"{stack[0]}  <-  {stack[1]}"] += 1


stack = []
for line in sys.stdin:
    line = line.rstrip("\n")
    if not line.strip():
        flush(stack)
        stack = []
        continue
    if line.startswith((" ", "\t")):
        parts = line.strip().split(None, 1)
        if len(parts) == 2:
            sym = parts[1].rsplit(" (", 1)[0]
            stack.append(clean(sym))
flush(stack)
print(f"{scoped} of {total} samples pass through /{sys.argv[1]}/")
for name, c in leaf.most_common(25):
    if 100 * c / max(scoped, 1) < limit:
        break
    print(f"{100 * c / scoped:6.2f}%  {name}")
print("-- inclusive (self + callees)")
boring = re.compile(r"^(std::|core::ops|core::panic|_start|main$|__libc|call_once)|catch_unwind|lang_start|backtrace")
shown = 0
for name, c in incl.most_common():
    if 100 * c / max(scoped, 1) < limit or shown >= 40:
        break
    if boring.search(name) or c == scoped:
        continue
    shown += 1
    print(f"{100 * c / scoped:6.2f}%  {name}")
print("-- leaf <- caller")
for name, c in pair.most_common(15):
    if 100 * c / max(scoped, 1) < limit:
        break
    print(f"{100 * c / scoped:6.2f}%  {name}")
