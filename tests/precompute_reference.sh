#!/usr/bin/env bash
# Reference log-probs computed once and stored in the dataset give the same
# training as a live reference model, and are refused when they belong to a
# different reference.
source "$(dirname "$0")/lib.sh"; setup "$@"
make_data data.h5 32 8
run 1 "$TINY" dpo.max_num_steps=4 logger.log_dir=live
cp data.h5 pre.h5
run 1 --precompute-reference "$TINY" data.dataset_path=pre.h5
grep -q "stored reference log-probs in pre.h5" run.log || { cat run.log; fail "precompute did not report"; }
run 1 "$TINY" dpo.max_num_steps=4 data.dataset_path=pre.h5 dpo.precomputed_reference_logprobs=true logger.log_dir=stored
grep -q "precomputed log-probs" run.log || fail "the run did not use the stored log-probs"
python3 - live/metrics.jsonl stored/metrics.jsonl <<'PY'
import json, sys
a = [json.loads(l) for l in open(sys.argv[1])]
b = [json.loads(l) for l in open(sys.argv[2])]
assert len(a) == len(b)
for x, y in zip(a, b):
    assert x["split"] == y["split"] and x["step"] == y["step"]
    for k in ("loss", "margins", "rewards_chosen"):
        assert abs(x[k] - y[k]) <= 1e-5 * max(1e-2, abs(x[k])), (k, x, y)
print("live reference == stored reference over", len(a), "records")
PY
# Stored log-probs of another reference (different seed) are refused; so is a file without them.
set +e
"$MPIRUN" -np 1 "$BIN/dpo_hpc" "$TINY" data.dataset_path=pre.h5 dpo.precomputed_reference_logprobs=true dpo.seed=8 logger.log_dir=x 2> err1.txt > /dev/null; rc1=$?
"$MPIRUN" -np 1 "$BIN/dpo_hpc" "$TINY" dpo.precomputed_reference_logprobs=true logger.log_dir=y 2> err2.txt > /dev/null; rc2=$?
set -e
[ $rc1 -ne 0 ] && grep -q "precomputed_reference_logprobs" err1.txt || { cat err1.txt; fail "mismatched reference accepted"; }
[ $rc2 -ne 0 ] && grep -q "precompute-reference" err2.txt || { cat err2.txt; fail "missing reference log-probs accepted"; }
echo "precompute_reference: all checks passed"
