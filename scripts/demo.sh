#!/usr/bin/env bash
# The demo: installs the packages, builds, generates an arithmetic preference
# dataset with held-out problems, and trains a small model from scratch with DPO
# on the CPU. Output: demo_out/ (metrics.jsonl, config.cfg, checkpoints/).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/build.sh
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
rm -rf demo_out && mkdir -p demo_out
build/bin/dpo_demo_data --out demo_out/arith.h5 --train-pairs 20000 --val-pairs 500 --seed 1234
mpirun --oversubscribe --bind-to none -np "${NP:-1}" build/bin/dpo_hpc input/demo.cfg "$@"
python3 scripts/summarize_metrics.py demo_out/metrics.jsonl
