#!/usr/bin/env bash
# USR1 (what the job scripts send before the wall-clock limit) makes every rank
# finish its step, write a checkpoint and stop with status 3; resuming from it
# gives the uninterrupted run's losses bit for bit (constant schedule: a decaying
# one depends on dpo.max_num_steps, which the resumed run changes). TERM does the same.
source "$(dirname "$0")/lib.sh"; setup "$@"
make_data data.h5 64 8
common=("$TINY" dpo.max_num_steps=100000 dpo.max_num_epochs=100000 dpo.val_period=0 policy.scheduler.type=constant
        checkpointing.enabled=true checkpointing.save_period=100000)

# interrupt SIGNAL NP DIR TARGET: starts a run and, once 3 steps are logged, signals
# mpirun (TARGET=launcher: mpirun forwards USR1 to the ranks) or the ranks themselves
# (TARGET=ranks: what a scheduler's TERM does; mpirun would abort the job on TERM),
# checks status 3, the message and the checkpoint of the step where it stopped;
# sets STOP_STEP.
interrupt() {
  local sig=$1 np=$2 dir=$3 target=$4
  "$MPIRUN" --oversubscribe --bind-to none -np "$np" "$BIN/dpo_hpc" "${common[@]}" \
      checkpointing.checkpoint_dir="$dir/ck" logger.log_dir="$dir" > "$dir.log" 2>&1 &
  local pid=$! n=0
  while [ "$(train_records "$dir/metrics.jsonl")" -lt 3 ]; do
    sleep 0.2; n=$((n + 1)); [ $n -lt 600 ] || { kill -KILL $pid; fail "no 3 steps in 120 s"; }
    kill -0 $pid 2> /dev/null || { cat "$dir.log"; fail "run ended before the signal"; }
  done
  if [ "$target" = launcher ]; then
    kill -"$sig" $pid
  else
    pkill -"$sig" -P $pid dpo_hpc || fail "no dpo_hpc process under mpirun $pid"
  fi
  local rc=0; wait $pid || rc=$?
  [ $rc = 3 ] || { cat "$dir.log"; fail "$sig: exit status $rc, expected 3"; }
  grep -q "stop signal received: saving a checkpoint and stopping at step" "$dir.log" ||
    { cat "$dir.log"; fail "$sig: no stop message"; }
  STOP_STEP=$(sed -n 's/.*stopped early: \([0-9]*\) steps.*/\1/p' "$dir.log")
  [ -n "$STOP_STEP" ] || { cat "$dir.log"; fail "no final step"; }
  local ck; ck=$(printf '%s/ck/step_%08d.h5' "$dir" "$STOP_STEP")
  [ -f "$ck" ] || { ls -R "$dir"; fail "$sig: no checkpoint $ck"; }
  [ -z "$(find "$dir/ck" -name '*.tmp*')" ] || fail "$sig: temporary file left behind"
  [ "$(json_field "$dir/metrics.jsonl" train step | tail -n 1)" = "$STOP_STEP" ] ||
    fail "$sig: last metrics record is not step $STOP_STEP"
  echo "$sig at np $np: stopped at step $STOP_STEP with its checkpoint"
}

interrupt USR1 2 usr1 launcher
stop=$STOP_STEP
# Resume to stop+3 and compare with an uninterrupted run of stop+3 steps.
total=$((stop + 3))
run 2 "${common[@]}" dpo.max_num_steps=$total checkpointing.checkpoint_dir=usr1/ck \
    checkpointing.resume=true logger.log_dir=usr1
run 2 "${common[@]}" dpo.max_num_steps=$total checkpointing.checkpoint_dir=full/ck logger.log_dir=full
a=$(json_field full/metrics.jsonl train loss | tail -n 3)
b=$(json_field usr1/metrics.jsonl train loss | tail -n 3)
[ "$a" = "$b" ] || fail "resumed losses differ:\nfull: $a\nresumed: $b"
echo "steps $((stop + 1))..$total after the signal identical to the uninterrupted run"

interrupt TERM 2 term ranks
echo "signal_checkpoint: all checks passed"
