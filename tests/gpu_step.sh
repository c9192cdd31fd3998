#!/usr/bin/env bash
# The CUDA backend trains like the CPU backend: the same 4 steps (tiny config) on
# both, compared record by record. Skips (77) unless a GPU is visible.
#  - matmul_precision fp32: every op computes what the CPU op computes, in another
#    order of fp32 sums (cuBLAS / kernel reductions vs OpenBLAS / OpenMP), so losses
#    agree to 1e-4 relative (the TP/DP layout test holds CPU layouts to 1e-5).
#  - bf16: matmul operands rounded to 8 significant bits (relative error 2^-9 per
#    operand); a log-prob carries errors of about 1e-3, the DPO loss sees their
#    differences times beta = 0.1 over 4 small Adam steps, so 2e-2 relative leaves
#    a wide margin while still catching a wrong op (errors of order 1).
# With >= 2 GPUs also at DP = 2 and TP = 2 (NCCL collectives), against the 1-rank
# CPU run.
source "$(dirname "$0")/lib.sh"; setup "$@"

if "$BIN/dpo_hpc" --list-devices | grep -q "no CUDA backend"; then
  echo "gpu_step: build without CUDA: skipped"; exit 77
fi
ngpu=$("$BIN/dpo_hpc" --list-devices | awk '/^CUDA devices:/ {print $3}')
if [ "${ngpu:-0}" -lt 1 ]; then
  echo "gpu_step: no GPU visible: skipped"; exit 77
fi
echo "gpu_step: $ngpu GPU(s)"
make_data data.h5 64 16

# compare REF TOL DIR... : same (split, step) records, losses within TOL relative
compare() {
  python3 - "$@" <<'PY'
import json, sys
def recs(d):
    return [(r["split"], r["step"], r["loss"]) for r in map(json.loads, open(d + "/metrics.jsonl"))]
ref, tol = recs(sys.argv[1]), float(sys.argv[2])
for d in sys.argv[3:]:
    got = recs(d)
    assert [x[:2] for x in got] == [x[:2] for x in ref], f"{d}: other records than {sys.argv[1]}"
    worst = max(abs(a[2] - b[2]) / abs(b[2]) for a, b in zip(got, ref))
    print(f"{d}: {len(got)} records, worst relative loss difference {worst:.2e} (tolerance {tol:g})")
    assert worst <= tol, f"{d}: relative loss difference {worst:.2e} > {tol:g}"
PY
}

common=("$TINY" dpo.max_num_steps=4 policy.train_micro_batch_size=2)
run 1 "${common[@]}" logger.log_dir=cpu
run 1 "${common[@]}" cluster.backend=cuda cluster.matmul_precision=fp32 logger.log_dir=cuda_fp32
grep -q "CUDA device 0 of $ngpu" run.log || { cat run.log; fail "device binding not reported"; }
run 1 "${common[@]}" cluster.backend=cuda cluster.matmul_precision=tf32 logger.log_dir=cuda_tf32
run 1 "${common[@]}" cluster.backend=cuda logger.log_dir=cuda_bf16   # bf16: the default
[ "$(json_field cpu/metrics.jsonl train loss | wc -l)" = 4 ] || fail "expected 4 training steps"
compare cpu 1e-4 cuda_fp32
compare cpu 2e-2 cuda_tf32 cuda_bf16

if [ "$ngpu" -ge 2 ]; then
  run 2 "${common[@]}" cluster.backend=cuda cluster.matmul_precision=fp32 logger.log_dir=cuda_dp2
  grep -q "CUDA device 1 of" run.log || { cat run.log; fail "rank 1 not on device 1"; }
  run 2 "${common[@]}" cluster.backend=cuda cluster.matmul_precision=fp32 \
    policy.tensor_parallel_size=2 logger.log_dir=cuda_tp2
  # ZeRO-1 (the default) at DP = 2: reduce-scatter and all-gather over NCCL
  run 2 "${common[@]}" cluster.backend=cuda cluster.matmul_precision=fp32 \
    policy.zero_stage=0 logger.log_dir=cuda_dp2_zero0
  compare cpu 1e-4 cuda_dp2 cuda_tp2 cuda_dp2_zero0
  # GQA at TP = 2 splits the KV heads; with 4 GPUs TP = 4 replicates them (the
  # KV-head subgroup sum of model.c over NCCL).
  GQA=$SRC/tests/configs/gqa.cfg
  run 1 "$GQA" dpo.max_num_steps=4 logger.log_dir=gqa_cpu
  run 2 "$GQA" dpo.max_num_steps=4 cluster.backend=cuda cluster.matmul_precision=fp32 \
    policy.tensor_parallel_size=2 logger.log_dir=gqa_cuda_tp2
  gqa=(gqa_cuda_tp2)
  if [ "$ngpu" -ge 4 ]; then
    run 4 "$GQA" dpo.max_num_steps=4 cluster.backend=cuda cluster.matmul_precision=fp32 \
      policy.tensor_parallel_size=4 logger.log_dir=gqa_cuda_tp4
    gqa+=(gqa_cuda_tp4)
  fi
  compare gqa_cpu 1e-4 "${gqa[@]}"
  # Two ranks on one GPU is refused, naming the rank.
  set +e
  CUDA_VISIBLE_DEVICES=0 "$MPIRUN" --oversubscribe --bind-to none -np 2 "$BIN/dpo_hpc" \
    "${common[@]}" cluster.backend=cuda logger.log_dir=shared > out.txt 2> err.txt
  rc=$?
  set -e
  [ "$rc" -ne 0 ] || fail "two ranks on one GPU were accepted"
  grep -q "would share CUDA device 0" err.txt || { cat err.txt >&2; fail "sharing not explained"; }
fi
echo "gpu_step: all checks passed"
