#!/usr/bin/env bash
# dpo_hpc --evaluate WEIGHTS gives the validation metrics the training run itself
# logged for those weights (same reference, same pairs), at 1 and 2 ranks, writes
# them to <log_dir>/eval.jsonl, and refuses what it cannot do.
source "$(dirname "$0")/lib.sh"; setup "$@"
make_data data.h5 32 16
run 1 "$TINY" dpo.max_num_steps=4 checkpointing.enabled=true checkpointing.save_period=4 \
    checkpointing.checkpoint_dir=ck logger.log_dir=train
ck=ck/step_00000004.h5
[ -f $ck ] || fail "no checkpoint"
run 1 --evaluate $ck "$TINY" logger.log_dir=ev1
grep -q "evaluating $ck against the reference" run.log || { cat run.log; fail "no evaluation banner"; }
run 2 --evaluate $ck "$TINY" logger.log_dir=ev2
python3 - train/metrics.jsonl ev1/eval.jsonl ev2/eval.jsonl <<'PY'
import json, sys
def val(path):
    return {r["split"]: r for r in map(json.loads, open(path)) if r["split"].startswith("val:")}
train = [json.loads(l) for l in open(sys.argv[1])]
last = {r["split"]: r for r in train if r["split"].startswith("val:") and r["step"] == 4}
assert last, "training logged no validation at step 4"
for path, tol in ((sys.argv[2], 0.0), (sys.argv[3], 1e-6)):
    got = val(path)
    assert set(got) == set(last), (path, set(got), set(last))
    for split, want in last.items():
        assert got[split]["step"] == 4, (path, got[split]["step"])
        for k in ("loss", "accuracy", "margins", "rewards_chosen", "rewards_rejected", "logps_chosen", "pairs"):
            a, b = got[split][k], want[k]
            assert abs(a - b) <= tol * max(1.0, abs(b)), (path, split, k, a, b)
print("evaluation == training's step-4 validation:", {s: round(r["loss"], 6) for s, r in last.items()})
PY
# Errors: a missing checkpoint names it; no validation split; combined modes.
set +e
"$MPIRUN" -np 1 "$BIN/dpo_hpc" --evaluate ck/nope.h5 "$TINY" logger.log_dir=e1 > /dev/null 2> e1.txt; rc1=$?
"$BIN/dpo_demo_data" --out noval.h5 --train-pairs 8 --val-pairs 0 > /dev/null 2>&1
"$MPIRUN" -np 1 "$BIN/dpo_hpc" --evaluate $ck "$TINY" data.dataset_path=noval.h5 logger.log_dir=e2 > /dev/null 2> e2.txt; rc2=$?
"$MPIRUN" -np 1 "$BIN/dpo_hpc" --evaluate $ck --precompute-reference "$TINY" > /dev/null 2> e3.txt; rc3=$?
set -e
[ $rc1 = 1 ] && grep -q -- "--evaluate ck/nope.h5: No such file" e1.txt || { cat e1.txt; fail "missing checkpoint not named"; }
if [ -f noval.h5 ]; then
  [ $rc2 = 1 ] && grep -q "no validation split" e2.txt || { cat e2.txt; fail "no-validation dataset accepted"; }
fi
[ $rc3 = 2 ] && grep -q "cannot be combined" e3.txt || { cat e3.txt; fail "--evaluate with --precompute-reference accepted"; }
echo "evaluate: all checks passed"
