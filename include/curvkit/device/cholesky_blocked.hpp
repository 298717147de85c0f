// Host building block: blocked right-looking Cholesky for one larger matrix (n >= ~100),
// row-major, lower triangle, in place.  Included by cholesky.hpp; not compiled for devices.
//
// For each panel of kPanel columns [k0, k1):
//   1. factor the diagonal block (row-oriented, dots over the panel's columns only),
//   2. solve the rows below against it (L_iK = S_iK L_KK^{-T}, row by row),
//   3. update the trailing lower triangle S -= L_:,K L_:,K^T with a packed register-tiled
//      kernel: L_:,K^T is packed once per panel in column chunks on the stack, and a 4-row x
//      (two SIMD vectors) tile of S accumulates broadcast-times-vector FMAs, the structure of
//      a GEMM micro-kernel.  Nearly all flops are here.
// The trailing matrix holds the Schur complement S = A - L_:,<k0 L_:,<k0^T while the
// factorisation proceeds, so a failure leaves a state potrf_restore_lower_blocked can undo.
#pragma once

#if !defined(__CUDA_ARCH__) && !defined(__HIP_DEVICE_COMPILE__)

#include <cmath>

#include "curvkit/core/info.hpp"
#include "curvkit/core/types.hpp"

namespace curvkit::device::blocked {

/// Orders from which potrf_lower_with_policy uses this algorithm on the host.
inline constexpr index_t kMinOrder = 96;
/// Panel width (columns per step).
inline constexpr index_t kPanel = 32;

template <class T>
inline T sub_dot(T s, const T* x, const T* y, index_t len) {
  T acc = T(0);
  CURVKIT_SIMD
  for (index_t k = 0; k < len; ++k) acc += x[k] * y[k];
  return s - acc;
}

/// Rows below the diagonal block: L_iK = S_iK L_KK^{-T} (step 2), each row by forward
/// substitution in axpy form against a transposed copy of L_KK, so the inner loop runs over
/// contiguous memory and there is one reciprocal per column instead of a division per entry.
template <class T>
inline void panel_solve(index_t k0, index_t k1, index_t n, T* a, index_t lda) {
  const index_t nb = k1 - k0;
  alignas(64) T lt[kPanel * kPanel];  // lt[j * kPanel + q] = L_{k0+q, k0+j}, q > j
  T inv[kPanel];
  for (index_t j = 0; j < nb; ++j) {
    inv[j] = T(1) / a[(k0 + j) * lda + k0 + j];
    for (index_t q = j + 1; q < nb; ++q) lt[j * kPanel + q] = a[(k0 + q) * lda + k0 + j];
  }
  index_t i = k1;
  for (; i + 4 <= n; i += 4) {  // four rows share every load of lt
    T* x0 = a + i * lda + k0;
    T* x1 = x0 + lda;
    T* x2 = x1 + lda;
    T* x3 = x2 + lda;
    for (index_t j = 0; j < nb; ++j) {
      const T y0 = x0[j] * inv[j], y1 = x1[j] * inv[j], y2 = x2[j] * inv[j], y3 = x3[j] * inv[j];
      x0[j] = y0;
      x1[j] = y1;
      x2[j] = y2;
      x3[j] = y3;
      const T* col = lt + j * kPanel;
      CURVKIT_SIMD
      for (index_t q = j + 1; q < nb; ++q) {
        x0[q] -= y0 * col[q];
        x1[q] -= y1 * col[q];
        x2[q] -= y2 * col[q];
        x3[q] -= y3 * col[q];
      }
    }
  }
  for (; i < n; ++i) {
    T* x = a + i * lda + k0;
    for (index_t j = 0; j < nb; ++j) {
      const T xj = x[j] * inv[j];
      x[j] = xj;
      const T* col = lt + j * kPanel;
      CURVKIT_SIMD
      for (index_t q = j + 1; q < nb; ++q) x[q] -= xj * col[q];
    }
  }
}

/// S_ij -= sum_{p in [k0,k1)} L_ip L_jp for k1 <= j <= i < n (step 3).
template <class T>
inline void trailing_update(index_t k0, index_t k1, index_t n, T* a, index_t lda) {
  constexpr index_t NC = 64 / index_t(sizeof(T));  // tile width: two 256-bit vectors
  constexpr index_t MR = 4;                        // tile height
  constexpr index_t JC = 128;                      // columns packed at once
  const index_t depth = k1 - k0;
  alignas(64) T pt[kPanel * JC];  // pt[p * JC + c] = L_{jc0 + c, k0 + p}
  for (index_t jc0 = k1; jc0 < n; jc0 += JC) {
    const index_t jc1 = jc0 + JC < n ? jc0 + JC : n;
    const index_t width = jc1 - jc0;
    const index_t padded = (width + NC - 1) / NC * NC;
    for (index_t c = 0; c < padded; ++c) {
      const T* src = a + (jc0 + c) * lda + k0;
      for (index_t p = 0; p < depth; ++p) pt[p * JC + c] = c < width ? src[p] : T(0);
    }
    for (index_t i0 = jc0; i0 < n; i0 += MR) {
      const index_t mr = n - i0 < MR ? n - i0 : MR;
      const T* pr[MR];
      for (index_t r = 0; r < MR; ++r) pr[r] = a + (i0 + (r < mr ? r : 0)) * lda + k0;
      const index_t jend = i0 + mr < jc1 ? i0 + mr : jc1;  // no tile lies right of row i0+mr-1
      for (index_t jt = jc0; jt < jend; jt += NC) {
        T acc[MR][NC] = {};
        const T* q = pt + (jt - jc0);
        for (index_t p = 0; p < depth; ++p) {
          for (index_t r = 0; r < MR; ++r) {
            const T v = pr[r][p];
            CURVKIT_SIMD
            for (index_t c = 0; c < NC; ++c) acc[r][c] += v * q[p * JC + c];
          }
        }
        if (mr == MR && jt + NC <= jc1 && jt + NC <= i0 + 1) {  // whole tile below the diagonal
          for (index_t r = 0; r < MR; ++r) {
            T* row = a + (i0 + r) * lda + jt;
            CURVKIT_SIMD
            for (index_t c = 0; c < NC; ++c) row[c] -= acc[r][c];
          }
        } else {
          for (index_t r = 0; r < mr; ++r)
            for (index_t c = 0; c < NC; ++c) {
              const index_t j = jt + c;
              if (j < jc1 && j <= i0 + r) a[(i0 + r) * lda + j] -= acc[r][c];
            }
        }
      }
    }
  }
}

/// Factor A + shift I = L L^T in place.  Returns info (0, k, -k).  On failure at pivot f the
/// state is the one potrf_restore_lower_blocked documents; the failing diagonal is not written.
template <class T>
inline int potrf_lower(index_t n, T* a, index_t lda, T shift) {
  for (index_t k0 = 0; k0 < n; k0 += kPanel) {
    const index_t k1 = k0 + kPanel < n ? k0 + kPanel : n;
    for (index_t i = k0; i < k1; ++i) {  // 1. diagonal block
      T* li = a + i * lda;
      for (index_t j = k0; j < i; ++j) {
        const T* lj = a + j * lda;
        li[j] = sub_dot(li[j], li + k0, lj + k0, j - k0) / lj[j];
      }
      const T d = sub_dot(li[i] + shift, li + k0, li + k0, i - k0);
      if (!((d - d) == T(0))) return info::non_finite(i);
      if (!(d > T(0))) return info::not_positive(i);
      li[i] = std::sqrt(d);
    }
    if (k1 < n) panel_solve(k0, k1, n, a, lda);      // 2.
    if (k1 < n) trailing_update(k0, k1, n, a, lda);  // 3.
  }
  return info::success;
}

/// Undo a potrf_lower that failed at 0-based pivot f in the panel starting at k0: every entry
/// holds either L (columns < k0; rows of the panel above f; row f left of f) or the Schur
/// complement S_ij = A_ij - sum_{p<k0} L_ip L_jp (everything else, the shift not included).
/// Rebuild A_ij = sum_{p<=j} L_ip L_jp (- shift on the diagonal) or S_ij + sum_{p<k0} L_ip L_jp,
/// bottom-up and right to left so that every L entry read is still intact.
template <class T>
inline void potrf_restore_lower(index_t n, index_t f, T* a, index_t lda, T shift) {
  const index_t k0 = (f / kPanel) * kPanel;
  for (index_t i = n - 1; i >= 0; --i) {
    T* li = a + i * lda;
    for (index_t j = i; j >= 0; --j) {
      const T* lj = a + j * lda;
      const bool is_l = j < k0 || i < f || (i == f && j < f);
      if (is_l) {
        T s = T(0);
        for (index_t p = 0; p <= j; ++p) s += li[p] * lj[p];
        li[j] = i == j ? s - shift : s;
      } else {
        T s = li[j];
        for (index_t p = 0; p < k0; ++p) s += li[p] * lj[p];
        li[j] = s;
      }
    }
  }
}

/// Largest order the host inverse below handles (its scratch row lives on the stack).
inline constexpr index_t kMaxInverseOrder = 8192;

/// Given L (from potrf_lower) in the lower triangle, write the full symmetric (L L^T)^{-1}.
/// Both steps are written in axpy form over contiguous rows, so they vectorise:
///   X = L^{-1}:  x_i = (e_i - sum_{k<i} L_ik x_k) / L_ii, rows top-down;
///   A^{-1} = X^T X:  row i of the result = sum_{k>=i} X_ki x_k[0:i], rows top-down
///   (row i needs rows k >= i of X only).  Each new row is built in a scratch row.
template <class T>
inline void potri_from_factor(index_t n, T* a, index_t lda) {
  T row[kMaxInverseOrder];
  for (index_t i = 0; i < n; ++i) {  // X = L^{-1}
    T* li = a + i * lda;
    const T inv = T(1) / li[i];
    for (index_t j = 0; j <= i; ++j) row[j] = T(0);
    for (index_t k = 0; k < i; ++k) {
      const T c = li[k];
      const T* xk = a + k * lda;
      CURVKIT_SIMD
      for (index_t j = 0; j <= k; ++j) row[j] -= c * xk[j];
    }
    CURVKIT_SIMD
    for (index_t j = 0; j < i; ++j) li[j] = row[j] * inv;
    li[i] = inv;
  }
  for (index_t i = 0; i < n; ++i) {  // X^T X, lower triangle
    for (index_t j = 0; j <= i; ++j) row[j] = T(0);
    for (index_t k = i; k < n; ++k) {
      const T* xk = a + k * lda;
      const T c = xk[i];
      CURVKIT_SIMD
      for (index_t j = 0; j <= i; ++j) row[j] += c * xk[j];
    }
    T* ai = a + i * lda;
    for (index_t j = 0; j <= i; ++j) ai[j] = row[j];
  }
  for (index_t i = 0; i < n; ++i)
    for (index_t j = 0; j < i; ++j) a[j * lda + i] = a[i * lda + j];
}

}  // namespace curvkit::device::blocked

#endif
