#!/usr/bin/env bash
# dpo_prep throughput: N synthetic NeMo RL records (system + user prompt, two
# assistant completions; text drawn from a 50 000-word Zipf vocabulary with numbers,
# punctuation and some non-ASCII words, so the tokenizer's word cache does not make
# it look faster than real data), tokenised with a real tokenizer and the chatml
# template. Prints records/s, input MB/s and the time per million pairs.
#
#   benchmarks/prep_speed.sh [N=200000] [TOKENIZER_DIR=../shared/testdata/tokenizers/qwen3]
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-200000}
TOK=${2:-../shared/testdata/tokenizers/qwen3}
[ -f "$TOK/tokenizer.json" ] || { echo "no tokenizer.json in $TOK" >&2; exit 1; }
[ -x build/bin/dpo_prep ] || scripts/build.sh
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT
python3 - "$N" "$W/in.jsonl" <<'PY'
import json, random, sys
n, path = int(sys.argv[1]), sys.argv[2]
rnd = random.Random(7)
letters = "abcdefghijklmnopqrstuvwxyz"
extra = ["naïve", "café", "Straße", "東京", "数据", "прощай", "🙂", "x²", "—"]
vocab = ["".join(rnd.choice(letters) for _ in range(rnd.randint(1, 11))) for _ in range(50000)]
weights = [1.0 / (i + 1) for i in range(len(vocab))]
def text(k):
    ws = rnd.choices(vocab, weights, k=k)
    for i in range(0, k, 13):
        ws[i] = ws[i].capitalize()
    for i in range(7, k, 29):
        ws[i] = str(rnd.randint(0, 99999))
    for i in range(11, k, 37):
        ws[i] = rnd.choice(extra)
    return " ".join(ws).replace(" Q", ". Q") + "."
with open(path, "w") as f:
    for _ in range(n):
        msg = lambda r, c: {"role": r, "content": c}
        f.write(json.dumps({"context": [msg("system", "You are a helpful assistant."),
                                        msg("user", text(rnd.randint(20, 120)))],
                            "completions": [{"rank": 0, "completion": [msg("assistant", text(rnd.randint(30, 250)))]},
                                            {"rank": 1, "completion": [msg("assistant", text(rnd.randint(30, 250)))]}]},
                           ensure_ascii=False) + "\n")
PY
bytes=$(stat -c %s "$W/in.jsonl")
t0=$(date +%s.%N)
build/bin/dpo_prep --tokenizer "$TOK" --chat-template chatml --output "$W/out.h5" \
    --train "$W/in.jsonl" --max-length 4096 --progress 0 > "$W/log"
t1=$(date +%s.%N)
cat "$W/log"
python3 - "$N" "$bytes" "$t0" "$t1" "$(stat -c %s "$W/out.h5")" <<'PY'
import sys
n, b, t0, t1, out = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4]), int(sys.argv[5])
dt = t1 - t0
print(f"dpo_prep: {n} pairs, {b/1e6:.1f} MB of JSONL in {dt:.1f} s: {n/dt:.0f} pairs/s, "
      f"{b/1e6/dt:.1f} MB/s (one core); {1e6*dt/n/60:.1f} min per million pairs; output {out/1e6:.1f} MB")
PY
