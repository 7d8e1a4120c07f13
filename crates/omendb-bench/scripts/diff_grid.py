#!/usr/bin/env python3
"""Before/after table of two omendb_bench JSON files (e.g. before and after
merging an engine change from main): per workload, the OmenDB figure and its
same-run baseline ratio in each file. Compare the ratios, not the figures:
the two files come from different runs on a noisy machine.
Usage: crates/omendb-bench/scripts/diff_grid.py BEFORE.json AFTER.json"""
import json
import sys


def load(p):
    return {(r["workload"], r["dim"], r["n"]): r for r in json.load(open(p))["records"]}


a, b = load(sys.argv[1]), load(sys.argv[2])
print("| workload | dim | n | before | after | unit | ratio to baseline before | after | change |")
print("|---|---:|---:|---:|---:|---|---:|---:|---:|")
for k in a:
    if k in b:
        x, y = a[k], b[k]
        print(f"| {k[0]} | {k[1]} | {k[2]:,} | {x['value']:.4g} | {y['value']:.4g} | {x['unit']} | "
              f"{x['ratio']:.3f} | {y['ratio']:.3f} | {y['ratio'] / x['ratio']:.2f}x |")
