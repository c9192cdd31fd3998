#!/usr/bin/env bash
# dpo_hpc validates every input (model, reference, dataset, the checkpoint to resume)
# before it makes any output: a run that fails on any of them exits 1 (no signal)
# naming the file, creates no logger.log_dir, config.cfg or checkpoint folder, and
# leaves an existing log_dir byte for byte as it was. The same for --evaluate,
# --generate and --precompute-reference. checkpointing.metric_name must name a
# validation set of the dataset. At 1 and 2 ranks.
source "$(dirname "$0")/lib.sh"; setup "$@"
HF=$SRC/tests/data/hf/llama_gqa
cases=0
make_data data.h5 16 8
common=("$TINY" dpo.max_num_steps=2 checkpointing.enabled=true checkpointing.save_period=2)
run 1 "${common[@]}" checkpointing.checkpoint_dir=ck logger.log_dir=base
[ -f ck/step_00000002.h5 ] && [ -f base/metrics.jsonl ] || fail "no checkpoint or metrics to work with"

snapshot() { (cd "$1" && find . -type f | sort | xargs sha256sum); }
base_before=$(snapshot base)
data_before=$(sha256sum < data.h5)

# fails NP 'MESSAGE' ARGS...: dpo_hpc ARGS at NP ranks exits 1 naming MESSAGE;
# none of the new outputs (new_log, new_ck, gen.jsonl) exists afterwards, base/
# and data.h5 are unchanged.
fails() {
  local np=$1 msg=$2; shift 2
  local rc=0
  "$MPIRUN" --oversubscribe --bind-to none -np "$np" "$BIN/dpo_hpc" "$@" > fail.log 2>&1 || rc=$?
  [ $rc = 1 ] || { cat fail.log; fail "$*: exit status $rc, expected 1"; }
  grep -qF -- "$msg" fail.log || { cat fail.log; fail "$*: no message \"$msg\""; }
  for p in new_log new_ck gen.jsonl gen.jsonl.tmp data.h5.tmp; do
    [ ! -e "$p" ] || { ls -R "$p"; fail "$*: left $p behind"; }
  done
  [ "$(snapshot base)" = "$base_before" ] || fail "$*: the existing log_dir base/ changed"
  [ "$(sha256sum < data.h5)" = "$data_before" ] || fail "$*: data.h5 changed"
  cases=$((cases + 1))
}
train_new=("${common[@]}" checkpointing.checkpoint_dir=new_ck logger.log_dir=new_log)

# The checkpoint to resume: garbage, truncated, or not a checkpoint at all.
mkdir garbage trunc other
head -c 4096 /dev/urandom > garbage/step_00000004.h5
head -c 20000 ck/step_00000002.h5 > trunc/step_00000002.h5
cp data.h5 other/step_00000003.h5
for np in 1 2; do
  for d in garbage trunc other; do
    fails $np "checkpointing.resume: $d/step_0000000" "${common[@]}" checkpointing.resume=true \
        checkpointing.checkpoint_dir=$d logger.log_dir=new_log
    # An existing log_dir (a previous run's) is left exactly as it was.
    fails $np "checkpointing.resume: $d/step_0000000" "${common[@]}" checkpointing.resume=true \
        checkpointing.checkpoint_dir=$d logger.log_dir=base
  done
done
[ -z "$(ls garbage/*.tmp trunc/*.tmp other/*.tmp 2> /dev/null)" ] || fail "temporary files beside the checkpoints"

# The model: missing, a corrupt safetensors header, a missing shard, a vocabulary
# smaller than the dataset's; the same as the reference.
cp -r "$HF" badheader
printf '{"__metadata__":{"format":' | dd of=badheader/model.safetensors bs=1 seek=8 conv=notrunc 2> /dev/null
printf 'XXXX' | dd of=badheader/model.safetensors bs=1 seek=34 conv=notrunc 2> /dev/null
"$BIN/dpo_convert" h52hf ck/step_00000002.h5 sharded --max-shard-size 20000 > /dev/null
shard=$(ls sharded/model-*-of-*.safetensors | tail -n 1)
[ -f sharded/model.safetensors.index.json ] && [ -n "$shard" ] || fail "no sharded model to work with"
rm "$shard"
for np in 1 2; do
  fails $np "missing.h5" "${train_new[@]}" policy.model_name=missing.h5
  fails $np "badheader/model.safetensors" "${train_new[@]}" policy.model_name=badheader
  fails $np "$(basename "$shard")" "${train_new[@]}" policy.model_name=sharded
  fails $np "the dataset's vocab_size (258) exceeds the model's (100)" "${train_new[@]}" \
      policy.model.vocab_size=100
  fails $np "badheader/model.safetensors" "${train_new[@]}" dpo.reference_model=badheader
  fails $np "trunc/step_00000002.h5" "${train_new[@]}" policy.model_name=trunc/step_00000002.h5
done

# checkpointing.metric_name naming a set the dataset does not have, or no metric.
fails 1 'checkpointing.metric_name = "val:nosuch/loss": data.h5 has no validation set "nosuch" (its validation sets: heldout, heldout_carry)' \
    "${train_new[@]}" checkpointing.metric_name=val:nosuch/loss
fails 2 'has no validation set "heldou"' "${train_new[@]}" checkpointing.metric_name=val:heldou/loss \
    checkpointing.keep_top_k=2
fails 1 '"val:heldout/los": "los" is not a metric' "${train_new[@]}" checkpointing.metric_name=val:heldout/los
make_data noval.h5 16 0
fails 1 'noval.h5 has no validation set "heldout" (its validation sets: none)' "${train_new[@]}" \
    data.dataset_path=noval.h5 checkpointing.metric_name=val:heldout/accuracy
# A metric_name the dataset has still trains (and ranks its checkpoints).
run 1 "${train_new[@]}" checkpointing.metric_name=val:heldout_carry/accuracy checkpointing.keep_top_k=1
[ -f new_log/metrics.jsonl ] && [ -f new_ck/step_00000002.h5 ] || fail "a valid metric_name did not train"
rm -rf new_log new_ck

# The other modes.
printf '{"prompt_ids": [1, 2, 3]}\n' > prompts.jsonl
for np in 1 2; do
  fails $np "garbage/step_00000004.h5" --evaluate garbage/step_00000004.h5 "$TINY" \
      logger.log_dir=new_log
  fails $np "badheader/model.safetensors" --evaluate badheader "$TINY" logger.log_dir=new_log
  fails $np "badheader/model.safetensors" --precompute-reference "$TINY" policy.model_name=badheader
  fails $np "trunc/step_00000002.h5" --precompute-reference "$TINY" dpo.reference_model=trunc/step_00000002.h5
done
fails 1 "missing.h5" --generate prompts.jsonl --output gen.jsonl "$TINY" policy.model_name=missing.h5
fails 1 "badheader/model.safetensors" --generate prompts.jsonl --output gen.jsonl "$TINY" \
    policy.model_name=badheader
echo "outputs_late_failure: $cases failing runs left nothing behind"
