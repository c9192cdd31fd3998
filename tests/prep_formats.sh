#!/usr/bin/env bash
# dpo_prep on every input format (NeMo RL context/completions, binary with string or
# message prompts and custom keys, legacy, TRL implicit prompt, dpo_pairs output)
# with each built-in chat template, compared id for id with Hugging Face tokenizers
# + Jinja templates (tests/data/prep/expected, made by tests/fixtures/gen_prep_expected.py),
# and decoded back to the rendered text. The committed tiny tokenizers always run;
# the real Qwen3 / Llama 3 / Llama 2 ones when ../shared/testdata is present.
source "$(dirname "$0")/lib.sh"; setup "$@"
IN=$SRC/tests/data/prep/inputs
EXP=$SRC/tests/data/prep/expected
SHARED=${DPO_TESTDATA:-$SRC/../shared/testdata}/tokenizers
CHECK=$(dirname "$BIN")/tests/prep_check
ran=0

# check NAME TEMPLATE TOKDIR
check() {
  local name=$1 tmpl=$2 tok=$3 exp=$EXP/$1.$2.jsonl
  [ -f "$tok/tokenizer.json" ] || { echo "skip: $name ($tok absent)"; return 0; }
  "$BIN/dpo_prep" --tokenizer "$tok" --chat-template "$tmpl" --output "$name.$tmpl.h5" \
      --train "$IN/nemo.jsonl" --train "$IN/binary.jsonl" --train "$IN/legacy.jsonl" \
      --train "$IN/trl.jsonl" --train "$IN/pairs.jsonl" --val "legacy_again=$IN/legacy.jsonl" \
      > "$name.$tmpl.log" 2>&1 || { cat "$name.$tmpl.log" >&2; fail "dpo_prep $name $tmpl"; }
  "$BIN/dpo_prep" --tokenizer "$tok" --chat-template "$tmpl" --output "$name.$tmpl.keys.h5" \
      --train "$IN/binary_keys.jsonl" --prompt-key question --chosen-key good --rejected-key bad \
      > "$name.$tmpl.keys.log" 2>&1 || { cat "$name.$tmpl.keys.log" >&2; fail "dpo_prep $name $tmpl keys"; }
  grep -q "format nemo" "$name.$tmpl.log" || fail "no format detection message"
  "$MPIRUN" -np 1 "$CHECK" "$name.$tmpl.h5" train "$exp" "$tok" \
      nemo.jsonl binary.jsonl legacy.jsonl trl.jsonl pairs.jsonl || fail "$name $tmpl: train split differs"
  "$MPIRUN" -np 1 "$CHECK" "$name.$tmpl.h5" legacy_again "$exp" "$tok" legacy.jsonl ||
      fail "$name $tmpl: validation split differs"
  "$MPIRUN" -np 1 "$CHECK" "$name.$tmpl.keys.h5" train "$exp" "$tok" binary_keys.jsonl ||
      fail "$name $tmpl: custom keys differ"
  echo "ok: $name $tmpl"
  ran=$((ran + 1))
}

check tiny_bytelevel chatml "$SRC/tests/data/tokenizer/tiny_bytelevel"
check tiny_bytelevel plain "$SRC/tests/data/tokenizer/tiny_bytelevel"
check tiny_sp llama2 "$SRC/tests/data/tokenizer/tiny_sp"
check tiny_sp plain "$SRC/tests/data/tokenizer/tiny_sp"
check qwen3 chatml "$SHARED/qwen3"
check llama3 llama3 "$SHARED/llama3"
check llama2 llama2 "$SHARED/llama2"
[ "$ran" -ge 4 ] || fail "only $ran tokenizer/template combinations ran"

# auto picks the template from tokenizer_config.json's chat_template and says so.
if [ -f "$SHARED/llama3/tokenizer.json" ]; then
  "$BIN/dpo_prep" --tokenizer "$SHARED/llama3" --output auto.h5 --train "$IN/nemo.jsonl" > auto.log
  grep -q "chat template llama3 (auto" auto.log || { cat auto.log; fail "auto did not pick llama3"; }
fi
"$BIN/dpo_prep" --tokenizer "$SRC/tests/data/tokenizer/tiny_bytelevel" --output auto2.h5 \
    --train "$IN/nemo.jsonl" > auto2.log
grep -q "chat template chatml (auto" auto2.log || { cat auto2.log; fail "auto did not pick chatml"; }

# A custom template equal to chatml gives the chatml dataset bit for bit.
cat > custom.cfg <<'CFG'
chat_template = {
  system    = { prefix = "<|im_start|>system\n";    suffix = "<|im_end|>\n"; };
  user      = { prefix = "<|im_start|>user\n";      suffix = "<|im_end|>\n"; };
  assistant = { prefix = "<|im_start|>assistant\n"; suffix = "<|im_end|>\n"; };
};
CFG
"$BIN/dpo_prep" --tokenizer "$SRC/tests/data/tokenizer/tiny_bytelevel" --chat-template custom \
    --template-file custom.cfg --output custom.h5 --train "$IN/nemo.jsonl" --train "$IN/binary.jsonl" \
    --train "$IN/legacy.jsonl" --train "$IN/trl.jsonl" --train "$IN/pairs.jsonl" > custom.log
"$MPIRUN" -np 1 "$CHECK" custom.h5 train "$EXP/tiny_bytelevel.chatml.jsonl" \
    "$SRC/tests/data/tokenizer/tiny_bytelevel" nemo.jsonl binary.jsonl legacy.jsonl trl.jsonl pairs.jsonl ||
    fail "custom chatml differs from built-in chatml"

# Dataset metadata: tokenizer identity, vocabulary size, counts as attributes.
h5dump -A -g /train tiny_bytelevel.chatml.h5 > attrs.txt
for a in records_read pairs_written dropped_too_long truncated skipped_invalid; do
  grep -q "ATTRIBUTE \"$a\"" attrs.txt || fail "attribute $a missing"
done
h5dump -a /tokenizer tiny_bytelevel.chatml.h5 | grep -q '"bpe:' || fail "tokenizer identity missing"
echo "ok: $ran combinations"
