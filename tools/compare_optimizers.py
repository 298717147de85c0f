#!/usr/bin/env python3
"""Runs the Fashion-MNIST trainer with every optimizer on one model: a learning-rate sweep on a
short budget, then a full run with the best rate; writes one CSV per run and a Markdown summary.

  python3 tools/compare_optimizers.py --model mlp --epochs 5 --sweep-steps 200 --out runs/mlp

Tuning (what docs/training.md calls "tuned"): for each optimizer the preset's learning rate
times {0.1, 0.3, 1, 3, 10} (or --grid), each run for --sweep-steps steps with the same seed; the
rate with the lowest final mean training loss (NaN/inf runs excluded) is kept.  Every run is the
trainer's own process; --jobs runs several sweep runs at once, --full-jobs several full runs
(keep it 1 for clean wall-clock timings).  --rates name=lr,... skips the sweep for those
optimizers (reruns of a tuned comparison).
"""
import argparse
import concurrent.futures as cf
import csv
import math
import os
import re
import subprocess
import sys

DEFAULT_TRAINER = "build/examples/train_fashion_mnist/train_fashion_mnist"


def preset_rates(trainer, model):
    """{optimizer: preset lr} parsed from the trainer's --help."""
    p = subprocess.run([trainer, "--help"], capture_output=True, text=True)
    text = p.stdout + p.stderr
    col = 1 if model == "cnn" else 0
    rates = {}
    for line in text.splitlines():
        m = re.match(r"\s+([a-z0-9-]+)\s+lr ([0-9.e-]+) \(mlp, autoencoder\), ([0-9.e-]+) \(cnn\)", line)
        if m:
            rates[m.group(1)] = float(m.group(2 + col))
    return rates


def run(trainer, model, opt, lr, steps, epochs, csv_path, seed):
    cmd = [trainer, "--model", model, "--optimizer", opt, "--lr", repr(lr), "--seed", str(seed),
           "--csv", csv_path, "--epochs", str(epochs)]
    if steps:
        cmd += ["--max-steps", str(steps)]
    p = subprocess.run(cmd, capture_output=True, text=True)
    rows = []
    if os.path.exists(csv_path):
        with open(csv_path) as f:
            rows = list(csv.DictReader(f))
    return p.returncode, rows, p.stdout + p.stderr


def final_loss(rows):
    if not rows:
        return math.inf
    x = float(rows[-1]["train_loss"])
    return x if math.isfinite(x) else math.inf


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trainer", default=DEFAULT_TRAINER)
    ap.add_argument("--model", default="mlp", choices=["mlp", "cnn", "autoencoder"])
    ap.add_argument("--optimizers", default="", help="comma list (default: all of --help)")
    ap.add_argument("--grid", default="0.1,0.3,1,3,10", help="multipliers of the preset rate")
    ap.add_argument("--sweep-steps", type=int, default=200)
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--jobs", type=int, default=1, help="parallel sweep runs")
    ap.add_argument("--full-jobs", type=int, default=1, help="parallel full runs (1: clean timings)")
    ap.add_argument("--rates", default="", help="name=lr,...: fixed rates, no sweep for them")
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    rates = preset_rates(a.trainer, a.model)
    if not rates:
        sys.exit("could not read the optimizers from the trainer's --help")
    names = [n for n in a.optimizers.split(",") if n] or list(rates)
    grid = [float(g) for g in a.grid.split(",")]
    fixed = {k: float(v) for k, v in (kv.split("=") for kv in a.rates.split(",") if kv)}
    if fixed and not a.optimizers:
        names = list(fixed)

    # Sweep; a best rate at the edge of the grid extends it by x3 steps (at most 3 times).
    def sweep(pairs):
        with cf.ThreadPoolExecutor(max_workers=a.jobs) as ex:
            futs = [(n, lr, ex.submit(run, a.trainer, a.model, n, lr, a.sweep_steps, 100,
                                      os.path.join(a.out, f"sweep-{a.model}-{n}-{lr:.3g}.csv"),
                                      a.seed)) for n, lr in pairs]
        out = []
        for n, lr, fut in futs:
            loss = final_loss(fut.result()[1])
            print(f"sweep {a.model} {n} lr {lr:.3g}: {loss:.4g}", flush=True)
            out.append((n, lr, loss))
        return out

    tried = {n: ({fixed[n]: 0.0} if n in fixed else {}) for n in names}
    swept = [n for n in names if n not in fixed]
    for n, lr, loss in sweep([(n, rates[n] * g) for n in swept for g in grid]):
        tried[n][lr] = loss
    for _ in range(3):
        more = []
        for n in swept:
            lrs = sorted(tried[n])
            b = min(lrs, key=lambda lr: tried[n][lr])
            if math.isfinite(tried[n][b]) and b == lrs[-1]:
                more.append((n, b * 3))
            elif math.isfinite(tried[n][b]) and b == lrs[0]:
                more.append((n, b / 3))
        if not more:
            break
        for n, lr, loss in sweep(more):
            tried[n][lr] = loss
    best = {n: min(((lr, l) for lr, l in tried[n].items()), key=lambda x: x[1]) for n in names}

    # Full runs with the best rates.
    summary = []
    with cf.ThreadPoolExecutor(max_workers=a.full_jobs) as ex:
        futs = {n: ex.submit(run, a.trainer, a.model, n, best[n][0], 0, a.epochs,
                             os.path.join(a.out, f"{a.model}-{n}.csv"), a.seed) for n in names}
        for n in names:
            code, rows, log = futs[n].result()
            summary.append((n, best[n][0], rows, code))
            print(f"full {a.model} {n} lr {best[n][0]:.3g}: exit {code}, "
                  f"{rows[-1]['train_loss'] if rows else 'no rows'}", flush=True)

    md = [f"| optimizer | lr (tuned) | train loss | test loss | test acc | fwd+bwd ms/step | "
          f"optimizer ms/step | wall s |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for n, lr, rows, code in summary:
        if not rows:
            md.append(f"| {n} | {lr:.3g} | (failed, exit {code}) | | | | | |")
            continue
        r = rows[-1]
        acc = f"{100 * float(r['test_accuracy']):.2f}%" if r["test_accuracy"] else "—"
        md.append(f"| {n} | {lr:.3g} | {float(r['train_loss']):.4g} | {float(r['test_loss']):.4g} | "
                  f"{acc} | {float(r['fwd_bwd_ms_per_step']):.3g} | "
                  f"{float(r['optimizer_ms_per_step']):.3g} | {float(r['wall_seconds']):.1f} |")
    with open(os.path.join(a.out, f"summary-{a.model}.md"), "w") as f:
        f.write("\n".join(md) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main()
