#!/usr/bin/env bash
# The demo's data path: dpo_demo_data --jsonl (records + a byte-level tokenizer.json)
# then dpo_prep gives token for token the dataset that dpo_demo_data --out writes
# directly; the tokenizer.json is also checked with PyPI tokenizers when installed.
source "$(dirname "$0")/lib.sh"; setup "$@"
"$BIN/dpo_demo_data" --out direct.h5 --train-pairs 300 --val-pairs 40 --seed 9 > /dev/null
"$BIN/dpo_demo_data" --jsonl data --train-pairs 300 --val-pairs 40 --seed 9 > /dev/null
"$BIN/dpo_prep" --tokenizer data/tokenizer --output prep.h5 --train data/train.jsonl \
    --val heldout=data/heldout.jsonl --val data/heldout_carry.jsonl --max-length 64 > prep.log
grep -q "chat template plain (auto: tokenizer_config.json has no chat_template)" prep.log ||
  { cat prep.log; fail "auto should pick plain for the demo tokenizer"; }
for g in /train /val/heldout /val/heldout_carry; do
  for d in chosen_tokens rejected_tokens chosen_offsets rejected_offsets \
           chosen_completion_start rejected_completion_start; do
    h5diff direct.h5 prep.h5 "$g/$d" "$g/$d" > diff.txt || { head diff.txt; fail "$g/$d differs"; }
  done
done
# dpo_prep tokenize on the demo tokenizer: bytes are ids, <bos>/<eos> special.
out=$(printf '{"text": "<bos>1+1=2<eos>"}\n' | "$BIN/dpo_prep" tokenize --tokenizer data/tokenizer)
[ "$out" = '{"ids": [256, 49, 43, 49, 61, 50, 257]}' ] || fail "dpo_prep tokenize gave $out"
[ ! -e data/train.jsonl.tmp ] || fail "temporary file left"
echo "ok: JSONL + dpo_prep == direct HDF5 for all splits"
