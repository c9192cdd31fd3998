#!/usr/bin/env bash
# scripts/nemo_rl_to_cfg.py turns a NeMo RL dpo.yaml into a .cfg that dpo_hpc
# accepts and trains with; scripts/plot_metrics.py plots the run's metrics.jsonl.
source "$(dirname "$0")/lib.sh"; setup "$@"
CONV=$SRC/scripts/nemo_rl_to_cfg.py
YAML=$SRC/tests/data/nemo_rl_dpo.yaml
python3 "$CONV" "$YAML" --backend cpu --dataset data.h5 -o run.cfg dpo.sft_loss_weight=0.1 2> conv.err
# Each translated value, including the ${...} interpolation and the scheduler list.
for want in 'lr = 5e-06;' 'eps = 1e-5;' 'betas = \[0.9, 0.98\];' 'warmup_steps = 10;' 'type = "constant";' \
            'metric_name = "val:default/loss";' 'val_max_pairs = 256;' 'val_micro_batch_size = 1;' 'sft_average_log_probs = false;' \
            'sft_loss_weight = 0.1;' 'reference_policy_kl_penalty = 0.05;' 'tensor_parallel_size = 1;' \
            'matmul_precision = "bf16";' 'activation_checkpointing = false;' 'backend = "cpu";' 'dataset_path = "data.h5";'; do
  grep -q "$want" run.cfg || { cat run.cfg; fail "run.cfg lacks: $want"; }
done
grep -q "dpo_prep --tokenizer meta-llama/Llama-3.2-1B-Instruct --output data.h5 --train train.jsonl --val default=val.jsonl --max-length 1024" run.cfg ||
  fail "no dpo_prep hint"
grep -q "logger.wandb_enabled" conv.err || fail "wandb not reported as untranslated"
grep -q "mpirun -np 8" conv.err || fail "no launcher hint for gpus_per_node"

# The translation is a valid configuration: two steps on the demo data, with the
# model and sizes scaled down on the command line.
make_data data.h5 32 16
run 1 run.cfg policy.model_name= dpo.max_num_steps=2 policy.train_global_batch_size=8 \
    policy.train_micro_batch_size=4 dpo.val_global_batch_size=8 checkpointing.enabled=false \
    checkpointing.keep_top_k=0 checkpointing.metric_name= dpo.val_max_pairs=16 logger.log_dir=out
[ "$(json_field out/metrics.jsonl train step | wc -l)" = 2 ] || fail "expected 2 training records"

# --strict refuses keys it does not know; unreadable YAML names the file.
printf 'dpo:\n  max_num_steps: 3\n  brand_new_key: 1\n' > unknown.yaml
set +e
python3 "$CONV" unknown.yaml --strict -o strict.cfg 2> strict.err; rc=$?
printf 'dpo: [unclosed\n' > bad.yaml
python3 "$CONV" bad.yaml -o bad.cfg 2> bad.err; rc2=$?
set -e
[ $rc = 2 ] && grep -q "dpo.brand_new_key" strict.err && [ ! -e strict.cfg ] || { cat strict.err; fail "--strict accepted an unknown key"; }
[ $rc2 != 0 ] && grep -q "bad.yaml" bad.err && [ ! -e bad.cfg ] || { cat bad.err; fail "bad YAML not reported"; }

# Plots: a PNG per field and the numbers behind it equal to metrics.jsonl's.
python3 "$SRC/scripts/plot_metrics.py" out/metrics.jsonl -o plots --fields loss,accuracy > plots.txt
if command -v gnuplot > /dev/null; then
  for f in loss accuracy; do [ -s plots/$f.png ] || fail "no plots/$f.png"; done
fi
python3 - out/metrics.jsonl plots/loss.dat <<'PY'
import json, sys
want = [r["loss"] for r in map(json.loads, open(sys.argv[1])) if r["split"] == "train"]
blocks = open(sys.argv[2]).read().split("\n\n\n")
train = [b for b in blocks if b.startswith("# train")][0]
got = [float(l.split()[1]) for l in train.splitlines()[1:] if l.strip()]
assert len(got) == len(want) and all(abs(a - b) <= 1e-6 * abs(b) for a, b in zip(got, want)), (got, want)
PY
echo "migration_tools: all checks passed"
