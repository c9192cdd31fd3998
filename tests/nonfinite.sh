#!/usr/bin/env bash
# dpo.nonfinite_policy: a NaN loss on ONE rank (test-only injection, see
# doc/architecture.md "Failure behaviour") is seen by every rank, at DP=2 and at
# TP=2. "abort": the job stops non-zero naming the step, no checkpoint after the
# last good step. "skip": every rank skips the same step (weights and optimizer
# state unchanged), training goes on, metrics.jsonl marks the step; more than
# dpo.max_skipped_steps skips in a row abort.
source "$(dirname "$0")/lib.sh"; setup "$@"
make_data data.h5 64 16
common=(dpo.max_num_steps=5 dpo.val_at_start=false dpo.val_period=0
        checkpointing.enabled=true checkpointing.save_period=1)

# expect_fail NAME PATTERN ARGS... : dpo_hpc at 2 ranks must fail within 120 s, stderr
# matching PATTERN exactly once (rank 0 reports, once).
expect_fail() {
  local name=$1 pat=$2; shift 2
  set +e
  timeout 120 "$MPIRUN" --oversubscribe --bind-to none -np 2 "$BIN/dpo_hpc" "$@" > "$name.out" 2> "$name.err"
  local rc=$?
  set -e
  [ "$rc" -ne 0 ] || fail "$name: succeeded; expected a non-finite abort"
  [ "$rc" -ne 124 ] || fail "$name: hung (timeout)"
  local n; n=$(grep -cE -- "$pat" "$name.err" || true)
  [ "$n" -eq 1 ] || { cat "$name.err" >&2; fail "$name: stderr has $n lines matching '$pat', expected 1"; }
  echo "ok: $name (exit $rc): $(grep -m1 -E -- "$pat" "$name.err")"
}

for tp in 1 2; do
  L=tp$tp
  lay=("$TINY" policy.tensor_parallel_size=$tp "${common[@]}")

  # (a) abort: stops at step 3, nothing written from the poisoned state.
  DPO_TEST_INJECT_NAN_STEP=3 DPO_TEST_INJECT_NAN_RANK=1 \
    expect_fail "$L-abort" "error: step 3: non-finite loss or gradient norm \(first seen on rank 1\)" \
    "${lay[@]}" checkpointing.checkpoint_dir=ck_${L}_abort logger.log_dir=out_${L}_abort
  ls ck_${L}_abort/step_00000002.h5 > /dev/null || fail "$L-abort: step 2 checkpoint missing"
  ! ls ck_${L}_abort/step_0000000[345].h5 2> /dev/null || fail "$L-abort: checkpoint written after step 2"
  [ "$(json_field out_${L}_abort/metrics.jsonl train step | tail -n 1)" = 2 ] ||
    fail "$L-abort: metrics.jsonl has records past step 2"

  # (b) skip: the same step is skipped on both ranks, training continues.
  DPO_TEST_INJECT_NAN_STEP=3 DPO_TEST_INJECT_NAN_RANK=1 \
    run 2 "${lay[@]}" dpo.nonfinite_policy=skip checkpointing.checkpoint_dir=ck_${L}_skip logger.log_dir=out_${L}_skip
  for r in 0 1; do
    grep -q "warning \[rank $r\]: step 3: non-finite loss or gradient norm (first seen on rank 1): update skipped" run.log ||
      { cat run.log; fail "$L-skip: rank $r did not log the skip of step 3"; }
  done
  [ "$(grep -c "update skipped" run.log)" -eq 2 ] || { cat run.log; fail "$L-skip: expected exactly 2 skip warnings"; }
  [ "$(json_field out_${L}_skip/metrics.jsonl train skipped | tr '\n' ' ')" = "0 0 1 0 0 " ] ||
    fail "$L-skip: metrics.jsonl skipped fields: $(json_field out_${L}_skip/metrics.jsonl train skipped | tr '\n' ' ')"
  python3 - out_${L}_skip/metrics.jsonl <<'PY' || fail "$L-skip: losses after the skip are not finite"
import json, math, sys
train = [json.loads(l) for l in open(sys.argv[1]) if '"train"' in l]
assert [r["step"] for r in train] == [1, 2, 3, 4, 5], train
assert all(isinstance(r["loss"], float) and math.isfinite(r["loss"]) for r in train[3:]), train
PY
  # The skipped step applied no update: weights and optimizer state of step 3 equal step 2's;
  # step 4 trained again.
  h5diff -q ck_${L}_skip/step_00000002.h5 ck_${L}_skip/step_00000003.h5 /model /model ||
    fail "$L-skip: weights changed by the skipped step 3"
  h5diff -q ck_${L}_skip/step_00000002.h5 ck_${L}_skip/step_00000003.h5 /optimizer /optimizer ||
    fail "$L-skip: optimizer state changed by the skipped step 3"
  ! h5diff -q ck_${L}_skip/step_00000003.h5 ck_${L}_skip/step_00000004.h5 /model /model > /dev/null ||
    fail "$L-skip: step 4 did not update the weights"
  echo "ok: $L-skip: step 3 skipped on both ranks, weights and moments unchanged, steps 4-5 trained"

  # (c) more than dpo.max_skipped_steps in a row: steps 3, 4 skipped, step 5 aborts.
  DPO_TEST_INJECT_NAN_STEP=3 DPO_TEST_INJECT_NAN_COUNT=3 DPO_TEST_INJECT_NAN_RANK=1 \
    expect_fail "$L-maxskip" "error: step 5: .*after 2 consecutive skipped steps \(dpo.max_skipped_steps = 2\)" \
    "${lay[@]}" dpo.nonfinite_policy=skip dpo.max_skipped_steps=2 \
    checkpointing.checkpoint_dir=ck_${L}_max logger.log_dir=out_${L}_max
  ! ls ck_${L}_max/step_00000005.h5 2> /dev/null || fail "$L-maxskip: checkpoint written at step 5"
done
echo "nonfinite: all checks passed"
