#!/usr/bin/env bash
# kill -9 at random points of checkpointing: a run that saves a checkpoint after
# every step is killed (every rank, no warning) after a random delay, again and
# again, at 2 ranks (one rank count throughout: the final comparison is bit for
# bit, and the order of a data-parallel sum depends on the rank count). After each kill every step_*.h5 is complete (all its
# datasets there; a partial save only ever exists as *.tmp), and the next run
# resumes from the newest one. At the end the resumed run's last losses equal an
# uninterrupted run's bit for bit (constant schedule: max_num_steps changes).
source "$(dirname "$0")/lib.sh"; setup "$@"
make_data data.h5 64 8
ROUNDS=${KILL_ROUNDS:-8} NP=2
common=("$TINY" dpo.max_num_epochs=100000 dpo.val_period=0 policy.scheduler.type=constant
        checkpointing.enabled=true checkpointing.save_period=1
        checkpointing.resume=true checkpointing.checkpoint_dir=ck)
DATASETS=63   # /model 21 tensors, and both optimizer moments of each

# Every step_*.h5 holds every dataset (h5ls lists them), where h5ls exists.
check_complete() {
  command -v h5ls > /dev/null || return 0
  local f n
  for f in ck/step_*.h5; do
    [ -e "$f" ] || continue
    n=$(h5ls -r "$f" 2> /dev/null | grep -c Dataset || true)
    [ "$n" = $DATASETS ] || fail "round $1: $f holds $n of $DATASETS datasets (a partial checkpoint)"
  done
}

latest_step() {
  local f; f=$(ls ck/step_*.h5 2> /dev/null | sort | tail -n 1)
  [ -n "$f" ] && basename "$f" .h5 | sed 's/step_0*//; s/^$/0/' || echo 0
}

resumes=0 in_save=0
for round in $(seq "$ROUNDS"); do
  np=$NP
  before=$(latest_step)
  "$MPIRUN" --oversubscribe --bind-to none -np $np "$BIN/dpo_hpc" "${common[@]}" \
      dpo.max_num_steps=100000 logger.log_dir=log$round > round$round.log 2>&1 &
  pid=$!
  # 0.6 .. 2.0 s: past start-up (and the resume) into the steps, each ending in a save
  delay=$(awk -v r=$RANDOM 'BEGIN { printf "%.2f", 0.6 + 1.4 * r / 32767 }')
  sleep "$delay"
  kill -0 $pid 2> /dev/null || { cat round$round.log; fail "round $round: the run ended before the kill"; }
  pkill -KILL -P $pid dpo_hpc || true   # every rank at once
  kill -KILL $pid 2> /dev/null || true
  wait $pid 2> /dev/null || true
  if [ "$before" -gt 0 ]; then
    grep -q "resumed from ck/step_$(printf %08d "$before").h5 at step $before" round$round.log ||
      { cat round$round.log; fail "round $round: did not resume from step $before"; }
    resumes=$((resumes + 1))
  fi
  check_complete "$round"
  tmps=$(ls ck 2> /dev/null | grep -c '\.tmp' || true)
  [ "$tmps" = 0 ] || in_save=$((in_save + 1))
  echo "round $round: np $np, killed after $delay s; newest checkpoint step $(latest_step)" \
       "($tmps temporary file(s) left by the kill)"
  # keep the disk small: all but the two newest go (no job runs now)
  ls ck/step_*.h5 2> /dev/null | sort | head -n -2 | xargs -r rm -f
done
echo "$in_save of $ROUNDS kills hit a save in progress"
[ $resumes -ge $((ROUNDS - 1)) ] || fail "only $resumes resumes"
last=$(latest_step)
[ "$last" -gt 0 ] || fail "no checkpoint after $ROUNDS rounds"

# A last resume to three steps beyond, compared with an uninterrupted run.
total=$((last + 3))
run $NP "${common[@]}" dpo.max_num_steps=$total logger.log_dir=final
grep -q "resumed from ck/step_$(printf %08d "$last").h5 at step $last" run.log ||
  { cat run.log; fail "final run did not resume from step $last"; }
[ -z "$(ls ck | grep '\.tmp')" ] || fail "temporary files left after a completed save: $(ls ck)"
run $NP "${common[@]}" dpo.max_num_steps=$total checkpointing.resume=false \
    checkpointing.save_period=100000 checkpointing.checkpoint_dir=ck_full logger.log_dir=full
a=$(json_field full/metrics.jsonl train loss | tail -n 3)
b=$(json_field final/metrics.jsonl train loss | tail -n 3)
[ "$a" = "$b" ] || fail "resumed losses differ from the uninterrupted run:\nfull: $a\nresumed: $b"
echo "kill_checkpoint: $ROUNDS kills, $resumes resumes, steps $((last + 1))..$total equal the uninterrupted run"
