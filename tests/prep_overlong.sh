#!/usr/bin/env bash
# --max-length with --overlong drop (default) and truncate: which pairs go, how the
# kept ones are cut (prompt intact, completion cut, never to zero tokens), and the
# counts in the summary and in the file's attributes. Expected numbers come from the
# lengths of a run without a limit.
source "$(dirname "$0")/lib.sh"; setup "$@"
TOK=$SRC/tests/data/tokenizer/tiny_bytelevel
python3 - <<'PY'
import json
with open("in.jsonl", "w") as f:
    for i in range(40):
        prompt = "Question %d: " % i + "word " * (i % 7)
        f.write(json.dumps({"prompt": prompt, "chosen": "yes " * (i % 11 + 1),
                            "rejected": "no " * (i % 5 + 1)}) + "\n")
    f.write(json.dumps({"prompt": "long prompt " * 30, "chosen": "a", "rejected": "b"}) + "\n")
PY
"$BIN/dpo_prep" --tokenizer "$TOK" --output full.h5 --train in.jsonl --max-length 100000 > full.log
dump() { h5dump -y -w 0 -d "$2" "$1" | sed -n '/DATA {/,/}/p' | tr -cs '0-9' '\n' | sed '/^$/d'; }
dump full.h5 /train/chosen_offsets > co.txt
dump full.h5 /train/rejected_offsets > ro.txt
dump full.h5 /train/chosen_completion_start > cs.txt
dump full.h5 /train/rejected_completion_start > rs.txt
read -r L <<< "$(python3 - <<'PY'
co=[int(x) for x in open("co.txt")]; ro=[int(x) for x in open("ro.txt")]
lens=sorted(max(co[i+1]-co[i], ro[i+1]-ro[i]) for i in range(len(co)-1))
print(lens[len(lens)//2])  # a limit that half the pairs exceed
PY
)"
python3 - "$L" > expect.txt <<'PY'
import sys
L=int(sys.argv[1])
co=[int(x) for x in open("co.txt")]; ro=[int(x) for x in open("ro.txt")]
cs=[int(x) for x in open("cs.txt")]; rs=[int(x) for x in open("rs.txt")]
n=len(cs); drop=0; ptl=0; trunc=0
for i in range(n):
    lc, lr = co[i+1]-co[i], ro[i+1]-ro[i]
    if max(lc, lr) > L:
        drop += 1
        if max(cs[i], rs[i]) >= L: ptl += 1
        else: trunc += 1
print(n, drop, ptl, trunc)
PY
read -r N DROP PTL TRUNC < expect.txt
[ "$PTL" -ge 1 ] && [ "$TRUNC" -ge 5 ] || fail "test data does not exercise both cases (L=$L: $PTL, $TRUNC)"

"$BIN/dpo_prep" --tokenizer "$TOK" --output drop.h5 --train in.jsonl --max-length "$L" > drop.log
grep -q "$N records read, $((N - DROP)) pairs written, 0 invalid skipped, dropped: $DROP too long, 0 prompt too long; 0 truncated" drop.log ||
  { cat drop.log; fail "drop counts (expected $DROP dropped of $N)"; }
h5dump -a /train/dropped_too_long drop.h5 | grep -q "(0): $DROP" || fail "dropped_too_long attribute"

"$BIN/dpo_prep" --tokenizer "$TOK" --output trunc.h5 --train in.jsonl --max-length "$L" --overlong truncate > trunc.log
grep -q "$N records read, $((N - PTL)) pairs written, 0 invalid skipped, dropped: 0 too long, $PTL prompt too long; $TRUNC truncated" trunc.log ||
  { cat trunc.log; fail "truncate counts (expected $PTL prompt-too-long, $TRUNC truncated)"; }
h5dump -a /train/truncated trunc.h5 | grep -q "(0): $TRUNC" || fail "truncated attribute"
dump trunc.h5 /train/chosen_offsets > tco.txt
dump trunc.h5 /train/chosen_completion_start > tcs.txt
python3 - "$L" <<'PY' || fail "truncated pairs are wrong"
import sys
L=int(sys.argv[1])
co=[int(x) for x in open("co.txt")]; cs=[int(x) for x in open("cs.txt")]
ro=[int(x) for x in open("ro.txt")]
tco=[int(x) for x in open("tco.txt")]; tcs=[int(x) for x in open("tcs.txt")]
kept=[i for i in range(len(cs)) if max(cs[i], int(open("rs.txt").read().split()[i])) < L]
assert len(kept) == len(tcs), (len(kept), len(tcs))
for j, i in enumerate(kept):
    n = tco[j+1]-tco[j]
    assert tcs[j] == cs[i], "prompt changed"
    assert cs[i] < n <= L, "length"
    assert n == min(co[i+1]-co[i], L), "cut length"
print("truncation ok")
PY
echo "ok: L=$L, $N pairs: drop $DROP; truncate $TRUNC, prompt too long $PTL"
