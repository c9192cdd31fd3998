#!/usr/bin/env bash
# The demo: installs the packages, builds, generates arithmetic preference records
# (JSONL, with held-out problems) and a byte-level Hugging Face tokenizer, turns them
# into the training dataset with dpo_prep, and trains a small model from scratch
# with DPO on the CPU. Output: demo_out/ (data/, arith.h5, metrics.jsonl,
# config.cfg, checkpoints/).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/build.sh
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
rm -rf demo_out && mkdir -p demo_out
build/bin/dpo_demo_data --jsonl demo_out/data --train-pairs 20000 --val-pairs 500 --seed 1234
build/bin/dpo_prep --tokenizer demo_out/data/tokenizer --output demo_out/arith.h5 \
    --train demo_out/data/train.jsonl --val heldout=demo_out/data/heldout.jsonl \
    --val heldout_carry=demo_out/data/heldout_carry.jsonl --max-length 64
mpirun --oversubscribe --bind-to none -np "${NP:-1}" build/bin/dpo_hpc input/demo.cfg "$@"
python3 scripts/summarize_metrics.py demo_out/metrics.jsonl
