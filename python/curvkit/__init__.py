"""curvkit: batched linear algebra for second-order optimizers, on your own arrays.

Every function takes DLPack-capable arrays (NumPy on the CPU; PyTorch or CuPy tensors on the CPU
or a CUDA GPU) and works on them in place, without copying: outputs the caller passes are
written, outputs it leaves out are allocated with the inputs' framework, dtype and device.  A
matrix argument is 2-D (rows, cols) or 3-D (batch, rows, cols) with rows of unit stride (any
row and batch strides); a list of them is a grouped batch (one call for many shapes).  Symmetric
inputs are read from their lower triangle.

The backend follows the arrays: CUDA arrays run on the cuda backend (on the current PyTorch or
CuPy stream), host arrays on Kokkos (or the reference loops when Kokkos is absent or runs on a
GPU); ``backend=`` overrides it.  Device work is only launched: per-matrix ``info`` codes (0
success; see the C++ headers for the others) are arrays on the same device.

Bad arguments raise ValueError (shapes, strides, devices) or TypeError (dtypes) naming the
argument.  The mathematics of each op is documented in include/curvkit/<family>.hpp.
"""

from __future__ import annotations

import atexit
import numbers

import numpy as np

from . import _ext

__version__ = _ext.version()
__all__ = [
    "version", "backends", "optimizer_names", "synchronize",
    "potrf", "potrs", "posv", "potri",
    "rank1_update", "woodbury_solve", "bfgs_update", "bfgs_damping", "hessian_action_pair",
    "lbfgs_apply",
    "gemm", "syrk", "mode_product", "kron_apply", "mode_gram", "tnt_normalize",
    "kfac_pi_damping",
    "khatri_rao_gram", "khatri_rao_jv", "khatri_rao_jtu", "khatri_rao_layer_sums", "coarse_gram",
    "newton_schulz_inverse", "newton_schulz_sqrt", "newton_schulz_inverse_root",
    "newton_schulz_polar", "Optimizer",
]

_BACKENDS = {"reference": 0, "kokkos": 1, "cuda": 2}
_DLPACK_CPU, _DLPACK_CUDA = 1, 2
_initialized = False
_contexts = {}


def version() -> str:
    """The library's release, e.g. "0.1.0"."""
    return _ext.version()


def backends() -> list[str]:
    """The backends compiled into this build."""
    return [name for name, value in _BACKENDS.items() if _ext.backend_available(value)]


def optimizer_names() -> list[str]:
    """The optimizers curvkit.Optimizer (and curvkit.torch) can make."""
    return _ext.optimizer_names()


# ---- arrays of any framework ----------------------------------------------------------------

def _framework(x) -> str:
    return type(x).__module__.split(".")[0]


def _device_type(x) -> int:
    if hasattr(x, "__dlpack_device__"):
        return int(x.__dlpack_device__()[0])
    return _DLPACK_CPU


def _dtype_name(x) -> str:
    return str(x.dtype).replace("torch.", "")


def _empty(like, shape, dtype=None):
    """An uninitialised array of `like`'s framework and device (dtype: like's by default)."""
    dtype = dtype or _dtype_name(like)
    fw = _framework(like)
    if fw == "torch":
        import torch
        return torch.empty(shape, dtype=getattr(torch, dtype), device=like.device)
    if fw == "cupy":
        import cupy
        with cupy.cuda.Device(like.device.id):
            return cupy.empty(shape, dtype=dtype)
    return np.empty(shape, dtype=dtype)


def _zeros(like, shape, dtype=None):
    out = _empty(like, shape, dtype)
    out[...] = 0
    return out


def _stream(x) -> int:
    fw = _framework(x)
    if fw == "torch":
        import torch
        return torch.cuda.current_stream(x.device).cuda_stream
    if fw == "cupy":
        import cupy
        return cupy.cuda.get_current_stream().ptr
    return 0


def _context(x, backend=None):
    """The cached C context for array x's device (or the named backend)."""
    global _initialized
    if not _initialized:
        _ext.initialize()
        _initialized = True
    on_gpu = _device_type(x) == _DLPACK_CUDA
    if backend is None:
        if on_gpu:
            backend = "cuda"
        elif _ext.backend_available(1) and _host_kokkos():
            backend = "kokkos"
        else:
            backend = "reference"
    if backend not in _BACKENDS:
        raise ValueError(f"backend must be one of {sorted(_BACKENDS)}, not {backend!r}")
    if not _ext.backend_available(_BACKENDS[backend]):
        raise RuntimeError(f"the {backend} backend is not compiled into this build of curvkit")
    stream = _stream(x) if backend == "cuda" else 0
    key = (backend, stream)
    if key not in _contexts:
        _contexts[key] = _ext.Context(_BACKENDS[backend], stream)
    return _contexts[key]


@atexit.register
def _release_contexts():
    _contexts.clear()


def _host_kokkos() -> bool:
    return _ext.kokkos_host_memory()


def synchronize(x=None, backend=None):
    """Waits for the work launched on x's device (all host work is already done)."""
    if x is None:
        for ctx in _contexts.values():
            ctx.synchronize()
    else:
        _context(x, backend).synchronize()


def _group(x):
    return list(x) if isinstance(x, (list, tuple)) else [x]


def _first(x):
    return _group(x)[0]


def _batch(x) -> int:
    return int(x.shape[0]) if len(x.shape) == 3 else 1


def _count(x) -> int:
    return sum(_batch(m) for m in _group(x))


def _info(like, count):
    return _zeros(like, (count,), "int32")


_POLICIES = {"report": 0, "shift": 1}


def _spd_args(shift, policy, shift_start, shift_growth, max_shift_retries):
    if policy not in _POLICIES:
        raise ValueError(f"policy must be 'report' or 'shift', not {policy!r}")
    return (float(shift), _POLICIES[policy], float(shift_start), float(shift_growth),
            int(max_shift_retries))


# ---- SPD --------------------------------------------------------------------------------------

def potrf(a, *, shift=0.0, policy="report", shift_start=0.0, shift_growth=10.0,
          max_shift_retries=12, return_shift=False, backend=None):
    """Cholesky A + shift I = L L^T in place (L in the lower triangle); returns info
    (and the per-matrix retry shifts when return_shift)."""
    first = _first(a)
    info = _info(first, _count(a))
    used = _zeros(first, (_count(a),)) if return_shift else None
    _ext.potrf(_context(first, backend), _group(a), info,
               *_spd_args(shift, policy, shift_start, shift_growth, max_shift_retries), used)
    return (info, used) if return_shift else info


def potrs(l, b, *, backend=None):
    """B := (L L^T)^{-1} B in place from potrf's factor; returns info."""
    first = _first(l)
    info = _info(first, _count(l))
    _ext.potrs(_context(first, backend), _group(l), _group(b), info)
    return info


def posv(a, b, *, shift=0.0, policy="report", shift_start=0.0, shift_growth=10.0,
         max_shift_retries=12, return_shift=False, backend=None):
    """B := (A + shift I)^{-1} B in place (A's lower triangle becomes L); returns info."""
    first = _first(a)
    info = _info(first, _count(a))
    used = _zeros(first, (_count(a),)) if return_shift else None
    _ext.posv(_context(first, backend), _group(a), _group(b), info,
              *_spd_args(shift, policy, shift_start, shift_growth, max_shift_retries), used)
    return (info, used) if return_shift else info


def potri(a, *, shift=0.0, policy="report", shift_start=0.0, shift_growth=10.0,
          max_shift_retries=12, return_shift=False, backend=None):
    """A := (A + shift I)^{-1} in place (both triangles written); returns info."""
    first = _first(a)
    info = _info(first, _count(a))
    used = _zeros(first, (_count(a),)) if return_shift else None
    _ext.potri(_context(first, backend), _group(a), info,
               *_spd_args(shift, policy, shift_start, shift_growth, max_shift_retries), used)
    return (info, used) if return_shift else info


# ---- Sherman-Morrison / Woodbury / quasi-Newton ---------------------------------------------

def rank1_update(h, u, *, decay=1.0, weight=1.0, mirror_upper=True, backend=None):
    """H := (decay G + weight sum_j u_j u_j^T)^{-1} in place for H = G^{-1}; the rows of u
    are the vectors.  Returns info."""
    info = _info(h, _batch(h))
    _ext.rank1_update(_context(h, backend), h, u, info, float(decay), float(weight),
                      bool(mirror_upper))
    return info


def woodbury_solve(ut, b, *, lam=1.0, c=1.0, gram=None, backend=None):
    """B := (lam I + U C U^T)^{-1} B in place; ut holds U^T (k x n).  c is a number (C = c I),
    a (batch, 1, k) array (diagonal C) or a (batch, k, k) SPD array.  Returns info."""
    info = _info(ut, _batch(ut))
    if isinstance(c, numbers.Number):
        form, c_scale, c_arr = 0, float(c), None
    else:
        form = 1 if c.shape[-2] == 1 and c.shape[-1] != 1 else 2
        c_scale, c_arr = 1.0, c
    _ext.woodbury_solve(_context(ut, backend), ut, b, info, float(lam), c_scale, form, c_arr,
                        gram)
    return info


def bfgs_update(h, s, y, *, min_curvature=0.0, skip_rejected=False, mirror_upper=True,
                backend=None):
    """The BFGS inverse update of H for each pair (rows of s and y) in place; returns info."""
    info = _info(h, _batch(h))
    _ext.bfgs_update(_context(h, backend), h, s, y, info, float(min_curvature),
                     bool(skip_rejected), bool(mirror_upper))
    return info


_DAMPING = {"powell_lm": 0, "double_damping": 1, "powell_identity_lm": 2, "powell_lm_hy": 3}


def bfgs_damping(h, s, y, *, scheme="powell_lm", mu1=0.2, mu2=1.0, skip_test=False,
                 backend=None):
    """Damps each BFGS pair (s, y: batch x 1 x n) in place for K-BFGS: Powell damping with H
    (theta1), then Levenberg-Marquardt y += mu2 s ('powell_lm'), or Powell with B = I
    (theta2, 'double_damping'), or Powell with H = I / mu2 then LM ('powell_identity_lm'; h may
    be None), or 'powell_lm' given h = the products H y (batch x 1 x n, 'powell_lm_hy').
    skip_test flags pairs with s~^T y~ < mu1 y~^T H y~.  Returns (info, theta (batch x 2),
    skip)."""
    if scheme not in _DAMPING:
        raise ValueError(f"bfgs_damping: scheme must be one of {sorted(_DAMPING)}, not {scheme!r}")
    n = _batch(s)
    info, skip = _info(s, n), _info(s, n)
    theta = _zeros(s, (2 * n,))
    _ext.bfgs_damping(_context(s, backend), h, s, y, info, _DAMPING[scheme], float(mu1),
                      float(mu2), bool(skip_test), theta, skip)
    return info, theta.reshape(n, 2), skip


def hessian_action_pair(h, abar, x, s=None, y=None, *, lam=0.0, scale=None, backend=None):
    """K-BFGS's pair for the A factor: s = H abar and y = scale X^T (X s) + lam s (X^T X never
    formed; scale defaults to 1 / x.rows).  h: batch x n x n, abar: batch x 1 x n, x:
    batch x m x n.  Returns (s, y, info)."""
    s = _empty(abar, tuple(abar.shape)) if s is None else s
    y = _empty(abar, tuple(abar.shape)) if y is None else y
    info = _info(h, _batch(h))
    _ext.hessian_action_pair(_context(h, backend), h, abar, x, s, y, info, float(lam),
                             float(scale or 0.0))
    return s, y, info


def lbfgs_apply(s, y, x, *, gamma=1.0, skip_zero_pairs=False, two_loop=False, backend=None):
    """X := H_p X for the p stored pairs (rows of s, y; oldest first) and H_0 = gamma I
    (gamma <= 0: the newest pair's scaling), in the compact form (or the two-loop recursion).
    Returns info."""
    info = _info(s, _batch(s))
    fn = _ext.lbfgs_two_loop if two_loop else _ext.lbfgs_apply
    fn(_context(s, backend), s, y, x, info, float(gamma), bool(skip_zero_pairs))
    return info


# ---- products -------------------------------------------------------------------------------

def _shape_of_product(a, b, trans_a, trans_b):
    r = a.shape[-1] if trans_a else a.shape[-2]
    c = b.shape[-2] if trans_b else b.shape[-1]
    return (*a.shape[:-2], r, c) if len(a.shape) == 3 else (r, c)


def gemm(a, b, c=None, *, alpha=1.0, beta=0.0, trans_a=False, trans_b=False, backend=None):
    """C = alpha op(A) op(B) + beta C (lists: a grouped batch); returns C."""
    if c is None:
        c = [_zeros(x, _shape_of_product(x, y, trans_a, trans_b))
             for x, y in zip(_group(a), _group(b))]
        if not isinstance(a, (list, tuple)):
            c = c[0]
    _ext.gemm(_context(_first(a), backend), bool(trans_a), bool(trans_b), float(alpha),
              _group(a), _group(b), float(beta), _group(c))
    return c


def syrk(a, c=None, *, alpha=1.0, beta=0.0, trans=False, fill="lower", backend=None):
    """C = alpha op(A) op(A)^T + beta C (fill 'lower' or 'full'); returns C."""
    if c is None:
        c = [_zeros(x, _shape_of_product(x, x, trans, not trans)) for x in _group(a)]
        if not isinstance(a, (list, tuple)):
            c = c[0]
    _ext.syrk(_context(_first(a), backend), bool(trans), float(alpha), _group(a), float(beta),
              _group(c), fill == "full")
    return c


# ---- Kronecker ------------------------------------------------------------------------------

def mode_product(x, u, y=None, *, batched=False, trans=False, backend=None):
    """Y = X x_0 op(U_0) x_1 op(U_1) ...: u has one matrix (or None: mode untouched) per mode
    of the tensor x (order 1-4; with batched, axis 0 is the batch).  Returns Y."""
    lead = 1 if batched else 0
    if len(u) != len(x.shape) - lead:
        raise ValueError(f"mode_product: u must have one entry per mode of x "
                         f"({len(x.shape) - lead}), not {len(u)}")
    if y is None:
        dims = list(x.shape)
        for k, m in enumerate(u):
            if m is not None:
                dims[k + lead] = m.shape[-1] if trans else m.shape[-2]
        y = _empty(x, tuple(dims))
    _ext.mode_product_chain(_context(x, backend), x, list(u), y, bool(batched), bool(trans))
    return y


def kron_apply(g_factor, a_factor, grad, out=None, *, form="inverse", alpha=1.0, backend=None):
    """out = alpha G^{-1} grad A^{-1} per matrix, the factors given as inverses
    (form='inverse') or as Cholesky factors (form='cholesky').  Returns out."""
    if form not in ("inverse", "cholesky"):
        raise ValueError(f"kron_apply: form must be 'inverse' or 'cholesky', not {form!r}")
    if out is None:
        out = [_empty(x, tuple(x.shape)) for x in _group(grad)]
        if not isinstance(grad, (list, tuple)):
            out = out[0]
    _ext.kron_apply(_context(_first(grad), backend), _group(g_factor), _group(a_factor),
                    _group(grad), _group(out), form == "cholesky", float(alpha))
    return out


def mode_gram(x, grams=None, *, batched=False, beta=0.0, scale=1.0, fill="full", backend=None):
    """S_k = beta S_k + (1 - beta) scale mat_k(X) mat_k(X)^T for every mode k (grams: one
    array or None per mode).  Returns grams."""
    lead = 1 if batched else 0
    if grams is None:
        b = (x.shape[0],) if batched else ()
        grams = [_zeros(x, (*b, d, d)) for d in x.shape[lead:]]
    _ext.mode_gram(_context(x, backend), x, list(grams), bool(batched), float(beta),
                   float(scale), fill == "full")
    return grams


def tnt_normalize(grams, *, backend=None):
    """TNT's trace normalisation (its eq. 4.10) in place: grams is the list of one tensor
    variable's K mode Grams S_i (each d_i x d_i, or batch x d_i x d_i for a batch of variables);
    afterwards every tr(S_i) / d_i equals c0 = (t / prod d_j)^(1/K), t the mean trace.
    Returns info (1: all-zero statistic, left unchanged; -1: NaN/Inf)."""
    grams = _group(grams)
    info = _info(grams[0], _batch(grams[0]))
    _ext.tnt_normalize(_context(grams[0], backend), grams, info)
    return info


def kfac_pi_damping(a_factors, g_factors, lam, *, backend=None):
    """K-FAC's pi-split damping for each pair of factors (A of group l with G of group l):
    pi = sqrt((tr A / d_A) / (tr G / d_G)), shift_a = pi sqrt(lam), shift_g = sqrt(lam) / pi.
    Returns (shift_a, shift_g, info), flat over the pairs in group order (info 1: a zero trace,
    pi = 1)."""
    first = _first(a_factors)
    n = _count(a_factors)
    shift_a, shift_g, info = _zeros(first, (n,)), _zeros(first, (n,)), _info(first, n)
    _ext.kfac_pi_damping(_context(first, backend), _group(a_factors), _group(g_factors),
                         float(lam), shift_a, shift_g, info)
    return shift_a, shift_g, info


# ---- Khatri-Rao -----------------------------------------------------------------------------

_PATHS = {"auto": 0, "fused": 1, "direct": 2}


def khatri_rao_gram(a, g, k=None, *, samples=None, bias=False, alpha=1.0, beta=0.0,
                    fill="lower", path="auto", backend=None):
    """K = alpha J J^T + beta K, J the per-sample gradients g_i (x) a_i of a layer (rows
    of a: inputs, of g: output gradients; samples m, default a's rows, with a.rows / m
    positions each).  Returns K (m x m)."""
    if k is None:
        m = samples or _first(a).shape[-2]
        lead = _first(a).shape[:-2]
        k = _zeros(_first(a), (*lead, m, m))
    _ext.khatri_rao_gram(_context(_first(a), backend), _group(a), _group(g), _group(k),
                         bool(bias), float(alpha), float(beta), fill == "full", _PATHS[path])
    return k


def khatri_rao_jv(a, g, v, u, *, bias=False, alpha=1.0, beta=0.0, backend=None):
    """u = alpha J vec(V) + beta u (u: m x 1): the per-sample inner products <g_i a_i^T, V>."""
    _ext.khatri_rao_jv(_context(_first(a), backend), _group(a), _group(g), _group(v),
                       _group(u), bool(bias), float(alpha), float(beta))
    return u


def khatri_rao_jtu(a, g, u, v, *, bias=False, alpha=1.0, beta=0.0, backend=None):
    """V = alpha J^T u + beta V = alpha sum_i u_i g_i a_i^T + beta V (u: m x 1)."""
    _ext.khatri_rao_jtu(_context(_first(a), backend), _group(a), _group(g), _group(u),
                        _group(v), bool(bias), float(alpha), float(beta))
    return v


def khatri_rao_layer_sums(x, sums=None, *, samples=None, bias=False, backend=None):
    """Two-level K-FAC's per-sample layer sums: sums[i, l] = the sum of the entries of sample
    i's rows of x[l] (x: a list of one (m S_l) x d_l matrix per layer, or batch x (m S_l) x d_l;
    with bias each row has a trailing 1, adding S_l).  samples: m (default: x[0]'s rows).
    Returns sums (m x L)."""
    x = _group(x)
    if sums is None:
        m = samples or x[0].shape[-2]
        sums = _zeros(x[0], (*x[0].shape[:-2], m, len(x)))
    _ext.khatri_rao_layer_sums(_context(x[0], backend), x, sums, bool(bias))
    return sums


def coarse_gram(sums_a, sums_g, s_a=None, s_g=None, f=None, *, beta=0.0, backend=None):
    """Two-level K-FAC's coarse Fisher: S_A = beta S_A + (1 - beta) sums_a^T sums_a / m, S_G
    likewise, F = S_A * S_G (elementwise; L x L, all written in full).  Returns (s_a, s_g, f)."""
    shape = (*sums_a.shape[:-2], sums_a.shape[-1], sums_a.shape[-1])
    s_a = _zeros(sums_a, shape) if s_a is None else s_a
    s_g = _zeros(sums_a, shape) if s_g is None else s_g
    f = _empty(sums_a, shape) if f is None else f
    _ext.coarse_gram(_context(sums_a, backend), sums_a, sums_g, s_a, s_g, f, float(beta))
    return s_a, s_g, f


# ---- Newton-Schulz --------------------------------------------------------------------------

_COMPUTE = {"native": 0, "tf32": 1, "bf16": 2}
_SCHEDULES = {"cubic": 0, "quintic": 1, "convergent": 2}


def _newton_schulz(kind, a, x, x2, p, iterations, tolerance, epsilon, compute, polar, backend):
    first = _first(a)
    n = _count(a)
    info = _info(first, n)
    steps = _info(first, n)
    residual = _zeros(first, (n,))
    stop = 0 if tolerance is None else 1
    sched, qa, qb, qc, cubic = polar or (1, 3.4445, -4.7750, 2.0315, 20)
    _ext.newton_schulz(_context(first, backend), kind, _group(a), _group(x) if x is not None
                       else [], _group(x2) if x2 is not None else [], int(p), info, steps,
                       residual, stop, int(iterations), float(tolerance or 1e-6),
                       float(epsilon), _COMPUTE[compute], sched, qa, qb, qc, cubic)
    return info, steps, residual


def _like_all(a):
    out = [_empty(m, tuple(m.shape)) for m in _group(a)]
    return out if isinstance(a, (list, tuple)) else out[0]


def newton_schulz_inverse(a, x=None, *, iterations=5, tolerance=None, epsilon=0.0,
                          compute="native", backend=None):
    """X = (A + epsilon I)^{-1} by Newton-Schulz: a fixed number of steps, or with a
    tolerance until the residual ||I - A X||_F / sqrt(n) reaches it.  Returns
    (X, info, iterations, residual)."""
    x = _like_all(a) if x is None else x
    return (x, *_newton_schulz(0, a, x, None, 0, iterations, tolerance, epsilon, compute, None,
                               backend))


def newton_schulz_sqrt(a, sqrt=None, inv_sqrt=None, *, iterations=5, tolerance=None,
                       epsilon=0.0, compute="native", backend=None):
    """(A + epsilon I)^{1/2} and ^{-1/2} of SPD A.  Returns (sqrt, inv_sqrt, info, iterations,
    residual)."""
    sqrt = _like_all(a) if sqrt is None else sqrt
    inv_sqrt = _like_all(a) if inv_sqrt is None else inv_sqrt
    return (sqrt, inv_sqrt, *_newton_schulz(1, a, sqrt, inv_sqrt, 0, iterations, tolerance,
                                            epsilon, compute, None, backend))


def newton_schulz_inverse_root(a, p, x=None, *, iterations=5, tolerance=None, epsilon=0.0,
                               compute="native", backend=None):
    """X = (A + epsilon I)^{-1/p} of SPD A (Shampoo: p = 4).  Returns (X, info, iterations,
    residual)."""
    x = _like_all(a) if x is None else x
    return (x, *_newton_schulz(2, a, x, None, p, iterations, tolerance, epsilon, compute, None,
                               backend))


def newton_schulz_polar(a, u=None, *, iterations=5, tolerance=None, schedule="quintic",
                        coefficients=(3.4445, -4.7750, 2.0315), cubic_iterations=20,
                        compute="native", backend=None):
    """The orthogonal polar factor of each (rectangular) A; 'quintic' is Muon's iteration,
    'convergent' adds cubic steps until the tolerance.  Returns (U, info, iterations,
    residual)."""
    if schedule not in _SCHEDULES:
        raise ValueError(f"newton_schulz_polar: schedule must be one of {sorted(_SCHEDULES)}")
    u = _like_all(a) if u is None else u
    polar = (_SCHEDULES[schedule], *map(float, coefficients), int(cubic_iterations))
    return (u, *_newton_schulz(3, a, u, None, 0, iterations, tolerance, 0.0, compute, polar,
                               backend))


# ---- optimizers -----------------------------------------------------------------------------

class Optimizer:
    """An optimizer of curvkit's optimizer layer (optimizer_names()) on layers described by
    dicts of arrays: {'kind': 0 linear / 1 conv2d / 2 vector, 'w', 'b', 'dw', 'db', 'm',
    'a', 'g', ...} (docs/optimizer-spec.md §0 for the conventions).  curvkit.torch wraps it
    as torch.optim optimizers."""

    def __init__(self, name, preset="autoencoder", lr=0.0, dtype="float32"):
        if dtype not in ("float32", "float64"):
            raise TypeError(f"Optimizer: dtype must be 'float32' or 'float64', not {dtype!r}")
        self._opt = _ext.Optimizer(name, preset, float(lr), 0 if dtype == "float32" else 1)
        self._ctx = None

    def _context(self, layers, backend=None):
        if not layers:
            raise ValueError("Optimizer: layers is an empty list")
        self._ctx = _context(layers[0]["w"], backend)
        return self._ctx

    def init(self, layers, backend=None):
        self._opt.init(self._context(layers, backend), list(layers))

    def needs(self) -> dict:
        return self._opt.needs()

    def step(self, layers, backend=None):
        self._opt.step(self._context(layers, backend), list(layers))

    def finish_step(self, layers, backend=None):
        self._opt.finish_step(self._context(layers, backend), list(layers))

    @property
    def lr(self) -> float:
        return self._opt.lr

    @lr.setter
    def lr(self, value):
        self._opt.lr = float(value)

    @property
    def iteration(self) -> int:
        return self._opt.iteration

    def unhealthy(self) -> int:
        """Waits for the device; the number of matrices whose last refresh reported a failure."""
        return 0 if self._ctx is None else self._opt.unhealthy(self._ctx)
