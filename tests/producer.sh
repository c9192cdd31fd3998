#!/usr/bin/env bash
# Every file a program writes names it: the root attribute `producer` of datasets
# (dpo_demo_data, dpo_prep) and checkpoints (dpo_hpc, dpo_convert) is "<program>
# <version>", and --precompute-reference adds `reference_producer`. Files without
# them (written before they existed) still load.
source "$(dirname "$0")/lib.sh"; setup "$@"
STRIP=$BIN/../tests/h5_strip_attr
want=$("$BIN/dpo_hpc" --version | sed 's/^dpo_hpc //')
[ -n "$want" ] || fail "dpo_hpc --version printed nothing"
# attr FILE NAME: the string value of a root attribute, as h5dump shows it.
attr() {
  h5dump -a "/$2" "$1" | sed -n 's/^ *(0): "\(.*\)"$/\1/p'
}
expect() {
  local got; got=$(attr "$1" "$2")
  [ "$got" = "$3" ] || { h5dump -a "/$2" "$1" >&2 || true; fail "$1: $2 is '$got', expected '$3'"; }
}
make_data data.h5 32 8
expect data.h5 producer "dpo_demo_data $want"
"$BIN/dpo_demo_data" --jsonl jl --train-pairs 40 --val-pairs 8 --seed 3 > /dev/null
"$BIN/dpo_prep" --tokenizer jl/tokenizer --output prep.h5 --train jl/train.jsonl \
    --val jl/heldout.jsonl --max-length 64 > prep.log
expect prep.h5 producer "dpo_prep $want"
run 1 "$TINY" dpo.max_num_steps=2 checkpointing.enabled=true checkpointing.save_period=2 \
    checkpointing.checkpoint_dir=ck logger.log_dir=a
expect ck/step_00000002.h5 producer "dpo_hpc $want"
grep -q "^.*dpo_hpc $want: 1 rank(s)" run.log || { cat run.log; fail "the banner does not name the version"; }
# The reference pass keeps the dataset's producer and adds its own.
cp data.h5 pre.h5
run 1 --precompute-reference "$TINY" data.dataset_path=pre.h5
expect pre.h5 producer "dpo_demo_data $want"
expect pre.h5 reference_producer "dpo_hpc $want"
# dpo_convert: checkpoint -> HF folder -> checkpoint.
"$MPIRUN" -np 1 "$BIN/dpo_convert" h52hf ck/step_00000002.h5 hf > conv.log 2>&1 || { cat conv.log; fail "h52hf"; }
"$MPIRUN" -np 1 "$BIN/dpo_convert" hf2h5 hf back.h5 > conv.log 2>&1 || { cat conv.log; fail "hf2h5"; }
expect back.h5 producer "dpo_convert $want"
# Old files: no producer attributes; training, resuming and precomputing still work.
"$STRIP" data.h5 producer
"$STRIP" ck/step_00000002.h5 producer
"$STRIP" pre.h5 producer reference_producer
[ -z "$(attr data.h5 producer 2> /dev/null)" ] || fail "producer not stripped"
run 1 "$TINY" dpo.max_num_steps=3 checkpointing.enabled=true checkpointing.save_period=3 \
    checkpointing.checkpoint_dir=ck checkpointing.resume=true logger.log_dir=a
grep -q "resumed from ck/step_00000002.h5" run.log || { cat run.log; fail "did not resume from the stripped checkpoint"; }
run 1 "$TINY" dpo.max_num_steps=1 data.dataset_path=pre.h5 dpo.precomputed_reference_logprobs=true \
    logger.log_dir=b
run 1 --precompute-reference "$TINY" data.dataset_path=data.h5
expect data.h5 reference_producer "dpo_hpc $want"
echo "producer: every file names its program; files without it still load"
