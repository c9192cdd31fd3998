#!/usr/bin/env bash
# `dpo_prep tokenize` (tokenize_cli_main, run through tests/tokenize_cli_test): ids of
# the corpus equal the expected ones; bad input names <stdin>:LINE and exits non-zero;
# usage errors exit 2.
source "$(dirname "$0")/lib.sh"; setup "$@"
CLI=$BIN/../tests/tokenize_cli_test
DATA=$SRC/tests/data/tokenizer
[ -x "$CLI" ] || fail "$CLI not built"

# The text lines of the corpus, and their expected ids, for two tokenizers.
for name in tiny_bytelevel tiny_sp; do
  python3 - "$DATA/corpus.jsonl" "$DATA/expected_$name.jsonl" <<'PY' > "in_$name.jsonl"
import json, sys
exp = [json.loads(l)["ids"] for l in open(sys.argv[2], encoding="utf-8")]
with open("want.jsonl", "w") as w:
    for line, ids in zip(open(sys.argv[1], encoding="utf-8"), exp):
        rec = json.loads(line)
        # jsonl.h refuses \u0000 in JSON text, so texts holding NUL stay out.
        if "text" in rec and "\0" not in rec["text"]:
            print(json.dumps({"text": rec["text"]}))
            w.write(json.dumps({"ids": ids}) + "\n")
PY
  mv want.jsonl "want_$name.jsonl"
  "$CLI" tokenize --tokenizer "$DATA/$name" < "in_$name.jsonl" > "out_$name.jsonl" ||
    fail "tokenize failed on the corpus ($name)"
  cmp -s "out_$name.jsonl" "want_$name.jsonl" || {
    diff "out_$name.jsonl" "want_$name.jsonl" | head -20 >&2; fail "ids differ ($name)"; }
  echo "ok: $name: $(wc -l < "out_$name.jsonl") lines identical"
done

# expect_error STATUS PATTERN INPUT ARGS... : the CLI must exit STATUS, stderr matching.
expect_error() {
  local want=$1 pat=$2 input=$3; shift 3
  set +e
  printf '%b' "$input" | "$CLI" tokenize "$@" > out.txt 2> err.txt
  local rc=$?
  set -e
  [ "$rc" -eq "$want" ] || { cat err.txt >&2; fail "exit status $rc, want $want ($pat)"; }
  grep -qE -- "$pat" err.txt || { cat err.txt >&2; fail "stderr lacks '$pat'"; }
  echo "ok: exit $rc: $(head -1 err.txt)"
}
TOK=(--tokenizer "$DATA/tiny_bytelevel")
expect_error 1 '<stdin>:3: invalid JSON' '{"text": "a"}\n{"text": "b"}\n{"text": \n{"text": "c"}\n' "${TOK[@]}"
[ "$(wc -l < out.txt)" -eq 2 ] || fail "the lines before the bad one were not written"
expect_error 1 '<stdin>:4: record has no "text"' '{"text": "a"}\n\n  \n{"txt": "b"}\n' "${TOK[@]}"
expect_error 1 '<stdin>:2: "text" is not a string' '{"text": "a"}\n{"text": 5}\n' "${TOK[@]}"
expect_error 1 '<stdin>:1: record is not a JSON object' '["text"]\n' "${TOK[@]}"
expect_error 2 'tokenizer DIR is required' '' 
expect_error 2 "unknown argument '--bogus'" '' --bogus
expect_error 1 'no/such/dir/tokenizer.json: cannot open' '' --tokenizer no/such/dir

# Empty input gives empty output; an empty text gives no ids.
printf '{"text": ""}\n' | "$CLI" tokenize "${TOK[@]}" > out.txt
[ "$(cat out.txt)" = '{"ids": []}' ] || fail "empty text gives '$(cat out.txt)'"
"$CLI" tokenize "${TOK[@]}" < /dev/null > out.txt
[ ! -s out.txt ] || fail "empty input gives output"
echo "tokenize_cli: all checks passed"
