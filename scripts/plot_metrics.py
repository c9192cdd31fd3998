#!/usr/bin/env python3
"""Plots a dpo_hpc metrics.jsonl (one or several runs) with gnuplot.

    scripts/plot_metrics.py RUN/metrics.jsonl [OTHER/metrics.jsonl ...] [-o plots/]
        [--fields loss,accuracy,margins,grad_norm,lr,tokens_per_sec] [--smooth N]

Writes one PNG per field into the output directory (default: next to the first
file, in plots/): training values per step (optionally smoothed with a running
mean of N steps) and, where the field is recorded at validation, one line per
validation set. Several runs go on the same axes, labelled by their directory.
Also writes the plotted columns as <field>.dat, so the numbers behind each plot
are at hand. Skipped steps and non-finite values (null) leave gaps.
"""
import argparse
import json
import os
import shutil
import subprocess
import sys

DEFAULT_FIELDS = "loss,accuracy,margins,rewards_chosen,rewards_rejected,grad_norm,lr,tokens_per_sec"


def load(path):
    recs = []
    with open(path) as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                recs.append(json.loads(line))
            except json.JSONDecodeError as e:
                sys.exit(f"plot_metrics: {path}:{n}: not JSON ({e.msg})")
    return recs


def series(recs, field, smooth):
    """{label: [(step, value)]}: 'train' and one entry per validation split."""
    out = {}
    for r in recs:
        if field not in r or r[field] is None or "step" not in r:
            continue
        out.setdefault(r.get("split", "train"), []).append((r["step"], float(r[field])))
    if smooth > 1 and "train" in out:
        pts, acc = out["train"], []
        for i in range(len(pts)):
            window = [v for _, v in pts[max(0, i - smooth + 1):i + 1]]
            acc.append((pts[i][0], sum(window) / len(window)))
        out["train"] = acc
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("files", nargs="+")
    ap.add_argument("-o", "--out")
    ap.add_argument("--fields", default=DEFAULT_FIELDS)
    ap.add_argument("--smooth", type=int, default=1)
    a = ap.parse_args()
    runs = []
    for p in a.files:
        label = os.path.basename(os.path.dirname(os.path.abspath(p))) or p
        runs.append((label, load(p)))
    out = a.out or os.path.join(os.path.dirname(os.path.abspath(a.files[0])), "plots")
    os.makedirs(out, exist_ok=True)
    have_gnuplot = shutil.which("gnuplot") is not None
    if not have_gnuplot:
        print("plot_metrics: gnuplot not found (apt-get install gnuplot-nox): writing .dat files only",
              file=sys.stderr)
    written = []
    for field in a.fields.split(","):
        lines = []   # (title, [(step, value)])
        for label, recs in runs:
            for split, pts in sorted(series(recs, field, a.smooth).items()):
                title = split if len(runs) == 1 else f"{label} {split}"
                lines.append((title, pts))
        if not lines:
            continue
        dat = os.path.join(out, field + ".dat")
        with open(dat, "w") as f:
            for title, pts in lines:   # one gnuplot data block per line
                f.write(f"# {title}\n")
                f.writelines(f"{s} {v:.9g}\n" for s, v in pts)
                f.write("\n\n")
        if not have_gnuplot:
            written.append(dat)
            continue
        png = os.path.join(out, field + ".png")
        plots = ", ".join(f"'{dat}' index {i} using 1:2 with linespoints pt 7 ps 0.4 title '{t}'"
                          for i, (t, _) in enumerate(lines))
        script = "\n".join([
            "set terminal png size 900,540 noenhanced", f"set output '{png}'",
            f"set title '{field}'", "set xlabel 'step'", "set grid", "set key outside right",
            "set logscale y" if field == "lr" and all(v > 0 for _, p in lines for _, v in p) else "",
            f"plot {plots}", ""])
        subprocess.run(["gnuplot"], input=script, text=True, check=True)
        written.append(png)
    if not written:
        sys.exit("plot_metrics: none of the fields " + a.fields + " is in the input")
    for w in written:
        print(w)


if __name__ == "__main__":
    main()
