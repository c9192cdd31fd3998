#!/usr/bin/env bash
# Training throughput of dpo_hpc on the CPU backend: tokens/s and time per step
# for the demo model at 1 and 2 OpenMP threads, with a live reference model and
# with precomputed reference log-probs. Prints a Markdown table.
#   benchmarks/step_throughput.sh [BUILD_DIR]      (default build)
# Timings only; nothing here is pass/fail.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${1:-build}/bin
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
"$BIN/dpo_demo_data" --out "$work/d.h5" --train-pairs 8000 --val-pairs 100 > /dev/null
cp "$work/d.h5" "$work/pre.h5"
common=(input/demo.cfg dpo.max_num_steps=200 dpo.val_period=0 dpo.val_at_start=false
        checkpointing.enabled=false)
mpirun -np 1 "$BIN/dpo_hpc" --precompute-reference "${common[@]}" data.dataset_path="$work/pre.h5" > /dev/null
echo "| threads | reference | steps | wall s | ms/step | tokens/s (mean of steps) |"
echo "|---|---|---|---|---|---|"
for threads in 1 2; do
  for mode in live precomputed; do
    extra=(data.dataset_path="$work/d.h5")
    [ "$mode" = precomputed ] && extra=(data.dataset_path="$work/pre.h5" dpo.precomputed_reference_logprobs=true)
    start=$(date +%s.%N)
    mpirun --bind-to none -np 1 "$BIN/dpo_hpc" "${common[@]}" "${extra[@]}" cluster.num_threads=$threads \
        logger.log_dir="$work/o" > /dev/null
    end=$(date +%s.%N)
    python3 - "$work/o/metrics.jsonl" "$threads" "$mode" "$start" "$end" <<'PY'
import json, sys
recs = [r for r in map(json.loads, open(sys.argv[1])) if r["split"] == "train"]
wall = float(sys.argv[5]) - float(sys.argv[4])
tps = sum(r["tokens_per_sec"] for r in recs) / len(recs)
print(f"| {sys.argv[2]} | {sys.argv[3]} | {len(recs)} | {wall:.1f} | {1000 * wall / len(recs):.1f} | {tps:.0f} |")
PY
  done
done
