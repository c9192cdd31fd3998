#!/usr/bin/env bash
# Bad configuration stops the run before any compute, exits non-zero, names the key
# (and file:line where libconfig knows it), and leaves no output behind.
source "$(dirname "$0")/lib.sh"; setup "$@"
make_data data.h5 16 8

# expect_error NP PATTERN ARGS... : dpo_hpc must fail and stderr must match PATTERN
expect_error() {
  local np=$1 pat=$2; shift 2
  set +e
  timeout 60 "$MPIRUN" --oversubscribe --bind-to none -np "$np" "$BIN/dpo_hpc" "$@" > out.txt 2> err.txt
  local rc=$?
  set -e
  [ "$rc" -ne 0 ] || fail "dpo_hpc $* succeeded; expected an error matching '$pat'"
  [ "$rc" -ne 124 ] || fail "dpo_hpc $* hung (timeout)"
  grep -qE -- "$pat" err.txt || { cat err.txt >&2; fail "stderr of dpo_hpc $* lacks '$pat'"; }
  [ ! -e out ] || fail "dpo_hpc $* left an output directory behind"
  echo "ok: $* -> $(grep -m1 -E -- "$pat" err.txt)"
}

expect_error 1 "no_such\.cfg" no_such.cfg
sed 's/seed = 7;/seed = 7; betaa = 0.1;/' "$TINY" > bad_key.cfg
expect_error 1 "bad_key\.cfg:[0-9]+.*(dpo\.betaa|betaa)" bad_key.cfg
sed 's/max_num_steps = 6;/max_num_steps = "six";/' "$TINY" > bad_type.cfg
expect_error 1 "bad_type\.cfg:[0-9]+.*dpo\.max_num_steps" bad_type.cfg
printf 'policy = { train_micro_batch_size = 4 \n' > syntax.cfg
expect_error 1 "syntax\.cfg:[0-9]+" syntax.cfg
expect_error 1 "dpo\.label_smoothing" "$TINY" data.dataset_path=data.h5 dpo.label_smoothing=0.7
expect_error 1 "policy\.no_such_key" "$TINY" policy.no_such_key=1
expect_error 1 "policy\.model\.hidden_size" "$TINY" policy.model.hidden_size=abc
expect_error 1 "train_micro_batch_size" "$TINY" policy.train_micro_batch_size=3
expect_error 1 "dpo\.loss_type" "$TINY" dpo.loss_type=nonsense
expect_error 1 "data\.dataset_path.*missing\.h5" "$TINY" data.dataset_path=missing.h5
expect_error 1 "tensor_parallel_size" "$TINY" policy.tensor_parallel_size=2
expect_error 1 "max_total_sequence_length" "$TINY" policy.max_total_sequence_length=4
# Two ranks: both stop, nothing hangs, rank 0 names the key.
expect_error 2 "dpo\.label_smoothing" "$TINY" dpo.label_smoothing=-1
expect_error 2 "dpo\.val_global_batch_size.*data-parallel" "$TINY" dpo.val_global_batch_size=3
echo "cli_errors: all checks passed"
