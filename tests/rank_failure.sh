#!/usr/bin/env bash
# One rank that fails (test-only injection: DPO_TEST_FAIL_RANK / DPO_TEST_FAIL_STEP,
# doc/architecture.md "Failure behaviour") takes the whole job down within seconds
# with a non-zero exit and a message naming it, at DP=4 and at TP=2 x DP=2: no rank
# is left blocked in a collective.
source "$(dirname "$0")/lib.sh"; setup "$@"
make_data data.h5 64 16
for tp in 1 2; do
  t0=$(date +%s)
  set +e
  DPO_TEST_FAIL_RANK=2 DPO_TEST_FAIL_STEP=2 timeout 30 "$MPIRUN" --oversubscribe --bind-to none -np 4 \
    "$BIN/dpo_hpc" "$TINY" policy.tensor_parallel_size=$tp policy.train_micro_batch_size=2 dpo.val_at_start=false \
    logger.log_dir=out_tp$tp > run.out 2> run.err
  rc=$?
  set -e
  dt=$(( $(date +%s) - t0 ))
  [ "$rc" -ne 124 ] || { cat run.err >&2; fail "tp=$tp: the job hung after rank 2 failed (timeout 30 s)"; }
  [ "$rc" -ne 0 ] || fail "tp=$tp: the job exited 0 although rank 2 failed"
  grep -q "error \[rank 2\]: injected failure at step 2" run.err ||
    { cat run.err >&2; fail "tp=$tp: stderr does not name rank 2"; }
  grep -q "step     1/" run.out || { cat run.out >&2; fail "tp=$tp: step 1 did not run"; }
  ! grep -q "step     2/" run.out || fail "tp=$tp: step 2 completed despite the failure"
  echo "ok: tp=$tp: exit $rc after ${dt} s: $(grep -m1 "rank 2" run.err)"
done
echo "rank_failure: all checks passed"
