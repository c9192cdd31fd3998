#!/usr/bin/env bash
# A short run: the first step's policy equals its reference, so the loss is ln 2
# with zero margins; metrics.jsonl carries every documented field; the effective
# configuration is written to the output directory and loads again.
source "$(dirname "$0")/lib.sh"; setup "$@"
make_data data.h5 64 16
run 1 "$TINY" dpo.max_num_steps=4 dpo.sft_loss_weight=0.25
[ -f out/metrics.jsonl ] || fail "no metrics.jsonl"
[ -f out/config.cfg ] || fail "no effective config in the output directory"
grep -q "step     1/4" run.log || { cat run.log; fail "no per-step line on stdout"; }
python3 - out/metrics.jsonl <<'PY'
import json, math, sys
recs = [json.loads(l) for l in open(sys.argv[1])]
need = ["step", "split", "loss", "preference_loss", "sft_loss", "accuracy", "rewards_chosen",
        "rewards_rejected", "margins", "logps_chosen", "logps_rejected", "tokens",
        "tokens_per_sec", "elapsed_sec"]
train = [r for r in recs if r["split"] == "train"]
val = [r for r in recs if r["split"].startswith("val:")]
assert len(train) == 4, f"{len(train)} train records"
assert {r["split"] for r in val} == {"val:heldout", "val:heldout_carry"}, {r["split"] for r in val}
for r in recs:
    for k in need:
        assert k in r, f"record lacks {k}: {r}"
for r in train:
    assert "grad_norm" in r and "lr" in r, r
first = train[0]
# policy == reference at step 1: preference loss ln 2, margins 0, rewards 0.
assert abs(first["preference_loss"] - math.log(2)) < 1e-12, first
assert first["margins"] == 0 and first["rewards_chosen"] == 0, first
# SFT term: -mean chosen log-prob sum; total = pref + 0.25 * sft.
assert abs(first["sft_loss"] + first["logps_chosen"]) < 1e-9 * abs(first["logps_chosen"]), first
assert abs(first["loss"] - (first["preference_loss"] + 0.25 * first["sft_loss"])) < 1e-9, first
v0 = [r for r in val if r["step"] == 0]
assert len(v0) == 2 and all(abs(r["preference_loss"] - math.log(2)) < 1e-12 for r in v0), v0
print("metrics ok:", len(recs), "records")
PY
# The written configuration is a valid input that reproduces the run's settings.
mv out first_out
run 1 first_out/config.cfg dpo.max_num_steps=1 logger.log_dir=again
grep -q '"step": 1' again/metrics.jsonl || fail "re-running the effective config failed"
# dpo.val_global_batch_size changes how validation is batched, not what it measures.
run 1 "$TINY" dpo.max_num_steps=3 dpo.val_global_batch_size=3 logger.log_dir=vb3
run 1 "$TINY" dpo.max_num_steps=3 dpo.val_global_batch_size=16 logger.log_dir=vb16
python3 - vb3/metrics.jsonl vb16/metrics.jsonl <<'PY'
import json, sys
a, b = ([r for r in map(json.loads, open(p)) if r["split"].startswith("val:")] for p in sys.argv[1:])
assert len(a) == len(b) == 4, (len(a), len(b))
for x, y in zip(a, b):
    assert abs(x["loss"] - y["loss"]) <= 1e-6 * abs(y["loss"]) and x["pairs"] == y["pairs"], (x, y)
print("validation identical at val_global_batch_size 3 and 16")
PY
# Reference-free: no reference model is built, rewards are beta * policy log-probs.
run 1 "$TINY" dpo.max_num_steps=1 dpo.reference_free=true logger.log_dir=free
grep -q "reference: none (reference-free)" run.log || { cat run.log; fail "reference-free not reported"; }
python3 - free/metrics.jsonl <<'PY'
import json, sys
r = [x for x in map(json.loads, open(sys.argv[1])) if x["split"] == "train"][0]
assert abs(r["rewards_chosen"] - 0.1 * r["logps_chosen"]) <= 1e-6 * abs(r["rewards_chosen"]), r
print("reference-free: rewards = beta * policy log-probs")
PY
echo "train_basics: all checks passed"
