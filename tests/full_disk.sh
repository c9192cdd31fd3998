#!/usr/bin/env bash
# A full disk, for real, for every writer: a small tmpfs is mounted and each
# writer runs out of space while it writes (checkpoints at 1 and 2 ranks, with and
# without the space reservation, dpo_prep --output, --precompute-reference,
# dpo_convert h52hf, dpo_pairs --output, dpo_hpc --generate --output). Each must
# exit non-zero in time and not by a signal, name the file and "No space left on
# device", leave no temporary file, and leave the previous checkpoint or output
# byte for byte as it was; a run resumes from that checkpoint once space is freed.
# Needs root (mount); skipped (77) where mounting is not permitted.
source "$(dirname "$0")/lib.sh"; setup "$@"
MNT=$WORK/mnt
mkdir -p "$MNT"
if ! mount -t tmpfs -o size=1m tmpfs "$MNT" 2> mount.err; then
  echo "full_disk: skipped: cannot mount a tmpfs here ($(tr -d '\n' < mount.err))"
  exit 77
fi
trap 'cd "$WORK"; umount "$MNT" 2> /dev/null || umount -l "$MNT"' EXIT
LIMIT=60   # seconds any failing writer may take: a hang is a failure
export OMPI_MCA_orte_base_help_aggregate=0

# fresh SIZE: an empty file system of SIZE (tmpfs sizes: 100k, 2m, ...).
fresh() { umount "$MNT"; mount -t tmpfs -o size="$1" tmpfs "$MNT"; }
# room SIZE: more space, keeping the files.
room() { mount -o remount,size="$1" "$MNT"; }
# leave_free KIB: a filler file takes all but KIB KiB of the file system.
leave_free() {
  local avail; avail=$(df -k --output=avail "$MNT" | tail -n 1)
  [ "$avail" -gt "$1" ] || fail "only $avail KiB free on $MNT, wanted more than $1"
  dd if=/dev/zero of="$MNT/filler" bs=1024 count=$((avail - $1)) status=none 2> /dev/null || true
}
sum() { sha256sum "$1" | cut -d' ' -f1; }

# expect_full NAME FILE CMD...: CMD fails because the disk is full: non-zero exit,
# no signal (rc < 128), no timeout, the message names FILE and the errno text, and
# no temporary file is left on the mount.
expect_full() {
  local name=$1 file=$2; shift 2
  local rc=0 t0=$SECONDS
  timeout -k 5 $LIMIT "$@" > "$name.log" 2>&1 || rc=$?
  [ $rc -ne 124 ] && [ $rc -ne 137 ] || { cat "$name.log"; fail "$name: no exit within $LIMIT s (hang)"; }
  [ $rc -ne 0 ] || { cat "$name.log"; fail "$name: exit status 0 on a full disk"; }
  [ $rc -lt 128 ] || { cat "$name.log"; fail "$name: killed by signal $((rc - 128))"; }
  ! grep -qE "Sanitizer|runtime error" "$name.log" || { cat "$name.log"; fail "$name: a sanitizer report"; }
  grep -F "$file" "$name.log" | grep -q "No space left on device" ||
    { cat "$name.log"; fail "$name: no message naming $file with 'No space left on device'"; }
  local left; left=$(find "$MNT" -name '*.tmp*')
  [ -z "$left" ] || { cat "$name.log"; fail "$name: temporary files left: $left"; }
  echo "$name: exit $rc after $((SECONDS - t0)) s: $(grep -F "$file" "$name.log" | grep -m1 'No space' | cut -c1-150)"
}

# ---- checkpoints ----
make_data data.h5 24 8
ck_common=("$TINY" dpo.val_period=0 checkpointing.enabled=true checkpointing.save_period=1
           checkpointing.resume=true checkpointing.checkpoint_dir="$MNT/ck")
# checkpoint_case NP NAME [ENV...]: step 1's checkpoint fits, step 2's does not
# (a checkpoint of the tiny model is 453 KB; reservation and headroom need ~700 KB).
checkpoint_case() {
  local np=$1 name=$2; shift 2
  fresh 800k
  run "$np" "${ck_common[@]}" dpo.max_num_steps=1 logger.log_dir="$name.a"
  local ck1=$MNT/ck/step_00000001.h5 before
  before=$(sum "$ck1")
  expect_full "$name" "step_00000002.h5" env "$@" "$MPIRUN" --oversubscribe --bind-to none -np "$np" \
      "$BIN/dpo_hpc" "${ck_common[@]}" dpo.max_num_steps=3 logger.log_dir="$name.b"
  [ "$(sum "$ck1")" = "$before" ] || fail "$name: the previous checkpoint changed"
  [ ! -e "$MNT/ck/step_00000002.h5" ] || fail "$name: a partial step 2 checkpoint is there"
  room 4m   # space freed: resume from step 1 and go on to step 3
  run "$np" "${ck_common[@]}" dpo.max_num_steps=3 logger.log_dir="$name.c"
  grep -q "resumed from $ck1 at step 1" run.log || { cat run.log; fail "$name: did not resume from step 1"; }
  [ -f "$MNT/ck/step_00000003.h5" ] || fail "$name: no step 3 checkpoint after the resume"
}
checkpoint_case 1 ckpt_np1
checkpoint_case 2 ckpt_np2
# Without the reservation (file systems without fallocate) the failure comes from
# an HDF5 write in the middle of the tensors, on one rank or both.
checkpoint_case 1 ckpt_np1_unreserved DPO_CKPT_NO_RESERVE=1
checkpoint_case 2 ckpt_np2_unreserved DPO_CKPT_NO_RESERVE=1

# ---- dpo_prep --output (356 KB of tokens): the previous output stays ----
"$BIN/dpo_demo_data" --jsonl jd --train-pairs 3000 --val-pairs 50 --seed 1 > /dev/null
for block in default 1024; do
  fresh 300k
  echo "previous output" > "$MNT/prep.h5"
  before=$(sum "$MNT/prep.h5")
  env_block=(); [ $block = default ] || env_block=(DPO_DATASET_WRITER_BLOCK=$block)
  expect_full "prep_block_$block" "prep.h5" env "${env_block[@]}" "$BIN/dpo_prep" --force \
      --tokenizer jd/tokenizer --output "$MNT/prep.h5" --train jd/train.jsonl --val heldout=jd/heldout.jsonl
  [ "$(sum "$MNT/prep.h5")" = "$before" ] || fail "prep_block_$block: the previous output changed"
done

# ---- --precompute-reference: the dataset is copied, updated and renamed ----
fresh 2m
"$BIN/dpo_prep" --tokenizer jd/tokenizer --output "$MNT/pre.h5" --train jd/train.jsonl \
    --val heldout=jd/heldout.jsonl > /dev/null
before=$(sum "$MNT/pre.h5")
leave_free 200   # the copy (356 KB) does not fit
for np in 1 2; do
  expect_full "precompute_np$np" "pre.h5" "$MPIRUN" --oversubscribe --bind-to none -np $np \
      "$BIN/dpo_hpc" --precompute-reference "$TINY" data.dataset_path="$MNT/pre.h5" logger.log_dir=pre$np
  [ "$(sum "$MNT/pre.h5")" = "$before" ] || fail "precompute_np$np: the dataset changed"
done

# ---- dpo_convert h52hf (safetensors of 140 KB in fp32) ----
fresh 2m
run 1 "$TINY" dpo.max_num_steps=1 checkpointing.enabled=true checkpointing.save_period=1 \
    checkpointing.checkpoint_dir=ckhf logger.log_dir=hf
mkdir "$MNT/keep"; echo "unrelated" > "$MNT/keep/file"
before=$(sum "$MNT/keep/file")
leave_free 64
expect_full h52hf "model.safetensors" "$BIN/dpo_convert" h52hf ckhf/step_00000001.h5 "$MNT/hf" --dtype fp32
[ ! -e "$MNT/hf" ] || fail "h52hf: a partial output folder is there"
[ "$(sum "$MNT/keep/file")" = "$before" ] || fail "h52hf: another file changed"

# ---- dpo_pairs --output ----
fresh 1m
# 100 prompts, two rollouts each with a 500-byte answer: 100 pairs, ~100 KB of output
long=$(printf 'x%.0s' $(seq 500))
for i in $(seq 100); do
  for r in 1 0; do
    echo "{\"responses_create_params\": {\"input\": [{\"role\": \"user\", \"content\": \"question $i\"}]}," \
         "\"output\": [{\"type\": \"message\", \"role\": \"assistant\", \"content\": [{\"type\": \"output_text\"," \
         "\"text\": \"$r $long\"}]}], \"reward\": $r.0}"
  done
done > many.jsonl
echo "previous pairs" > "$MNT/pairs.jsonl"
before=$(sum "$MNT/pairs.jsonl")
leave_free 8
expect_full pairs "pairs.jsonl" "$BIN/dpo_pairs" --input many.jsonl --output "$MNT/pairs.jsonl"
[ "$(sum "$MNT/pairs.jsonl")" = "$before" ] || fail "pairs: the previous output changed"

# ---- dpo_hpc --generate --output (rank 0 writes) ----
HF=$SRC/tests/data/hf/llama_gqa
for i in $(seq 200); do echo "{\"prompt_ids\": [1, $((i % 250 + 2)), 45, 88]}"; done > prompts.jsonl
for np in 1 2; do
  fresh 1m
  echo "previous generations" > "$MNT/gen.jsonl"
  before=$(sum "$MNT/gen.jsonl")
  leave_free 8
  expect_full "generate_np$np" "gen.jsonl" "$MPIRUN" --oversubscribe --bind-to none -np $np \
      "$BIN/dpo_hpc" --generate prompts.jsonl --output "$MNT/gen.jsonl" "$TINY" \
      policy.model_name="$HF" policy.generation.max_new_tokens=8 policy.tensor_parallel_size=$np
  [ "$(sum "$MNT/gen.jsonl")" = "$before" ] || fail "generate_np$np: the previous output changed"
done
echo "full_disk: all checks passed"
