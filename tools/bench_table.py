#!/usr/bin/env python3
"""Google Benchmark JSON (curvkit's bench binaries) -> Markdown or compact text tables.

    tools/bench_table.py [--ops posv,potrf] [--markdown | --short] run1.json [run2.json ...]

Benchmark names follow DESIGN.md section 7: <op>/<backend>/<scalar>/n:<n>/batch:<b>[/key:value...]
(Google Benchmark appends /real_time or /manual_time; it is ignored).  One table per op, scalar
and extra parameters (e.g. nrhs); rows are n, columns:
  * time per matrix in ns for every backend (real or manual time / batch),
  * speedup of each curvkit backend over each anchor on the same device (anchor time / curvkit
    time: > 1 means curvkit is faster): kokkos vs lapacke, kokkos vs eigen, cuda vs cusolver,
  * GFLOP/s, GB/s and floor fraction of the curvkit backends.
floor fraction = floor time / measured time with floor = max(flops / peak, bytes / bandwidth),
i.e. max(GFLOPS / peak, GBps / bandwidth).  peak and bandwidth are the roofline/fma/<scalar>
and roofline/copy results of the SAME JSON file as the case (so ceilings and kernels come from
the same run); GPU cases use roofline/cuda_copy and, as no GPU flop peak is measured, only the
bandwidth term unless --gpu-peak-gflops gives one.
--as-anchor SRC:DST shows the cases of op SRC as anchors in op DST's tables, under the backend
name SRC:<backend> (e.g. rank1_recompute:rank1_update compares the rank-1 chain with
re-inverting; woodbury_dense:woodbury_solve, lbfgs_two_loop:lbfgs_apply).  Standard library only.
"""
import argparse
import json
import re
import sys
from collections import defaultdict

CURVKIT = ["kokkos", "cuda", "reference"]
ANCHORS = {"kokkos": ["lapacke", "eigen"], "cuda": ["cusolver"]}
ORDER = ["kokkos", "cuda", "reference", "lapacke", "eigen", "cusolver"]
GPU = {"cuda", "cusolver"}
UNIT_NS = {"ns": 1.0, "us": 1e3, "ms": 1e6, "s": 1e9}


def parse_name(name):
    name = re.sub(r"/(real_time|manual_time)$", "", name)
    parts = name.split("/")
    params = {}
    plain = []
    for p in parts:
        if ":" in p:
            k, v = p.split(":", 1)
            params[k] = int(v) if v.lstrip("-").isdigit() else v
        else:
            plain.append(p)
    return name, plain, params


def load(paths):
    """Returns (cases, rooflines): cases is a list of dicts, rooflines[file] a dict."""
    cases, rooflines = [], {}
    for path in paths:
        with open(path) as f:
            doc = json.load(f)
        roof = {}
        runs = defaultdict(list)  # name -> list of entries (repetitions)
        medians = {}
        for b in doc.get("benchmarks", []):
            name, plain, params = parse_name(b.get("run_name", b["name"]))
            if b.get("run_type") == "aggregate":
                if b.get("aggregate_name") == "median":
                    medians[name] = (b, plain, params)
                continue
            runs[name].append((b, plain, params))
        for name in list(runs) + [m for m in medians if m not in runs]:
            reps = runs.get(name, [])
            if name in medians:
                b, plain, params = medians[name]
            else:  # median of the repetitions by time
                reps = sorted(reps, key=lambda r: r[0].get("real_time", 0.0))
                b, plain, params = reps[len(reps) // 2]
            err = b.get("error_message") if b.get("error_occurred") else None
            if plain[0] == "roofline":
                if err is None:
                    kind = plain[1]
                    if kind == "fma":
                        roof["fma/" + plain[2]] = b.get("GFLOPS")
                    else:
                        roof[kind] = b.get("GBps")
                continue
            if len(plain) < 3:
                continue
            op, backend, scalar = plain[0], plain[1], plain[2]
            t_ns = b.get("real_time", 0.0) * UNIT_NS.get(b.get("time_unit", "ns"), 1.0)
            batch = params.get("batch", 1)
            extra = tuple(sorted((k, v) for k, v in params.items() if k not in ("n", "batch")))
            cases.append(dict(file=path, op=op, backend=backend, scalar=scalar, n=params.get("n"),
                              batch=batch, extra=extra, ns=t_ns / batch if batch else None,
                              gflops=b.get("GFLOPS"), gbps=b.get("GBps"), error=err))
        rooflines[path] = roof
    return cases, rooflines


def floor_frac(c, roof, gpu_peak):
    if c["error"] or c["gbps"] is None:
        return None
    if c["backend"] in GPU:
        bw = roof.get("cuda_copy")
        peak = gpu_peak.get(c["scalar"])
    else:
        bw = roof.get("copy")
        peak = roof.get("fma/" + c["scalar"])
    terms = []
    if bw:
        terms.append(c["gbps"] / bw)
    if peak and c["gflops"] is not None:
        terms.append(c["gflops"] / peak)
    return max(terms) if terms else None


def fmt_ns(x):
    if x is None:
        return "–"
    if x >= 100:
        return f"{x:,.0f}"
    return f"{x:.1f}"


def fmt(x, digits=2, suffix=""):
    return "–" if x is None else f"{x:.{digits}f}{suffix}"


def build_tables(cases, rooflines, ops, gpu_peak):
    groups = defaultdict(lambda: defaultdict(dict))  # (op, scalar, extra) -> n -> backend -> case
    for c in cases:
        if ops and c["op"] not in ops:
            continue
        groups[(c["op"], c["scalar"], c["extra"])][c["n"]][c["backend"]] = c
    op_rank = {o: i for i, o in enumerate(ops or ["posv", "potrf", "potri", "potrs"])}
    keys = sorted(groups, key=lambda k: (op_rank.get(k[0], 99), k[0], k[1] != "float", k[2]))
    tables = []
    for key in keys:
        rows = groups[key]
        present = {b for r in rows.values() for b in r}
        backends = [b for b in ORDER if b in present] + sorted(present - set(ORDER))
        cur = [b for b in CURVKIT if b in present and b != "reference"]
        speedups = [(c, a) for c in cur for a in ANCHORS.get(c, []) if a in present]
        header = ["n", "batch"] + [f"{b} ns" for b in backends]
        header += [f"{c} vs {a}" for c, a in speedups]
        for c in cur:
            header += [f"{c} GFLOP/s", f"{c} GB/s", f"{c} floor"]
        body, errors = [], []
        for n in sorted(rows):
            r = rows[n]
            cpu_b = sorted({x["batch"] for b, x in r.items() if b not in GPU and b != "reference"})
            gpu_b = sorted({x["batch"] for b, x in r.items() if b in GPU})
            batch = "/".join(str(x) for x in cpu_b + gpu_b)
            line = [str(n), batch]
            for b in backends:
                x = r.get(b)
                if x is None:
                    line.append("–")
                elif x["error"]:
                    line.append("err")
                    errors.append(f"{b} n={n}: {x['error']}")
                else:
                    cell = fmt_ns(x["ns"])
                    if b == "reference":
                        cell += f" (b={x['batch']})"
                    line.append(cell)
            for c, a in speedups:
                xc, xa = r.get(c), r.get(a)
                ok = xc and xa and not xc["error"] and not xa["error"] and xc["ns"]
                line.append(fmt(xa["ns"] / xc["ns"], 2, "×") if ok else "–")
            for c in cur:
                x = r.get(c)
                if x is None or x["error"]:
                    line += ["–", "–", "–"]
                    continue
                ff = floor_frac(x, rooflines.get(x["file"], {}), gpu_peak)
                line += [fmt(x["gflops"], 2), fmt(x["gbps"], 2), fmt(ff, 3)]
            body.append(line)
        op, scalar, extra = key
        title = f"{op} {scalar}" + "".join(f" {k}={v}" for k, v in extra)
        tables.append(dict(title=title, header=header, body=body, errors=errors))
    return tables


def roofline_line(rooflines):
    out = []
    for path, r in rooflines.items():
        bits = []
        if "copy" in r:
            bits.append(f"copy {r['copy']:.1f} GB/s")
        for s in ("float", "double"):
            if f"fma/{s}" in r:
                bits.append(f"fma {s} {r[f'fma/{s}']:.1f} GFLOP/s")
        if "cuda_copy" in r:
            bits.append(f"cuda copy {r['cuda_copy']:.0f} GB/s")
        out.append(f"{path}: " + (", ".join(bits) if bits else "no roofline results (floor fraction –)"))
    return out


def print_markdown(tables, rooflines):
    print("Rooflines (same run): " + "; ".join(roofline_line(rooflines)))
    print()
    for t in tables:
        print(f"### {t['title']}")
        print()
        print("| " + " | ".join(t["header"]) + " |")
        print("|" + "|".join("---:" for _ in t["header"]) + "|")
        for row in t["body"]:
            print("| " + " | ".join(row) + " |")
        for e in t["errors"]:
            print(f"\n- error: {e}")
        print()


def print_short(tables, rooflines):
    for line in roofline_line(rooflines):
        print("roofline " + line)
    for t in tables:
        # Compact: n, ns per matrix per backend, speedups, curvkit floor fractions.
        keep = [i for i, h in enumerate(t["header"])
                if h == "n" or h.endswith(" ns") or " vs " in h or h.endswith(" floor")]
        head = [t["header"][i].replace(" ns", "") for i in keep]
        rows = [[r[i] for i in keep] for r in t["body"]]
        widths = [max(len(h), *(len(r[j]) for r in rows)) if rows else len(h) for j, h in enumerate(head)]
        print(f"\n{t['title']}  (ns per matrix; 'x vs y' = time(y)/time(x))")
        print("  ".join(h.rjust(w) for h, w in zip(head, widths)))
        for r in rows:
            print("  ".join(c.rjust(w) for c, w in zip(r, widths)))
        for e in t["errors"]:
            print(f"  error: {e}")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("json", nargs="+", help="Google Benchmark JSON files (--benchmark_out_format=json)")
    ap.add_argument("--ops", default="", help="comma-separated ops to show (default: all, e.g. posv,potrf)")
    fmt_group = ap.add_mutually_exclusive_group()
    fmt_group.add_argument("--markdown", dest="style", action="store_const", const="markdown",
                           help="Markdown tables (default)")
    fmt_group.add_argument("--short", dest="style", action="store_const", const="short",
                           help="compact text tables")
    ap.add_argument("--gpu-peak-gflops", default="",
                    help="GPU flop peaks for the floor, e.g. float=66900,double=33500 (default: bandwidth floor only)")
    ap.add_argument("--as-anchor", action="append", default=[], metavar="SRC:DST",
                    help="show op SRC's cases as anchors of op DST (repeatable)")
    args = ap.parse_args(argv)
    ops = [o for o in args.ops.split(",") if o]
    gpu_peak = {}
    for item in filter(None, args.gpu_peak_gflops.split(",")):
        k, v = item.split("=")
        gpu_peak[k] = float(v)
    cases, rooflines = load(args.json)
    for spec in args.as_anchor:
        src, dst = spec.split(":")
        for c in cases:
            if c["op"] != src:
                continue
            label = f"{src}:{c['backend']}"
            side = "cuda" if c["backend"] in GPU else "kokkos"
            if label not in ANCHORS.setdefault(side, []):
                ANCHORS[side].append(label)
            c["op"], c["backend"] = dst, label
    tables = build_tables(cases, rooflines, ops, gpu_peak)
    if not tables:
        print("no benchmark cases found", file=sys.stderr)
        return 1
    (print_short if args.style == "short" else print_markdown)(tables, rooflines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
