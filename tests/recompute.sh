#!/usr/bin/env bash
# policy.activation_checkpointing = true (recompute each layer in the backward)
# trains bit for bit like the run that keeps every activation: same losses and
# gradient norms, at 1 rank and at TP 2 x DP 2, with QK-norm, QKV bias and GQA.
source "$(dirname "$0")/lib.sh"; setup "$@"
make_data data.h5 32 8
model=(policy.model.num_attention_heads=8 policy.model.num_key_value_heads=2
       policy.model.hidden_size=64 policy.model.qk_norm=true policy.model.attention_bias=true
       policy.model.num_hidden_layers=3 dpo.max_num_steps=4 policy.train_micro_batch_size=2)
for layout in "1" "4 policy.tensor_parallel_size=2"; do
  read -r np tp <<< "$layout"
  run "$np" "$TINY" "${model[@]}" $tp logger.log_dir=keep_$np
  run "$np" "$TINY" "${model[@]}" $tp policy.activation_checkpointing=true logger.log_dir=re_$np
  grep -q "activation_checkpointing = true" re_$np/config.cfg || fail "key not in the effective config"
  for f in loss grad_norm; do
    a=$(json_field keep_$np/metrics.jsonl train $f); b=$(json_field re_$np/metrics.jsonl train $f)
    [ -n "$a" ] && [ "$a" = "$b" ] || fail "np $np: $f differs with recomputation:\n$a\nvs\n$b"
  done
  echo "np $np: 4 steps identical with and without recomputation: $(json_field re_$np/metrics.jsonl train loss | tr '\n' ' ')"
done
echo "recompute: all checks passed"
