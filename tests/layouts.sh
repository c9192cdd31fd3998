#!/usr/bin/env bash
# The same run at 1, 2 and 4 ranks — data-parallel, tensor-parallel and both —
# gives the same training and validation losses (1e-5 relative, fp32).
source "$(dirname "$0")/lib.sh"; setup "$@"
make_data data.h5 64 16
# micro-batch 2 so that a global batch of 8 splits over up to 4 data-parallel ranks
common=("$TINY" policy.train_micro_batch_size=2)
for layout in "1 1" "2 1" "2 2" "4 1" "4 2"; do
  set -- $layout
  run "$1" "${common[@]}" policy.tensor_parallel_size="$2" logger.log_dir="np$1_tp$2"
  grep -q "$1 rank(s) = $2 tensor-parallel x $(($1 / $2)) data-parallel" run.log || fail "mesh not reported"
done
python3 - np1_tp1 np2_tp1 np2_tp2 np4_tp1 np4_tp2 <<'PY'
import json, sys
def recs(d):
    return [(r["split"], r["step"], r["loss"]) for r in map(json.loads, open(d + "/metrics.jsonl"))]
ref = recs(sys.argv[1])
for d in sys.argv[2:]:
    got = recs(d)
    assert [x[:2] for x in got] == [x[:2] for x in ref], d
    worst = max(abs(a[2] - b[2]) / abs(b[2]) for a, b in zip(got, ref))
    assert worst <= 1e-5, f"{d}: relative loss difference {worst:.2e}"
    print(f"{d}: {len(got)} records, worst relative difference {worst:.1e}")
PY
echo "layouts: all checks passed"
