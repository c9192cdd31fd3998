#!/usr/bin/env bash
# policy.model_name = a checkpoint: the architecture and weights come from it (the
# config's policy.model is ignored) and the reference is that same starting point,
# so the first step's loss is ln 2 again. dpo.reference_model = another checkpoint:
# policy and reference differ from the first step on.
source "$(dirname "$0")/lib.sh"; setup "$@"
make_data data.h5 32 8
run 1 "$TINY" dpo.max_num_steps=4 checkpointing.enabled=true checkpointing.save_period=4 \
    checkpointing.checkpoint_dir=ck logger.log_dir=base
[ -f ck/step_00000004.h5 ] || fail "no checkpoint"
# A different architecture in the config must not matter: the checkpoint's wins.
run 1 "$TINY" dpo.max_num_steps=2 policy.model_name=ck/step_00000004.h5 \
    policy.model.hidden_size=48 logger.log_dir=cont
grep -q "hidden 32" run.log || { cat run.log; fail "architecture not taken from the checkpoint"; }
python3 - base/metrics.jsonl cont/metrics.jsonl <<'PY'
import json, math, sys
base = [json.loads(l) for l in open(sys.argv[1])]
cont = [json.loads(l) for l in open(sys.argv[2])]
first = [r for r in cont if r["split"] == "train"][0]
assert abs(first["preference_loss"] - math.log(2)) < 1e-12, first
# The continued policy starts where base ended: its validation log-probs at step 0
# equal base's final validation log-probs.
b_last = [r for r in base if r["split"] == "val:heldout"][-1]
c_first = [r for r in cont if r["split"] == "val:heldout"][0]
assert abs(b_last["logps_chosen"] - c_first["logps_chosen"]) <= 1e-9 * abs(b_last["logps_chosen"]), (b_last, c_first)
print("policy.model_name: starts from the checkpoint, loss ln 2 at step 1")
PY
# Random-init policy, reference = the trained checkpoint: not equal at step 1.
run 1 "$TINY" dpo.max_num_steps=1 dpo.reference_model=ck/step_00000004.h5 logger.log_dir=ref
grep -q "reference: checkpoint:ck/step_00000004.h5" run.log || { cat run.log; fail "reference not reported"; }
python3 - ref/metrics.jsonl <<'PY'
import json, math, sys
first = [r for r in map(json.loads, open(sys.argv[1])) if r["split"] == "train"][0]
assert abs(first["preference_loss"] - math.log(2)) > 1e-4 and first["rewards_chosen"] != 0, first
print("dpo.reference_model: reference differs from the policy at step 1, loss", first["loss"])
PY
echo "from_checkpoint: all checks passed"
