#!/usr/bin/env bash
# cluster.backend = "cuda" where it cannot run stops the job at start-up with one
# clear message naming the key, exit status 1, nothing written: a build without
# CUDA names the missing backend; a CUDA build with no visible device (forced here
# with CUDA_VISIBLE_DEVICES="", so the check runs on GPU machines too) says so.
source "$(dirname "$0")/lib.sh"; setup "$@"
make_data data.h5 16 8

if "$BIN/dpo_hpc" --list-devices | grep -q "no CUDA backend"; then
  pat='cluster\.backend.*no CUDA backend in this build'
else
  pat='cluster\.backend = "cuda": no CUDA device visible'
fi

# expect_cuda_error NP ARGS... : exit 1, the message once, no output or checkpoint
expect_cuda_error() {
  local np=$1; shift
  set +e
  CUDA_VISIBLE_DEVICES= timeout 120 "$MPIRUN" --oversubscribe --bind-to none -np "$np" \
    "$BIN/dpo_hpc" "$TINY" cluster.backend=cuda checkpointing.enabled=true "$@" > out.txt 2> err.txt
  local rc=$?
  set -e
  [ "$rc" -ne 124 ] || fail "dpo_hpc at $np rank(s) hung (timeout)"
  [ "$rc" -eq 1 ] || { cat out.txt err.txt >&2; fail "exit status $rc at $np rank(s), expected 1"; }
  [ "$(grep -cE -- "$pat" err.txt)" -eq 1 ] ||
    { cat err.txt >&2; fail "expected '$pat' exactly once on stderr at $np rank(s)"; }
  ! grep -qE "MPI_ABORT|MPI_Abort|Segmentation" err.txt || { cat err.txt >&2; fail "not a clean exit"; }
  [ ! -e out ] || fail "an output directory was written"
  [ ! -e ckpt ] || fail "a checkpoint directory was written"
  echo "ok: $np rank(s) -> $(grep -m1 -E -- "$pat" err.txt)"
}
expect_cuda_error 1
expect_cuda_error 2
expect_cuda_error 2 policy.tensor_parallel_size=2

# A bad matmul precision is a configuration error on any build, naming the key.
set +e
"$MPIRUN" --oversubscribe --bind-to none -np 1 "$BIN/dpo_hpc" "$TINY" cluster.matmul_precision=fp16 \
  > out.txt 2> err.txt
rc=$?
set -e
[ "$rc" -eq 1 ] || fail "cluster.matmul_precision=fp16: exit status $rc, expected 1"
grep -q 'cluster\.matmul_precision.*fp16' err.txt || { cat err.txt >&2; fail "key not named"; }
[ ! -e out ] || fail "an output directory was written"

# --list-devices always answers (0 here) and exits 0.
CUDA_VISIBLE_DEVICES= "$BIN/dpo_hpc" --list-devices | grep -q '^CUDA devices: 0$' ||
  fail "--list-devices did not report 0 devices with CUDA_VISIBLE_DEVICES empty"
echo "cuda_unavailable: all checks passed"
