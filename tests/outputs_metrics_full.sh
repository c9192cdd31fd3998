#!/usr/bin/env bash
# metrics.jsonl on a full disk: a small tmpfs as logger.log_dir fills up during
# training; the run must exit non-zero naming metrics.jsonl and "No space left on
# device" (never a silent cut with exit 0), at 1 and 2 ranks. Needs mount (root).
source "$(dirname "$0")/lib.sh"; setup "$@"
make_data data.h5 64 8
mkdir small
mount -t tmpfs -o size=8k tmpfs small 2> /dev/null || { echo "cannot mount a tmpfs: skipped"; exit 77; }
trap 'umount "$WORK/small" 2> /dev/null || true' EXIT
for np in 1 2; do
  rm -rf small/*
  rc=0
  "$MPIRUN" --oversubscribe --bind-to none -np $np "$BIN/dpo_hpc" "$TINY" dpo.max_num_steps=200 \
      logger.log_dir=small/log > full.log 2>&1 || rc=$?
  [ $rc != 0 ] && [ $rc -lt 128 ] || { cat full.log; fail "np $np: exit status $rc on a full disk"; }
  grep -q "small/log/metrics.jsonl: cannot write a metrics record: No space left on device" full.log ||
    { cat full.log; fail "np $np: no message naming metrics.jsonl and the errno"; }
  echo "np $np: exit $rc, $(wc -l < small/log/metrics.jsonl) records kept before the disk filled"
done
echo "outputs_metrics_full: all checks passed"
