#!/usr/bin/env bash
# dpo_pairs against NeMo Gym's transform_gym_to_dpo.py: on the crafted rollouts of
# tests/data/pairs, every case of cases.txt gives the script's records (as parsed
# JSON, floats compared exactly, and byte for byte) and the script's stdout. Then
# malformed rollouts (file:line, non-zero exit, no output file), --skip-invalid,
# --context full, unwritable outputs, and bad usage.
source "$(dirname "$0")/lib.sh"; setup "$@"
command -v python3 > /dev/null || { echo "python3 not found: skipped"; exit 77; }
DATA=$SRC/tests/data/pairs
PAIRS=$BIN/dpo_pairs
cp "$DATA/rollouts.jsonl" .

# same_records GOT WANT: the same records in the same order, key order included;
# floats equal as floats (repr, so -0.0 differs from 0.0), ints stay ints.
same_records() {
  python3 - "$1" "$2" <<'PY'
import json, sys
def same(a, b):
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, float):
        return repr(a) == repr(b)
    return a == b
got = [json.loads(l) for l in open(sys.argv[1], encoding="utf-8")]
want = [json.loads(l) for l in open(sys.argv[2], encoding="utf-8")]
if len(got) != len(want):
    sys.exit(f"{len(got)} records, want {len(want)}")
for i, (g, w) in enumerate(zip(got, want)):
    if not same(g, w):
        sys.exit(f"record {i + 1} differs:\n  got  {g}\n  want {w}")
PY
}

# run_pairs ARGS... : dpo_pairs with stdout in out.txt, stderr in err.txt; sets rc
run_pairs() {
  set +e
  "$PAIRS" "$@" > out.txt 2> err.txt
  rc=$?
  set -e
}

no_temp_files() {  # no temporary output left anywhere under the work directory
  local left
  left=$(find . -name '.*.tmp.*' | head -5)
  [ -z "$left" ] || fail "temporary files left behind: $left"
}

# ---- the script's own outputs ----
ncase=0
while read -r name args; do
  case $name in ''|'#'*) continue ;; esac
  # shellcheck disable=SC2086  # args are whitespace-separated words by construction
  run_pairs --input rollouts.jsonl --output "out/$name.jsonl" $args
  [ "$rc" -eq 0 ] || { cat err.txt >&2; fail "$name: exit $rc"; }
  diff -u "$DATA/expected_$name.stdout" out.txt > diff.txt ||
    { cat diff.txt >&2; fail "$name: stdout differs from the script's"; }
  if [ -f "$DATA/expected_$name.jsonl" ]; then
    same_records "out/$name.jsonl" "$DATA/expected_$name.jsonl" || fail "$name: records differ"
    cmp -s "out/$name.jsonl" "$DATA/expected_$name.jsonl" || fail "$name: records equal but bytes differ"
  else
    [ ! -e "out/$name.jsonl" ] || fail "$name: an output file was written though no pair was made"
  fi
  echo "ok: $name ($(grep -m1 Created out.txt))"
  ncase=$((ncase + 1))
done < "$DATA/cases.txt"
[ "$ncase" -ge 6 ] || fail "only $ncase cases in cases.txt"
no_temp_files

# Option spellings (--min-gap=, hyphens) and stdin input with blank lines.
run_pairs --input=rollouts.jsonl --output=spell.jsonl --min-gap=0.25 --strategy=same_prompt
[ "$rc" -eq 0 ] || fail "--min-gap=0.25: exit $rc"
cmp -s spell.jsonl "$DATA/expected_same_prompt_gap025.jsonl" || fail "--min-gap=0.25 differs from --min_gap 0.25"
sed 'G' rollouts.jsonl | "$PAIRS" --input - --output stdin.jsonl > /dev/null
cmp -s stdin.jsonl "$DATA/expected_same_prompt_default.jsonl" || fail "stdin with blank lines differs"
echo "ok: option spellings, stdin, blank lines"

# ---- malformed rollouts: file:line, exit 1, no output, an old output untouched ----
head -n 2 rollouts.jsonl > good2.jsonl
V='"responses_create_params": {"input": [{"role": "user", "content": "q"}]}'
expect_bad() {  # LINE PATTERN [extra args]
  local line=$1 pat=$2; shift 2
  { cat good2.jsonl; printf '%s\n' "$line"; cat good2.jsonl; } > bad.jsonl
  echo "old contents" > keep.jsonl
  run_pairs --input bad.jsonl --output keep.jsonl "$@"
  [ "$rc" -eq 1 ] || fail "'$line': exit $rc, want 1"
  grep -qE -- "bad\.jsonl:3: .*$pat" err.txt || { cat err.txt >&2; fail "stderr lacks bad.jsonl:3: $pat"; }
  [ "$(cat keep.jsonl)" = "old contents" ] || fail "'$line': the existing output was touched"
  [ ! -s out.txt ] || fail "'$line': a report was printed though the input was rejected"
  no_temp_files
  echo "ok: $(head -1 err.txt)"
}
expect_bad '{"responses_create_params": {"input": [' 'invalid JSON'
expect_bad '{"a": 1, "a": 2}' 'invalid JSON.*duplicate'
expect_bad '[1, 2]' 'must be a JSON object'
expect_bad '{"output": []}' 'missing "responses_create_params"'
expect_bad '{"responses_create_params": "x", "output": []}' '"responses_create_params" must be an object'
expect_bad '{"responses_create_params": {}, "output": []}' 'missing "responses_create_params.input"'
expect_bad "{$V}" 'missing "output"'
expect_bad '{"responses_create_params": {"input": 7}, "output": []}' 'input" must be an array of messages or a string'
expect_bad '{"responses_create_params": {"input": ["hi"]}, "output": []}' 'input\[0\]" must be an object'
expect_bad '{"responses_create_params": {"input": [{"role": "user", "content": [{"text": "q"}]}]}, "output": []}' \
  'content" \(the last user message\) must be a string'
expect_bad "{$V, \"output\": {}}" '"output" must be an array'
expect_bad "{$V, \"output\": [\"text\"]}" '"output\[0\]" must be an object'
expect_bad "{$V, \"output\": [{\"type\": \"message\", \"content\": [{\"text\": 5}]}]}" \
  'output\[0\]\.content\[0\]\.text" must be a string'
expect_bad "{$V, \"output\": [], \"reward\": \"0.9\"}" '"reward" must be a number, not a string'
expect_bad "{$V, \"output\": [], \"reward\": true}" '"reward" must be a number, not a boolean'
expect_bad "{$V, \"output\": [], \"reward\": null}" '"reward" must be a number, not null'
expect_bad "{$V, \"output\": [], \"reward\": NaN}" 'invalid JSON'
# The same in stratified mode, where the script would only fail on rollouts it pairs.
expect_bad "{$V, \"output\": [], \"reward\": [1]}" '"reward" must be a number' --strategy stratified

# ---- --skip-invalid: bad lines counted, the first 5 named, the rest as before ----
python3 - rollouts.jsonl mixed.jsonl <<'PY'
import sys
bad = ['{"broken', '[]', '{"output": []}', '{"responses_create_params": {"input": []}, "output": [], "reward": "x"}',
       '{"responses_create_params": {"input": 3}, "output": []}', '{"responses_create_params": {"input": []}}', '"str"']
lines = open(sys.argv[1], encoding="utf-8").read().split("\n")[:-1]  # not splitlines: U+2028
with open(sys.argv[2], "w", encoding="utf-8") as f:
    for i, l in enumerate(lines):
        if i % 6 == 0 and bad:
            f.write(bad.pop(0) + "\n")
        f.write(l + "\n")
PY
run_pairs --input mixed.jsonl --output skipped.jsonl --skip-invalid
[ "$rc" -eq 0 ] || { cat err.txt >&2; fail "--skip-invalid: exit $rc"; }
grep -q '^Loaded 45 rollouts from mixed.jsonl$' out.txt || { cat out.txt >&2; fail "--skip-invalid: wrong count"; }
grep -q '^Skipped 7 invalid rollouts' out.txt || { cat out.txt >&2; fail "--skip-invalid: skipped count"; }
[ "$(grep -c 'warning: skipped mixed\.jsonl:[0-9]*: ' err.txt)" -eq 5 ] || { cat err.txt >&2; fail "first 5 not named"; }
grep -q 'mixed\.jsonl:1: invalid JSON' err.txt || fail "line 1 not named"
grep -q 'mixed\.jsonl:8: a rollout must be a JSON object' err.txt || { cat err.txt >&2; fail "line 8 not named"; }
grep -q '2 more' err.txt || fail "the rest not counted"
cmp -s skipped.jsonl "$DATA/expected_same_prompt_default.jsonl" || fail "--skip-invalid: pairs differ"
echo "ok: --skip-invalid"

# ---- --context full: prompt = input messages up to the last user message, grouped
# by that whole context (key order inside a message does not matter) ----
run_pairs --input rollouts.jsonl --output full.jsonl --context full
[ "$rc" -eq 0 ] || { cat err.txt >&2; fail "--context full: exit $rc"; }
python3 - rollouts.jsonl full.jsonl out.txt <<'PY'
import json, sys
rs = [json.loads(l) for l in open(sys.argv[1], encoding="utf-8")]
def ctx(inp):
    if isinstance(inp, str):
        return [{"role": "user", "content": inp}]
    last = max([i for i, m in enumerate(inp) if m.get("role") == "user"], default=-1)
    return inp[:last + 1]
def resp(out):
    for it in reversed(out):
        if it.get("type") == "message":
            c = it.get("content", [])
            if isinstance(c, list) and c:
                return c[0].get("text", "")
            if isinstance(c, str):
                return c
    return ""
groups = {}
for r in rs:
    groups.setdefault(json.dumps(ctx(r["responses_create_params"]["input"]), sort_keys=True), []).append(r)
want = []
for g in groups.values():
    if len(g) < 2:
        continue
    rw = [r.get("reward", 0.0) for r in g]
    best = g[rw.index(max(rw))]
    worst = g[len(rw) - 1 - rw[::-1].index(min(rw))]
    gap = best.get("reward", 0.0) - worst.get("reward", 0.0)
    if gap >= 0.2:
        want.append({"prompt": ctx(best["responses_create_params"]["input"]), "chosen": resp(best["output"]),
                     "rejected": resp(worst["output"]), "reward_gap": gap,
                     "chosen_reward": best.get("reward", 0.0), "rejected_reward": worst.get("reward", 0.0)})
got = [json.loads(l) for l in open(sys.argv[2], encoding="utf-8")]
assert got == want, f"\n got  {got}\n want {want}"
assert all(isinstance(p["prompt"], list) for p in got)
multi = [p for p in got if len(p["prompt"]) == 4]
assert multi and multi[0]["prompt"][0]["role"] == "system" and multi[0]["rejected"] == "A pun.", multi
assert f"Found {len(groups)} unique prompts" in open(sys.argv[3], encoding="utf-8").read()
print(f"ok: --context full ({len(got)} pairs, {len(groups)} contexts)")
PY

# ---- outputs that cannot be written: exit 1, message, nothing left behind ----
expect_unwritable() {  # OUTPUT PATTERN
  run_pairs --input rollouts.jsonl --output "$1"
  [ "$rc" -eq 1 ] || fail "--output $1: exit $rc, want 1"
  grep -qE -- "$2" err.txt || { cat err.txt >&2; fail "--output $1: stderr lacks '$2'"; }
  no_temp_files
  echo "ok: --output $1 -> $(head -1 err.txt)"
}
touch afile
expect_unwritable afile/pairs.jsonl "afile"
[ ! -e afile/pairs.jsonl ] && [ -f afile ] || fail "afile changed"
mkdir -p adir
expect_unwritable adir "adir exists and is not a regular file"
expect_unwritable /dev/null "/dev/null exists and is not a regular file"
if [ "$(id -u)" != 0 ]; then
  mkdir -p ro && chmod 555 ro
  expect_unwritable ro/pairs.jsonl "ro/pairs.jsonl.*Permission denied"
  chmod 755 ro
  [ -z "$(ls -A ro)" ] || fail "files left in the read-only directory"
fi
# /proc takes no new files, even from root.
expect_unwritable /proc/dpo_pairs_test.jsonl "cannot create a temporary file next to /proc/dpo_pairs_test.jsonl"

# ---- usage ----
expect_usage() {  # PATTERN ARGS...
  local pat=$1; shift
  run_pairs "$@"
  [ "$rc" -eq 2 ] || fail "dpo_pairs $*: exit $rc, want 2"
  grep -qE -- "$pat" err.txt || { cat err.txt >&2; fail "dpo_pairs $*: stderr lacks '$pat'"; }
}
expect_usage "--input PATH is required"
expect_usage "--output PATH is required" --input rollouts.jsonl
expect_usage "--strategy expects" --input rollouts.jsonl --output x.jsonl --strategy best
expect_usage "--min_gap expects a number" --input rollouts.jsonl --output x.jsonl --min_gap abc
expect_usage "--high_threshold expects a number" --input rollouts.jsonl --output x.jsonl --high_threshold nan
expect_usage "--context expects" --input rollouts.jsonl --output x.jsonl --context all
expect_usage "unknown option" --input rollouts.jsonl --output x.jsonl --gap 1
expect_usage "needs a value" --input rollouts.jsonl --output
[ ! -e x.jsonl ] || fail "a usage error wrote output"
run_pairs --help
[ "$rc" -eq 0 ] && grep -q -- "--min_gap G" out.txt || fail "--help"
run_pairs --input missing.jsonl --output x.jsonl
[ "$rc" -eq 1 ] && grep -q "missing.jsonl: cannot open" err.txt || fail "missing input: exit $rc"
echo "ok: usage"
echo "pairs: all checks passed"
