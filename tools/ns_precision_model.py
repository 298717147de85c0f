#!/usr/bin/env python3
"""CPU emulation of the Newton-Schulz family's CUDA compute modes (fp32 / tf32 / bf16).

What it emulates.  The four iterations of curvkit/newton_schulz.hpp in the step order, scalings,
starting points, residuals and stopping rule of reference/newton_schulz.cpp, with every product
written the way kernels/cuda/newton_schulz.cu writes it (both its fused and cuBLAS paths):
  inverse  X0 = A^T/(|A|_1 |A|_inf); R = A X; step X <- 2X - X R, R <- A X;   resid ||I-R||
  sqrt     Y0 = A/c, Z0 = I, W = Y0; step Y <- 1.5Y - 0.5 Y W, Z <- 1.5Z - 0.5 W Z, W <- Z Y
  root     M0 = zA, X0 = z^(1/p) I; step T = (1+1/p)I - M/p, X <- X T, M <- T^(2^j) M for the
           set bits j of p with T squared in between (as CUDA does; the reference multiplies p x)
  polar    X0 = A/||A||_F, B = Gram of the short side; quintic Q = c B B + b B, X <- aX + X Q;
           cubic X <- 1.5X - 0.5 X B; convergent = quintic `iterations`, then cubic to tolerance.
Arithmetic modes (products only; elementwise updates are float32 numpy ops, residuals are summed
in float64 from the float32 matrix, as the cuBLAS path does):
  fp64  everything float64: "the same iteration without rounding" (the iteration-error yardstick)
  fp32  float32 operands, float32 sgemm (OpenBLAS order)
  tf32  both operands rounded to TF32 (10 mantissa bits, nearest, ties away: cvt.rna.tf32.f32)
  bf16  both operands rounded to bfloat16 (nearest, ties to even)
  For tf32 / bf16 the rounded operands are multiplied in float64 and the sum rounded once to
  float32.  The products of rounded operands are exact in FP32 as well (<= 22 significant bits),
  so this differs from real FP32 accumulation only by ~ sqrt(n) 2^-24 relative, far below the
  2^-11 / 2^-8 operand rounding being studied.  --accum f32 instead uses float32 sgemm on the
  rounded operands (FP32 accumulation in BLAS order); --tf32-trunc truncates instead of rounding
  (what a kernel feeding raw FP32 bits to the tensor cores would get).
What it does NOT emulate: the tensor cores' accumulation order and their internal FP32 adder
(not IEEE round-to-nearest on every add), FMA vs separate rounding in the epilogues, cuBLAS's
split-K / kernel choice, the fused kernel's FP32 block sums, the FP32 scaled norms (computed here
in float64 and rounded).  These move the tf32 / bf16 numbers by a few per cent (compare
--accum f32), not their order of magnitude.
Cases: SPD A = B B^T/n + I/2 (the benchmark's) for inv_sqrt (5 fixed steps and the residual
stop), inverse and inverse 4th root (eps 1e-3); Gaussian A for the polar factor; the spectra of
tests/newton_schulz_test.cpp ReducedPrecisionModesOnCuda.  Metrics: relative Frobenius error vs
the exact function (numpy eigh / svd, float64) and vs the fp64 iteration after the same number of
steps; "resid reported" is what the op's report would hold; "resid true" recomputes
||I - Z Y||, ||I - A X||, ||I - X^T X|| (/ sqrt n) in float64 from the float32 iterate (root:
||I - X^p (A + eps I)||, which is ~ p x the error of X); "floor": the lowest value over the same
run continued past the stop.  Cells: median / worst over the seeds (tolerance 1e-6, <= 30 steps).
Run:  OPENBLAS_NUM_THREADS=1 python3 tools/ns_precision_model.py [--seed S] [--quick] [--big]
"""
import argparse
import time

import numpy as np

F32, F64 = np.float32, np.float64
MODES = ("fp64", "fp32", "tf32", "bf16")
TOL, MAXIT = 1e-6, 30


def tf32(x, trunc=False):
    """float32 -> TF32 values (still float32): round to nearest, ties away from zero (or truncate)."""
    u = np.ascontiguousarray(x, F32).view(np.uint32)
    fin = (u & 0x7F800000) != 0x7F800000  # leave Inf / NaN alone
    r = (u if trunc else u + np.uint32(0x1000)) & np.uint32(0xFFFFE000)  # sign-magnitude: +half ulp
    return np.where(fin, r, u).view(F32)


def bf16(x):
    """float32 -> bfloat16 values (still float32): round to nearest, ties to even."""
    u = np.ascontiguousarray(x, F32).view(np.uint32)
    fin = (u & 0x7F800000) != 0x7F800000
    r = (u + np.uint32(0x7FFF) + ((u >> np.uint32(16)) & np.uint32(1))) & np.uint32(0xFFFF0000)
    return np.where(fin, r, u | np.uint32(0x00400000) * (u & 0x7FFFFF != 0)).view(F32)


def selftest():
    t = lambda v, **k: float(tf32(np.array([v], F32), **k)[0])
    b = lambda v: float(bf16(np.array([v], F32))[0])
    assert t(1 + 2**-11) == 1 + 2**-10 and t(-(1 + 2**-11)) == -(1 + 2**-10)  # tie: away
    assert t(1 + 2**-11 - 2**-23) == 1 and t(1 + 2**-10 + 2**-11 - 2**-23, trunc=True) == 1 + 2**-10
    assert b(1 + 2**-8) == 1 and b(1 + 3 * 2**-8) == 1 + 2**-6 and b(-(1 + 3 * 2**-8)) == -(1 + 2**-6)
    assert b(1 + 2**-8 + 2**-20) == 1 + 2**-7 and np.isnan(b(np.nan)) and b(np.inf) == np.inf


class Arith:
    def __init__(self, mode, accum="f64", trunc=False):
        self.mode, self.accum, self.trunc = mode, accum, trunc
        self.dt = F64 if mode == "fp64" else F32

    def mm(self, a, b):
        if self.mode in ("fp64", "fp32"):
            return a @ b
        r = (lambda x: tf32(x, self.trunc)) if self.mode == "tf32" else bf16
        if self.accum == "f32":
            return r(a) @ r(b)
        return (r(a).astype(F64) @ r(b).astype(F64)).astype(F32)


def resid(m):  # ||I - M||_F / sqrt(n), summed in double, returned in M's precision
    d = np.eye(len(m)) - m.astype(F64)
    return m.dtype.type(np.sqrt(np.sum(d * d) / len(m)))


def eye(n, dt, v=1.0):
    return (np.eye(n) * v).astype(dt)


# Each op: (state, r0, step(state, phase) -> (state, reported residual), out(state) -> matrix,
# true_resid(state) -> ||I - .||/sqrt(n) recomputed in float64 from the iterate).
def op_inverse(A, ar):
    dt, n = ar.dt, len(A)
    a = A.astype(dt)
    n1, ni = np.abs(a).sum(0, dtype=dt).max(), np.abs(a).sum(1, dtype=dt).max()
    x = (A.T / (F64(n1) * F64(ni))).astype(dt)

    def step(s, _):
        x = dt(2) * s[0] + dt(-1) * ar.mm(s[0], s[1])
        r = ar.mm(a, x)
        return (x, r), resid(r)
    r = ar.mm(a, x)
    return (x, r), resid(r), step, lambda s: s[0], lambda s: resid(A @ s[0].astype(F64))


def op_sqrt(A, ar, inverse=True):
    dt, n = ar.dt, len(A)
    c = dt(np.linalg.norm(A))
    y = A.astype(dt) / c

    def step(s, _):
        y, z, w = s
        y = dt(1.5) * y + dt(-0.5) * ar.mm(y, w)
        z = dt(1.5) * z + dt(-0.5) * ar.mm(w, z)
        w = ar.mm(z, y)
        return (y, z, w), resid(w)
    sc = np.sqrt(c)
    out = (lambda s: (dt(1) / sc) * s[1]) if inverse else (lambda s: sc * s[0])
    return ((y, eye(n, dt), y.copy()), resid(y), step, out,
            lambda s: resid(s[1].astype(F64) @ s[0].astype(F64)))


def op_root(A, ar, p):
    dt, n = ar.dt, len(A)
    z = F64(1 + p) / (2 * F64(dt(np.linalg.norm(A))))
    m, diag, inv_p = dt(z) * A.astype(dt), dt(1 + 1 / p), dt(1 / p)

    def step(s, _):
        x, m = s
        t = eye(n, dt, diag) - inv_p * m
        x, q = ar.mm(x, t), p
        while True:
            if q & 1:
                m = ar.mm(t, m)  # M <- T^(2^j) M
            q >>= 1
            if q == 0:
                break
            t = ar.mm(t, t)
        return (x, m), resid(m)
    true = lambda s: resid(np.linalg.matrix_power(s[0].astype(F64), p) @ A)  # ||I - X^p A||
    return (eye(n, dt, z ** (1 / p)), m), resid(m), step, lambda s: s[0], true


def op_polar(A, ar, a=3.4445, b=-4.7750, c=2.0315):
    dt, tall = ar.dt, A.shape[0] >= A.shape[1]
    gram = lambda x: ar.mm(x.T, x) if tall else ar.mm(x, x.T)
    x = A.astype(dt) / dt(np.linalg.norm(A))

    def step(s, cubic):
        x, g = s
        if cubic:
            x = dt(1.5) * x + dt(-0.5) * (ar.mm(x, g) if tall else ar.mm(g, x))
        else:
            q = dt(c) * ar.mm(g, g) + dt(b) * g
            x = dt(a) * x + (ar.mm(x, q) if tall else ar.mm(q, x))
        g = gram(x)
        return (x, g), resid(g)
    x64 = lambda s: s[0].astype(F64)
    g0 = gram(x)
    return ((x, g0), resid(g0), step, lambda s: s[0],
            lambda s: resid(x64(s).T @ x64(s) if tall else x64(s) @ x64(s).T))


def drive(state, r0, step, max_steps, rstop, phase=False, keep=(), floor=False, true_resid=None):
    """reference iterate(): dict(info, steps, r, state, snaps {k: state at step k}, floor...).
    floor=True goes on past the stop (to max_steps, or until the reported residual has not set a
    new low for 3 steps) to find the lowest residual the arithmetic reaches, reported and true."""
    out = {"snaps": {0: state} if 0 in keep else {}, "floor": float(r0), "floor_true": np.inf}
    r, k, code, stop, since = r0, 0, 0, None, 0
    while k < max_steps:
        if stop is None and rstop and r <= TOL:
            stop = (k, state, r)
        if stop is not None and (not floor or since >= 3):
            break
        state, nxt = step(state, phase)
        k += 1
        if k in keep:
            out["snaps"][k] = state
        if floor:
            since = 0 if nxt < out["floor"] else since + 1
            out["floor"] = min(out["floor"], float(nxt))
            out["floor_true"] = min(out["floor_true"], float(true_resid(state)))
        if stop is None:
            if not np.isfinite(nxt) or nxt > 2 * max(r0, 1) or (nxt >= r and nxt >= 1):
                code, stop = -2, (k, state, nxt)
            elif rstop and nxt >= r:
                stop = (k, state, nxt)
            r = nxt
        if not np.isfinite(nxt) or nxt > 1e3:
            break
    steps, state, r = stop if stop is not None else (k, state, r)
    info = code if code < 0 else int(rstop and not r <= TOL)
    return dict(out, steps=steps, state=state, r=float(r), info=info)


def spd_bench(n, rng):  # the benchmark's A = B B^T / n + I/2, rounded to float32
    B = rng.standard_normal((n, n))
    return ((B @ B.T) / n + np.eye(n) / 2).astype(F32).astype(F64)


def spd_test(n, rng, kappa=10.0):  # tests/spd_inputs.hpp random_spd: s kappa^(-i/(n-1)), random Q
    q, r = np.linalg.qr(rng.standard_normal((n, n)))
    lam = rng.uniform(0.5, 2.0) * kappa ** (-np.arange(n) / max(n - 1, 1))
    return ((q * np.sign(np.diag(r)) * lam) @ (q * np.sign(np.diag(r))).T).astype(F32).astype(F64)


def fn(A, f):  # f(A) of a symmetric A by eigh in float64
    w, v = np.linalg.eigh(A)
    return (v * f(w)) @ v.T


def rel(x, y):
    return float(np.linalg.norm(x.astype(F64) - y) / np.linalg.norm(y))


def square_case(add, tag, make, A, exact, kind, ar):
    """One square op in every mode: 5 fixed steps (kind 'fix') or the residual stop ('res')."""
    runs, res = {}, kind == "res"
    for mode in MODES:
        s, r0, step, out, tr = make(A, ar(mode))
        d = drive(s, r0, step, MAXIT if res else 5, res, floor=res and mode != "fp64", true_resid=tr)
        runs[mode] = (d, out(d["state"]), tr)
    keep = {runs[m][0]["steps"] for m in MODES[1:]}
    s, r0, step, out64, _ = make(A, ar("fp64"))
    ref = drive(s, r0, step, max(keep), False, keep=keep)  # the fp64 iteration, same step counts
    tag = f"{tag}, {'resid stop' if res else '5 fixed'}"
    for mode, (d, x, tr) in runs.items():
        add(tag, "err vs exact", mode, rel(x, exact))
        if mode != "fp64":
            add(tag, "err vs fp64 iteration", mode, rel(x, out64(ref["snaps"][d["steps"]])))
        if res:
            add(tag, "steps", mode, d["steps"])
        report(add, tag, mode, d, tr, res)


def report(add, tag, mode, d, tr, res=True):
    if mode == "fp64":
        return
    add(tag, "resid reported", mode, d["r"])
    if res:
        for metric, v in (("info", d["info"]), ("resid true (f64)", float(tr(d["state"]))),
                          ("floor reported", d["floor"]), ("floor true (f64)", d["floor_true"])):
            add(tag, metric, mode, v)


def polar_case(add, tag, A, ar, convergent=True):
    """Muon quintic, 5 steps; then the convergent schedule (those 5 + at most 20 cubic steps)."""
    runs = {}
    for mode in MODES:
        s, r0, step, out, tr = op_polar(A, ar(mode))
        q = drive(s, r0, step, 5, False)
        c = convergent and drive(q["state"], q["r"], step, 20, True, phase=True,
                                 floor=mode != "fp64", true_resid=tr)
        runs[mode] = (out(q["state"]).astype(F64), c, out, tr)
    for mode, (x, *_) in runs.items():
        sv = np.sqrt(np.clip(np.linalg.eigvalsh(x.T @ x if x.shape[0] >= x.shape[1] else x @ x.T), 0, None))
        add(f"{tag}, quintic 5", "sv min", mode, sv[0])
        add(f"{tag}, quintic 5", "sv max", mode, sv[-1])
        if mode != "fp64":
            add(f"{tag}, quintic 5", "err vs fp64 iteration", mode, rel(x, runs["fp64"][0]))
    if convergent:
        u, _, vt = np.linalg.svd(A, full_matrices=False)
        for mode, (_, c, out, tr) in runs.items():
            add(f"{tag}, convergent", "cubic steps", mode, c["steps"])
            add(f"{tag}, convergent", "err vs exact polar", mode, rel(out(c["state"]), u @ vt))
            report(add, f"{tag}, convergent", mode, c, tr)


def table(rows):
    """Markdown: one line per (case, metric); cells 'median / worst' over the seeds."""
    cells = {}
    for case, metric, mode, v in rows:
        cells.setdefault((case, metric), {}).setdefault(mode, []).append(v)
    print("| case | metric | " + " | ".join(MODES) + " |\n|---|---|" + "---|" * len(MODES))
    for (case, metric), by in cells.items():
        out = []
        for v in (by.get(m) for m in MODES):
            if v is None or metric == "info":
                out.append("" if v is None else ",".join(str(x) for x in sorted(set(v))))
            elif isinstance(v[0], int):
                out.append(f"{int(np.median(v))}" + (f" / {max(v)}" if len(v) > 1 else ""))
            else:
                w = min(v) if metric == "sv min" else max(v)
                out.append(f"{np.median(v):.2e}" + (f" / {w:.2e}" if len(v) > 1 else ""))
        print(f"| {case} | {metric} | " + " | ".join(out) + " |")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--quick", action="store_true", help="no n = 1024 square ops, fewer seeds")
    ap.add_argument("--big", action="store_true", help="polar: 4096 x 4096, quintic only (~40 s a mode)")
    ap.add_argument("--accum", choices=("f64", "f32"), default="f64")
    ap.add_argument("--tf32-trunc", action="store_true", help="truncate to TF32 instead of rna")
    args = ap.parse_args()
    selftest()
    rows, t0 = [], time.time()
    add = lambda *r: rows.append(r)
    ar = lambda mode: Arith(mode, args.accum, args.tf32_trunc)
    sizes = {32: 8, 256: 3} if args.quick else {32: 8, 256: 3, 1024: 2}
    print(f"seed {args.seed} (matrix j of a case: default_rng(seed + j)); accum {args.accum}; "
          f"tf32 {'truncated' if args.tf32_trunc else 'rna'}; tol {TOL}, max {MAXIT} steps\n")
    cases = [("inv_sqrt", lambda w: w ** -0.5, op_sqrt, ("fix", "res"), 0.0),
             ("inverse", lambda w: 1 / w, op_inverse, ("res",), 0.0),
             ("inv 4th root, eps 1e-3", lambda w: w ** -0.25, lambda A, a: op_root(A, a, 4), ("res",), 1e-3)]
    for name, f, make, kinds, eps in cases:
        for n, count in sizes.items():
            for j in range(count):
                A = spd_bench(n, np.random.default_rng(args.seed + j)) + eps * np.eye(n)
                for kind in kinds:
                    square_case(add, f"{name} n={n}", make, A, fn(A, f), kind, ar)
    for shape in [(4096, 4096)] if args.big else [(1024, 1024), (256, 1024)]:
        for j in range(1 if args.quick or args.big else 2):
            A = np.random.default_rng(args.seed + j).standard_normal(shape).astype(F32).astype(F64)
            polar_case(add, f"polar {shape[0]}x{shape[1]}", A, ar, convergent=not args.big)
    # tests/newton_schulz_test.cpp ReducedPrecisionModesOnCuda: the sqrt output, kappa 10 spectra,
    # 12 fixed steps, bound 20 * 10 * 2^-10 (tf32) and 0.1 (bf16).
    for n in (32, 200):
        for j in range(8):
            A = spd_test(n, np.random.default_rng(args.seed + 100 + j))
            for mode in MODES[1:]:
                s, r0, step, out, _ = op_sqrt(A, ar(mode), inverse=False)
                d = drive(s, r0, step, 12, False)
                tag = f"test bound: sqrt, kappa 10, n={n}, 12 fixed"
                add(tag, "err vs exact", mode, rel(out(d["state"]), fn(A, np.sqrt)))
                add(tag, "info", mode, d["info"])
    table(rows)
    print(f"\ncells: median / worst over the seeds (sv min: median / min).  Test bounds: tf32 "
          f"{200 * 2**-10:.3g}, bf16 0.1.  Runtime {time.time() - t0:.0f} s")


if __name__ == "__main__":
    main()
