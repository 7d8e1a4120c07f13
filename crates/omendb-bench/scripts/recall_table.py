#!/usr/bin/env python3
"""Renders the recall table of docs/pq.md from the JSON of
crates/omendb-bench/src/bin/pq_recall.rs (omendb, through the store) and crates/omendb-bench/scripts/faiss_recall.py.
Usage: crates/omendb-bench/scripts/recall_table.py [OMENDB.json [FAISS.json]] > table.md
(default: the committed crates/omendb-bench/results/recall-omendb.json and recall-faiss.json)"""
import json
import sys
from pathlib import Path

RESULTS = Path(__file__).resolve().parent.parent / "results"
om_path = sys.argv[1] if len(sys.argv) > 1 else RESULTS / "recall-omendb.json"
fa_path = sys.argv[2] if len(sys.argv) > 2 else (RESULTS / "recall-faiss.json" if len(sys.argv) == 1 else None)
om = json.load(open(om_path))
fa = {(r["dataset"], r["metric"], r["pq_m"], r["bits"]): r for r in json.load(open(fa_path))} if fa_path else {}
print("| data set | metric | n x dim | pq_m | bits | code bytes | recall@10 | faiss IndexPQ | recall@10, rerank=100 | faiss RefineFlat x10 | train s |")
print("|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
for r in om:
    f = fa.get((r["dataset"], r["metric"], r["pq_m"], r["bits"]), {})
    g = lambda k: f"{f[k]:.3f}" if k in f else "n/a"
    print(f"| {r['dataset']} | {r['metric']} | {r['n']:,} x {r['dim']} | {r['pq_m']} | {r['bits']} | {r['code_bytes']} | "
          f"**{r['recall_at_10']:.3f}** | {g('recall_at_10')} | **{r['recall_at_10_rerank100']:.3f}** | {g('recall_at_10_refine100')} | {r['train_s']:.2f} |")
