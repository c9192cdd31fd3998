#!/usr/bin/env python3
"""Summarises a dpo_hpc metrics.jsonl: validation metrics at the start and the end
of the run, and the training throughput. Usage: summarize_metrics.py metrics.jsonl"""
import json
import sys


def main(path):
    recs = [json.loads(line) for line in open(path)]
    val = {}
    for r in recs:
        if r["split"].startswith("val:"):
            val.setdefault(r["split"], []).append(r)
    train = [r for r in recs if r["split"] == "train"]
    print(f"\nsummary of {path}")
    print(f"{'validation set':<22} {'step':>5} {'accuracy':>9} {'margin':>9} {'loss':>8}")
    for split, rs in sorted(val.items()):
        for r in (rs[0], rs[-1]):
            print(f"{split:<22} {r['step']:>5} {r['accuracy']:>9.3f} {r['margins']:>+9.3f} {r['loss']:>8.4f}")
    if train:
        tps = sum(r["tokens_per_sec"] for r in train) / len(train)
        print(f"train: {len(train)} steps, mean {tps:.0f} tokens/s, {train[-1]['elapsed_sec']:.0f} s")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "demo_out/metrics.jsonl")
