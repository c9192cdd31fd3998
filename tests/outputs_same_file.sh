#!/usr/bin/env bash
# An output that is one of the tool's inputs is refused before anything is read:
# the same path, another spelling (./x, a/../x), a hard link and a symlink, for
# dpo_prep, dpo_pairs, dpo_hpc --generate, dpo_convert and dpo_hpc's own outputs
# (config.cfg over the configuration file, checkpoints over a step_*.h5 model).
# Each refusal: exit status 1 (no signal), a message naming both paths, the input
# byte for byte unchanged, and no output (nor temporary file) created.
source "$(dirname "$0")/lib.sh"; setup "$@"
HF=$SRC/tests/data/hf/llama_gqa
MPI=("$MPIRUN" --oversubscribe --bind-to none -np 1)
cases=0

"$BIN/dpo_demo_data" --jsonl d --train-pairs 16 --val-pairs 4 --seed 5 > /dev/null
make_data data.h5 16 8
run 1 "$TINY" dpo.max_num_steps=2 checkpointing.enabled=true checkpointing.save_period=2 \
    checkpointing.checkpoint_dir=ck logger.log_dir=base
[ -f ck/step_00000002.h5 ] || fail "no checkpoint to work with"
cp "$SRC/tests/data/pairs/rollouts.jsonl" r.jsonl
printf '{"prompt_ids": [1, 17, 200]}\n{"prompt_ids": [5, 6]}\n' > prompts.jsonl
mkdir sub

# refuse INPUT 'MESSAGE' NOT_CREATED... -- COMMAND...: COMMAND must exit 1 naming
# MESSAGE, leave INPUT unchanged and create none of NOT_CREATED.
refuse() {
  local input=$1 msg=$2; shift 2
  local absent=()
  while [ "$1" != -- ]; do absent+=("$1"); shift; done; shift
  local before; before=$(sha256sum < "$input")
  local rc=0; "$@" > out.log 2>&1 || rc=$?
  [ $rc = 1 ] || { cat out.log; fail "$*: exit status $rc, expected 1"; }
  grep -qF -- "$msg" out.log || { cat out.log; fail "$*: no message \"$msg\""; }
  grep -q "refusing" out.log || { cat out.log; fail "$*: does not say it refuses"; }
  [ "$(sha256sum < "$input")" = "$before" ] || fail "$*: $input changed"
  for p in "${absent[@]}"; do [ ! -e "$p" ] || fail "$*: $p was created"; done
  cases=$((cases + 1))
}

# spellings FILE: the same file under four names (the path, ./path or sub/../path,
# a hard link, a symlink); one per line.
spellings() {
  local f=$1 b; b=$(basename "$f")
  rm -f "hard_$b" "sym_$b"
  ln "$f" "hard_$b"; ln -s "$f" "sym_$b"
  case "$f" in */*) printf '%s\n' "$f" "sub/../$f" ;; *) printf '%s\n' "$f" "./$f" ;; esac
  printf '%s\n' "hard_$b" "sym_$b"
}

# ---- dpo_prep: --output over --train, --val, the tokenizer's files ----
PREP=("$BIN/dpo_prep" --tokenizer d/tokenizer --train d/train.jsonl --val d/heldout.jsonl --force)
for out in $(spellings d/train.jsonl); do
  refuse d/train.jsonl "is the same file as --train d/train.jsonl" "$out.tmp" -- "${PREP[@]}" --output "$out"
done
for out in $(spellings d/heldout.jsonl); do
  refuse d/heldout.jsonl "is the same file as --val d/heldout.jsonl" "$out.tmp" -- "${PREP[@]}" --output "$out"
done
refuse d/tokenizer/tokenizer.json "is the same file as --tokenizer d/tokenizer/tokenizer.json" \
    d/tokenizer/tokenizer.json.tmp -- "${PREP[@]}" --output d/tokenizer/tokenizer.json
ln -s d/tokenizer/tokenizer_config.json sym_tc.json  # a symlink into the folder
refuse d/tokenizer/tokenizer_config.json "is the same file as --tokenizer d/tokenizer/tokenizer_config.json" \
    sym_tc.json.tmp -- "${PREP[@]}" --output sym_tc.json
# ... and PATH.tmp, which the dataset writer truncates, linked to an input.
ln -s d/train.jsonl new.h5.tmp
refuse d/train.jsonl "--output's temporary file new.h5.tmp is the same file as --train" new.h5 \
    -- "${PREP[@]}" --output new.h5
rm new.h5.tmp

# ---- dpo_pairs: --output over --input (also through standard input) ----
for out in $(spellings r.jsonl); do
  refuse r.jsonl "is the same file as --input r.jsonl" -- "$BIN/dpo_pairs" --input r.jsonl --output "$out"
done
refuse r.jsonl "is the same file as --input - (standard input)" \
    -- bash -c "'$BIN/dpo_pairs' --input - --output r.jsonl < r.jsonl"

# ---- dpo_hpc --generate: --output over the prompts, the model, the tokenizer ----
GEN=(--generate prompts.jsonl --tokenizer d/tokenizer "$TINY" policy.generation.max_new_tokens=4)
for out in $(spellings prompts.jsonl); do
  refuse prompts.jsonl "--output $out is the same file as --generate prompts.jsonl" "$out.tmp" \
      -- "${MPI[@]}" "$BIN/dpo_hpc" --output "$out" "${GEN[@]}"
done
refuse ck/step_00000002.h5 "is the same file as policy.model_name ck/step_00000002.h5" \
    -- "${MPI[@]}" "$BIN/dpo_hpc" --output sub/../ck/step_00000002.h5 "${GEN[@]}" \
    policy.model_name=ck/step_00000002.h5
cp -r "$HF" hf
refuse hf/model.safetensors "is the same file as policy.model_name hf/model.safetensors" \
    -- "${MPI[@]}" "$BIN/dpo_hpc" --output hf/model.safetensors "${GEN[@]}" policy.model_name=hf
ln d/tokenizer/tokenizer.json hard_tok.json
refuse d/tokenizer/tokenizer.json "is the same file as --tokenizer d/tokenizer/tokenizer.json" \
    -- "${MPI[@]}" "$BIN/dpo_hpc" --output hard_tok.json "${GEN[@]}"

# ---- dpo_convert: the output, and the folders it empties, over the input model ----
for out in $(spellings hf/config.json); do
  refuse hf/config.json "is the same file as HF_DIR hf/config.json" "$out.tmpdir" \
      -- "$BIN/dpo_convert" hf2h5 hf "$out"
done
ln -s hf m.tmpdir   # hf2h5 m would empty m.tmpdir: the model folder
refuse hf/model.safetensors "the output's folder m.tmpdir is the same file as HF_DIR hf" m \
    -- "$BIN/dpo_convert" hf2h5 hf m
rm m.tmpdir
ln -s hf m.tokenizer
refuse hf/model.safetensors "the output's folder m.tokenizer is the same file as HF_DIR hf" m \
    -- "$BIN/dpo_convert" hf2h5 hf m
rm m.tokenizer
ln -s ck x.tmp      # h52hf x would empty x.tmp: the checkpoint's folder
refuse ck/step_00000002.h5 "the output's folder x.tmp holds CKPT ck/step_00000002.h5" x \
    -- "$BIN/dpo_convert" h52hf ck/step_00000002.h5 x
rm x.tmp
for out in $(spellings ck/step_00000002.h5); do
  refuse ck/step_00000002.h5 "is the same file as CKPT ck/step_00000002.h5" \
      -- "$BIN/dpo_convert" h52hf ck/step_00000002.h5 "$out"
done

# ---- dpo_hpc training: config.cfg over the configuration file; checkpoints over the model ----
mkdir run && cp "$TINY" run/config.cfg
refuse run/config.cfg "logger.log_dir's run/config.cfg is the same file as the configuration file run/config.cfg" \
    run/metrics.jsonl run/config.cfg.tmp -- "${MPI[@]}" "$BIN/dpo_hpc" run/config.cfg logger.log_dir=run
cp "$TINY" my.cfg && mkdir run2 && ln my.cfg run2/config.cfg
refuse my.cfg "is the same file as the configuration file my.cfg" run2/metrics.jsonl \
    -- "${MPI[@]}" "$BIN/dpo_hpc" my.cfg logger.log_dir=./run2
refuse ck/step_00000002.h5 "checkpointing.checkpoint_dir ./ck holds policy.model_name ck/step_00000002.h5" \
    fresh -- "${MPI[@]}" "$BIN/dpo_hpc" "$TINY" policy.model_name=ck/step_00000002.h5 \
    checkpointing.enabled=true checkpointing.checkpoint_dir=./ck logger.log_dir=fresh
refuse ck/step_00000002.h5 "checkpointing.checkpoint_dir ck holds dpo.reference_model" fresh \
    -- "${MPI[@]}" "$BIN/dpo_hpc" "$TINY" dpo.reference_model=sym_step_00000002.h5 \
    checkpointing.enabled=true checkpointing.checkpoint_dir=ck logger.log_dir=fresh
# --evaluate's eval.jsonl
ln -s ../data.h5 run/eval.jsonl
refuse data.h5 "logger.log_dir's run/eval.jsonl is the same file as data.dataset_path data.h5" \
    -- "${MPI[@]}" "$BIN/dpo_hpc" --evaluate ck/step_00000002.h5 "$TINY" logger.log_dir=run

# And what is not an input still works: a new output beside the inputs.
"${PREP[@]}" --output d/ok.h5 > /dev/null || fail "dpo_prep refused a new output"
"$BIN/dpo_pairs" --input r.jsonl --output ok.jsonl > /dev/null 2>&1 || fail "dpo_pairs refused a new output"
echo "outputs_same_file: $cases refusals checked"
