#!/usr/bin/env bash
# Training on one small batch drives its loss towards zero and its accuracy to 1.
source "$(dirname "$0")/lib.sh"; setup "$@"
make_data data.h5 8 8
run 1 "$TINY" dpo.max_num_steps=60 dpo.val_period=0 policy.optimizer.lr=3e-3 \
    policy.scheduler.type=constant policy.scheduler.warmup_steps=0 policy.max_grad_norm=0
python3 - out/metrics.jsonl <<'PY'
import json, sys
train = [r for r in map(json.loads, open(sys.argv[1])) if r["split"] == "train"]
first, last = train[0], train[-1]
print(f"loss {first['loss']:.4f} -> {last['loss']:.4f}, accuracy {last['accuracy']}, margin {last['margins']:.3f}")
assert last["accuracy"] == 1.0, last
assert last["loss"] < 0.1 * first["loss"], (first["loss"], last["loss"])
assert last["margins"] > 2.0, last
PY
echo "overfit: all checks passed"
