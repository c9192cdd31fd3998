# lib.sh — shared by the end-to-end test scripts.
# usage in a script: source lib.sh; setup "$@"   (args: BIN_DIR SOURCE_DIR WORK_DIR)
set -euo pipefail

setup() {
  BIN=$1; SRC=$2; WORK=$3
  rm -rf "$WORK"; mkdir -p "$WORK"; cd "$WORK"
  export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_NUM_THREADS=1
  MPIRUN=${MPIRUN:-mpirun}
  TINY=$SRC/tests/configs/tiny.cfg
}

fail() { echo "FAIL: $*" >&2; exit 1; }

# make_data FILE TRAIN_PAIRS VAL_PAIRS [extra generator args]
make_data() {
  local out=$1 ntrain=$2 nval=$3; shift 3
  "$BIN/dpo_demo_data" --out "$out" --train-pairs "$ntrain" --val-pairs "$nval" \
      --max-operand 99 --seed 5 "$@" > /dev/null
}

# run NP ARGS... : dpo_hpc under mpirun, output kept in run.log
run() {
  local np=$1; shift
  "$MPIRUN" --oversubscribe --bind-to none -np "$np" "$BIN/dpo_hpc" "$@" > run.log 2>&1 ||
    { cat run.log >&2; fail "dpo_hpc $* exited non-zero"; }
}

# json_field FILE SPLIT FIELD : that field of every record of SPLIT, one per line
json_field() {
  python3 - "$1" "$2" "$3" <<'PY'
import json, sys
for line in open(sys.argv[1]):
    r = json.loads(line)
    if r["split"] == sys.argv[2]:
        print(repr(r[sys.argv[3]]))
PY
}

# train_records FILE : how many train records FILE holds so far (0 while it does not
# exist). grep -c prints 0 and fails when nothing matches, so no `|| echo 0` here.
train_records() {
  local n; n=$(grep -c '"split": *"train"' "$1" 2> /dev/null) || true
  echo "${n:-0}"
}
