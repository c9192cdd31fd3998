#!/usr/bin/env python3
"""Benchmark harness for dpo_hpc (issue 7): a matrix of rank counts, TP sizes,
model sizes, sequence lengths and threads per rank, run on synthetic data.

    benchmarks/harness.py [--config benchmarks/harness.cfg] [--out bench_out]
                          [--build build] [--mpirun mpirun]

For each run it reports mean step time (after warm-up steps), tokens/s in total
and per rank, achieved FLOP/s and MFU against the OpenBLAS sgemm peak measured
in the same invocation (benchmarks/sgemm_peak.c), peak RSS per rank, and
strong/weak scaling efficiency against the smallest rank count of each series.
Writes OUT/results.csv, OUT/results.md and, with gnuplot, OUT/throughput.png
and OUT/efficiency.png. Standard library only. FLOP formula: doc/performance.md.
"""
import argparse
import configparser
import csv
import itertools
import json
import os
import random
import shutil
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODEL_KEYS = ("hidden_size", "num_hidden_layers", "num_attention_heads",
              "num_key_value_heads", "intermediate_size", "vocab_size")
BYTE_VOCAB = 258  # byte-level tokenizer of the synthetic data: 256 bytes + <bos> + <eos>


def rss_wrap(argv):
    """Runs argv[2:] as a child, writes its max RSS (KiB) to argv[1].<rank>."""
    prefix, cmd = argv[0], argv[1:]
    if cmd and cmd[0] == "--":
        cmd = cmd[1:]
    rank = os.environ.get("OMPI_COMM_WORLD_RANK", "0")
    proc = subprocess.Popen(cmd)
    _, status, usage = os.wait4(proc.pid, 0)
    with open(f"{prefix}.{rank}", "w") as f:
        f.write(f"{usage.ru_maxrss}\n")
    code = os.waitstatus_to_exitcode(status)
    return code if code >= 0 else 128 - code


def ints(s):
    return [int(x) for x in s.replace(",", " ").split()]


def words(s):
    return s.replace(",", " ").split()


def matmul_params(m):
    """Parameters that take part in a matmul per token (the input embedding is a lookup)."""
    d, heads, kv = m["hidden_size"], m["num_attention_heads"], m["num_key_value_heads"]
    kv_dim = d // heads * kv
    per_layer = 2 * d * d + 2 * d * kv_dim + 3 * d * m["intermediate_size"]
    return m["num_hidden_layers"] * per_layer + d * m["vocab_size"]


def step_flops(m, tokens, sum_sq_len, reference):
    """FLOPs of one training step (doc/performance.md, "FLOP formula")."""
    n = matmul_params(m)
    attn_fwd = 2.0 * m["num_hidden_layers"] * m["hidden_size"] * sum_sq_len  # causal: half of 4·L²·d
    flops = 6.0 * n * tokens + 3.0 * attn_fwd       # policy forward + backward
    if reference == "live":
        flops += 2.0 * n * tokens + attn_fwd        # reference forward
    return flops


def sgemm_peaks(out, n, thread_counts):
    exe = os.path.join(out, "sgemm_peak")
    src = os.path.join(ROOT, "benchmarks", "sgemm_peak.c")
    subprocess.run(["cc", "-O2", src, "-o", exe, "-lopenblas"], check=True)
    peaks = {}
    for t in sorted(thread_counts):
        env = dict(os.environ, OMP_NUM_THREADS=str(t), OPENBLAS_NUM_THREADS=str(t))
        line = subprocess.run([exe, str(n), "8"], env=env, check=True, capture_output=True,
                              text=True).stdout.split()
        peaks[t] = float(line[2]) * 1e9
        print(f"sgemm peak ({n}^3, {t} thread(s)): {peaks[t] / 1e9:.1f} GFLOP/s", flush=True)
    return peaks


def make_dataset(out, build, seq_len, n_pairs):
    """Synthetic pairs of a fixed length: random-letter prompt and completions,
    byte-level tokenizer from dpo_demo_data, dataset written by dpo_prep."""
    d = os.path.join(out, "data", f"L{seq_len}")
    path = os.path.join(d, "train.h5")
    if os.path.exists(path):
        return path
    os.makedirs(d, exist_ok=True)
    subprocess.run([os.path.join(build, "bin", "dpo_demo_data"), "--jsonl", d, "--train-pairs", "4",
                    "--val-pairs", "1"], check=True, stdout=subprocess.DEVNULL)
    comp = max(seq_len // 4, 2)
    prompt = max(seq_len - comp - 2, 1)  # <bos>/<eos> and template bytes make up the rest
    rng = random.Random(seq_len)
    letters = "abcdefghijklmnopqrstuvwxyz"
    jsonl = os.path.join(d, "synthetic.jsonl")
    with open(jsonl, "w") as f:
        for _ in range(n_pairs):
            rec = {"prompt": "".join(rng.choice(letters) for _ in range(prompt)),
                   "chosen": "".join(rng.choice(letters) for _ in range(comp)),
                   "rejected": "".join(rng.choice(letters) for _ in range(comp))}
            f.write(json.dumps(rec) + "\n")
    subprocess.run([os.path.join(build, "bin", "dpo_prep"), "--tokenizer", os.path.join(d, "tokenizer"),
                    "--output", path, "--train", jsonl, "--format", "binary", "--chat-template", "plain",
                    "--max-length", str(seq_len + 64), "--progress", "0", "--force"],
                   check=True, stdout=subprocess.DEVNULL)
    return path


def run_one(args, cfg, out, run_id, spec, data_path, peaks, ncpu):
    ranks, tp, model_name, seq_len, scaling, threads = spec
    m = {k: cfg.getint(f"model.{model_name}", k) for k in MODEL_KEYS}
    dp = ranks // tp
    pairs = cfg.getint("run", "global_pairs") if scaling == "strong" else \
        cfg.getint("run", "pairs_per_rank") * ranks
    steps, warm = cfg.getint("run", "steps"), cfg.getint("run", "warmup_steps")
    log_dir = os.path.join(out, "runs", run_id)
    shutil.rmtree(log_dir, ignore_errors=True)
    os.makedirs(log_dir)
    overrides = [f"policy.model.{k}={v}" for k, v in m.items()] + [
        f"policy.tensor_parallel_size={tp}",
        f"policy.train_global_batch_size={pairs}",
        f"policy.train_micro_batch_size={pairs // dp}",
        f"policy.max_total_sequence_length={seq_len + 64}",
        "policy.scheduler.warmup_steps=1",
        f"dpo.max_num_steps={steps}", "dpo.max_num_epochs=100000", "dpo.val_period=0",
        "dpo.val_at_start=false", f"dpo.val_global_batch_size={dp}",
        "checkpointing.enabled=false", f"cluster.num_threads={threads}",
        f"data.dataset_path={data_path}", f"logger.log_dir={log_dir}"]
    env = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
               OMP_NUM_THREADS=str(threads), OPENBLAS_NUM_THREADS=str(threads))
    rss_prefix = os.path.join(log_dir, "maxrss")
    cmd = [args.mpirun, "--oversubscribe", "--bind-to", "none", "-np", str(ranks),
           "-x", "OMP_NUM_THREADS", "-x", "OPENBLAS_NUM_THREADS",
           sys.executable, os.path.abspath(__file__), "--rss-wrap", rss_prefix, "--",
           os.path.join(args.build, "bin", "dpo_hpc"), os.path.join(ROOT, "input", "demo.cfg")] + overrides
    t0 = time.time()
    with open(os.path.join(log_dir, "stdout.txt"), "w") as so:
        rc = subprocess.run(cmd, env=env, stdout=so, stderr=subprocess.STDOUT).returncode
    wall = time.time() - t0
    if rc != 0:
        print(f"  {run_id}: FAILED (rc {rc}), see {log_dir}/stdout.txt", flush=True)
        return None
    recs = [r for r in map(json.loads, open(os.path.join(log_dir, "metrics.jsonl")))
            if r["split"] == "train"]
    timed = recs[warm:] if len(recs) > warm else recs
    step_s = [r["tokens"] / r["tokens_per_sec"] for r in timed]
    mean_step = sum(step_s) / len(step_s)
    tokens = sum(r["tokens"] for r in timed) / len(timed)
    seq_mean = tokens / (2 * sum(r["pairs"] for r in timed) / len(timed))
    # All sequences of a synthetic set have the same length, so sum(L^2) = T * L.
    flops = step_flops(m, tokens, tokens * seq_mean, "live")
    cores = min(ranks * threads, ncpu)
    rss = []
    for r in range(ranks):
        with open(f"{rss_prefix}.{r}") as f:
            rss.append(int(f.read()) / 1024.0)
    row = {"run": run_id, "scaling": scaling, "model": model_name, "params": matmul_params(m),
           "seq_len": round(seq_mean, 1), "ranks": ranks, "tp": tp, "dp": dp,
           "threads_per_rank": threads, "pairs_per_step": pairs, "tokens_per_step": round(tokens),
           "timed_steps": len(timed), "step_ms": round(1000 * mean_step, 2),
           "step_ms_min": round(1000 * min(step_s), 2),
           "tokens_per_s": round(tokens / mean_step, 1),
           "tokens_per_s_per_rank": round(tokens / mean_step / ranks, 1),
           "gflops": round(flops / mean_step / 1e9, 3),
           "peak_gflops": round(peaks[cores] / 1e9, 1),
           "mfu_pct": round(100 * flops / mean_step / peaks[cores], 2),
           "max_rss_mib": round(max(rss), 1), "wall_s": round(wall, 1)}
    print(f"  {run_id}: {row['step_ms']} ms/step, {row['tokens_per_s']} tok/s, "
          f"MFU {row['mfu_pct']} %, RSS {row['max_rss_mib']} MiB", flush=True)
    return row


def add_efficiency(rows):
    series = {}
    for r in rows:
        key = (r["scaling"], r["model"], r["seq_len"], r["tp"], r["threads_per_rank"])
        series.setdefault(key, []).append(r)
    for key, rs in series.items():
        base = min(rs, key=lambda r: r["ranks"])
        for r in rs:
            # strong: (t_base·n_base)/(t_n·n); weak: t_base/t_n. Both equal the per-rank
            # throughput ratio, since weak scaling grows the tokens per step with the ranks.
            r["series"] = "%s %s L%d tp%d t%d" % (key[0], key[1], round(key[2]), key[3], key[4])
            r["efficiency_pct"] = round(100 * r["tokens_per_s_per_rank"] /
                                        base["tokens_per_s_per_rank"], 1)
    return series


def plot(out, series):
    if not shutil.which("gnuplot"):
        print("gnuplot not found: no plots", flush=True)
        return
    for name, col, ylabel in (("throughput", "tokens_per_s", "tokens/s (total)"),
                              ("efficiency", "efficiency_pct", "scaling efficiency (%)")):
        plots = []
        for i, (key, rs) in enumerate(sorted(series.items())):
            dat = os.path.join(out, "plot", f"{name}_{i}.dat")
            os.makedirs(os.path.dirname(dat), exist_ok=True)
            with open(dat, "w") as f:
                for r in sorted(rs, key=lambda r: r["ranks"]):
                    f.write(f"{r['ranks']} {r[col]}\n")
            plots.append(f"'{dat}' using 1:2 with linespoints title '{rs[0]['series']}'")
        script = "\n".join([
            "set terminal png size 900,600", f"set output '{os.path.join(out, name + '.png')}'",
            "set xlabel 'MPI ranks'", f"set ylabel '{ylabel}'", "set key outside right",
            "set grid", "set xtics 1", "set yrange [0:*]",
            "plot " + ", ".join(plots)])
        subprocess.run(["gnuplot"], input=script, text=True, check=True)


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "--rss-wrap":
        return rss_wrap(sys.argv[2:])
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", default=os.path.join(ROOT, "benchmarks", "harness.cfg"))
    ap.add_argument("--out", default="bench_out")
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--mpirun", default="mpirun")
    args = ap.parse_args()
    args.build = os.path.abspath(args.build)
    out = os.path.abspath(args.out)
    os.makedirs(out, exist_ok=True)
    cfg = configparser.ConfigParser(inline_comment_prefixes=("#",))
    if not cfg.read(args.config):
        sys.exit(f"harness: cannot read {args.config}")
    mx = cfg["matrix"]
    ranks, tps, seqs, threads = ints(mx["ranks"]), ints(mx["tp"]), ints(mx["seq_lens"]), \
        ints(mx["threads_per_rank"])
    models, scalings = words(mx["models"]), words(mx["scaling"])
    for mname in models:
        if cfg.getint(f"model.{mname}", "vocab_size") < BYTE_VOCAB:
            sys.exit(f"harness: model.{mname}: vocab_size must be >= {BYTE_VOCAB} (byte-level data)")
    for s in scalings:
        if s not in ("strong", "weak"):
            sys.exit(f"harness: scaling '{s}' is not strong or weak")
    ncpu = os.cpu_count() or 1
    specs = []
    for r, tp, mname, L, sc, th in itertools.product(ranks, tps, models, seqs, scalings, threads):
        heads = cfg.getint(f"model.{mname}", "num_attention_heads")
        kv = cfg.getint(f"model.{mname}", "num_key_value_heads")
        if r % tp or heads % tp or kv % tp:
            continue
        dp = r // tp
        pairs = cfg.getint("run", "global_pairs") if sc == "strong" else cfg.getint("run", "pairs_per_rank") * r
        if pairs % dp:
            continue
        specs.append((r, tp, mname, L, sc, th))
    print(f"harness: {len(specs)} runs, {ncpu} CPU(s); ranks beyond {ncpu} are oversubscribed",
          flush=True)
    peaks = sgemm_peaks(out, cfg.getint("run", "sgemm_n"),
                        {min(r * th, ncpu) for r, _, _, _, _, th in specs})
    data = {L: make_dataset(out, args.build, L, cfg.getint("run", "train_pairs")) for L in seqs}
    rows = []
    for spec in specs:
        r, tp, mname, L, sc, th = spec
        run_id = f"{sc}-{mname}-L{L}-np{r}-tp{tp}-t{th}"
        row = run_one(args, cfg, out, run_id, spec, data[L], peaks, ncpu)
        if row:
            rows.append(row)
    if not rows:
        sys.exit("harness: no run succeeded")
    series = add_efficiency(rows)
    cols = list(rows[0].keys())
    with open(os.path.join(out, "results.csv"), "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=cols)
        w.writeheader()
        w.writerows(rows)
    md_cols = ["scaling", "model", "seq_len", "ranks", "tp", "threads_per_rank", "tokens_per_step",
               "step_ms", "step_ms_min", "tokens_per_s", "tokens_per_s_per_rank", "gflops", "mfu_pct",
               "max_rss_mib", "efficiency_pct"]
    heads = ["scaling", "model", "L", "ranks", "TP", "thr/rank", "tokens/step", "ms/step",
             "min ms/step", "tokens/s", "tokens/s/rank", "GFLOP/s", "MFU %", "max RSS MiB/rank", "efficiency %"]
    with open(os.path.join(out, "results.md"), "w") as f:
        f.write("| " + " | ".join(heads) + " |\n|" + "---|" * len(heads) + "\n")
        for r in rows:
            f.write("| " + " | ".join(str(r[c]) for c in md_cols) + " |\n")
        f.write("\nsgemm peak (GFLOP/s, OpenBLAS, by cores in use): " +
                ", ".join(f"{t}: {p / 1e9:.1f}" for t, p in sorted(peaks.items())) + "\n")
    plot(out, series)
    print(open(os.path.join(out, "results.md")).read(), end="")
    print(f"harness: results in {out}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
