#!/usr/bin/env bash
# dpo_prep on bad input: each bad record stops the run with file:line and what is
# wrong, a non-zero exit and no output (nor temporary) file; --skip-invalid skips and
# counts them; bad options and tokenizers are refused with a clear message.
source "$(dirname "$0")/lib.sh"; setup "$@"
TOK=$SRC/tests/data/tokenizer/tiny_bytelevel
SPTOK=$SRC/tests/data/tokenizer/tiny_sp
GOOD='{"prompt": "Hi", "chosen": "Hello", "rejected": "Go"}'

# expect_fail PATTERN ARGS... : dpo_prep fails, stderr matches, no out.h5 / out.h5.tmp
expect_fail() {
  local pat=$1; shift
  set +e
  "$BIN/dpo_prep" "$@" > out.txt 2> err.txt
  local rc=$?
  set -e
  [ "$rc" -ne 0 ] || fail "dpo_prep $* succeeded; expected an error matching '$pat'"
  grep -qE -- "$pat" err.txt || { cat err.txt >&2; fail "stderr of dpo_prep $* lacks '$pat'"; }
  [ ! -e out.h5 ] && [ ! -e out.h5.tmp ] || fail "dpo_prep $* left an output file behind"
  echo "ok: $(grep -m1 -E -- "$pat" err.txt)"
}

# bad FILE PATTERN LINE... : a file whose records are the given lines must fail
bad() {
  local file=$1 pat=$2; shift 2
  printf '%s\n' "$@" > "$file"
  expect_fail "$file:$pat" --tokenizer "$TOK" --output out.h5 --train "$file"
}

bad bad_json.jsonl '2: invalid JSON' "$GOOD" '{"prompt": "a", "chosen": "b"'
printf '%s\n{"prompt": "caf\xe9", "chosen": "a", "rejected": "b"}\n' "$GOOD" > utf8.jsonl
expect_fail 'utf8\.jsonl:2: invalid JSON.*(decode|UTF)' --tokenizer "$TOK" --output out.h5 --train utf8.jsonl
bad missing.jsonl '3: missing key "rejected"' "$GOOD" "$GOOD" '{"prompt": "a", "chosen": "b"}'
bad mistyped.jsonl '2: "chosen" must be a string or a list of messages, not a number' \
    "$GOOD" '{"prompt": "a", "chosen": 5, "rejected": "b"}'
bad empty.jsonl '1: chosen completion is empty' '{"prompt": "a", "chosen": "", "rejected": "b"}'
bad notobj.jsonl '1: a record must be a JSON object' '[1, 2]'
NEMO_OK='{"context": [{"role": "user", "content": "q"}], "completions": [{"rank": 0, "completion": [{"role": "assistant", "content": "a"}]}, {"rank": 1, "completion": [{"role": "assistant", "content": "b"}]}]}'
bad tie.jsonl '2: both completions have rank 1 \(a tie' "$NEMO_OK" \
    '{"context": [{"role": "user", "content": "q"}], "completions": [{"rank": 1, "completion": [{"role": "assistant", "content": "a"}]}, {"rank": 1, "completion": [{"role": "assistant", "content": "b"}]}]}'
bad three.jsonl '1: "completions" has 3 entries; DPO needs exactly 2' \
    '{"context": [], "completions": [{"rank": 0, "completion": []}, {"rank": 1, "completion": []}, {"rank": 2, "completion": []}]}'
bad norole.jsonl '1: context\[0\]: missing or non-string "role"' \
    '{"context": [{"content": "q"}], "completions": [{"rank": 0, "completion": [{"role": "assistant", "content": "a"}]}, {"rank": 1, "completion": [{"role": "assistant", "content": "b"}]}]}'
bad rank.jsonl '1: completions\[1\]: missing or non-integer "rank"' \
    '{"context": [], "completions": [{"rank": 0, "completion": [{"role": "assistant", "content": "a"}]}, {"rank": "1", "completion": [{"role": "assistant", "content": "b"}]}]}'
bad trl_user.jsonl '1: chosen completion ends with a "user" message' \
    '{"chosen": [{"role": "user", "content": "q"}, {"role": "user", "content": "a"}], "rejected": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "b"}]}'
bad unknown.jsonl '1: record matches no input format' '{"question": "a", "answer": "b"}'
bad nul.jsonl '1: invalid JSON.*u0000' '{"prompt": "a\u0000b", "chosen": "a", "rejected": "b"}'

# --skip-invalid: 3 good records among 4 bad ones; counted, the first reported.
printf '%s\n' "$GOOD" '{"prompt": 1' "$GOOD" '{"prompt": "a", "chosen": "", "rejected": "b"}' \
    '[1]' '{"prompt": "a", "chosen": "b"}' "$GOOD" > mixed.jsonl
"$BIN/dpo_prep" --tokenizer "$TOK" --output skip.h5 --train mixed.jsonl --skip-invalid \
    --report-invalid 2 > skip.txt 2> skip.err || { cat skip.err >&2; fail "--skip-invalid run failed"; }
grep -q "7 records read, 3 pairs written, 4 invalid skipped" skip.txt || { cat skip.txt; fail "skip counts"; }
[ "$(grep -c 'skipped: mixed.jsonl:' skip.err)" -eq 2 ] || { cat skip.err; fail "--report-invalid 2"; }
grep -q "mixed.jsonl:2: invalid JSON" skip.err || fail "first skipped record not described"
h5dump -a /train/skipped_invalid skip.h5 | grep -q "(0): 4" || fail "skipped_invalid attribute"

# An existing output is never replaced without --force.
cp skip.h5 keep.h5
expect_fail 'keep\.h5 exists \(use --force' --tokenizer "$TOK" --output keep.h5 --train mixed.jsonl
cmp skip.h5 keep.h5 || fail "existing output was modified"
printf '%s\n' "$GOOD" > one.jsonl
"$BIN/dpo_prep" --tokenizer "$TOK" --output keep.h5 --train one.jsonl --force > /dev/null
# A failed run with --force leaves the previous file intact.
expect_fail 'bad_json\.jsonl:2' --tokenizer "$TOK" --output keep.h5 --train bad_json.jsonl --force
h5dump -a /train/pairs_written keep.h5 | grep -q "(0): 1" || fail "--force run result lost"

# Options, tokenizers and templates.
expect_fail 'no_such_dir' --tokenizer no_such_dir --output out.h5 --train one.jsonl
expect_fail 'no_such\.jsonl: cannot open' --tokenizer "$TOK" --output out.h5 --train no_such.jsonl
expect_fail 'unknown chat template "nope"' --tokenizer "$TOK" --chat-template nope --output out.h5 --train one.jsonl
expect_fail 'needs the token "<\|im_start\|>"' --tokenizer "$SPTOK" --chat-template chatml --output out.h5 --train one.jsonl
expect_fail 'needs --template-file' --tokenizer "$TOK" --chat-template custom --output out.h5 --train one.jsonl
printf 'chat_template = { user = { prefix = 5; }; };\n' > tmpl.cfg
expect_fail 'tmpl\.cfg:1: chat_template\.user\.prefix must be a string' --tokenizer "$TOK" \
    --chat-template custom --template-file tmpl.cfg --output out.h5 --train one.jsonl
expect_fail '--train FILE is required' --tokenizer "$TOK" --output out.h5
expect_fail 'unknown option "--bogus"' --tokenizer "$TOK" --output out.h5 --train one.jsonl --bogus 1
: > empty.jsonl
expect_fail 'no pair was written' --tokenizer "$TOK" --output out.h5 --train empty.jsonl
echo "all bad-input cases behaved"
