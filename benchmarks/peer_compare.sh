#!/usr/bin/env bash
# dpo_hpc against PyTorch + transformers on the same DPO step (CPU, fp32, one process,
# N threads each): same Llama shape, same synthetic pairs, same global and micro
# batch, live reference model, sigmoid DPO, grad clipping, AdamW; the first W steps of
# each are warm-up and left out. Prints one side-by-side table and writes it to
# OUT/results.md and OUT/results.csv (raw outputs in OUT/ours, OUT/torch.json).
#
#   benchmarks/peer_compare.sh [-b BUILD_DIR] [--threads N] [--model small|medium]
#       [--seq L] [--steps S] [--warmup W] [--pairs P] [--micro M] [--out DIR]
#
# Defaults: build, all cores, model small (benchmarks/harness.cfg [model.NAME]),
# L = 128 tokens per sequence (the last L/4 are the completion), S = 10, W = 2,
# P = 8 pairs per step in micro-batches of M = 4, OUT = bench_out/peer.
# Python: $PYTHON, else python3; it needs torch and transformers (e.g. `pip install
# torch transformers` from PyPI, or Debian's python3-torch plus `pip install
# transformers`). Timings only; nothing here is pass/fail.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=$ROOT/build THREADS=$(nproc) MODEL=small SEQ=128 STEPS=10 WARMUP=2 PAIRS=8 MICRO=4
OUT=bench_out/peer
while [ $# -gt 0 ]; do
  case $1 in
    -b) BUILD=$2 ;; --threads) THREADS=$2 ;; --model) MODEL=$2 ;; --seq) SEQ=$2 ;;
    --steps) STEPS=$2 ;; --warmup) WARMUP=$2 ;; --pairs) PAIRS=$2 ;; --micro) MICRO=$2 ;;
    --out) OUT=$2 ;;
    *) sed -n '2,17p' "$0" >&2; exit 2 ;;
  esac
  shift 2
done
PY=${PYTHON:-python3}
BUILD=$(cd "$BUILD" && pwd)
mkdir -p "$OUT" && OUT=$(cd "$OUT" && pwd)
"$PY" -c 'import torch, transformers' 2>/dev/null || {
  echo "peer_compare: $PY lacks torch/transformers: pip install torch transformers (PyPI), or" \
       "apt-get install python3-torch && pip install transformers; or set PYTHON" >&2; exit 1; }

# Model shape from benchmarks/harness.cfg, as "hidden layers heads kv ffn vocab".
read -r HID LAY HEADS KV FFN VOCAB < <(python3 - "$ROOT/benchmarks/harness.cfg" "$MODEL" <<'PY'
import configparser, sys
c = configparser.ConfigParser(inline_comment_prefixes=("#",))
c.read(sys.argv[1])
s = c["model." + sys.argv[2]]
print(*(s.getint(k) for k in ("hidden_size", "num_hidden_layers", "num_attention_heads",
                              "num_key_value_heads", "intermediate_size", "vocab_size")))
PY
)
NPAIRS=$((PAIRS * (STEPS + WARMUP)))
COMP=$((SEQ / 4 > 2 ? SEQ / 4 : 2))   # completion tokens per sequence, <eos> included

# Synthetic pairs of one length: <bos> + prompt letters + completion letters + <eos>.
DATA=$OUT/data
mkdir -p "$DATA"
"$BUILD/bin/dpo_demo_data" --jsonl "$DATA/tok" --train-pairs 4 --val-pairs 1 > /dev/null
python3 - "$DATA/pairs.jsonl" "$NPAIRS" $((SEQ - COMP - 1)) $((COMP - 1)) <<'PY'
import json, random, sys
path, n, plen, clen = sys.argv[1], *map(int, sys.argv[2:])
rng = random.Random(1)
word = lambda k: "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(k))
with open(path, "w") as f:
    for _ in range(n):
        f.write(json.dumps({"prompt": word(plen), "chosen": word(clen), "rejected": word(clen)}) + "\n")
PY
"$BUILD/bin/dpo_prep" --tokenizer "$DATA/tok/tokenizer" --output "$DATA/pairs.h5" \
  --train "$DATA/pairs.jsonl" --format binary --chat-template plain --max-length "$SEQ" \
  --progress 0 --force > /dev/null

BETA=0.1 LR=1e-4 WD=0.01 B1=0.9 B2=0.999 EPS=1e-8 CLIP=1.0 STD=0.02
echo "peer_compare: model $MODEL (hidden $HID, layers $LAY, heads $HEADS/$KV, ffn $FFN," \
     "vocab $VOCAB), $PAIRS pairs x 2 x $SEQ tokens per step, micro-batch $MICRO," \
     "$THREADS thread(s), $STEPS timed + $WARMUP warm-up steps"

# dpo_hpc: one rank, under a wrapper that records its max RSS (wait4).
rm -rf "$OUT/ours"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMP_NUM_THREADS=$THREADS OPENBLAS_NUM_THREADS=$THREADS
mpirun --bind-to none -np 1 -x OMP_NUM_THREADS -x OPENBLAS_NUM_THREADS \
  python3 -c 'import os, subprocess, sys
p = subprocess.Popen(sys.argv[2:]); _, st, ru = os.wait4(p.pid, 0)
open(sys.argv[1], "w").write(f"{ru.ru_maxrss}\n"); sys.exit(os.waitstatus_to_exitcode(st))' \
  "$OUT/ours.maxrss" "$BUILD/bin/dpo_hpc" "$ROOT/input/demo.cfg" \
  policy.model.hidden_size="$HID" policy.model.num_hidden_layers="$LAY" \
  policy.model.num_attention_heads="$HEADS" policy.model.num_key_value_heads="$KV" \
  policy.model.intermediate_size="$FFN" policy.model.vocab_size="$VOCAB" \
  policy.model.initializer_range=$STD policy.max_total_sequence_length="$SEQ" \
  policy.train_global_batch_size="$PAIRS" policy.train_micro_batch_size="$MICRO" \
  policy.logprob_chunk_size=256 policy.max_grad_norm=$CLIP policy.optimizer.lr=$LR \
  policy.optimizer.weight_decay=$WD "policy.optimizer.betas=[$B1,$B2]" policy.optimizer.eps=$EPS \
  policy.scheduler.type=constant policy.scheduler.warmup_steps=0 \
  dpo.reference_policy_kl_penalty=$BETA dpo.sft_loss_weight=0 dpo.loss_type=sigmoid \
  dpo.max_num_steps=$((STEPS + WARMUP)) dpo.max_num_epochs=1000 dpo.val_period=0 \
  dpo.val_at_start=false dpo.val_global_batch_size="$MICRO" checkpointing.enabled=false \
  cluster.backend=cpu \
  cluster.num_threads="$THREADS" data.dataset_path="$DATA/pairs.h5" \
  logger.log_dir="$OUT/ours" > "$OUT/ours.log" 2>&1 \
  || { echo "peer_compare: dpo_hpc failed, see $OUT/ours.log" >&2; exit 1; }

"$PY" "$ROOT/benchmarks/peer_torch.py" --data "$DATA/pairs.jsonl" --hidden "$HID" \
  --layers "$LAY" --heads "$HEADS" --kv-heads "$KV" --ffn "$FFN" --vocab "$VOCAB" \
  --pairs "$PAIRS" --micro "$MICRO" --steps "$STEPS" --warmup "$WARMUP" --threads "$THREADS" \
  --beta $BETA --lr $LR --weight-decay $WD --adam-beta1 $B1 --adam-beta2 $B2 --adam-eps $EPS \
  --max-grad-norm $CLIP --init-std $STD --json "$OUT/torch.json" > "$OUT/torch.log" 2>&1 \
  || { echo "peer_compare: peer_torch.py failed, see $OUT/torch.log" >&2; exit 1; }

python3 - "$OUT" "$WARMUP" "$MODEL" "$THREADS" <<'PY'
import csv, json, math, os, statistics, sys
out, warm, model, threads = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
recs = [r for r in map(json.loads, open(os.path.join(out, "ours", "metrics.jsonl")))
        if r["split"] == "train"]
step_s = [r["tokens"] / r["tokens_per_sec"] for r in recs[warm:]]
tokens = recs[-1]["tokens"]
ours = {"tokens_per_step": tokens, "step_ms": 1e3 * sum(step_s) / len(step_s),
        "step_ms_median": 1e3 * statistics.median(step_s), "step_ms_min": 1e3 * min(step_s),
        "loss_step1": recs[0]["loss"],
        "max_rss_mib": int(open(os.path.join(out, "ours.maxrss")).read()) / 1024.0}
ours["tokens_per_s"] = tokens / (ours["step_ms"] / 1e3)
th = json.load(open(os.path.join(out, "torch.json")))
if th["tokens_per_step"] != tokens or any(r["tokens"] != tokens for r in recs):
    sys.exit(f"peer_compare: token counts differ: dpo_hpc {tokens}, torch {th['tokens_per_step']}")
rows = [("tokens per step", "tokens_per_step", "%d"), ("step ms (mean)", "step_ms", "%.1f"),
        ("step ms (median)", "step_ms_median", "%.1f"), ("step ms (min)", "step_ms_min", "%.1f"),
        ("tokens/s (tokens / mean step)", "tokens_per_s", "%.0f"),
        ("peak RSS MiB", "max_rss_mib", "%.0f"), ("loss at step 1 (ln 2 = 0.6931)", "loss_step1", "%.4f")]
lines = [f"model {model}, {threads} thread(s), fp32, torch {th['torch']}, transformers "
         f"{th['transformers']} (attention {th['attn']}); torch RSS after imports "
         f"{th['rss_after_import_mib']:.0f} MiB", "",
         "| | dpo_hpc | PyTorch | dpo_hpc / PyTorch |", "|---|---:|---:|---:|"]
with open(os.path.join(out, "results.csv"), "w", newline="") as f:
    w = csv.writer(f)
    w.writerow(["metric", "dpo_hpc", "pytorch", "ratio"])
    for name, key, fmt in rows:
        a, b = ours[key], th[key]
        ratio = a / b if b else float("nan")
        w.writerow([key, a, b, round(ratio, 4)])
        lines.append(f"| {name} | {fmt % a} | {fmt % b} | {ratio:.2f} |")
for who, l in (("dpo_hpc", ours["loss_step1"]), ("PyTorch", th["loss_step1"])):
    if abs(l - math.log(2)) > 1e-3:
        lines.append(f"\nWARNING: {who} loss at step 1 is {l:.4f}, not ln 2: the runs differ")
text = "\n".join(lines) + "\n"
open(os.path.join(out, "results.md"), "w").write(text)
print(text + f"peer_compare: results in {out}")
PY
