"""curvkit's kernels from Python against NumPy / SciPy (an oracle written elsewhere), on every
host backend of the build, in float32 and float64, with fresh random inputs each run."""

import numpy as np
import pytest
import scipy.linalg as sla

import curvkit as ck

HOST_BACKENDS = [b for b in ck.backends() if b != "cuda"]
DTYPES = [np.float32, np.float64]
rng = np.random.default_rng()


def tol(dtype):
    return 2e-4 if dtype == np.float32 else 1e-10


def rel(x, y):
    return np.linalg.norm(np.asarray(x, np.float64) - y) / max(np.linalg.norm(y), 1e-300)


def spd(batch, n, dtype):
    m = rng.standard_normal((batch, n, n))
    return (m @ m.transpose(0, 2, 1) / n + np.eye(n)).astype(dtype)


def randn(*shape, dtype=np.float64):
    return rng.standard_normal(shape).astype(dtype)


params = pytest.mark.parametrize("backend,dtype", [(b, d) for b in HOST_BACKENDS for d in DTYPES])


@params
def test_posv_potrf_potrs_potri(backend, dtype):
    a = spd(4, 7, dtype)
    b = randn(4, 7, 3, dtype=dtype)
    want = np.linalg.solve(a.astype(np.float64), b.astype(np.float64))
    x, l = b.copy(), a.copy()
    assert not ck.posv(a.copy(), x, backend=backend).any()
    assert rel(x, want) < tol(dtype)
    assert not ck.potrf(l, backend=backend).any()
    assert rel(np.tril(l), np.linalg.cholesky(a.astype(np.float64))) < tol(dtype)
    y = b.copy()
    assert not ck.potrs(l, y, backend=backend).any()
    assert rel(y, want) < tol(dtype)
    inv = a.copy()
    assert not ck.potri(inv, shift=0.5, backend=backend).any()
    assert rel(inv, np.linalg.inv(a.astype(np.float64) + 0.5 * np.eye(7))) < 10 * tol(dtype)


@params
def test_grouped_posv_and_not_spd_info(backend, dtype):
    a = [spd(2, 3, dtype), spd(1, 6, dtype)]
    a[0][1] = -a[0][1]  # the second matrix of group 0 is negative definite
    b = [randn(2, 3, 1, dtype=dtype), randn(1, 6, 2, dtype=dtype)]
    a0 = [m.astype(np.float64) for m in a]
    b0 = [m.astype(np.float64) for m in b]
    info = ck.posv([m.copy() for m in a], b, backend=backend)
    assert list(info) == [0, 1, 0]
    assert np.isnan(b[0][1]).all()
    assert rel(b[0][0], np.linalg.solve(a0[0][0], b0[0][0])) < tol(dtype)
    assert rel(b[1], np.linalg.solve(a0[1], b0[1])) < tol(dtype)
    # the shift policy repairs it and reports the shift it used
    b = [randn(2, 3, 1, dtype=dtype), randn(1, 6, 2, dtype=dtype)]
    info, used = ck.posv([m.copy() for m in a], b, policy="shift", return_shift=True,
                         max_shift_retries=30, backend=backend)
    assert not info.any() and used[1] > 0 and used[0] == 0


@params
def test_rank1_update_and_woodbury(backend, dtype):
    n, k = 6, 3
    g = spd(2, n, dtype).astype(np.float64)
    u = randn(2, k, n, dtype=dtype)
    h = np.linalg.inv(g).astype(dtype)
    assert not ck.rank1_update(h, u, decay=0.9, weight=0.1, backend=backend).any()
    u64 = u.astype(np.float64)
    for j in range(k):  # the chain: G <- 0.9 G + 0.1 u_j u_j^T, vector after vector
        g = 0.9 * g + 0.1 * np.einsum("bi,bj->bij", u64[:, j], u64[:, j])
    want = np.linalg.inv(g)
    assert rel(h, want) < 20 * tol(dtype)

    b = randn(2, n, 2, dtype=dtype)
    want = np.linalg.solve(0.3 * np.eye(n) + 2.0 * u64.transpose(0, 2, 1) @ u64,
                           b.astype(np.float64))
    assert not ck.woodbury_solve(u, b, lam=0.3, c=2.0, backend=backend).any()
    assert rel(b, want) < 100 * tol(dtype)


@params
def test_bfgs_and_lbfgs(backend, dtype):
    n, p = 5, 3
    h = spd(1, n, dtype)
    s = randn(1, 1, n, dtype=dtype)
    y = (s + 0.1 * randn(1, 1, n)).astype(dtype)
    assert not ck.bfgs_update(h, s, y, backend=backend).any()
    assert rel(h[0] @ y[0, 0].astype(np.float64), s[0, 0].astype(np.float64)) < 10 * tol(dtype)

    S = randn(1, p, n, dtype=dtype)
    Y = (S + 0.2 * randn(1, p, n)).astype(dtype)
    x = randn(1, n, 2, dtype=dtype)
    # the dense BFGS recursion from H_0 = I as the oracle
    H = np.eye(n)
    for si, yi in zip(S[0].astype(np.float64), Y[0].astype(np.float64)):
        rho = 1 / (si @ yi)
        V = np.eye(n) - rho * np.outer(yi, si)
        H = V.T @ H @ V + rho * np.outer(si, si)
    want = H @ x[0].astype(np.float64)
    x1, x2 = x.copy(), x.copy()
    assert not ck.lbfgs_apply(S, Y, x1, gamma=1.0, backend=backend).any()
    assert not ck.lbfgs_apply(S, Y, x2, gamma=1.0, two_loop=True, backend=backend).any()
    assert rel(x1[0], want) < 100 * tol(dtype) and rel(x2[0], want) < 100 * tol(dtype)


@params
def test_bfgs_damping_and_hessian_action_pair(backend, dtype):
    n, mu1, mu2 = 6, 0.2, 0.5
    f = lambda m: m.astype(np.float64)
    h = spd(2, n, dtype)
    s = randn(2, 1, n, dtype=dtype)
    y = np.empty_like(s)
    y[0] = -s[0] + 0.1 * randn(1, n)  # s^T y < 0: Powell damps it
    y[1] = np.linalg.solve(f(h[1]), f(s[1, 0]))  # H y = s: s^T y = y^T H y, left alone
    for scheme in ["powell_lm", "double_damping", "powell_identity_lm", "powell_lm_hy"]:
        H = np.eye(n) / mu2 if scheme == "powell_identity_lm" else f(h)
        hs, hy_ = s.copy(), y.copy()
        arg = {"powell_identity_lm": None,
               "powell_lm_hy": np.einsum("bij,bkj->bki", f(h), f(y)).astype(dtype)}.get(scheme, h)
        info, theta, _ = ck.bfgs_damping(arg, hs, hy_, scheme=scheme, mu1=mu1, mu2=mu2,
                                         backend=backend)
        assert not info.any(), scheme
        for b in range(2):  # Powell's rule (thesis Alg. 3 / 8 / 11) written out here
            sb, yb = f(s[b, 0]), f(y[b, 0])
            hy = (H if H.ndim == 2 else H[b]) @ yb
            sy, yhy = sb @ yb, yb @ hy
            t1 = (1 - mu1) * yhy / (yhy - sy) if sy < mu1 * yhy else 1.0
            st = t1 * sb + (1 - t1) * hy
            if scheme == "double_damping":
                ss, sy2 = st @ st, st @ yb
                t2 = (1 - mu2) * ss / (ss - sy2) if sy2 < mu2 * ss else 1.0
                yt = t2 * yb + (1 - t2) * st
                assert st @ yt >= mu2 * (st @ st) * (1 - 1e3 * tol(dtype))
            else:
                t2, yt = 1.0, yb + mu2 * st
            assert rel(hs[b, 0], st) < 10 * tol(dtype) and rel(hy_[b, 0], yt) < 10 * tol(dtype)
            assert rel(theta[b], np.array([t1, t2])) < 10 * tol(dtype), scheme
            # Powell's guarantee: s~^T y >= mu1 y^T H y, with equality when damped
            assert st @ yb >= mu1 * yhy * (1 - 1e3 * tol(dtype))
        assert theta[0, 0] < 1 and theta[1, 0] == 1
    # Alg. 5's skip test on the damped pair: flagged when s~^T y~ < mu1 y~^T H y~
    st, yt = s.copy(), y.copy()
    _, _, skip = ck.bfgs_damping(h, st, yt, skip_test=True, backend=backend)
    for b in range(2):
        lhs, rhs = f(st[b, 0]) @ f(yt[b, 0]), 0.2 * f(yt[b, 0]) @ f(h[b]) @ f(yt[b, 0])
        if abs(lhs - rhs) > 1e-3 * abs(rhs):  # not at the rounding-level boundary
            assert skip[b] == (lhs < rhs)
    with pytest.raises(ValueError, match="scheme"):
        ck.bfgs_damping(h, s, y, scheme="powell")

    # K-BFGS's A-factor pair: s = H abar, y = (1/m) X^T X s + lam s
    m = 9
    abar, x = randn(2, 1, n, dtype=dtype), randn(2, m, n, dtype=dtype)
    sp, yp, info = ck.hessian_action_pair(h, abar, x, lam=0.3, backend=backend)
    assert not info.any()
    for b in range(2):
        want_s = f(h[b]) @ f(abar[b, 0])
        want_y = f(x[b]).T @ (f(x[b]) @ want_s) / m + 0.3 * want_s
        assert rel(sp[b, 0], want_s) < tol(dtype) and rel(yp[b, 0], want_y) < tol(dtype)
    _, yp2, _ = ck.hessian_action_pair(h, abar, x, scale=2.0, backend=backend)
    assert rel(yp2[0, 0], 2 * f(x[0]).T @ (f(x[0]) @ (f(h[0]) @ f(abar[0, 0])))) < tol(dtype)


@params
def test_gemm_syrk(backend, dtype):
    a, b = randn(3, 4, 6, dtype=dtype), randn(3, 5, 6, dtype=dtype)
    c = ck.gemm(a, b, trans_b=True, alpha=2.0, backend=backend)
    assert c.shape == (3, 4, 5) and c.dtype == dtype
    assert rel(c, 2 * a.astype(np.float64) @ b.astype(np.float64).transpose(0, 2, 1)) < tol(dtype)
    k = ck.syrk(a, fill="full", backend=backend)
    assert rel(k, a.astype(np.float64) @ a.astype(np.float64).transpose(0, 2, 1)) < tol(dtype)
    # grouped: two shapes in one call
    aa, bb = [randn(2, 3, dtype=dtype), randn(4, 4, dtype=dtype)], [randn(3, 5, dtype=dtype),
                                                                   randn(4, 1, dtype=dtype)]
    cc = ck.gemm(aa, bb, backend=backend)
    for x, y, z in zip(aa, bb, cc):
        assert rel(z, x.astype(np.float64) @ y.astype(np.float64)) < tol(dtype)


@params
def test_kron_and_mode_products(backend, dtype):
    g_inv, a_inv, grad = randn(4, 4, dtype=dtype), randn(3, 3, dtype=dtype), randn(4, 3, dtype=dtype)
    out = ck.kron_apply(g_inv, a_inv, grad, alpha=0.5, backend=backend)
    f = lambda m: m.astype(np.float64)
    assert rel(out, 0.5 * f(g_inv) @ f(grad) @ f(a_inv)) < tol(dtype)
    # (A^{-1} (x) G^{-1}) vec(grad), column-major vec: the K-FAC identity, with SciPy's kron
    assert rel(out.T.reshape(-1), 0.5 * np.kron(f(a_inv).T, f(g_inv)) @ f(grad).T.reshape(-1)) \
        < tol(dtype)
    # Cholesky form: factors of G and A
    G, A = spd(1, 4, dtype)[0], spd(1, 3, dtype)[0]
    lg, la = np.linalg.cholesky(f(G)).astype(dtype), np.linalg.cholesky(f(A)).astype(dtype)
    out = ck.kron_apply(lg, la, grad, form="cholesky", backend=backend)
    assert rel(out, np.linalg.solve(f(G), f(grad)) @ np.linalg.inv(f(A))) < 10 * tol(dtype)

    x = randn(2, 3, 4, dtype=dtype)
    u0, u2 = randn(5, 2, dtype=dtype), randn(2, 4, dtype=dtype)
    y = ck.mode_product(x, [u0, None, u2], backend=backend)
    assert rel(y, np.einsum("ai,ijk,ck->ajc", f(u0), f(x), f(u2))) < tol(dtype)
    grams = ck.mode_gram(x, scale=0.5, backend=backend)
    for k, s in enumerate(grams):
        unfold = np.moveaxis(f(x), k, 0).reshape(x.shape[k], -1)
        assert rel(s, 0.5 * unfold @ unfold.T) < tol(dtype)


@params
def test_tnt_normalize_and_kfac_pi_damping(backend, dtype):
    f = lambda m: m.astype(np.float64)
    dims = (2, 3, 4)
    x = randn(2, *dims)  # two tensor variables
    grams = []
    for k in range(3):
        unfold = np.moveaxis(x, k + 1, 1).reshape(2, dims[k], -1)
        grams.append((unfold @ unfold.transpose(0, 2, 1)).astype(dtype))
    grams[0][1] = 0  # the second variable's statistic is zero: left unchanged, info 1
    for g in grams[1:]:
        g[1] = 0
    before = [f(g) for g in grams]
    info = ck.tnt_normalize(grams, backend=backend)
    assert list(info) == [0, 1]
    t = np.mean([np.trace(g[0]) for g in before])
    c0 = (t / np.prod(dims)) ** (1 / 3)
    for i, (g, g0) in enumerate(zip(grams, before)):  # thesis eq. 4.10
        other = np.prod([d for j, d in enumerate(dims) if j != i])
        assert rel(g[0], g0[0] / (c0 ** 2 * other)) < tol(dtype)
        assert abs(np.trace(f(g[0])) / dims[i] - c0) < 10 * tol(dtype) * c0
        assert not g[1].any()

    a = [spd(1, 5, dtype), spd(2, 3, dtype)]
    g = [2.0 * spd(1, 4, dtype), spd(2, 2, dtype)]
    g[1][1] = 0  # a zero factor: pi = 1, info 1
    lam = 0.04
    shift_a, shift_g, info = ck.kfac_pi_damping(a, g, lam, backend=backend)
    assert list(info) == [0, 0, 1]
    pairs = [(a[0][0], g[0][0]), (a[1][0], g[1][0]), (a[1][1], g[1][1])]
    for j, (A, G) in enumerate(pairs[:2]):
        pi = np.sqrt((np.trace(f(A)) / len(A)) / (np.trace(f(G)) / len(G)))
        assert rel(shift_a[j], pi * np.sqrt(lam)) < tol(dtype)
        assert rel(shift_g[j], np.sqrt(lam) / pi) < tol(dtype)
    assert rel(shift_a[2], np.sqrt(lam)) < tol(dtype) and rel(shift_g[2], np.sqrt(lam)) < tol(dtype)


@params
def test_khatri_rao(backend, dtype):
    m, d_in, d_out = 5, 3, 4
    a, g = randn(m, d_in, dtype=dtype), randn(m, d_out, dtype=dtype)
    J = np.stack([np.kron(gi, ai) for ai, gi in zip(a.astype(np.float64), g.astype(np.float64))])
    k = ck.khatri_rao_gram(a, g, alpha=0.2, fill="full", backend=backend)
    assert rel(k, 0.2 * J @ J.T) < tol(dtype)
    v = randn(d_out, d_in, dtype=dtype)
    u = ck.khatri_rao_jv(a, g, v, np.zeros((m, 1), dtype), backend=backend)
    assert rel(u[:, 0], J @ v.astype(np.float64).reshape(-1)) < tol(dtype)
    w = randn(m, 1, dtype=dtype)
    vt = ck.khatri_rao_jtu(a, g, w, np.zeros((d_out, d_in), dtype), backend=backend)
    assert rel(vt.reshape(-1), J.T @ w[:, 0].astype(np.float64)) < tol(dtype)


@params
def test_two_level_kfac_layer_sums_and_coarse_gram(backend, dtype):
    f = lambda m: m.astype(np.float64)
    m, positions, widths = 6, [1, 4, 3], [5, 2, 7]  # a linear layer and two convolutions
    x = [randn(m * p, d, dtype=dtype) for p, d in zip(positions, widths)]
    for bias in (False, True):
        sums = ck.khatri_rao_layer_sums(x, samples=m, bias=bias, backend=backend)
        assert sums.shape == (m, 3)
        for l, (p, d) in enumerate(zip(positions, widths)):
            want = f(x[l]).reshape(m, p * d).sum(axis=1) + (p if bias else 0)
            assert rel(sums[:, l], want) < tol(dtype)
    sa, sg = randn(m, 3, dtype=dtype), randn(m, 3, dtype=dtype)
    s_a, s_g, fc = ck.coarse_gram(sa, sg, backend=backend)
    assert rel(s_a, f(sa).T @ f(sa) / m) < tol(dtype) and rel(s_g, f(sg).T @ f(sg) / m) < tol(dtype)
    assert rel(fc, (f(sa).T @ f(sa) / m) * (f(sg).T @ f(sg) / m)) < tol(dtype)
    old_a, old_g = f(s_a), f(s_g)
    s_a, s_g, fc = ck.coarse_gram(sg, sa, s_a, s_g, fc, beta=0.75, backend=backend)
    want_a = 0.75 * old_a + 0.25 * f(sg).T @ f(sg) / m
    want_g = 0.75 * old_g + 0.25 * f(sa).T @ f(sa) / m
    assert rel(s_a, want_a) < tol(dtype) and rel(fc, want_a * want_g) < tol(dtype)


@params
def test_newton_schulz(backend, dtype):
    a = spd(3, 5, dtype)
    f = a.astype(np.float64)
    t = 1e-5 if dtype == np.float32 else 1e-12
    x, info, its, res = ck.newton_schulz_inverse(a, iterations=60, tolerance=t, backend=backend)
    assert not info.any() and (its <= 60).all()
    assert rel(x, np.linalg.inv(f)) < 100 * tol(dtype)
    r, ri, info, _, _ = ck.newton_schulz_sqrt(a, iterations=60, tolerance=t, backend=backend)
    assert not info.any()
    want = np.stack([sla.sqrtm(m).real for m in f])
    assert rel(r, want) < 100 * tol(dtype) and rel(ri, np.linalg.inv(want)) < 100 * tol(dtype)
    x, info, _, _ = ck.newton_schulz_inverse_root(a, 4, iterations=60, tolerance=t,
                                                  backend=backend)
    w, v = np.linalg.eigh(f)
    assert rel(x, v @ (w[..., None] ** -0.25 * v.transpose(0, 2, 1))) < 100 * tol(dtype)
    b = randn(2, 4, 7, dtype=dtype)
    q, info, _, _ = ck.newton_schulz_polar(b, iterations=5, tolerance=t, schedule="convergent",
                                           cubic_iterations=100, backend=backend)
    want = np.stack([sla.polar(m.T)[0].T for m in b.astype(np.float64)])
    assert not info.any() and rel(q, want) < 100 * tol(dtype)


@params
def test_strided_views(backend, dtype):
    # padded rows and a sliced batch are views NumPy does not copy; curvkit takes them as is
    big = randn(6, 5, 8, dtype=dtype)
    a = big[::2, :, :5]  # batch stride 80, ld 8
    b = randn(3, 5, 8, dtype=dtype)[:, :, :2]
    c = ck.gemm(a, b, trans_a=True, backend=backend)
    assert rel(c, a.astype(np.float64).transpose(0, 2, 1) @ b.astype(np.float64)) < tol(dtype)


@pytest.mark.parametrize("backend", HOST_BACKENDS)
def test_bad_inputs_raise_naming_the_argument(backend):
    a, b = spd(1, 4, np.float64)[0], randn(4, 2)
    with pytest.raises(ValueError, match="b.rows"):
        ck.posv(a.copy(), randn(3, 2), backend=backend)
    with pytest.raises(TypeError, match="b has dtype float32"):
        ck.posv(a.copy(), b.astype(np.float32), backend=backend)
    with pytest.raises(TypeError, match="float32 or float64"):
        ck.posv(a.astype(np.int64), b, backend=backend)
    with pytest.raises(ValueError, match="last dimension must be contiguous"):
        ck.posv(a.copy(), np.asfortranarray(randn(4, 2)), backend=backend)
    with pytest.raises(ValueError, match="2 .* or 3 .* dimensions"):
        ck.gemm(randn(2, 2, 2, 2), randn(2, 2), backend=backend)
    with pytest.raises(ValueError, match="backend must be one of"):
        ck.posv(a.copy(), b, backend="tpu")
    with pytest.raises(ValueError, match="one entry per mode"):
        ck.mode_product(randn(2, 3), [None])
    with pytest.raises(ValueError, match="grams"):  # one batch entry per variable in every mode
        ck.tnt_normalize([spd(2, 3, np.float64), spd(3, 4, np.float64)], backend=backend)
    with pytest.raises(ValueError, match="same number of groups"):
        ck.kfac_pi_damping([spd(1, 3, np.float64)] * 2, [spd(1, 2, np.float64)], 0.1)
    with pytest.raises(ValueError, match="sums"):  # sums must be m x L
        ck.khatri_rao_layer_sums([randn(6, 2), randn(6, 3)], np.zeros((6, 3)), backend=backend)
    with pytest.raises(TypeError, match="s_g"):
        ck.coarse_gram(randn(5, 2), randn(5, 2), s_g=np.zeros((2, 2), np.float32), backend=backend)
    with pytest.raises(ValueError, match="unknown name 'adamax'"):
        ck.Optimizer("adamax")
    with pytest.raises(ValueError, match="layers"):
        ck.Optimizer("sgd").init([])


def test_wrong_device_raises():
    torch = pytest.importorskip("torch", reason="PyTorch is not installed")
    if "cuda" not in ck.backends() or not torch.cuda.is_available():
        pytest.skip("needs the cuda backend and a GPU")
    a = torch.eye(4, dtype=torch.float64, device="cuda")
    with pytest.raises(ValueError, match="b is not in CUDA device memory"):
        ck.posv(a, torch.ones(4, 1, dtype=torch.float64))


def test_optimizer_sgd_step_matches_numpy():
    w = randn(3, 4)
    dw = randn(3, 4)
    w0 = w.copy()
    opt = ck.Optimizer("sgd", lr=0.1, dtype="float64")
    layers = [{"kind": 0, "w": w, "dw": dw, "output_layer": True}]
    opt.init(layers)
    opt.step(layers)
    opt.step(layers)
    # heavy ball, momentum 0.9: m1 = g, m2 = 0.9 g + g
    assert rel(w, w0 - 0.1 * dw - 0.1 * 1.9 * dw) < 1e-12
    assert opt.iteration == 2 and opt.unhealthy() == 0
