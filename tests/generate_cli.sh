#!/usr/bin/env bash
# dpo_hpc --generate end to end on the tiny Hugging Face model tests/data/hf/llama_gqa:
# id prompts and text prompts (the demo's byte-level tokenizer), greedy output equal
# to transformers' (generate.json), the same at TP 2, EOS stop, seeded sampling
# reproducible, and bad input refused (file:line, non-zero exit, no output file).
source "$(dirname "$0")/lib.sh"; setup "$@"
HF=$SRC/tests/data/hf/llama_gqa
"$BIN/dpo_demo_data" --jsonl data --train-pairs 4 --val-pairs 2 --seed 5 > /dev/null
[ -f data/tokenizer/tokenizer.json ] || fail "no demo tokenizer"
GEN="$TINY policy.model_name=$HF policy.generation.max_new_tokens=12"

cat > prompts.jsonl <<'J'
{"prompt_ids": [1, 17, 200, 45, 88]}
{"prompt_ids": [1, 258, 64, 5]}

{"prompt": "12+34="}
J
run 1 --generate prompts.jsonl --output out.jsonl --tokenizer data/tokenizer $GEN
[ -f out.jsonl ] && [ ! -f out.jsonl.tmp ] || fail "no output"
python3 - out.jsonl "$HF/generate.json" <<'PY'
import json, sys
out = [json.loads(l) for l in open(sys.argv[1])]
exp = json.load(open(sys.argv[2]))["cases"]
assert len(out) == 3, out
for o, e in zip(out[:2], exp[:2]):
    assert o["prompt_ids"] == e["prompt_ids"], (o, e)
    assert o["generated_ids"] == e["generated_ids"], (o, e)
    assert o["finish_reason"] == "length", o
    assert "prompt" not in o and isinstance(o["text"], str), o
t = out[2]
assert t["prompt"] == "12+34=" and t["prompt_ids"] == [ord(c) for c in "12+34="], t
assert len(t["generated_ids"]) == 12 and "text" in t, t
print("generate: greedy ids equal transformers'; text prompt tokenized")
PY
# TP 2: the same file.
run 2 --generate prompts.jsonl --output out2.jsonl --tokenizer data/tokenizer $GEN \
    policy.tensor_parallel_size=2
cmp out.jsonl out2.jsonl || fail "TP 2 output differs from TP 1"

# EOS: the third generated id of the first prompt (194) stops it there.
run 1 --generate prompts.jsonl --output eos.jsonl --eos 194 --tokenizer data/tokenizer $GEN
python3 - eos.jsonl <<'PY'
import json, sys
o = json.loads(open(sys.argv[1]).readline())
assert o["generated_ids"] == [63, 116, 194] and o["finish_reason"] == "eos", o
PY

# Sampling: reproducible from dpo.seed.
S="policy.generation.temperature=1.0 policy.generation.top_p=0.9 policy.generation.top_k=40"
run 1 --generate prompts.jsonl --output s1.jsonl --tokenizer data/tokenizer $GEN $S
run 1 --generate prompts.jsonl --output s2.jsonl --tokenizer data/tokenizer $GEN $S
cmp s1.jsonl s2.jsonl || fail "sampling with one seed is not reproducible"
run 1 --generate prompts.jsonl --output s3.jsonl --tokenizer data/tokenizer $GEN $S dpo.seed=8
cmp -s s1.jsonl s3.jsonl && fail "another seed gave the same samples"

# Several samples per prompt: sample 0 is the single-sample result; rollout records
# in NeMo Gym's shape, which dpo_pairs reads once a verifier adds a reward.
# (The tiny config's random initialisation: its vocabulary is the demo tokenizer's.)
SAMP="$TINY policy.model_name= policy.generation.max_new_tokens=12 policy.generation.temperature=1.0"
printf '{"prompt": "7+5="}\n{"prompt_ids": [256, 50, 43, 50, 61]}\n{"prompt": "12+34="}\n' > sprompts.jsonl
run 1 --generate sprompts.jsonl --output one.jsonl --tokenizer data/tokenizer $SAMP
run 1 --generate sprompts.jsonl --output three.jsonl --tokenizer data/tokenizer --samples 3 $SAMP
run 1 --generate sprompts.jsonl --output roll.jsonl --tokenizer data/tokenizer --samples 3 --rollouts $SAMP
python3 - one.jsonl three.jsonl roll.jsonl <<'PY'
import json, sys
one, three, roll = ([json.loads(l) for l in open(p)] for p in sys.argv[1:4])
assert len(three) == 9 and [(r["index"], r["sample"]) for r in three] == [(i, s) for i in range(3) for s in range(3)]
for o in one:
    t = [r for r in three if r["index"] == o["index"] and r["sample"] == 0][0]
    assert t["generated_ids"] == o["generated_ids"], (o, t)
assert len({tuple(r["generated_ids"]) for r in three if r["index"] == 0}) > 1, "samples should differ"
assert len(roll) == 9
for r, t in zip(roll, three):
    assert r["responses_create_params"]["input"][0]["role"] == "user"
    msg = r["output"][0]
    assert msg["type"] == "message" and msg["content"][0]["type"] == "output_text"
    assert (r["prompt_index"], r["sample"]) == (t["index"], t["sample"])
assert roll[2 * 3]["responses_create_params"]["input"][0]["content"] == "12+34="
assert roll[3]["responses_create_params"]["input"][0]["content"] == "<bos>2+2="
with open("scored.jsonl", "w") as f:   # a toy verifier: reward = answer length / 12
    for r in roll:
        r["reward"] = len(r["output"][0]["content"][0]["text"]) / 12.0
        f.write(json.dumps(r) + "\n")
print("samples and rollouts ok")
PY
"$BIN/dpo_pairs" --input scored.jsonl --output pairs.jsonl --min_gap 0 > pairs.log ||
  { cat pairs.log; fail "dpo_pairs on generated rollouts"; }
[ -s pairs.jsonl ] || fail "no pairs from the generated rollouts"
expect_fail_quiet() { ! "$MPIRUN" --oversubscribe --bind-to none -np 1 "$BIN/dpo_hpc" "$@" > rt.log 2>&1; }
expect_fail_quiet --generate prompts.jsonl --output r.jsonl --rollouts $GEN || fail "--rollouts without a tokenizer ran"
grep -qF -- "--rollouts writes text: it needs a tokenizer" rt.log || { cat rt.log; fail "--rollouts message"; }
[ ! -e r.jsonl ] && [ ! -e r.jsonl.tmp ] || fail "--rollouts without tokenizer left output"

# Bad input: file:line, non-zero exit, no output file.
expect_fail() {  # NAME EXPECTED_MESSAGE ARGS...
  local name=$1 msg=$2; shift 2
  if "$MPIRUN" --oversubscribe --bind-to none -np 1 "$BIN/dpo_hpc" "$@" > "$name.log" 2>&1; then
    fail "$name: exit status 0"
  fi
  grep -qF -- "$msg" "$name.log" || { cat "$name.log"; fail "$name: no '$msg'"; }
}
printf '{"prompt_ids": [1, 2]}\n{"prompt_ids": [1, 2\n' > bad.jsonl
expect_fail badjson "bad.jsonl:2:" --generate bad.jsonl --output bad_out.jsonl $GEN
[ ! -e bad_out.jsonl ] && [ ! -e bad_out.jsonl.tmp ] || fail "output written for bad input"
printf '{"prompt_ids": [1, 259]}\n' > badid.jsonl
expect_fail badid "badid.jsonl:1: prompt_ids[1] is not a token id" \
    --generate badid.jsonl --output bad_out.jsonl $GEN
printf '{"prompt": "hi"}\n' > notok.jsonl
expect_fail notok "notok.jsonl:1: a \"prompt\" text needs a tokenizer" \
    --generate notok.jsonl --output bad_out.jsonl $GEN
printf '{"text": "hi"}\n' > nokey.jsonl
expect_fail nokey "nokey.jsonl:1: expected \"prompt_ids\"" \
    --generate nokey.jsonl --output bad_out.jsonl $GEN
expect_fail nooutput "--generate needs --output" --generate prompts.jsonl $GEN
expect_fail badtopp "policy.generation.top_p" --generate prompts.jsonl --output bad_out.jsonl \
    $GEN policy.generation.top_p=0
[ ! -e bad_out.jsonl ] || fail "output written for bad input"
echo "generate_cli: ok"
