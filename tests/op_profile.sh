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
text = open(sys.argv[1]).read()
rows = {m.group(1): (int(m.group(2)), float(m.group(3)), float(m.group(4))) for m in
        re.finditer(r"^\s+(\w+)\s+(\d+)\s+([0-9.]+)\s+([0-9.]+)%", text, re.M)}
# Every op a training step runs (forward, backward, loss, clipping, AdamW) has its row;
# the KV-cached attention of generation has none.
for op in ("matmul", "embedding_fwd", "embedding_bwd", "rmsnorm_fwd", "rmsnorm_bwd", "rope_fwd",
           "rope_bwd", "attention_fwd", "attention_bwd", "swiglu_fwd", "swiglu_bwd",
           "logprob_stats", "logprob_bwd", "add_inplace", "sumsq", "adamw"):
    assert op in rows and rows[op][0] > 0, ("missing op", op, sorted(rows))
assert "attention_cached" not in rows, "training ran the generation-only attention"
# The total row (no call count): the sum of the rows' seconds, 100 %, and the shares add up.
tot = re.findall(r"^\s+total\s+([0-9.]+)\s+([0-9.]+)%\s*$", text, re.M)
assert len(tot) == 1, ("expected one total row", tot)
total, share = float(tot[0][0]), float(tot[0][1])
assert share == 100.0, share
n = len(rows)
assert abs(sum(r[1] for r in rows.values()) - total) <= 5e-5 * (n + 1), ("total != sum of rows", total)
if total > 0:
    assert abs(sum(r[2] for r in rows.values()) - 100.0) <= 0.05 * n + 0.1, "shares do not add up to 100 %"
L = int(sys.argv[2])
bwd = rows["attention_bwd"][0]
assert bwd % L == 0 and bwd > 0, ("attention_bwd calls not a multiple of the layers", bwd, L)
assert rows["attention_fwd"][0] > bwd, "forwards must outnumber backwards (reference + validation)"
assert rows["matmul"][0] > 7 * rows["attention_fwd"][0] - 1, "at least 7 matmuls per layer forward"
# Per pass: one embedding, per layer one SwiGLU, two RoPEs (q, k) and two RMSNorms, plus the final norm.
for d, passes in (("fwd", rows["attention_fwd"][0] // L), ("bwd", bwd // L)):
    assert rows["attention_" + d][0] == L * passes, d
    assert rows["embedding_" + d][0] == passes, (d, rows["embedding_" + d], passes)
    assert rows["swiglu_" + d][0] == L * passes, (d, rows["swiglu_" + d], passes)
    assert rows["rope_" + d][0] == 2 * L * passes, (d, rows["rope_" + d], passes)
    assert rows["rmsnorm_" + d][0] == (2 * L + 1) * passes, (d, rows["rmsnorm_" + d], passes)
print("profile consistent:", {k: v[0] for k, v in rows.items() if k in ("matmul", "attention_fwd", "attention_bwd")},
      "total", total)
PY
echo "op_profile: all checks passed"
