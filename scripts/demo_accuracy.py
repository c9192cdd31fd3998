#!/usr/bin/env python3
"""Held-out task accuracy of greedy generation, for the demo.

    demo_accuracy.py PROMPTS_OUT HELDOUT.jsonl                  # writes the prompts file
    demo_accuracy.py --score HELDOUT.jsonl LABEL=GEN.jsonl ...  # prints accuracies

A problem counts as solved when the generated text up to <eos> is exactly the
chosen answer (all digits right, nothing extra, and the model stopped).
"""
import json
import sys


def records(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def write_prompts(out, heldout):
    with open(out, "w", encoding="utf-8") as f:
        for r in records(heldout):
            f.write(json.dumps({"prompt": "<bos>" + r["prompt"]}) + "\n")


def score(heldout, runs):
    want = records(heldout)
    print("greedy answers on held-out problems (exact sum, then <eos>):")
    result = {}
    for run in runs:
        label, path = run.split("=", 1)
        got = records(path)
        assert len(got) == len(want), f"{path}: {len(got)} answers for {len(want)} problems"
        ok = sum(1 for w, g in zip(want, got) if g.get("finish_reason") == "eos" and
                 g["text"] == w["chosen"] + "<eos>")
        example = got[0]["text"].replace("<eos>", "")
        print(f"  {label:<7} {ok}/{len(want)} = {ok / len(want):.3f}   e.g. "
              f"{want[0]['prompt']}{example!r} (correct: {want[0]['chosen']})")
        result[label] = ok / len(want)
    return result


if __name__ == "__main__":
    if len(sys.argv) >= 4 and sys.argv[1] == "--score":
        score(sys.argv[2], sys.argv[3:])
    elif len(sys.argv) == 3:
        write_prompts(sys.argv[1], sys.argv[2])
    else:
        sys.exit(__doc__)
