// Embedded building blocks: per-matrix Cholesky routines, callable on the host and (under
// nvcc) inside anyone's CUDA / Kokkos kernel.  No allocation, no exceptions, no globals.
//
// Storage: one row-major matrix, element (i, j) at a[i * lda + j]; only the lower triangle
// (j <= i) is read or written unless a routine says otherwise.
//
// The size argument is either a runtime index_t or curvkit::device::Fixed<N>: with Fixed<N>
// every trip count is a compile-time constant and the compiler unrolls the small cases.
//
// Algorithm: row-oriented ("Cholesky-Banachiewicz") factorisation, blocked over rows:
//   L_ij = (A_ij - <L_i,0:j , L_j,0:j>) / L_jj        j < i
//   L_ii = sqrt(A_ii + shift - <L_i,0:i , L_i,0:i>)
// Rows are processed in blocks of kRowBlock so that each earlier row j is loaded once per
// block and reused kRowBlock times (what makes large n cache-friendly); inside a block the
// arithmetic is exactly that of the unblocked algorithm.  Dot products are contiguous.
// Because the trailing matrix is never updated in place, a failed factorisation leaves rows
// below the failing block untouched, which is what lets potrf_restore_lower() rebuild the
// input for a shifted retry without any workspace.  On the host, potrf_lower_auto() switches
// to the blocked right-looking algorithm of cholesky_blocked.hpp for n >= 96.
#pragma once

#include <cmath>
#include <limits>
#include <type_traits>

#include "curvkit/core/info.hpp"
#include "curvkit/core/types.hpp"
#include "curvkit/device/cholesky_blocked.hpp"

namespace curvkit::device {

/// A compile-time matrix order.
template <int N>
struct Fixed {
  static constexpr int value = N;
  CURVKIT_HD_INLINE constexpr operator index_t() const { return N; }
};

/// Rows factored together; each earlier row is streamed once per block.
inline constexpr index_t kRowBlock = 8;

template <class T>
CURVKIT_HD_INLINE bool is_finite(T x) {
  // x - x is 0 for finite x and NaN for NaN / Inf; no <cmath> classification needed on device.
  return (x - x) == T(0);
}

template <class T>
CURVKIT_HD_INLINE T quiet_nan() {
  return std::numeric_limits<T>::quiet_NaN();
}

/// <x[0:len], y[0:len]>, accumulated in T.
template <class T>
CURVKIT_HD_INLINE T dot(const T* x, const T* y, index_t len) {
  T s = T(0);
  CURVKIT_SIMD_REDUCTION(s)
  for (index_t k = 0; k < len; ++k) s += x[k] * y[k];
  return s;
}

/// s_r = <x_r[0:len], y[0:len]> for four rows x_0..x_3 sharing y: one load of y feeds four
/// FMAs (the register blocking that makes the off-diagonal blocks run near FMA speed).
template <class T>
CURVKIT_HD_INLINE void dot4(const T* x0, const T* x1, const T* x2, const T* x3, const T* y,
                            index_t len, T* s) {
  T s0 = T(0), s1 = T(0), s2 = T(0), s3 = T(0);
  CURVKIT_SIMD_REDUCTION4(s0, s1, s2, s3)
  for (index_t k = 0; k < len; ++k) {
    s0 += x0[k] * y[k];
    s1 += x1[k] * y[k];
    s2 += x2[k] * y[k];
    s3 += x3[k] * y[k];
  }
  s[0] = s0;
  s[1] = s1;
  s[2] = s2;
  s[3] = s3;
}

/// Factor A + shift*I = L L^T in place (lower triangle).  Returns info: 0, k > 0 if pivot k
/// (1-based) is <= 0, -k if it is NaN/Inf.  On failure at pivot f (0-based) the matrix is
/// left in the state potrf_restore_lower(n, f, ...) documents; the failing diagonal entry is
/// not written.
template <class T, class Size>
CURVKIT_HD int potrf_lower(Size nn, T* a, index_t lda, T shift) {
  const index_t n = static_cast<index_t>(nn);
  for (index_t i0 = 0; i0 < n; i0 += kRowBlock) {
    const index_t i1 = i0 + kRowBlock < n ? i0 + kRowBlock : n;
    // Off-diagonal block: columns left of the block, every row of the block.  Row j (final)
    // is reused by all rows of the block.
    for (index_t j = 0; j < i0; ++j) {
      const T* lj = a + j * lda;
      const T ljj = lj[j];
      index_t i = i0;
      for (; i + 4 <= i1; i += 4) {
        T* l0 = a + i * lda;
        T s[4];
        dot4(l0, l0 + lda, l0 + 2 * lda, l0 + 3 * lda, lj, j, s);
        for (int r = 0; r < 4; ++r) l0[r * lda + j] = (l0[r * lda + j] - s[r]) / ljj;
      }
      for (; i < i1; ++i) {
        T* li = a + i * lda;
        li[j] = (li[j] - dot(li, lj, j)) / ljj;
      }
    }
    // Diagonal block, row by row.
    for (index_t i = i0; i < i1; ++i) {
      T* li = a + i * lda;
      for (index_t j = i0; j < i; ++j) {
        const T* lj = a + j * lda;
        li[j] = (li[j] - dot(li, lj, j)) / lj[j];
      }
      const T d = li[i] + shift - dot(li, li, i);
      if (!is_finite(d)) return info::non_finite(i);
      if (!(d > T(0))) return info::not_positive(i);
      li[i] = std::sqrt(d);
    }
  }
  return info::success;
}

/// Undo a potrf_lower(n, a, lda, shift) that failed at 0-based pivot f: rebuild the original
/// lower triangle of A from the partial factor (A = L L^T on the rows already factored), so
/// that the caller can retry with a larger shift without having kept a copy.  Exact up to
/// rounding (backward-stable: the rebuilt A differs from the input by O(eps |L|^2)).
/// State after the failure, for the row block [i0, i1) containing f:
///   rows i < f       hold L_i,0:i (complete rows of L)
///   row f            holds L_f,0:f; its diagonal is the original A_ff
///   rows f < i < i1  hold L_i,0:i0 in columns < i0; columns >= i0 are original
///   rows i >= i1     are original
template <class T, class Size>
CURVKIT_HD void potrf_restore_lower(Size nn, index_t f, T* a, index_t lda, T shift) {
  const index_t n = static_cast<index_t>(nn);
  const index_t i0 = (f / kRowBlock) * kRowBlock;
  const index_t i1 = i0 + kRowBlock < n ? i0 + kRowBlock : n;
  // Rows are rebuilt bottom-up: row i's rebuild reads rows j <= i as L, so every row must be
  // restored only after all rows below it that still need it.
  for (index_t i = i1 - 1; i >= 0; --i) {
    T* li = a + i * lda;
    const index_t valid = i < f ? i + 1 : (i == f ? f : (i < i1 ? i0 : 0));
    // Columns j < valid hold L_ij; A_ij = sum_{p <= j} L_ip L_jp.  Go right to left so that
    // L_ij itself (p = j term) is still intact when column j is rebuilt.
    for (index_t j = valid - 1; j >= 0; --j) {
      const T* lj = a + j * lda;
      T s = dot(li, lj, j) + li[j] * lj[j];
      if (j == i) s -= shift;
      li[j] = s;
    }
  }
}

/// Solve L Y = B in place: L lower n x n (lda), B n x nrhs (ldb).
template <class T, class Size>
CURVKIT_HD void trsm_lower(Size nn, index_t nrhs, const T* l, index_t lda, T* b, index_t ldb) {
  const index_t n = static_cast<index_t>(nn);
  if (nrhs == 1) {
    for (index_t i = 0; i < n; ++i) {
      const T* li = l + i * lda;
      T s = T(0);
      CURVKIT_SIMD_REDUCTION(s)
      for (index_t k = 0; k < i; ++k) s += li[k] * b[k * ldb];
      b[i * ldb] = (b[i * ldb] - s) / li[i];
    }
    return;
  }
  for (index_t i = 0; i < n; ++i) {
    const T* li = l + i * lda;
    T* bi = b + i * ldb;
    for (index_t k = 0; k < i; ++k) {
      const T lik = li[k];
      const T* bk = b + k * ldb;
      for (index_t c = 0; c < nrhs; ++c) bi[c] -= lik * bk[c];
    }
    const T inv = T(1) / li[i];
    for (index_t c = 0; c < nrhs; ++c) bi[c] *= inv;
  }
}

/// Solve L^T X = Y in place: L lower n x n (lda), Y n x nrhs (ldb).
template <class T, class Size>
CURVKIT_HD void trsm_lower_trans(Size nn, index_t nrhs, const T* l, index_t lda, T* b,
                                 index_t ldb) {
  const index_t n = static_cast<index_t>(nn);
  for (index_t i = n - 1; i >= 0; --i) {
    const T* li = l + i * lda;
    T* bi = b + i * ldb;
    const T inv = T(1) / li[i];
    for (index_t c = 0; c < nrhs; ++c) bi[c] *= inv;
    // Row i of L holds column i of L^T: eliminate x_i from the equations above it.
    for (index_t k = 0; k < i; ++k) {
      const T lik = li[k];
      T* bk = b + k * ldb;
      for (index_t c = 0; c < nrhs; ++c) bk[c] -= lik * bi[c];
    }
  }
}

/// Checks L's diagonal before a solve: info 0, k > 0 if L_kk <= 0, -k if it is NaN/Inf.
template <class T, class Size>
CURVKIT_HD int check_factor_diagonal(Size nn, const T* l, index_t lda) {
  const index_t n = static_cast<index_t>(nn);
  for (index_t i = 0; i < n; ++i) {
    const T d = l[i * lda + i];
    if (!is_finite(d)) return info::non_finite(i);
    if (!(d > T(0))) return info::not_positive(i);
  }
  return info::success;
}

/// X = (L L^T)^{-1} B in place, given a valid factor.
template <class T, class Size>
CURVKIT_HD void potrs_lower(Size n, index_t nrhs, const T* l, index_t lda, T* b, index_t ldb) {
  trsm_lower(n, nrhs, l, lda, b, ldb);
  trsm_lower_trans(n, nrhs, l, lda, b, ldb);
}

/// L := L^{-1} in place (lower triangle).
template <class T, class Size>
CURVKIT_HD void trtri_lower(Size nn, T* a, index_t lda) {
  const index_t n = static_cast<index_t>(nn);
  // Row i of X = L^{-1}: X_ii = 1/L_ii, X_ij = -X_ii * sum_{k=j}^{i-1} L_ik X_kj (j < i).
  // Ascending j reads L_ik (k >= j) before column j of row i is overwritten.
  for (index_t i = 0; i < n; ++i) {
    T* ai = a + i * lda;
    const T xii = T(1) / ai[i];
    for (index_t j = 0; j < i; ++j) {
      T s = T(0);
      for (index_t k = j; k < i; ++k) s += ai[k] * a[k * lda + j];
      ai[j] = -xii * s;
    }
    ai[i] = xii;
  }
}

/// Given X = L^{-1} in the lower triangle, write the full symmetric A^{-1} = X^T X (both
/// triangles).
template <class T, class Size>
CURVKIT_HD void lauum_lower_full(Size nn, T* a, index_t lda) {
  const index_t n = static_cast<index_t>(nn);
  // (X^T X)_ij = sum_{k >= i} X_ki X_kj for j <= i.  Row i needs rows k >= i only, so rows are
  // overwritten top-down; within row i, ascending j keeps X_ii (read by every j) until last.
  for (index_t i = 0; i < n; ++i) {
    for (index_t j = 0; j <= i; ++j) {
      T s = T(0);
      for (index_t k = i; k < n; ++k) s += a[k * lda + i] * a[k * lda + j];
      a[i * lda + j] = s;
    }
  }
  for (index_t i = 0; i < n; ++i)
    for (index_t j = 0; j < i; ++j) a[j * lda + i] = a[i * lda + j];
}

/// Given L in the lower triangle, write the full symmetric (L L^T)^{-1}: the vectorised
/// host routine for larger orders, trtri + lauum otherwise.
template <class T, class Size>
CURVKIT_HD void potri_from_factor(Size n, T* a, index_t lda) {
#if !defined(__CUDA_ARCH__) && !defined(__HIP_DEVICE_COMPILE__)
  if (static_cast<index_t>(n) >= blocked::kMinOrder &&
      static_cast<index_t>(n) <= blocked::kMaxInverseOrder)
    return blocked::potri_from_factor(static_cast<index_t>(n), a, lda);
#endif
  trtri_lower(n, a, lda);
  lauum_lower_full(n, a, lda);
}

/// max_i |a_ii|, or 1 if that is 0: the scale of the shift ladder.
template <class T, class Size>
CURVKIT_HD T diagonal_scale(Size nn, const T* a, index_t lda) {
  const index_t n = static_cast<index_t>(nn);
  T m = T(0);
  for (index_t i = 0; i < n; ++i) {
    const T d = a[i * lda + i] < T(0) ? -a[i * lda + i] : a[i * lda + i];
    m = d > m ? d : m;
  }
  return m > T(0) ? m : T(1);
}

/// Fill the lower triangle (and the upper one if `full`) with NaN: the output of a failure.
template <class T, class Size>
CURVKIT_HD void fill_nan(Size rows, index_t cols, T* a, index_t lda, bool lower_only) {
  const index_t m = static_cast<index_t>(rows);
  for (index_t i = 0; i < m; ++i)
    for (index_t j = 0; j < (lower_only ? i + 1 : cols); ++j) a[i * lda + j] = quiet_nan<T>();
}

/// The escalating-shift ladder of NonSpdPolicy::shift, as plain numbers a kernel can carry.
template <class T>
struct ShiftLadder {
  T lambda = T(0);   ///< the fused diagonal shift every attempt includes
  T start = T(0);    ///< first retry shift, relative to diagonal_scale (already resolved)
  T growth = T(10);  ///< factor between retries
  int retries = 0;   ///< 0 = report policy
};

/// The factorisation potrf_lower_with_policy uses: the blocked right-looking one on the host
/// for large orders, the row-oriented one otherwise.  Returns info.
template <class T, class Size>
CURVKIT_HD int potrf_lower_auto(Size n, T* a, index_t lda, T shift) {
#if !defined(__CUDA_ARCH__) && !defined(__HIP_DEVICE_COMPILE__)
  if (static_cast<index_t>(n) >= blocked::kMinOrder)
    return blocked::potrf_lower(static_cast<index_t>(n), a, lda, shift);
#endif
  return potrf_lower(n, a, lda, shift);
}

/// Undo a failed potrf_lower_auto (same choice of algorithm).
template <class T, class Size>
CURVKIT_HD void potrf_restore_lower_auto(Size n, index_t f, T* a, index_t lda, T shift) {
#if !defined(__CUDA_ARCH__) && !defined(__HIP_DEVICE_COMPILE__)
  if (static_cast<index_t>(n) >= blocked::kMinOrder)
    return blocked::potrf_restore_lower(static_cast<index_t>(n), f, a, lda, shift);
#endif
  potrf_restore_lower(n, f, a, lda, shift);
}

/// Factor with the shift policy: on a non-positive pivot, rebuild A and retry with
/// lambda + delta_r, delta_r = start * growth^r * scale.  Returns info; *shift_out receives the
/// delta used (0 if none was needed, NaN on failure).
template <class T, class Size>
CURVKIT_HD int potrf_lower_with_policy(Size n, T* a, index_t lda, const ShiftLadder<T>& ladder,
                                       T* shift_out) {
  int code = potrf_lower_auto(n, a, lda, ladder.lambda);
  T delta = T(0);
  if (code > 0 && ladder.retries > 0) {
    potrf_restore_lower_auto(n, static_cast<index_t>(code - 1), a, lda, ladder.lambda);
    const T scale = diagonal_scale(n, a, lda);
    delta = ladder.start * scale;
    for (int r = 0; r < ladder.retries; ++r, delta *= ladder.growth) {
      code = potrf_lower_auto(n, a, lda, ladder.lambda + delta);
      if (code <= 0) break;  // success, or NaN/Inf that no shift can fix
      if (r + 1 < ladder.retries)
        potrf_restore_lower_auto(n, static_cast<index_t>(code - 1), a, lda, ladder.lambda + delta);
    }
  }
  *shift_out = code == 0 ? delta : quiet_nan<T>();
  return code;
}

}  // namespace curvkit::device
