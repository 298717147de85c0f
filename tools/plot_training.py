#!/usr/bin/env python3
"""Plots training curves written by train_fashion_mnist --csv FILE (one CSV per optimizer).

Two panels in one PNG: the training loss against the epoch and against wall-clock seconds
since the start of training (the time the evaluation of the test set took is included, as in
the CSV's wall_seconds column).

    python3 tools/plot_training.py sgd.csv adamw.csv -o mlp.png
    python3 tools/plot_training.py a.csv b.csv --labels "K-FAC" "AdamW" --test --log-y

Needs matplotlib (Debian: python3-matplotlib); without it the script says so and exits 2.
"""
import argparse
import csv
import os
import sys

REQUIRED = ("epoch", "train_loss", "wall_seconds")


def read_run(path):
    """The CSV's columns as lists of floats (empty cells, e.g. the autoencoder's accuracy,
    become None)."""
    try:
        with open(path, newline="") as f:
            rows = list(csv.DictReader(f))
    except OSError as e:
        sys.exit(f"plot_training.py: {path}: {e.strerror}")
    if not rows:
        sys.exit(f"plot_training.py: {path}: no data rows")
    missing = [c for c in REQUIRED if c not in rows[0]]
    if missing:
        sys.exit(f"plot_training.py: {path}: missing column(s) {', '.join(missing)} "
                 "(expected a CSV written by train_fashion_mnist --csv)")
    run = {}
    for column in rows[0]:
        values = []
        for line, row in enumerate(rows, start=2):
            cell = (row[column] or "").strip()
            try:
                values.append(float(cell) if cell else None)
            except ValueError:
                sys.exit(f"plot_training.py: {path}:{line}: column {column}: not a number: "
                         f"{cell!r}")
        run[column] = values
    return run


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("csv", nargs="+", help="CSV files from train_fashion_mnist --csv")
    parser.add_argument("-o", "--output", default="training.png", help="PNG to write")
    parser.add_argument("--labels", nargs="+", help="legend entries (default: the file names)")
    parser.add_argument("--title", default="", help="figure title")
    parser.add_argument("--test", action="store_true", help="also plot the test loss (dashed)")
    parser.add_argument("--log-y", action="store_true", help="logarithmic loss axis")
    args = parser.parse_args()
    if args.labels and len(args.labels) != len(args.csv):
        parser.error(f"{len(args.labels)} labels for {len(args.csv)} CSV files")

    try:
        import matplotlib
        matplotlib.use("Agg")  # files only, no display needed
        import matplotlib.pyplot as plt
        import matplotlib.ticker
    except ImportError:
        sys.stderr.write("plot_training.py: matplotlib is not installed for "
                         f"{sys.executable} (Debian: apt-get install python3-matplotlib; "
                         "or: python3 -m pip install matplotlib)\n")
        sys.exit(2)

    runs = [read_run(p) for p in args.csv]
    labels = args.labels or [os.path.splitext(os.path.basename(p))[0] for p in args.csv]

    fig, (by_epoch, by_time) = plt.subplots(1, 2, figsize=(11, 4.2))
    # Distinct colours beyond the default cycle's ten (the comparisons plot twelve runs).
    colours = plt.get_cmap("tab20" if len(runs) > 10 else "tab10").colors
    markers = "osD^v<>ph*"
    for i, (run, label) in enumerate(zip(runs, labels)):
        style = dict(color=colours[i % len(colours)], marker=markers[i % len(markers)])
        line, = by_epoch.plot(run["epoch"], run["train_loss"], label=label, **style)
        by_time.plot(run["wall_seconds"], run["train_loss"], label=label, **style)
        if args.test and "test_loss" in run:
            by_epoch.plot(run["epoch"], run["test_loss"], linestyle="--", color=line.get_color(),
                          label=f"{label} (test)")
            by_time.plot(run["wall_seconds"], run["test_loss"], linestyle="--",
                         color=line.get_color(), label=f"{label} (test)")
    by_epoch.set_xlabel("epoch")
    by_epoch.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    by_time.set_xlabel("wall-clock seconds since the start")
    for ax in (by_epoch, by_time):
        ax.set_ylabel("loss (train: mean over the epoch's steps)")
        if args.log_y:
            ax.set_yscale("log")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize="small")
    if args.title:
        fig.suptitle(args.title)
    fig.tight_layout()
    fig.savefig(args.output, dpi=120)
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
