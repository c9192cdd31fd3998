#!/usr/bin/env bash
# DPO_PROFILE_OPS=1 wraps the backend in per-op timers: the run's numbers are those
# of the unprofiled run (the wrapper only times), and rank 0 prints one table whose
# call counts follow from the model's shape.
source "$(dirname "$0")/lib.sh"; setup "$@"
make_data data.h5 32 8
args=("$TINY" dpo.max_num_steps=3 dpo.val_at_start=false dpo.val_period=0 dpo.max_num_epochs=1)
run 2 "${args[@]}" logger.log_dir=plain
grep -q "op profile" run.log && fail "profile printed without DPO_PROFILE_OPS"
DPO_PROFILE_OPS=1 run 2 "${args[@]}" logger.log_dir=prof
[ "$(grep -c "op profile (cpu backend" run.log)" = 1 ] || { cat run.log; fail "expected one profile table (rank 0)"; }
cmp <(json_field plain/metrics.jsonl train loss) <(json_field prof/metrics.jsonl train loss) ||
  fail "profiling changed the losses"
# Per training micro-batch the policy runs one forward and one backward, so every
# layer's attention_bwd count is layers x micro-batches of this rank; the final
# validation (last step) and reference forwards only add forwards.
layers=$(sed -n 's/.*num_hidden_layers *= *\([0-9]*\).*/\1/p' "$TINY")
python3 - run.log "$layers" <<'PY'
import re, sys
rows = {m.group(1): (int(m.group(2)), float(m.group(3))) for m in
        re.finditer(r"^\s+(\w+)\s+(\d+)\s+([0-9.]+)\s+[0-9.]+%", open(sys.argv[1]).read(), re.M)}
for op in ("matmul", "attention_fwd", "attention_bwd", "adamw", "total"):
    assert op in rows or op == "total", ("missing op", op, rows.keys())
L = int(sys.argv[2])
bwd = rows["attention_bwd"][0]
assert bwd % L == 0 and bwd > 0, ("attention_bwd calls not a multiple of the layers", bwd, L)
assert rows["attention_fwd"][0] > bwd, "forwards must outnumber backwards (reference + validation)"
assert rows["matmul"][0] > 7 * rows["attention_fwd"][0] - 1, "at least 7 matmuls per layer forward"
print("profile consistent:", {k: v[0] for k, v in rows.items() if k in ("matmul", "attention_fwd", "attention_bwd")})
PY
echo "op_profile: all checks passed"
