// Embedded Newton–Schulz iterations: one matrix per call, callable inside any host or device
// kernel, scratch from the caller, no allocation (the contract of every op, its stopping rules
// and info codes: curvkit/newton_schulz.hpp).  Products go through gemm_small (n, k <= 32) or
// gemm_block (curvkit/device/gemm.hpp): register-tiled on the host, plain loops on a GPU
// thread.  Row-major matrices with leading dimensions; every scratch buffer is dense.
//
// Each iteration is written once (ns_detail::*_with) against an "engine", the eleven whole-matrix
// operations it is made of (screen, norms, load, transpose, identity, shift, product, syrk,
// residual, store, fill_nan).  SerialEngine runs them as loops in the calling thread: the embedded
// functions below.  The Kokkos backend's large-matrix path runs the same iterations with an
// engine whose operations are kernels over all threads (kernels/kokkos/newton_schulz.cpp), so
// both paths take the same sequence of steps (their sums may round in another order).
#pragma once

#include <cmath>

#include "curvkit/core/types.hpp"
#include "curvkit/device/gemm.hpp"
#include "curvkit/newton_schulz.hpp"

namespace curvkit::device {

namespace ns_detail {

/// Dense n x n buffers of the square ops (inverse: 4, sqrt: 5, inverse root: 4).
inline constexpr index_t kSquareBuffers = 5;

/// Dense buffers of the polar factor of a rows x cols matrix: X and its successor, the Gram B
/// and the polynomial in B, both k x k with k = min(rows, cols).
CURVKIT_HD_INLINE index_t polar_buffer_elements(index_t rows, index_t cols) {
  const index_t k = rows < cols ? rows : cols;
  return 2 * rows * cols + 2 * k * k;
}

template <class T>
CURVKIT_HD_INLINE index_t pack_elements(index_t n) {
  const index_t block = gemm_pack_elements<T>(n, n);
  return block > kGemmSmall * kGemmSmall ? block : kGemmSmall * kGemmSmall;
}

// Row i's share of ||I - X||^2 for a dense n x n X: the off-diagonal part in T (two
// contiguous, vectorised runs), the diagonal term (1 - x_ii)^2 in double.  (A full-row sum in
// float minus the diagonal cancels down to a 3e-4 floor: the residual stop then never fires.)
template <class T>
CURVKIT_HD_INLINE double residual_row(index_t i, index_t n, const T* x) {
  const T* xi = x + i * n;
  T off = 0;
  CURVKIT_SIMD_REDUCTION(off)
  for (index_t j = 0; j < i; ++j) off += xi[j] * xi[j];
  CURVKIT_SIMD_REDUCTION(off)
  for (index_t j = i + 1; j < n; ++j) off += xi[j] * xi[j];
  const double d = 1 - double(xi[i]);
  return double(off) + d * d;
}

// Row i's share of ||A + eps I||_F^2 (A rows x cols, row pointer ai); NaN/Inf in the row makes
// it non-finite.
template <class T>
CURVKIT_HD_INLINE double screen_row(index_t i, index_t cols, const T* ai, double eps) {
  double row = 0;
  CURVKIT_SIMD_REDUCTION(row)
  for (index_t j = 0; j < cols; ++j) row += double(ai[j]) * double(ai[j]);
  if (i < cols) {  // the diagonal with eps added
    const double d = double(ai[i]);
    row += (d + eps) * (d + eps) - d * d;
  }
  return row;
}

// The screening verdict from the sum of squares of A + eps I and the count of diagonal entries
// with a_ii + eps <= 0 (or NaN): 0 to go on, else the info code (newton_schulz.hpp).
CURVKIT_HD_INLINE int screen_verdict(double sum_squares, index_t bad_diagonal, bool needs_spd) {
  if (!std::isfinite(sum_squares)) return -1;  // NaN/Inf, or squares that overflow double
  if (sum_squares == 0) return 2;
  if (needs_spd && bad_diagonal > 0) return 3;
  return 0;
}

template <class T>
CURVKIT_HD_INLINE bool bad_diagonal(T aii, double eps) {
  return !(double(aii) + eps > 0);
}

template <class T>
CURVKIT_HD_INLINE void swap(T*& x, T*& y) {
  T* t = x;
  x = y;
  y = t;
}

// The stopping and divergence rules of the contract around `step` (which advances the iterate
// and returns its residual).  Returns info; *steps and *r are the steps taken and the final
// residual.
CURVKIT_HD_TEMPLATE_HOST_OK
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

/// The whole-matrix operations, as loops in the calling thread.  Buffers are dense (leading
/// dimension = columns) except the input a (lda) and the outputs (their own ld).
template <class T>
struct SerialEngine {
  T* pack;  // gemm packing scratch, pack_elements<T>(largest order)

  /// 0 to go on, else the info code; *fro = ||A + eps I||_F.
  CURVKIT_HD int screen(index_t rows, index_t cols, const T* a, index_t lda, double eps,
                        bool needs_spd, double* fro) const {
    double s = 0;
    for (index_t i = 0; i < rows; ++i) s += screen_row(i, cols, a + i * lda, eps);
    index_t bad = 0;
    if (needs_spd && std::isfinite(s))
      for (index_t i = 0; i < rows && bad == 0; ++i) bad += bad_diagonal(a[i * lda + i], eps);
    *fro = std::sqrt(s);
    return screen_verdict(s, bad, needs_spd);
  }
  /// ||A + eps I||_1 and ||A + eps I||_inf.
  CURVKIT_HD void norms(index_t n, const T* a, index_t lda, double eps, double* norm1,
                        double* norminf) const {
    *norm1 = *norminf = 0;
    for (index_t i = 0; i < n; ++i) {
      double row = 0, col = 0;
      for (index_t j = 0; j < n; ++j) {
        row += std::fabs(double(a[i * lda + j]) + (i == j ? eps : 0.0));
        col += std::fabs(double(a[j * lda + i]) + (i == j ? eps : 0.0));
      }
      *norm1 = col > *norm1 ? col : *norm1;
      *norminf = row > *norminf ? row : *norminf;
    }
  }
  /// dst = scale (A + eps I), rounded once from double.
  CURVKIT_HD void load(index_t rows, index_t cols, const T* a, index_t lda, double scale,
                       double eps, T* dst) const {
    for (index_t i = 0; i < rows; ++i)
      for (index_t j = 0; j < cols; ++j)
        dst[i * cols + j] = T(scale * (double(a[i * lda + j]) + (i == j ? eps : 0.0)));
  }
  /// y = scale x^T (n x n).
  CURVKIT_HD void transpose(index_t n, T scale, const T* x, T* y) const {
    for (index_t i = 0; i < n; ++i)
      for (index_t j = 0; j < n; ++j) y[i * n + j] = scale * x[j * n + i];
  }
  /// y = alpha I (n x n).
  CURVKIT_HD void identity(index_t n, T alpha, T* y) const {
    for (index_t e = 0; e < n * n; ++e) y[e] = T(0);
    for (index_t i = 0; i < n; ++i) y[i * n + i] = alpha;
  }
  /// y = alpha I + beta x (n x n).
  CURVKIT_HD void shift(index_t n, T alpha, T beta, const T* x, T* y) const {
    CURVKIT_SIMD
    for (index_t e = 0; e < n * n; ++e) y[e] = beta * x[e];
    for (index_t i = 0; i < n; ++i) y[i * n + i] += alpha;
  }
  /// C (m x n) = alpha op(A) op(B) + beta C, op(A) m x k, op(B) k x n; C overlaps neither.
  CURVKIT_HD void product(index_t m, index_t n, index_t k, T alpha, const T* a, bool ta, const T* b,
                          bool tb, T beta, T* c) const {
    const Strided<const T> as = ta ? Strided<const T>{a, 1, m} : Strided<const T>{a, k, 1};
    const Strided<const T> bs = tb ? Strided<const T>{b, 1, k} : Strided<const T>{b, n, 1};
    const Strided<T> cs{c, n, 1};
    if (n <= kGemmSmall && k <= kGemmSmall)
      gemm_small(m, n, k, alpha, as, bs, beta, cs, pack);
    else
      gemm_block(m, n, k, alpha, as, bs, beta, cs, pack);
  }
  /// C (n x n) = alpha op(A) op(A)^T + beta C, op(A) n x depth (A stored depth x n when
  /// transposed), both triangles written and exactly equal (the lower one mirrored).
  CURVKIT_HD void syrk(index_t n, index_t depth, T alpha, const T* a, bool ta, T beta, T* c) const {
    const Strided<const T> as = ta ? Strided<const T>{a, 1, n} : Strided<const T>{a, depth, 1};
    const Strided<const T> at = ta ? Strided<const T>{a, n, 1} : Strided<const T>{a, 1, depth};
    const Strided<T> cs{c, n, 1};
    if (n <= kGemmSmall && depth <= kGemmSmall)
      gemm_small(n, n, depth, alpha, as, at, beta, cs, pack, true);
    else
      gemm_block(n, n, depth, alpha, as, at, beta, cs, pack, true);
    mirror_lower_block(cs, 0, n, 0, n);
  }
  /// ||I - X||_F / sqrt(n).
  CURVKIT_HD double residual(index_t n, const T* x) const {
    double s = 0;
    for (index_t i = 0; i < n; ++i) s += residual_row(i, n, x);
    return n > 0 ? std::sqrt(s / double(n)) : 0.0;
  }
  /// y = scale x (rows x cols); nothing when y is null (an output not asked for).
  CURVKIT_HD void store(index_t rows, index_t cols, T scale, const T* x, T* y, index_t ldy) const {
    if (y == nullptr) return;
    for (index_t i = 0; i < rows; ++i)
      for (index_t j = 0; j < cols; ++j) y[i * ldy + j] = scale * x[i * cols + j];
  }
  CURVKIT_HD void fill_nan(index_t rows, index_t cols, T* y, index_t ldy) const {
    if (y == nullptr) return;
    for (index_t i = 0; i < rows; ++i)
      for (index_t j = 0; j < cols; ++j) y[i * ldy + j] = T(NAN);
  }
};

/// X = (A + eps I)^{-1} (Hotelling) on engine e; buf: kSquareBuffers n x n buffers.
CURVKIT_HD_TEMPLATE_HOST_OK
template <class T, class Engine>
CURVKIT_HD int inverse_with(const Engine& e, index_t n, const T* a, index_t lda, T* x, index_t ldx,
                            const NewtonSchulzOptions& o, T* buf, int* steps, double* r) {
  double fro = 0;
  *steps = 0;
  *r = NAN;
  if (const int code = e.screen(n, n, a, lda, o.epsilon, false, &fro); code != 0) {
    e.fill_nan(n, n, x, ldx);
    return code;
  }
  const index_t nn = n * n;
  T *ad = buf, *xk = ad + nn, *res = xk + nn, *tmp = res + nn;
  double norm1 = 0, norminf = 0;
  e.norms(n, a, lda, o.epsilon, &norm1, &norminf);
  e.load(n, n, a, lda, 1.0, o.epsilon, ad);
  e.transpose(n, T(1.0 / (norm1 * norminf)), ad, xk);  // X_0 = A^T / (||A||_1 ||A||_inf)
  e.product(n, n, n, T(1), ad, false, xk, false, T(0), res);
  auto step = [&]() {
    // X <- 2X - X (A X) into the spare buffer, which then swaps roles with X; then A X for the
    // residual and the next step.
    e.shift(n, T(0), T(2), xk, tmp);
    e.product(n, n, n, T(-1), xk, false, res, false, T(1), tmp);
    swap(xk, tmp);
    e.product(n, n, n, T(1), ad, false, xk, false, T(0), res);
    return e.residual(n, res);
  };
  const int code = iterate(o.iterations, o.stop == NsStop::residual, o.tolerance,
                           e.residual(n, res), step, steps, r);
  if (code < 0)
    e.fill_nan(n, n, x, ldx);
  else
    e.store(n, n, T(1), xk, x, ldx);
  return code;
}

/// sqrt = (A + eps I)^{1/2}, inv = (A + eps I)^{-1/2} (either may be null), coupled, on e.
CURVKIT_HD_TEMPLATE_HOST_OK
template <class T, class Engine>
CURVKIT_HD int sqrt_with(const Engine& e, index_t n, const T* a, index_t lda, T* sq, index_t ldsq,
                         T* inv, index_t ldinv, const NewtonSchulzOptions& o, T* buf, int* steps,
                         double* r) {
  double fro = 0;
  *steps = 0;
  *r = NAN;
  if (const int code = e.screen(n, n, a, lda, o.epsilon, true, &fro); code != 0) {
    e.fill_nan(n, n, sq, ldsq);
    e.fill_nan(n, n, inv, ldinv);
    return code;
  }
  const index_t nn = n * n;
  T *y = buf, *z = y + nn, *w = z + nn, *t = w + nn, *tmp = t + nn;
  e.load(n, n, a, lda, 1.0 / fro, o.epsilon, y);  // Y_0 = A / ||A||_F
  e.identity(n, T(1), z);                         // Z_0 = I
  e.shift(n, T(0), T(1), y, w);                   // Z Y = Y
  auto step = [&]() {
    // Products land in the spare buffer, which then swaps roles with the operand it replaces.
    e.shift(n, T(1.5), T(-0.5), w, t);                        // T = (3I - Z Y) / 2
    e.product(n, n, n, T(1), y, false, t, false, T(0), tmp);  // Y <- Y T
    swap(y, tmp);
    e.product(n, n, n, T(1), t, false, z, false, T(0), tmp);  // Z <- T Z
    swap(z, tmp);
    e.product(n, n, n, T(1), z, false, y, false, T(0), w);
    return e.residual(n, w);
  };
  const int code = iterate(o.iterations, o.stop == NsStop::residual, o.tolerance, e.residual(n, w),
                           step, steps, r);
  if (code < 0) {
    e.fill_nan(n, n, sq, ldsq);
    e.fill_nan(n, n, inv, ldinv);
  } else {
    e.store(n, n, T(std::sqrt(fro)), y, sq, ldsq);
    e.store(n, n, T(1.0 / std::sqrt(fro)), z, inv, ldinv);
  }
  return code;
}

/// X = (A + eps I)^{-1/p}, p >= 1, coupled Newton (T^p by repeated squaring), on e.
CURVKIT_HD_TEMPLATE_HOST_OK
template <class T, class Engine>
CURVKIT_HD int inverse_root_with(const Engine& e, index_t n, const T* a, index_t lda, int p, T* x,
                                 index_t ldx, const NewtonSchulzOptions& o, T* buf, int* steps,
                                 double* r) {
  double fro = 0;
  *steps = 0;
  *r = NAN;
  if (const int code = e.screen(n, n, a, lda, o.epsilon, true, &fro); code != 0) {
    e.fill_nan(n, n, x, ldx);
    return code;
  }
  const index_t nn = n * n;
  T *m = buf, *xk = m + nn, *t = xk + nn, *tmp = t + nn;
  const double z = double(1 + p) / (2 * fro);
  e.load(n, n, a, lda, z, o.epsilon, m);               // M_0 = z A
  e.identity(n, T(std::pow(z, 1.0 / double(p))), xk);  // X_0 = z^{1/p} I
  const T inv_p = T(1.0 / double(p));
  auto step = [&]() {
    // Four buffers (M, X and two free ones, t and tmp); products land in a free one, which
    // then swaps roles with the operand it replaces.
    e.shift(n, T(1) + inv_p, -inv_p, m, t);                    // T = I + (I - M) / p
    e.product(n, n, n, T(1), xk, false, t, false, T(0), tmp);  // X <- X T
    swap(xk, tmp);
    // M <- T^p M: for each bit of p from the lowest, M <- T^(2^i) M when set (pw = T^(2^i)).
    T* pw = t;
    for (int q = p;;) {
      if (q & 1) {
        e.product(n, n, n, T(1), pw, false, m, false, T(0), tmp);
        swap(m, tmp);
      }
      q >>= 1;
      if (q == 0) break;
      e.product(n, n, n, T(1), pw, false, pw, false, T(0), tmp);
      swap(pw, tmp);
    }
    t = pw;  // both t and tmp are free again
    return e.residual(n, m);
  };
  const int code = iterate(o.iterations, o.stop == NsStop::residual, o.tolerance, e.residual(n, m),
                           step, steps, r);
  if (code < 0)
    e.fill_nan(n, n, x, ldx);
  else
    e.store(n, n, T(1), xk, x, ldx);
  return code;
}

/// U = the polar factor of the rows x cols A (newton_schulz.hpp's schedules), on e; buf:
/// polar_buffer_elements(rows, cols).
CURVKIT_HD_TEMPLATE_HOST_OK
template <class T, class Engine>
CURVKIT_HD int polar_with(const Engine& e, index_t rows, index_t cols, const T* a, index_t lda,
                          T* u, index_t ldu, const NewtonSchulzOptions& o, const PolarOptions& po,
                          T* buf, int* steps, double* r) {
  double fro = 0;
  *steps = 0;
  *r = NAN;
  if (const int code = e.screen(rows, cols, a, lda, 0.0, false, &fro); code != 0) {
    e.fill_nan(rows, cols, u, ldu);
    return code;
  }
  const bool tall = rows >= cols;
  const index_t k = tall ? cols : rows, rc = rows * cols;
  T *x = buf, *xn = x + rc, *bm = xn + rc, *poly = bm + k * k;
  e.load(rows, cols, a, lda, 1.0 / fro, 0.0, x);  // X_0 = A / ||A||_F
  // B = X^T X (tall) or X X^T (wide), a SYRK: half the flops of a product.
  auto gram = [&]() { e.syrk(k, tall ? rows : cols, T(1), x, tall, T(0), bm); };
  gram();
  bool cubic = po.schedule == PolarSchedule::cubic;
  auto step = [&]() {
    if (cubic) {
      e.shift(k, T(1.5), T(-0.5), bm, poly);  // (3I - B) / 2
    } else {  // a I + b B + c B^2, with B^2 = B B^T a SYRK (B is exactly symmetric)
      e.shift(k, T(po.a), T(po.b), bm, poly);
      e.syrk(k, k, T(po.c), bm, false, T(1), poly);
    }
    if (tall)
      e.product(rows, cols, cols, T(1), x, false, poly, false, T(0), xn);
    else
      e.product(rows, cols, rows, T(1), poly, false, x, false, T(0), xn);
    swap(x, xn);
    gram();
    return e.residual(k, bm);
  };
  const bool convergent = po.schedule == PolarSchedule::convergent;
  const double r0 = e.residual(k, bm);
  int code = iterate(o.iterations, o.stop == NsStop::residual && !convergent, o.tolerance, r0, step,
                     steps, r);
  if (code == 0 && convergent) {
    cubic = true;
    int more = 0;
    code = iterate(po.cubic_iterations, true, o.tolerance, *r, step, &more, r);
    *steps += more;
  }
  if (code < 0)
    e.fill_nan(rows, cols, u, ldu);
  else
    e.store(rows, cols, T(1), x, u, ldu);
  return code;
}

}  // namespace ns_detail

/// Scratch elements for one matrix: inverse, sqrt and inverse root of order n (polar: rows x
/// cols).
template <class T>
CURVKIT_HD_INLINE index_t ns_square_scratch(index_t n) {
  return ns_detail::kSquareBuffers * n * n + ns_detail::pack_elements<T>(n);
}
template <class T>
CURVKIT_HD_INLINE index_t ns_polar_scratch(index_t rows, index_t cols) {
  const index_t big = rows > cols ? rows : cols;
  return ns_detail::polar_buffer_elements(rows, cols) + ns_detail::pack_elements<T>(big);
}

/// X = (A + eps I)^{-1} (Hotelling).  Returns info; *steps, *r: steps taken, final residual.
template <class T>
CURVKIT_HD int ns_inverse(index_t n, const T* a, index_t lda, T* x, index_t ldx,
                          const NewtonSchulzOptions& o, T* scratch, int* steps, double* r) {
  const ns_detail::SerialEngine<T> e{scratch + ns_detail::kSquareBuffers * n * n};
  return ns_detail::inverse_with(e, n, a, lda, x, ldx, o, scratch, steps, r);
}

/// sqrt = (A + eps I)^{1/2}, inv_sqrt = (A + eps I)^{-1/2} (either may be null), coupled.
template <class T>
CURVKIT_HD int ns_sqrt(index_t n, const T* a, index_t lda, T* sq, index_t ldsq, T* inv,
                       index_t ldinv, const NewtonSchulzOptions& o, T* scratch, int* steps,
                       double* r) {
  const ns_detail::SerialEngine<T> e{scratch + ns_detail::kSquareBuffers * n * n};
  return ns_detail::sqrt_with(e, n, a, lda, sq, ldsq, inv, ldinv, o, scratch, steps, r);
}

/// X = (A + eps I)^{-1/p}, p >= 1, coupled Newton (T^p by repeated squaring).
template <class T>
CURVKIT_HD int ns_inverse_root(index_t n, const T* a, index_t lda, int p, T* x, index_t ldx,
                               const NewtonSchulzOptions& o, T* scratch, int* steps, double* r) {
  const ns_detail::SerialEngine<T> e{scratch + ns_detail::kSquareBuffers * n * n};
  return ns_detail::inverse_root_with(e, n, a, lda, p, x, ldx, o, scratch, steps, r);
}

/// U = the polar factor of the rows x cols A (newton_schulz.hpp's schedules).
template <class T>
CURVKIT_HD int ns_polar(index_t rows, index_t cols, const T* a, index_t lda, T* u, index_t ldu,
                        const NewtonSchulzOptions& o, const PolarOptions& po, T* scratch,
                        int* steps, double* r) {
  const ns_detail::SerialEngine<T> e{scratch + ns_detail::polar_buffer_elements(rows, cols)};
  return ns_detail::polar_with(e, rows, cols, a, lda, u, ldu, o, po, scratch, steps, r);
}

}  // namespace curvkit::device
