// Embedded building blocks of the quasi-Newton half of the Sherman–Morrison / Woodbury family
// (curvkit/quasi_newton.hpp): per-matrix BFGS updates, damping, the Hessian-action pair and
// L-BFGS applies.  Host and device; no allocation; scratch is the caller's.
// Storage: row-major; symmetric matrices are read from the lower triangle; vectors contiguous.
#pragma once

#include "curvkit/device/sherman_morrison.hpp"

namespace curvkit::device {

/// The BFGS inverse update of one matrix for k pairs (rows of s and y) in order, in the
/// expanded O(n^2) form H += (rho + rho^2 y^T w) s s^T - rho (s w^T + w s^T), w = H y.
/// A pair with s^T y <= min_curvature |s| |y| is rejected: skipped (counted in *skipped) when
/// `skip_rejected`, else the call fails with info j.  Scratch: n elements (w).  Returns info;
/// on failure H is NaN.
template <class T>
CURVKIT_HD int bfgs_update(index_t n, T* h, index_t ldh, const T* s, index_t lds, const T* y,
                           index_t ldy, index_t k, T min_curvature, bool skip_rejected, bool mirror,
                           T* w, int* skipped) {
  int code = info::success;
  int rejected = 0;
  for (index_t j = 0; j < k; ++j) {
    const T* sj = s + j * lds;
    const T* yj = y + j * ldy;
    symv_lower(n, h, ldh, yj, w);
    const T sy = dot(sj, yj, n);
    const T yhy = dot(yj, w, n);
    if (!is_finite(sy) || !is_finite(yhy)) {
      code = info::non_finite(j);
      break;
    }
    const T norms = std::sqrt(dot(sj, sj, n) * dot(yj, yj, n));
    if (!(sy > min_curvature * norms)) {
      if (skip_rejected) {
        ++rejected;
        continue;
      }
      code = info::not_positive(j);
      break;
    }
    const T rho = T(1) / sy;
    const T coef = rho + rho * rho * yhy;
    for (index_t i = 0; i < n; ++i) {
      T* r = h + i * ldh;
      const T a = coef * sj[i] - rho * w[i];  // r += a s^T - rho s_i w^T
      const T bsi = rho * sj[i];
      CURVKIT_SIMD
      for (index_t c = 0; c <= i; ++c) r[c] += a * sj[c] - bsi * w[c];
    }
  }
  if (skipped) *skipped = rejected;
  if (code != info::success) {
    fill_nan(n, n, h, ldh, !mirror);
    return code;
  }
  if (mirror) mirror_lower(n, h, ldh);
  return code;
}

/// How a pair is damped (mirrors curvkit::DampingScheme).
enum class Damping : int {
  powell_lm = 0,
  double_damping = 1,
  powell_identity_lm = 2,
  powell_lm_hy = 3
};

/// Algorithm 5's skip test of a damped pair: s^T y < mu1 y^T H y.  Powell damping can meet the
/// bound with equality, so 8 n eps of it is left to rounding (every backend uses this test).
template <class T>
CURVKIT_HD_INLINE bool below_curvature_bound(T sy, T yhy, T mu1, index_t n) {
  const T bound = mu1 * yhy;
  return sy < bound - T(8) * T(n) * epsilon<T>() * (bound < T(0) ? -bound : bound);
}

/// Damps one pair in place (s -> s~, y -> y~); h is not read for powell_identity_lm unless
/// skip_test, and is the vector H y (n entries) for powell_lm_hy (no skip_test).  Writes theta1,
/// theta2 and the skip flag.  Scratch: n elements.  Returns 0, or -1 when a NaN/Inf appears (then
/// s, y and the thetas are NaN).
template <class T>
CURVKIT_HD int bfgs_damping(index_t n, const T* h, index_t ldh, T* s, T* y, Damping scheme, T mu1,
                            T mu2, bool skip_test, T* hy, T* theta1_out, T* theta2_out,
                            int* skip_out) {
  // Powell damping on H (H = I / mu2 for the identity scheme).
  if (scheme == Damping::powell_identity_lm) {
    for (index_t i = 0; i < n; ++i) hy[i] = y[i] / mu2;
  } else if (scheme == Damping::powell_lm_hy) {
    for (index_t i = 0; i < n; ++i) hy[i] = h[i];
  } else {
    symv_lower(n, h, ldh, y, hy);
  }
  const T sy = dot(s, y, n), yhy = dot(y, hy, n);
  const T theta1 = sy < mu1 * yhy ? (T(1) - mu1) * yhy / (yhy - sy) : T(1);
  for (index_t i = 0; i < n; ++i) s[i] = theta1 * s[i] + (T(1) - theta1) * hy[i];
  T theta2 = T(1);
  if (scheme == Damping::double_damping) {  // Powell with B = I
    const T ss = dot(s, s, n), sy2 = dot(s, y, n);
    theta2 = sy2 < mu2 * ss ? (T(1) - mu2) * ss / (ss - sy2) : T(1);
    for (index_t i = 0; i < n; ++i) y[i] = theta2 * y[i] + (T(1) - theta2) * s[i];
  } else {  // Levenberg–Marquardt: y~ = y + mu2 s~
    for (index_t i = 0; i < n; ++i) y[i] += mu2 * s[i];
  }
  T check = theta1 * T(0) + theta2 * T(0);  // NaN/Inf anywhere -> NaN
  for (index_t i = 0; i < n; ++i) check += s[i] * T(0) + y[i] * T(0);
  const bool ok = is_finite(check);
  int flag = 0;
  if (ok && skip_test) {
    symv_lower(n, h, ldh, y, hy);
    flag = below_curvature_bound(dot(s, y, n), dot(y, hy, n), mu1, n) ? 1 : 0;
  }
  if (!ok) {
    for (index_t i = 0; i < n; ++i) s[i] = y[i] = quiet_nan<T>();
  }
  if (theta1_out) *theta1_out = ok ? theta1 : quiet_nan<T>();
  if (theta2_out) *theta2_out = ok ? theta2 : quiet_nan<T>();
  if (skip_out) *skip_out = flag;
  return ok ? info::success : info::non_finite(0);
}

/// s = H abar, y = scale X^T (X s) + lambda s for one matrix (X: m rows of n, ldx).  Returns 0
/// or -1 (NaN/Inf in s or y; both are then NaN).
template <class T>
CURVKIT_HD int hessian_action_pair(index_t n, index_t m, const T* h, index_t ldh, const T* abar,
                                   const T* x, index_t ldx, T lambda, T scale, T* s, T* y) {
  symv_lower(n, h, ldh, abar, s);
  for (index_t i = 0; i < n; ++i) y[i] = lambda * s[i];
  for (index_t r = 0; r < m; ++r) {
    const T* xr = x + r * ldx;
    axpy_minus(n, -scale * dot(xr, s, n), xr, y);
  }
  T check = T(0);
  for (index_t i = 0; i < n; ++i) check += s[i] * T(0) + y[i] * T(0);
  if (is_finite(check)) return info::success;
  for (index_t i = 0; i < n; ++i) s[i] = y[i] = quiet_nan<T>();
  return info::non_finite(0);
}

/// Checks the p pairs (s_i^T y_i finite and > 0, in order) given their curvatures sy[i].
template <class T>
CURVKIT_HD_INLINE int lbfgs_check_pairs(index_t p, const T* sy, index_t inc) {
  for (index_t i = 0; i < p; ++i) {
    const T v = sy[i * inc];
    if (!is_finite(v)) return info::non_finite(i);
    if (!(v > T(0))) return info::not_positive(i);
  }
  return info::success;
}

/// Whether pair i is a zero pair (s_i and y_i exactly zero), which skip_zero_pairs treats as
/// absent.
template <class T>
CURVKIT_HD_INLINE bool lbfgs_zero_pair(index_t d, const T* s, const T* y) {
  for (index_t c = 0; c < d; ++c)
    if (s[c] != T(0) || y[c] != T(0)) return false;
  return true;
}

/// The automatic H_0 = gamma I: s^T y / y^T y of the newest pair (with skip_zero_pairs, of the
/// newest non-zero pair), 1 without one.  sy(i) and yy(i) give pair i's products.
template <class T, class Sy, class Yy>
CURVKIT_HD_INLINE T lbfgs_auto_gamma(index_t d, index_t p, const T* s, index_t lds, const T* y,
                                     index_t ldy, bool skip_zero_pairs, Sy sy, Yy yy) {
  for (index_t i = p - 1; i >= 0; --i)
    if (!skip_zero_pairs || !lbfgs_zero_pair(d, s + i * lds, y + i * ldy)) return sy(i) / yy(i);
  return T(1);
}

/// Scratch elements lbfgs_compact_apply needs.
CURVKIT_HD_INLINE constexpr index_t lbfgs_compact_scratch(index_t p, index_t nrhs) {
  return 2 * p * p + 2 * p * nrhs;
}

/// X := H_p X by the compact (Byrd–Nocedal–Schnabel) form for one matrix: s, y are p x d
/// (pairs as rows), x is d x nrhs.  sty / yty (p x p, full; optional) are S^T Y and Y^T Y.
/// gamma <= 0 selects s_p^T y_p / y_p^T y_p.  A zero pair under skip_zero_pairs gets R_ii = 1:
/// its row and column of R and Y^T Y are zero, so it then contributes nothing.  Returns info;
/// on failure X is NaN.
template <class T>
CURVKIT_HD int lbfgs_compact_apply(index_t d, index_t p, index_t nrhs, const T* s, index_t lds,
                                   const T* y, index_t ldy, T* x, index_t ldx, T gamma,
                                   const T* sty, index_t ldsty, const T* yty, index_t ldyty,
                                   T* scratch, bool skip_zero_pairs = false) {
  T* r = scratch;       // p x p: R (upper, i <= j) = S^T Y
  T* yy = r + p * p;    // p x p: Y^T Y (lower)
  T* a = yy + p * p;    // p x nrhs: S^T X, then R^{-1} S^T X
  T* e = a + p * nrhs;  // p x nrhs: Y^T X, then E, then R^{-T} E
  for (index_t i = 0; i < p; ++i)
    for (index_t j = i; j < p; ++j)
      r[i * p + j] = sty ? sty[i * ldsty + j] : dot(s + i * lds, y + j * ldy, d);
  if (skip_zero_pairs)
    for (index_t i = 0; i < p; ++i)
      if (lbfgs_zero_pair(d, s + i * lds, y + i * ldy)) r[i * p + i] = T(1);
  int code = lbfgs_check_pairs(p, r, p + 1);
  if (code != info::success) {
    fill_nan(d, nrhs, x, ldx, false);
    return code;
  }
  for (index_t i = 0; i < p; ++i)
    for (index_t j = 0; j <= i; ++j)
      yy[i * p + j] = yty ? yty[i * ldyty + j] : dot(y + i * ldy, y + j * ldy, d);
  if (!(gamma > T(0)))
    gamma = lbfgs_auto_gamma(
        d, p, s, lds, y, ldy, skip_zero_pairs, [&](index_t i) { return r[i * p + i]; },
        [&](index_t i) { return yy[i * p + i]; });
  // a = S^T X, e = Y^T X.
  for (index_t i = 0; i < p * nrhs; ++i) a[i] = e[i] = T(0);
  for (index_t c = 0; c < d; ++c) {
    const T* xc = x + c * ldx;
    for (index_t i = 0; i < p; ++i) {
      const T si = s[i * lds + c], yi = y[i * ldy + c];
      T* ai = a + i * nrhs;
      T* ei = e + i * nrhs;
      CURVKIT_SIMD
      for (index_t q = 0; q < nrhs; ++q) {
        ai[q] += si * xc[q];
        ei[q] += yi * xc[q];
      }
    }
  }
  // a = R^{-1} a (back substitution).
  for (index_t i = p - 1; i >= 0; --i) {
    T* ai = a + i * nrhs;
    for (index_t j = i + 1; j < p; ++j) axpy_minus(nrhs, r[i * p + j], a + j * nrhs, ai);
    const T inv = T(1) / r[i * p + i];
    for (index_t q = 0; q < nrhs; ++q) ai[q] *= inv;
  }
  // e = D a + gamma Y^T Y a - gamma e.
  for (index_t i = 0; i < p; ++i) {
    T* ei = e + i * nrhs;
    for (index_t q = 0; q < nrhs; ++q) ei[q] = r[i * p + i] * a[i * nrhs + q] - gamma * ei[q];
    for (index_t j = 0; j < p; ++j) {
      const T yij = j <= i ? yy[i * p + j] : yy[j * p + i];
      axpy_minus(nrhs, -gamma * yij, a + j * nrhs, ei);
    }
  }
  // e = R^{-T} e (forward substitution with R^T).
  for (index_t i = 0; i < p; ++i) {
    T* ei = e + i * nrhs;
    for (index_t j = 0; j < i; ++j) axpy_minus(nrhs, r[j * p + i], e + j * nrhs, ei);
    const T inv = T(1) / r[i * p + i];
    for (index_t q = 0; q < nrhs; ++q) ei[q] *= inv;
  }
  // X = gamma X + S e - gamma Y a.
  for (index_t c = 0; c < d; ++c) {
    T* xc = x + c * ldx;
    for (index_t q = 0; q < nrhs; ++q) xc[q] *= gamma;
    for (index_t i = 0; i < p; ++i) {
      const T si = s[i * lds + c], gyi = gamma * y[i * ldy + c];
      const T* ai = a + i * nrhs;
      const T* ei = e + i * nrhs;
      CURVKIT_SIMD
      for (index_t q = 0; q < nrhs; ++q) xc[q] += si * ei[q] - gyi * ai[q];
    }
  }
  return code;
}

/// Scratch elements lbfgs_two_loop needs.
CURVKIT_HD_INLINE constexpr index_t lbfgs_two_loop_scratch(index_t p, index_t d) {
  return 2 * p + d;
}

/// X := H_p X by the two-loop recursion, column by column (Nocedal & Wright, Alg. 7.4).
/// Scratch: 2 p + d elements.  A zero pair under skip_zero_pairs gets rho_i = 0 (no effect).
/// Returns info; on failure X is NaN.
template <class T>
CURVKIT_HD int lbfgs_two_loop(index_t d, index_t p, index_t nrhs, const T* s, index_t lds,
                              const T* y, index_t ldy, T* x, index_t ldx, T gamma, T* scratch,
                              bool skip_zero_pairs = false) {
  T* rho = scratch;
  T* alpha = scratch + p;
  T* q = alpha + p;  // one column, contiguous
  auto zero = [&](index_t i) {
    return skip_zero_pairs && lbfgs_zero_pair(d, s + i * lds, y + i * ldy);
  };
  for (index_t i = 0; i < p; ++i) rho[i] = zero(i) ? T(1) : dot(s + i * lds, y + i * ldy, d);
  const int code = lbfgs_check_pairs(p, rho, 1);
  if (code != info::success) {
    fill_nan(d, nrhs, x, ldx, false);
    return code;
  }
  if (!(gamma > T(0)))
    gamma = lbfgs_auto_gamma(
        d, p, s, lds, y, ldy, skip_zero_pairs, [&](index_t i) { return rho[i]; },
        [&](index_t i) { return dot(y + i * ldy, y + i * ldy, d); });
  for (index_t i = 0; i < p; ++i) rho[i] = zero(i) ? T(0) : T(1) / rho[i];
  for (index_t col = 0; col < nrhs; ++col) {
    for (index_t c = 0; c < d; ++c) q[c] = x[c * ldx + col];
    for (index_t i = p - 1; i >= 0; --i) {
      alpha[i] = rho[i] * dot(s + i * lds, q, d);
      axpy_minus(d, alpha[i], y + i * ldy, q);
    }
    for (index_t c = 0; c < d; ++c) q[c] *= gamma;
    for (index_t i = 0; i < p; ++i) {
      const T beta = rho[i] * dot(y + i * ldy, q, d);
      axpy_minus(d, beta - alpha[i], s + i * lds, q);
    }
    for (index_t c = 0; c < d; ++c) x[c * ldx + col] = q[c];
  }
  return code;
}

}  // namespace curvkit::device
