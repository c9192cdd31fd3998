#!/usr/bin/env bash
# metrics.jsonl after resumes: a run killed (kill -9 at random points, or a failure
# at a chosen step) and resumed until it completes leaves exactly one record per
# (step, split), every line complete, and the same records (losses bit for bit) as
# the uninterrupted run. A partial last line, as a kill during a write leaves it, is
# dropped on resume, and the cut is atomic (no metrics.jsonl.tmp left).
source "$(dirname "$0")/lib.sh"; setup "$@"
RANDOM=13   # the kill points are random, but the same in every run of the test
make_data data.h5 64 8
common=("$TINY" dpo.max_num_steps=30 dpo.val_period=4 policy.model.hidden_size=128
        policy.model.intermediate_size=256 policy.model.num_hidden_layers=4
        checkpointing.enabled=true checkpointing.save_period=3
        checkpointing.metric_name=val:heldout/loss checkpointing.keep_top_k=2)
run 1 "${common[@]}" checkpointing.checkpoint_dir=full/ck logger.log_dir=full

# records FILE: "step split loss" of every record (fails on a line that is not JSON
# or not complete).
records() {
  python3 - "$1" <<'PY'
import json, sys
data = open(sys.argv[1], "rb").read()
assert data.endswith(b"\n"), "partial last line"
for line in data.decode().splitlines():
    r = json.loads(line)
    print(r["step"], r["split"], repr(r["loss"]), repr(r.get("grad_norm")))
PY
}
# check_unique FILE: one record per (step, split).
check_unique() {
  local dup; dup=$(records "$1" | awk '{print $1, $2}' | sort | uniq -d)
  [ -z "$dup" ] || fail "$1: records logged twice: $dup"
}

# Runs (resuming) until one completes; kills the ranks with SIGKILL once the metrics
# grew by a random number of records, after a random delay.
lines() { if [ -f cut/metrics.jsonl ]; then wc -l < cut/metrics.jsonl; else echo 0; fi; }
kills=0
while :; do
  want=$(($(lines) + 1 + RANDOM % 6))
  "$MPIRUN" --oversubscribe --bind-to none -np 1 "$BIN/dpo_hpc" "${common[@]}" \
      checkpointing.resume=true checkpointing.checkpoint_dir=cut/ck logger.log_dir=cut \
      > cut.log 2>&1 &
  pid=$! waited=0
  while kill -0 $pid 2> /dev/null && [ "$(lines)" -lt $want ]; do
    sleep 0.02; waited=$((waited + 1)); [ $waited -lt 6000 ] || { kill -KILL $pid; fail "run stalled"; }
  done
  sleep "0.0$((RANDOM % 10))"
  if pkill -KILL -P $pid dpo_hpc 2> /dev/null; then
    kills=$((kills + 1))
    wait $pid || true
    continue
  fi
  rc=0; wait $pid || rc=$?
  [ $rc = 0 ] || { cat cut.log; fail "resumed run exited $rc"; }
  break
done
[ $kills -ge 3 ] || fail "only $kills kill(s) landed: the runs are too fast for this test"
check_unique cut/metrics.jsonl
[ "$(records cut/metrics.jsonl)" = "$(records full/metrics.jsonl)" ] ||
  { diff <(records full/metrics.jsonl) <(records cut/metrics.jsonl) | head; fail "records differ from the uninterrupted run"; }
[ ! -e cut/metrics.jsonl.tmp ] || fail "metrics.jsonl.tmp left behind"
echo "$kills kill -9s: one record per (step, split), equal to the uninterrupted run's"

# A failure at a chosen step (between two checkpoints), then a partial last line.
rm -rf cut
fails_at=0
for step in 8 17 25; do
  rc=0
  "$MPIRUN" --oversubscribe --bind-to none -np 1 env DPO_TEST_FAIL_STEP=$step "$BIN/dpo_hpc" \
      "${common[@]}" checkpointing.resume=true checkpointing.checkpoint_dir=cut/ck logger.log_dir=cut \
      > cut.log 2>&1 || rc=$?
  [ $rc = 1 ] || { cat cut.log; fail "injected failure at step $step: exit $rc"; }
  last=$(records cut/metrics.jsonl | awk '$2 == "train" {s = $1} END {print s}')
  [ "$last" = $((step - 1)) ] || fail "failure at step $step: last train record is step $last"
  fails_at=$((fails_at + 1))
done
printf '{"step": 31, "epoch": 3, "split": "train", "loss": 0.69' >> cut/metrics.jsonl
run 1 "${common[@]}" checkpointing.resume=true checkpointing.checkpoint_dir=cut/ck logger.log_dir=cut
grep -q "metrics.jsonl: kept the .* record(s) up to step 24, dropped" run.log ||
  { cat run.log; fail "no message on the records dropped"; }
check_unique cut/metrics.jsonl
[ "$(records cut/metrics.jsonl)" = "$(records full/metrics.jsonl)" ] ||
  { diff <(records full/metrics.jsonl) <(records cut/metrics.jsonl) | head; fail "records differ after the injected failures"; }
echo "$fails_at failures at steps 8, 17, 25 and a partial last line: records equal to the uninterrupted run's"
echo "outputs_metrics_resume: all checks passed"
