// Embedded Newton–Schulz iterations: one matrix per call, callable inside any host or device
// kernel, scratch from the caller, no allocation (the contract of every op, its stopping rules
// and info codes: curvkit/newton_schulz.hpp).  Products go through gemm_small (n, k <= 32) or
// gemm_block (curvkit/device/gemm.hpp): register-tiled on the host, plain loops on a GPU
// thread.  Row-major matrices with leading dimensions; every scratch buffer is dense.
#pragma once

#include <cmath>

#include "curvkit/core/types.hpp"
#include "curvkit/device/gemm.hpp"
#include "curvkit/newton_schulz.hpp"

namespace curvkit::device {

namespace ns_detail {

template <class T>
CURVKIT_HD_INLINE index_t pack_elements(index_t n) {
  const index_t block = gemm_pack_elements<T>(n, n);
  return block > kGemmSmall * kGemmSmall ? block : kGemmSmall * kGemmSmall;
}

// C (m x n) = alpha A (m x k) B (k x n) + beta C, all dense with their own leading dimensions.
template <class T>
CURVKIT_HD void product(index_t m, index_t n, index_t k, T alpha, const T* a, index_t lda,
                        const T* b, index_t ldb, T beta, T* c, index_t ldc, T* pack) {
  const Strided<const T> as{a, lda, 1}, bs{b, ldb, 1};
  const Strided<T> cs{c, ldc, 1};
  if (n <= kGemmSmall && k <= kGemmSmall)
    gemm_small(m, n, k, alpha, as, bs, beta, cs, pack);
  else
    gemm_block(m, n, k, alpha, as, bs, beta, cs, pack);
}

// ||I - X||_F / sqrt(n) of a dense n x n X: the off-diagonal part of each row in T (two
// contiguous, vectorised runs), the diagonal term (1 - x_ii)^2 and the row sums in double.
template <class T>
CURVKIT_HD double residual(index_t n, const T* x) {
  double s = 0;
  for (index_t i = 0; i < n; ++i) {
    const T* xi = x + i * n;
    T off = 0;
    CURVKIT_SIMD_REDUCTION(off)
    for (index_t j = 0; j < i; ++j) off += xi[j] * xi[j];
    CURVKIT_SIMD_REDUCTION(off)
    for (index_t j = i + 1; j < n; ++j) off += xi[j] * xi[j];
    const double d = 1 - double(xi[i]);
    s += double(off) + d * d;
  }
  return n > 0 ? std::sqrt(s / double(n)) : 0.0;
}

// Y = alpha I + beta X (dense n x n).
template <class T>
CURVKIT_HD void shift(index_t n, T alpha, T beta, const T* x, T* y) {
  CURVKIT_SIMD
  for (index_t e = 0; e < n * n; ++e) y[e] = beta * x[e];
  for (index_t i = 0; i < n; ++i) y[i * n + i] += alpha;
}

template <class T>
CURVKIT_HD_INLINE void swap(T*& x, T*& y) {
  T* t = x;
  x = y;
  y = t;
}

template <class T>
CURVKIT_HD void fill_nan(index_t rows, index_t cols, T* x, index_t ld) {
  if (x == nullptr) return;
  for (index_t i = 0; i < rows; ++i)
    for (index_t j = 0; j < cols; ++j) x[i * ld + j] = T(NAN);
}

template <class T>
CURVKIT_HD void copy_scaled(index_t rows, index_t cols, T scale, const T* x, index_t ldx, T* y,
                            index_t ldy) {
  if (y == nullptr) return;
  for (index_t i = 0; i < rows; ++i)
    for (index_t j = 0; j < cols; ++j) y[i * ldy + j] = scale * x[i * ldx + j];
}

// The screening every op starts with: 0 to go on, else the info code (newton_schulz.hpp).
// `eps` is added to the diagonal; *fro receives ||A + eps I||_F.
template <class T>
CURVKIT_HD int screen(index_t rows, index_t cols, const T* a, index_t lda, double eps,
                      bool needs_spd, double* fro) {
  // Sum of squares by rows (vectorised); NaN/Inf in A makes it non-finite.  Only then (or if
  // it overflowed) is each element looked at.
  double s = 0;
  for (index_t i = 0; i < rows; ++i) {
    const T* ai = a + i * lda;
    double row = 0;
    CURVKIT_SIMD_REDUCTION(row)
    for (index_t j = 0; j < cols; ++j) row += double(ai[j]) * double(ai[j]);
    if (i < cols) {  // the diagonal with eps added
      const double d = double(ai[i]);
      row += (d + eps) * (d + eps) - d * d;
    }
    s += row;
  }
  if (!std::isfinite(s)) {
    for (index_t i = 0; i < rows; ++i)
      for (index_t j = 0; j < cols; ++j)
        if (!std::isfinite(double(a[i * lda + j]))) return -1;
    return -1;  // finite entries whose squares overflow double: beyond the iterations' range
  }
  if (s == 0) return 2;
  if (needs_spd)
    for (index_t i = 0; i < rows; ++i)
      if (!(double(a[i * lda + i]) + eps > 0)) return 3;
  *fro = std::sqrt(s);
  return 0;
}

// The stopping and divergence rules of the contract around `step` (which advances the iterate
// and returns its residual).  Returns info; *steps and *r are the steps taken and the final
// residual.
template <class Step>
CURVKIT_HD int iterate(int max_steps, bool residual_stop, double tolerance, double r0, Step&& step,
                       int* steps, double* r) {
  double cur = r0;
  int k = 0, code = 0;
  const double limit = 2 * (r0 > 1 ? r0 : 1.0);
  while (k < max_steps) {
    if (residual_stop && cur <= tolerance) break;
    const double next = step();
    ++k;
    if (!std::isfinite(next) || next > limit) {
      code = -2;
      cur = next;
      break;
    }
    // A residual that grows while still >= 1 is divergence (an indefinite or singular input);
    // below 1 it is the rounding floor (or the Muon quintic's oscillation): stop there.
    if (next >= cur && next >= 1) {
      code = -2;
      cur = next;
      break;
    }
    const bool stalled = residual_stop && next >= cur;
    cur = next;
    if (stalled) break;
  }
  if (code == 0 && residual_stop && !(cur <= tolerance)) code = 1;
  *steps = k;
  *r = cur;
  return code;
}

}  // namespace ns_detail

/// Scratch elements for one matrix: inverse, sqrt and inverse root of order n (polar: rows x
/// cols).
template <class T>
CURVKIT_HD_INLINE index_t ns_square_scratch(index_t n) {
  return 5 * n * n + ns_detail::pack_elements<T>(n);
}
template <class T>
CURVKIT_HD_INLINE index_t ns_polar_scratch(index_t rows, index_t cols) {
  const index_t k = rows < cols ? rows : cols, big = rows > cols ? rows : cols;
  return 2 * rows * cols + 3 * k * k + ns_detail::pack_elements<T>(big);
}

/// X = (A + eps I)^{-1} (Hotelling).  Returns info; *steps, *r: steps taken, final residual.
template <class T>
CURVKIT_HD int ns_inverse(index_t n, const T* a, index_t lda, T* x, index_t ldx,
                          const NewtonSchulzOptions& o, T* scratch, int* steps, double* r) {
  using namespace ns_detail;
  double fro = 0;
  *steps = 0;
  *r = NAN;
  if (const int code = screen(n, n, a, lda, o.epsilon, false, &fro); code != 0) {
    fill_nan(n, n, x, ldx);
    return code;
  }
  const index_t nn = n * n;
  T *ad = scratch, *xk = ad + nn, *res = xk + nn, *tmp = res + nn, *pack = tmp + 2 * nn;
  double norm1 = 0, norminf = 0;
  for (index_t i = 0; i < n; ++i) {
    double row = 0, col = 0;
    for (index_t j = 0; j < n; ++j) {
      ad[i * n + j] = a[i * lda + j] + (i == j ? T(o.epsilon) : T(0));
      row += std::fabs(double(a[i * lda + j]) + (i == j ? o.epsilon : 0.0));
      col += std::fabs(double(a[j * lda + i]) + (i == j ? o.epsilon : 0.0));
    }
    norm1 = col > norm1 ? col : norm1;
    norminf = row > norminf ? row : norminf;
  }
  const T scale = T(1.0 / (norm1 * norminf));
  for (index_t i = 0; i < n; ++i)
    for (index_t j = 0; j < n; ++j) xk[i * n + j] = scale * ad[j * n + i];
  product(n, n, n, T(1), ad, n, xk, n, T(0), res, n, pack);
  auto step = [&]() {
    // X <- 2X - X (A X); then A X for the residual and the next step.
    for (index_t e = 0; e < nn; ++e) tmp[e] = xk[e];
    product(n, n, n, T(-1), tmp, n, res, n, T(2), xk, n, pack);
    product(n, n, n, T(1), ad, n, xk, n, T(0), res, n, pack);
    return residual(n, res);
  };
  const int code = iterate(o.iterations, o.stop == NsStop::residual, o.tolerance, residual(n, res),
                           step, steps, r);
  if (code < 0)
    fill_nan(n, n, x, ldx);
  else
    copy_scaled(n, n, T(1), xk, n, x, ldx);
  return code;
}

/// sqrt = (A + eps I)^{1/2}, inv_sqrt = (A + eps I)^{-1/2} (either may be null), coupled.
template <class T>
CURVKIT_HD int ns_sqrt(index_t n, const T* a, index_t lda, T* sq, index_t ldsq, T* inv,
                       index_t ldinv, const NewtonSchulzOptions& o, T* scratch, int* steps,
                       double* r) {
  using namespace ns_detail;
  double fro = 0;
  *steps = 0;
  *r = NAN;
  if (const int code = screen(n, n, a, lda, o.epsilon, true, &fro); code != 0) {
    fill_nan(n, n, sq, ldsq);
    fill_nan(n, n, inv, ldinv);
    return code;
  }
  const index_t nn = n * n;
  T *y = scratch, *z = y + nn, *w = z + nn, *t = w + nn, *tmp = t + nn, *pack = tmp + nn;
  for (index_t i = 0; i < n; ++i)
    for (index_t j = 0; j < n; ++j) {
      y[i * n + j] = T((double(a[i * lda + j]) + (i == j ? o.epsilon : 0.0)) / fro);
      z[i * n + j] = i == j ? T(1) : T(0);
      w[i * n + j] = y[i * n + j];  // Z Y with Z = I
    }
  auto step = [&]() {
    // Products land in the spare buffer, which then swaps roles with the operand it replaces.
    shift(n, T(1.5), T(-0.5), w, t);                         // T = (3I - Z Y) / 2
    product(n, n, n, T(1), y, n, t, n, T(0), tmp, n, pack);  // Y <- Y T
    swap(y, tmp);
    product(n, n, n, T(1), t, n, z, n, T(0), tmp, n, pack);  // Z <- T Z
    swap(z, tmp);
    product(n, n, n, T(1), z, n, y, n, T(0), w, n, pack);
    return residual(n, w);
  };
  const int code = iterate(o.iterations, o.stop == NsStop::residual, o.tolerance, residual(n, w),
                           step, steps, r);
  if (code < 0) {
    fill_nan(n, n, sq, ldsq);
    fill_nan(n, n, inv, ldinv);
  } else {
    copy_scaled(n, n, T(std::sqrt(fro)), y, n, sq, ldsq);
    copy_scaled(n, n, T(1.0 / std::sqrt(fro)), z, n, inv, ldinv);
  }
  return code;
}

/// X = (A + eps I)^{-1/p}, p >= 1, coupled Newton (T^p by repeated squaring).
template <class T>
CURVKIT_HD int ns_inverse_root(index_t n, const T* a, index_t lda, int p, T* x, index_t ldx,
                               const NewtonSchulzOptions& o, T* scratch, int* steps, double* r) {
  using namespace ns_detail;
  double fro = 0;
  *steps = 0;
  *r = NAN;
  if (const int code = screen(n, n, a, lda, o.epsilon, true, &fro); code != 0) {
    fill_nan(n, n, x, ldx);
    return code;
  }
  const index_t nn = n * n;
  T *m = scratch, *xk = m + nn, *t = xk + nn, *tmp = t + nn, *pack = tmp + 2 * nn;
  const double z = double(1 + p) / (2 * fro);
  const T x0 = T(std::pow(z, 1.0 / double(p)));
  for (index_t i = 0; i < n; ++i)
    for (index_t j = 0; j < n; ++j) {
      m[i * n + j] = T(z * (double(a[i * lda + j]) + (i == j ? o.epsilon : 0.0)));
      xk[i * n + j] = i == j ? x0 : T(0);
    }
  const T inv_p = T(1.0 / double(p));
  auto step = [&]() {
    // Four buffers (M, X and two free ones, t and tmp); products land in a free one, which
    // then swaps roles with the operand it replaces.
    shift(n, T(1) + inv_p, -inv_p, m, t);                     // T = I + (I - M) / p
    product(n, n, n, T(1), xk, n, t, n, T(0), tmp, n, pack);  // X <- X T
    swap(xk, tmp);
    // M <- T^p M: for each bit of p from the lowest, M <- T^(2^i) M when set (pw = T^(2^i)).
    T* pw = t;
    for (int q = p;;) {
      if (q & 1) {
        product(n, n, n, T(1), pw, n, m, n, T(0), tmp, n, pack);
        swap(m, tmp);
      }
      q >>= 1;
      if (q == 0) break;
      product(n, n, n, T(1), pw, n, pw, n, T(0), tmp, n, pack);
      swap(pw, tmp);
    }
    t = pw;  // both t and tmp are free again
    return residual(n, m);
  };
  const int code = iterate(o.iterations, o.stop == NsStop::residual, o.tolerance, residual(n, m),
                           step, steps, r);
  if (code < 0)
    fill_nan(n, n, x, ldx);
  else
    copy_scaled(n, n, T(1), xk, n, x, ldx);
  return code;
}

/// U = the polar factor of the rows x cols A (newton_schulz.hpp's schedules).
template <class T>
CURVKIT_HD int ns_polar(index_t rows, index_t cols, const T* a, index_t lda, T* u, index_t ldu,
                        const NewtonSchulzOptions& o, const PolarOptions& po, T* scratch,
                        int* steps, double* r) {
  using namespace ns_detail;
  double fro = 0;
  *steps = 0;
  *r = NAN;
  if (const int code = screen(rows, cols, a, lda, 0.0, false, &fro); code != 0) {
    fill_nan(rows, cols, u, ldu);
    return code;
  }
  const bool tall = rows >= cols;
  const index_t k = tall ? cols : rows, rc = rows * cols;
  T *x = scratch, *xn = x + rc, *bm = xn + rc, *b2 = bm + k * k, *poly = b2 + k * k,
    *pack = poly + k * k;
  for (index_t i = 0; i < rows; ++i)
    for (index_t j = 0; j < cols; ++j) x[i * cols + j] = T(double(a[i * lda + j]) / fro);
  // B = X^T X (tall) or X X^T (wide), from the transposed view of X.
  auto gram = [&]() {
    const Strided<const T> xs{x, cols, 1}, xt{x, 1, cols};
    const Strided<T> bs{bm, k, 1};
    if (tall)
      gemm_block(k, k, rows, T(1), xt, xs, T(0), bs, pack);
    else
      gemm_block(k, k, cols, T(1), xs, xt, T(0), bs, pack);
  };
  gram();
  bool cubic = po.schedule == PolarSchedule::cubic;
  auto step = [&]() {
    if (cubic) {
      shift(k, T(1.5), T(-0.5), bm, poly);
    } else {  // a I + b B + c B^2
      product(k, k, k, T(po.c), bm, k, bm, k, T(0), b2, k, pack);
      for (index_t i = 0; i < k; ++i)
        for (index_t j = 0; j < k; ++j)
          poly[i * k + j] = b2[i * k + j] + T(po.b) * bm[i * k + j] + (i == j ? T(po.a) : T(0));
    }
    if (tall)
      product(rows, cols, cols, T(1), x, cols, poly, k, T(0), xn, cols, pack);
    else
      product(rows, cols, rows, T(1), poly, k, x, cols, T(0), xn, cols, pack);
    for (index_t e = 0; e < rc; ++e) x[e] = xn[e];
    gram();
    return residual(k, bm);
  };
  const bool convergent = po.schedule == PolarSchedule::convergent;
  const double r0 = residual(k, bm);
  int code = iterate(o.iterations, o.stop == NsStop::residual && !convergent, o.tolerance, r0, step,
                     steps, r);
  if (code == 0 && convergent) {
    cubic = true;
    int more = 0;
    code = iterate(po.cubic_iterations, true, o.tolerance, *r, step, &more, r);
    *steps += more;
  }
  if (code < 0)
    fill_nan(rows, cols, u, ldu);
  else
    copy_scaled(rows, cols, T(1), x, cols, u, ldu);
  return code;
}

}  // namespace curvkit::device
