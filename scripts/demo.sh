#!/usr/bin/env bash
# The demo: installs the packages, builds, generates arithmetic preference records
# (JSONL, with held-out problems) and a byte-level Hugging Face tokenizer, turns them
# into the training dataset with dpo_prep, and trains a small model from scratch
# with DPO on the CPU. Output: demo_out/ (data/, arith.h5, metrics.jsonl,
# config.cfg, checkpoints/, generated_{before,after}.jsonl).
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
# The model's own answers: greedy generation on the held-out problems with the
# random initialisation (the model before DPO, also its reference) and after.
python3 scripts/demo_accuracy.py demo_out/heldout_prompts.jsonl demo_out/data/heldout.jsonl
gen() {
  build/bin/dpo_hpc --generate demo_out/heldout_prompts.jsonl --output "$1" \
      --tokenizer demo_out/data/tokenizer input/demo.cfg policy.generation.max_new_tokens=8 "${@:2}" > /dev/null
}
gen demo_out/generated_before.jsonl
gen demo_out/generated_after.jsonl policy.model_name="$(ls demo_out/checkpoints/step_*.h5 | tail -n 1)"
python3 scripts/demo_accuracy.py --score demo_out/data/heldout.jsonl \
    before=demo_out/generated_before.jsonl after=demo_out/generated_after.jsonl
