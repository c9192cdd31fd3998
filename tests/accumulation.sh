#!/usr/bin/env bash
# Gradient accumulation is exact: 8 micro-batches of 1 pair give the losses of one
# micro-batch of 8 (to fp32 reassociation), step after step.
source "$(dirname "$0")/lib.sh"; setup "$@"
make_data data.h5 64 16
common=("$TINY" dpo.max_num_steps=4 policy.train_global_batch_size=8 policy.max_grad_norm=0)
run 1 "${common[@]}" policy.train_micro_batch_size=1 logger.log_dir=m1
run 1 "${common[@]}" policy.train_micro_batch_size=8 logger.log_dir=m8
python3 - m1/metrics.jsonl m8/metrics.jsonl <<'PY'
import json, sys
def losses(p):
    return [(r["split"], r["step"], r["loss"], r["margins"]) for r in map(json.loads, open(p))]
a, b = losses(sys.argv[1]), losses(sys.argv[2])
assert len(a) == len(b) and len(a) > 4, (len(a), len(b))
for x, y in zip(a, b):
    assert x[:2] == y[:2], (x, y)
    assert abs(x[2] - y[2]) <= 1e-5 * abs(y[2]), f"loss 1x8 {x} vs 8x1 {y}"
    assert abs(x[3] - y[3]) <= 1e-6 + 1e-5 * abs(y[3]), f"margins 1x8 {x} vs 8x1 {y}"
print("1x8 == 8x1 over", len(a), "records; last train loss", [x for x in a if x[0] == "train"][-1][2])
PY
echo "accumulation: all checks passed"
