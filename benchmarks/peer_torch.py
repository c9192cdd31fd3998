#!/usr/bin/env python3
"""The PyTorch peer of one dpo_hpc training step (benchmarks/peer_compare.sh).

A transformers LlamaForCausalLM policy and a frozen copy as the reference, fp32 on
the CPU; per micro-batch the reference forward (no grad), the policy forward, the
sum of the completion tokens' log-probs, the sigmoid DPO loss with beta, backward;
per step clip_grad_norm_ and torch.optim.AdamW (weight decay on matrices only, as
dpo_hpc). Pairs come from a JSONL file of {"prompt", "chosen", "rejected"} strings,
tokenised as dpo_prep does with the byte-level tokenizer of `dpo_demo_data --jsonl`
and the plain template: <bos>=256, the bytes, <eos>=257 after the completion.
All sequences must have one length (the synthetic data has), so there is no padding.
Like dpo_hpc, logits are computed only for the rows that predict completion tokens
(logits_to_keep); --full-logits computes them for every position (as TRL does).
Writes one JSON object of results to --json (and stdout).
"""
import argparse
import json
import os
import resource
import statistics
import sys
import time


def maxrss_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


def load_pairs(path):
    pairs = []
    with open(path) as f:
        for line in f:
            r = json.loads(line)
            p = [256] + list(r["prompt"].encode())
            seqs = [p + list(r[k].encode()) + [257] for k in ("chosen", "rejected")]
            pairs.append((seqs, len(r["chosen"].encode()) + 1, len(r["rejected"].encode()) + 1))
    seq_lens = {len(s) for sq, _, _ in pairs for s in sq}
    if len(seq_lens) != 1 or len({c for _, c, _ in pairs} | {r for _, _, r in pairs}) != 1:
        sys.exit(f"peer_torch: {path}: sequences and completions must all have one length each")
    return pairs


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", required=True)
    for k, d in (("hidden", 128), ("layers", 4), ("heads", 4), ("kv-heads", 2), ("ffn", 384),
                 ("vocab", 258), ("pairs", 8), ("micro", 4), ("steps", 10), ("warmup", 2),
                 ("threads", 1)):
        ap.add_argument("--" + k, type=int, default=d)
    for k, d in (("beta", 0.1), ("lr", 1e-4), ("weight-decay", 0.01), ("adam-beta1", 0.9),
                 ("adam-beta2", 0.999), ("adam-eps", 1e-8), ("max-grad-norm", 1.0),
                 ("init-std", 0.02), ("rope-theta", 10000.0), ("rms-eps", 1e-5)):
        ap.add_argument("--" + k, type=float, default=d)
    ap.add_argument("--attn", default="sdpa", choices=("sdpa", "eager"))
    ap.add_argument("--full-logits", action="store_true")
    ap.add_argument("--profile", action="store_true",
                    help="torch.profiler over the timed steps: top ops by self CPU time to stderr")
    ap.add_argument("--json")
    a = ap.parse_args()

    os.environ["OMP_NUM_THREADS"] = str(a.threads)  # before torch starts its pool
    try:
        import torch
        import torch.nn.functional as F
        import transformers
    except ImportError as e:
        sys.exit(f"peer_torch: {e}. Install the CPU packages, e.g. `pip install torch "
                 "transformers` (PyPI) or `apt-get install python3-torch` and "
                 "`pip install transformers`; or point $PYTHON at an environment that has them.")
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    rss_import = maxrss_mib()

    pairs = load_pairs(a.data)
    seq_len, comp = len(pairs[0][0][0]), pairs[0][1]
    if a.pairs % a.micro or len(pairs) < a.pairs:
        sys.exit("peer_torch: --pairs must be a multiple of --micro and at most the data's pairs")
    cfg = transformers.LlamaConfig(
        vocab_size=a.vocab, hidden_size=a.hidden, intermediate_size=a.ffn,
        num_hidden_layers=a.layers, num_attention_heads=a.heads, num_key_value_heads=a.kv_heads,
        max_position_embeddings=max(seq_len, 2048), rms_norm_eps=a.rms_eps, rope_theta=a.rope_theta,
        initializer_range=a.init_std, tie_word_embeddings=False, attention_bias=False,
        mlp_bias=False, use_cache=False, attn_implementation=a.attn)
    policy = transformers.LlamaForCausalLM(cfg).float().train()
    ref = transformers.LlamaForCausalLM(cfg).float().eval()
    ref.load_state_dict(policy.state_dict())
    ref.requires_grad_(False)
    params = list(policy.parameters())
    opt = torch.optim.AdamW(
        [{"params": [p for p in params if p.ndim >= 2], "weight_decay": a.weight_decay},
         {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0}],
        lr=a.lr, betas=(a.adam_beta1, a.adam_beta2), eps=a.adam_eps)
    keep = 0 if a.full_logits else comp + 1

    def seq_logps(model, ids):
        logits = model(input_ids=ids, logits_to_keep=keep).logits[:, -(comp + 1):-1]
        lp = torch.log_softmax(logits.float(), dim=-1)
        return lp.gather(-1, ids[:, -comp:].unsqueeze(-1)).squeeze(-1).sum(-1)

    def step(batch):
        opt.zero_grad(set_to_none=True)
        loss_sum = 0.0
        for j in range(0, a.pairs, a.micro):
            # Sequence 2i = chosen of pair i, 2i+1 = rejected, as dpo_hpc packs them.
            ids = torch.tensor([s for sq, _, _ in batch[j:j + a.micro] for s in sq])
            with torch.no_grad():
                r = seq_logps(ref, ids)
            p = seq_logps(policy, ids)
            h = (p[0::2] - p[1::2]) - (r[0::2] - r[1::2])
            loss = -F.logsigmoid(a.beta * h).sum() / a.pairs
            loss.backward()
            loss_sum += loss.item()
        torch.nn.utils.clip_grad_norm_(params, a.max_grad_norm)
        opt.step()
        return loss_sum

    times, losses = [], []
    prof = torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU])
    for s in range(a.warmup + a.steps):
        if a.profile and s == a.warmup:
            prof.start()
        i0 = (s * a.pairs) % (len(pairs) - a.pairs + 1)
        t0 = time.perf_counter()
        losses.append(step(pairs[i0:i0 + a.pairs]))
        times.append(time.perf_counter() - t0)
    if a.profile:
        prof.stop()
        table = prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=20)
        print(table, file=sys.stderr)
    timed = times[a.warmup:]
    tokens = a.pairs * 2 * seq_len
    mean = sum(timed) / len(timed)
    res = {"tokens_per_step": tokens, "seq_len": seq_len, "completion_tokens": comp,
           "step_ms": 1e3 * mean, "step_ms_median": 1e3 * statistics.median(timed),
           "step_ms_min": 1e3 * min(timed), "tokens_per_s": tokens / mean,
           "loss_step1": losses[0], "max_rss_mib": maxrss_mib(), "rss_after_import_mib": rss_import,
           "params": sum(p.numel() for p in params), "threads": torch.get_num_threads(),
           "attn": a.attn, "full_logits": a.full_logits, "torch": torch.__version__,
           "transformers": transformers.__version__}
    text = json.dumps(res, indent=1)
    if a.json:
        with open(a.json, "w") as f:
            f.write(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
