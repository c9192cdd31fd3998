#!/usr/bin/env bash
# Hugging Face folders <-> checkpoints (dpo_convert, doc/hf-interop.md), end to end:
# fp32 round trip HF -> HDF5 -> HF bit for bit, bf16 round trip, sharded output,
# dpo_hpc started from an HF folder (same first step as from the equivalent .h5, at
# 1 rank and TP 2), and config.json fields we do not implement refused by name.
source "$(dirname "$0")/lib.sh"; setup "$@"
CONV=$BIN/dpo_convert
make_data data.h5 32 8
# A trained tiny model (non-trivial weights), checkpointed.
run 1 "$TINY" dpo.max_num_steps=2 checkpointing.enabled=true checkpointing.save_period=2 \
    checkpointing.checkpoint_dir=ck logger.log_dir=base
A=ck/step_00000002.h5
[ -f "$A" ] || fail "no checkpoint"

# fp32: h5 -> HF -> h5 -> HF reproduces every byte of the weights and config.
"$CONV" h52hf "$A" hf1 > /dev/null
[ -f hf1/config.json ] && [ -f hf1/model.safetensors ] && [ -f hf1/generation_config.json ] ||
  fail "h52hf output incomplete: $(ls hf1)"
grep -q '"LlamaForCausalLM"' hf1/config.json || fail "architecture not Llama: $(cat hf1/config.json)"
"$CONV" hf2h5 hf1 b.h5 > /dev/null
"$CONV" h52hf b.h5 hf2 > /dev/null
cmp hf1/model.safetensors hf2/model.safetensors || fail "fp32 round trip changed the weights"
cmp hf1/config.json hf2/config.json || fail "fp32 round trip changed config.json"
# The HDF5 written from HF holds the same tensors as the trained checkpoint.
if python3 -c "import h5py, numpy" 2>/dev/null; then
python3 - "$A" b.h5 <<'PY'
import sys
import h5py, numpy as np
a, b = h5py.File(sys.argv[1]), h5py.File(sys.argv[2])
for k in a["model"]:
    assert np.array_equal(a["model"][k][...], b["model"][k][...]), k
print("hf2h5: every tensor equal to the trained checkpoint's")
PY
fi
echo "fp32 round trip: bit for bit"

# Sharded output: several files plus the index, read back identically.
"$CONV" h52hf "$A" hfs --max-shard-size 20000 > /dev/null
[ -f hfs/model.safetensors.index.json ] || fail "no index for sharded output"
n=$(ls hfs/model-*-of-*.safetensors | wc -l)
[ "$n" -ge 3 ] || fail "expected several shards, got $n"
"$CONV" hf2h5 hfs s.h5 > /dev/null
"$CONV" h52hf s.h5 hfs2 > /dev/null
cmp hf1/model.safetensors hfs2/model.safetensors || fail "sharded folder read back differently"
echo "sharded ($n files): read back identically"

# bf16: written rounded, read back exactly, written again identically.
"$CONV" h52hf "$A" hfb --dtype bf16 > /dev/null
grep -q '"torch_dtype": "bfloat16"' hfb/config.json || fail "bf16 config.json"
"$CONV" hf2h5 hfb bb.h5 > /dev/null
"$CONV" h52hf bb.h5 hfb2 --dtype bf16 > /dev/null
cmp hfb/model.safetensors hfb2/model.safetensors || fail "bf16 round trip changed the weights"
size32=$(stat -c %s hf1/model.safetensors); size16=$(stat -c %s hfb/model.safetensors)
[ "$size16" -lt $((size32 * 6 / 10)) ] || fail "bf16 file not about half the size ($size16 vs $size32)"
echo "bf16 round trip: bit for bit"

# dpo_hpc from an HF folder = from the equivalent checkpoint, at 1 rank and TP 2. The
# reference (the bf16-rounded model) differs from the policy, so the loss is not ln 2.
for np in 1 2; do
  tp="policy.tensor_parallel_size=$np"
  run $np "$TINY" dpo.max_num_steps=1 policy.model_name=$A dpo.reference_model=bb.h5 $tp \
      logger.log_dir=h5_$np
  run $np "$TINY" dpo.max_num_steps=1 policy.model_name=hf1 dpo.reference_model=hfb $tp \
      logger.log_dir=hf_$np
  grep -q "reference: hf:hfb" run.log || { cat run.log; fail "HF reference not reported"; }
  python3 - h5_$np/metrics.jsonl hf_$np/metrics.jsonl <<'PY'
import json, sys
a = [json.loads(l) for l in open(sys.argv[1])]
b = [json.loads(l) for l in open(sys.argv[2])]
pick = lambda rs, s: [r for r in rs if r["split"] == s][0]
for split in ("train", "val:heldout"):
    ra, rb = pick(a, split), pick(b, split)
    for k in ("loss", "logps_chosen", "logps_rejected", "rewards_chosen", "grad_norm"):
        if k in ra:
            assert ra[k] == rb[k], (split, k, ra[k], rb[k])
assert abs(pick(b, "train")["loss"] - 0.6931471805599453) > 1e-6, "reference equals policy?"
print("same first step from the HF folder as from the checkpoint:", pick(b, "train")["loss"])
PY
done
# A bf16 folder works too (weights rounded, so only a sanity check).
run 1 "$TINY" dpo.max_num_steps=1 policy.model_name=hfb logger.log_dir=hfb_run

# Unsupported config.json fields: refused by name (converter and trainer).
refuse() {  # refuse NAME PYTHON-EDIT EXPECTED-TEXT
  local name=$1 edit=$2 want=$3
  rm -rf "bad_$name"; mkdir "bad_$name"
  cp hf1/model.safetensors "bad_$name/"
  python3 - hf1/config.json "bad_$name/config.json" <<PY
import json, sys
c = json.load(open(sys.argv[1]))
$edit
json.dump(c, open(sys.argv[2], "w"))
PY
  if "$CONV" hf2h5 "bad_$name" "bad_$name.h5" > conv.log 2>&1; then
    fail "$name: accepted"; fi
  grep -q -- "$want" conv.log || { cat conv.log; fail "$name: message does not name $want"; }
  [ ! -e "bad_$name.h5" ] || fail "$name: output left behind"
}
refuse rope 'c["rope_scaling"] = {"rope_type": "llama3", "factor": 8.0}' "field rope_scaling"
refuse yarn 'c["rope_scaling"] = {"type": "yarn", "factor": 4.0}' "field rope_scaling"
refuse ropeparams 'c["rope_parameters"] = {"rope_type": "linear", "rope_theta": 1e4, "factor": 2.0}' "field rope_parameters"
refuse window 'c["architectures"] = ["MistralForCausalLM"]; c["model_type"] = "mistral"; c["sliding_window"] = 16; c["max_position_embeddings"] = 4096' "field sliding_window"
refuse qwenwin 'c["architectures"] = ["Qwen3ForCausalLM"]; c["use_sliding_window"] = True; c["max_window_layers"] = 1' "field use_sliding_window"
refuse layertypes 'c["layer_types"] = ["full_attention", "sliding_attention"]' "field layer_types"
refuse moe 'c["num_local_experts"] = 8' "field num_local_experts"
refuse mlpbias 'c["mlp_bias"] = True' "field mlp_bias"
refuse attnbias 'c["attention_bias"] = True' "field attention_bias"
refuse act 'c["hidden_act"] = "gelu"' "field hidden_act"
refuse arch 'c["architectures"] = ["GPT2LMHeadModel"]' "field architectures"
refuse vocab 'del c["vocab_size"]' "field vocab_size"
refuse shape 'c["intermediate_size"] = 96' "mlp.gate_proj.weight"
refuse missing 'c["architectures"] = ["Qwen2ForCausalLM"]; c["model_type"] = "qwen2"; del c["head_dim"]' "self_attn.q_proj.bias"
refuse extra 'c["num_hidden_layers"] = 1' "model.layers.1."
# Accepted: a Mistral without a window in use, a window no smaller than the context.
for edit in 'c["sliding_window"] = None' 'c["sliding_window"] = 4096; c["max_position_embeddings"] = 4096'; do
  rm -rf okm; mkdir okm; cp hf1/model.safetensors okm/
  python3 -c "import json,sys; c=json.load(open('hf1/config.json')); c['architectures']=['MistralForCausalLM']; c['model_type']='mistral'; $edit; json.dump(c, open('okm/config.json','w'))"
  "$CONV" hf2h5 okm okm.h5 > /dev/null || fail "Mistral config refused ($edit)"
done
# The trainer refuses the same way, naming the field.
if "$MPIRUN" --oversubscribe --bind-to none -np 1 "$BIN/dpo_hpc" "$TINY" policy.model_name=bad_rope \
    > run.log 2>&1; then fail "dpo_hpc accepted rope_scaling"; fi
grep -q "field rope_scaling" run.log || { cat run.log; fail "dpo_hpc message does not name rope_scaling"; }
echo "hfconvert: all checks passed"
