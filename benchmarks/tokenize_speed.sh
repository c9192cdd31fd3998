#!/usr/bin/env bash
# Tokeniser throughput, one core: our encoder (dpo_tokenize_bench) against the Python
# tokenizers package, on a deterministic ~30 MB mixed-language corpus, for every
# tokenizer given (default: the real ones in ../shared/testdata/tokenizers, else the
# tiny test fixtures). Both sides encode every text once per repeat (best repeat
# counted); tokenizers uses encode_batch(texts, add_special_tokens=False) with
# RAYON_NUM_THREADS=1. Also checks that both give the same ids (SHA-256 of all ids).
#
#   benchmarks/tokenize_speed.sh [-b BUILD_DIR] [-p PYTHON] [-m MB] [TOKENIZER_DIR ...]
#
# Needs a build (dpo_tokenize_bench) and a Python with `tokenizers` (default
# /work/venv/bin/python, else python3). Prints a Markdown table.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(dirname "$HERE")
BUILD=$ROOT/build
PY=/work/venv/bin/python
[ -x "$PY" ] || PY=python3
MB=30
REPEAT=2
while getopts "b:p:m:r:" opt; do
  case $opt in
    b) BUILD=$OPTARG ;;
    p) PY=$OPTARG ;;
    m) MB=$OPTARG ;;
    r) REPEAT=$OPTARG ;;
    *) sed -n '2,13p' "$0"; exit 2 ;;
  esac
done
shift $((OPTIND - 1))
BENCH=$BUILD/bin/dpo_tokenize_bench
[ -x "$BENCH" ] || { echo "no $BENCH: build first (cmake --build $BUILD)" >&2; exit 1; }

if [ $# -eq 0 ]; then
  shared=${DPO_TESTDATA:-$ROOT/../shared/testdata}/tokenizers
  for n in qwen3 llama3 llama2; do [ -f "$shared/$n/tokenizer.json" ] && set -- "$@" "$shared/$n"; done
  if [ $# -eq 0 ]; then
    set -- "$ROOT/tests/data/tokenizer/tiny_bytelevel" "$ROOT/tests/data/tokenizer/tiny_sp"
  fi
fi

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
"$PY" "$HERE/tokenize_ref.py" corpus "$WORK/corpus.jsonl" "$MB" >&2

echo "| tokenizer | dpo_hpc MB/s | tokenizers MB/s | speed-up | same ids |"
echo "|---|---:|---:|---:|---|"
for dir in "$@"; do
  ours=$("$BENCH" --tokenizer "$dir" --corpus "$WORK/corpus.jsonl" --repeat "$REPEAT")
  ref=$(RAYON_NUM_THREADS=1 TOKENIZERS_PARALLELISM=false \
        "$PY" "$HERE/tokenize_ref.py" bench "$dir" "$WORK/corpus.jsonl" "$REPEAT")
  echo "$ours" >&2
  echo "$ref" >&2
  o=$(sed -E 's/.* ([0-9.]+) MB\/s.*/\1/' <<< "$ours")
  r=$(sed -E 's/.* ([0-9.]+) MB\/s.*/\1/' <<< "$ref")
  ho=$(sed -E 's/.*ids sha256 ([0-9a-f]+).*/\1/' <<< "$ours")
  hr=$(sed -E 's/.*ids sha256 ([0-9a-f]+).*/\1/' <<< "$ref")
  same=$([ "$ho" = "$hr" ] && echo yes || echo NO)
  echo "| $(basename "$dir") | $o | $r | $(awk -v a="$o" -v b="$r" 'BEGIN{printf "%.1fx", a/b}') | $same |"
done
