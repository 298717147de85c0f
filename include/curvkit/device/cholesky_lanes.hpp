// Embedded building blocks: W small SPD matrices factored / solved / inverted in lock-step,
// one matrix per SIMD lane.
//
// Why: a single small Cholesky (n <= 64) has short dot products, a sqrt and divisions on its
// critical path and vectorises poorly; W independent matrices do the same scalar program, so
// storing them interleaved (element (i, j) of lane w at buf[tri(i, j) * W + w]) turns every
// scalar operation into one W-wide vector operation with no reductions and no shuffles (the
// "compact" layout of KokkosBatched and MAGMA's interleaved batches).  The caller gathers W
// matrices from its row-major batch into a lane buffer, runs these routines, and scatters the
// results back.  Only the lower triangle is stored, packed by rows: tri(i, j) = i(i+1)/2 + j.
//
// The arithmetic per lane is that of the row-oriented Cholesky in cholesky.hpp, so the info
// codes (first failing pivot, NaN/Inf vs non-positive) are identical.
#pragma once

#include <cmath>

#include "curvkit/core/info.hpp"
#include "curvkit/core/types.hpp"

namespace curvkit::device::lanes {

CURVKIT_HD_INLINE constexpr index_t tri(index_t i, index_t j) {
  return i * (i + 1) / 2 + j;
}

/// Elements of a packed lower triangle of order n.
CURVKIT_HD_INLINE constexpr index_t tri_size(index_t n) {
  return n * (n + 1) / 2;
}

// s[w] -= sum_{k < len} x[k][w] * y[k][w]
template <int W, class T>
CURVKIT_HD_INLINE void sub_dot(T* s, const T* x, const T* y, index_t len) {
  for (index_t k = 0; k < len; ++k) {
    CURVKIT_SIMD
    for (int w = 0; w < W; ++w) s[w] -= x[k * W + w] * y[k * W + w];
  }
}

// Pivot i of every lane: d = a_ii + shift - sum_k l_ik^2 is checked, L_ii = sqrt(d) stored,
// 1/L_ii kept; failing lanes record their first failure and continue with d = 1.
template <int W, class T>
CURVKIT_HD_INLINE void finish_pivot(index_t i, T* li, T shift, T* inv_diag, int* info) {
  T d[W];
  CURVKIT_SIMD
  for (int w = 0; w < W; ++w) d[w] = li[i * W + w] + shift;
  sub_dot<W>(d, li, li, i);
  for (int w = 0; w < W; ++w) {
    const bool finite = (d[w] - d[w]) == T(0);
    if (!finite || !(d[w] > T(0))) {
      if (info[w] == info::success) info[w] = finite ? info::not_positive(i) : info::non_finite(i);
      d[w] = T(1);
    }
  }
  CURVKIT_SIMD
  for (int w = 0; w < W; ++w) {
    const T r = std::sqrt(d[w]);
    li[i * W + w] = r;
    inv_diag[i * W + w] = T(1) / r;
  }
}

/// Factor in place: buf holds the lower triangles of W matrices (A + shift I = L L^T).
/// inv_diag (n * W) receives 1 / L_ii.  info[w] is the lane's info code (0, k, -k); a lane
/// that fails keeps going on harmless numbers so the others are unaffected.
/// Rows are computed in pairs: both rows share each load of an earlier row j and give the
/// FMA units two independent chains per lane vector (the dot products are short).
template <int W, class T, class Size>
CURVKIT_HD void potrf(Size nn, T* buf, T shift, T* inv_diag, int* info) {
  const index_t n = static_cast<index_t>(nn);
  for (int w = 0; w < W; ++w) info[w] = info::success;
  index_t i = 0;
  for (; i + 1 < n; i += 2) {
    T* l0 = buf + tri(i, 0) * W;
    T* l1 = buf + tri(i + 1, 0) * W;
    // Columns in pairs too: a 2 x 2 block of dot products shares every load.  Column j+1's
    // k = j term needs L_ij, so it is added after column j is finished (same order of terms
    // as one dot product at a time).
    index_t j = 0;
    for (; j + 1 < i; j += 2) {
      const T* lj0 = buf + tri(j, 0) * W;
      const T* lj1 = buf + tri(j + 1, 0) * W;
      T s00[W], s01[W], s10[W], s11[W];
      CURVKIT_SIMD
      for (int w = 0; w < W; ++w) {
        s00[w] = l0[j * W + w];
        s01[w] = l0[(j + 1) * W + w];
        s10[w] = l1[j * W + w];
        s11[w] = l1[(j + 1) * W + w];
      }
      for (index_t k = 0; k < j; ++k) {
        CURVKIT_SIMD
        for (int w = 0; w < W; ++w) {
          const T a0 = l0[k * W + w], a1 = l1[k * W + w];
          const T b0 = lj0[k * W + w], b1 = lj1[k * W + w];
          s00[w] -= a0 * b0;
          s01[w] -= a0 * b1;
          s10[w] -= a1 * b0;
          s11[w] -= a1 * b1;
        }
      }
      CURVKIT_SIMD
      for (int w = 0; w < W; ++w) {
        const T x0 = s00[w] * inv_diag[j * W + w];
        const T x1 = s10[w] * inv_diag[j * W + w];
        l0[j * W + w] = x0;
        l1[j * W + w] = x1;
        const T c = lj1[j * W + w];  // L_{j+1, j}
        l0[(j + 1) * W + w] = (s01[w] - x0 * c) * inv_diag[(j + 1) * W + w];
        l1[(j + 1) * W + w] = (s11[w] - x1 * c) * inv_diag[(j + 1) * W + w];
      }
    }
    for (; j < i; ++j) {
      const T* lj = buf + tri(j, 0) * W;
      T s0[W], s1[W];
      CURVKIT_SIMD
      for (int w = 0; w < W; ++w) {
        s0[w] = l0[j * W + w];
        s1[w] = l1[j * W + w];
      }
      for (index_t k = 0; k < j; ++k) {
        CURVKIT_SIMD
        for (int w = 0; w < W; ++w) {
          s0[w] -= l0[k * W + w] * lj[k * W + w];
          s1[w] -= l1[k * W + w] * lj[k * W + w];
        }
      }
      CURVKIT_SIMD
      for (int w = 0; w < W; ++w) {
        l0[j * W + w] = s0[w] * inv_diag[j * W + w];
        l1[j * W + w] = s1[w] * inv_diag[j * W + w];
      }
    }
    finish_pivot<W>(i, l0, shift, inv_diag, info);
    T s[W];  // L_{i+1,i}
    CURVKIT_SIMD
    for (int w = 0; w < W; ++w) s[w] = l1[i * W + w];
    sub_dot<W>(s, l1, l0, i);
    CURVKIT_SIMD
    for (int w = 0; w < W; ++w) l1[i * W + w] = s[w] * inv_diag[i * W + w];
    finish_pivot<W>(i + 1, l1, shift, inv_diag, info);
  }
  if (i < n) {  // odd order: the last row alone
    T* li = buf + tri(i, 0) * W;
    for (index_t j = 0; j < i; ++j) {
      const T* lj = buf + tri(j, 0) * W;
      T s[W];
      CURVKIT_SIMD
      for (int w = 0; w < W; ++w) s[w] = li[j * W + w];
      sub_dot<W>(s, li, lj, j);
      CURVKIT_SIMD
      for (int w = 0; w < W; ++w) li[j * W + w] = s[w] * inv_diag[j * W + w];
    }
    finish_pivot<W>(i, li, shift, inv_diag, info);
  }
}

/// X := (L L^T)^{-1} X for W lanes; x holds an n x nrhs block per lane, interleaved:
/// element (i, c) of lane w at x[(i * nrhs + c) * W + w].
template <int W, class T, class Size>
CURVKIT_HD void potrs(Size nn, index_t nrhs, const T* buf, const T* inv_diag, T* x) {
  const index_t n = static_cast<index_t>(nn);
  for (index_t i = 0; i < n; ++i) {  // L Y = B, row by row
    const T* li = buf + tri(i, 0) * W;
    for (index_t c = 0; c < nrhs; ++c) {
      T* xi = x + (i * nrhs + c) * W;
      T s[W];  // local accumulator: x and buf may alias as far as the compiler knows
      CURVKIT_SIMD
      for (int w = 0; w < W; ++w) s[w] = xi[w];
      for (index_t k = 0; k < i; ++k) {
        const T* xk = x + (k * nrhs + c) * W;
        CURVKIT_SIMD
        for (int w = 0; w < W; ++w) s[w] -= li[k * W + w] * xk[w];
      }
      CURVKIT_SIMD
      for (int w = 0; w < W; ++w) xi[w] = s[w] * inv_diag[i * W + w];
    }
  }
  for (index_t i = n - 1; i >= 0; --i) {  // L^T X = Y: row i of L is column i of L^T
    const T* li = buf + tri(i, 0) * W;
    for (index_t c = 0; c < nrhs; ++c) {
      T* xi = x + (i * nrhs + c) * W;
      CURVKIT_SIMD
      for (int w = 0; w < W; ++w) xi[w] *= inv_diag[i * W + w];
      for (index_t k = 0; k < i; ++k) {
        T* xk = x + (k * nrhs + c) * W;
        CURVKIT_SIMD
        for (int w = 0; w < W; ++w) xk[w] -= li[k * W + w] * xi[w];
      }
    }
  }
}

/// In place: L (from potrf) -> X = L^{-1} -> the lower triangle of X^T X = (L L^T)^{-1}.
template <int W, class T, class Size>
CURVKIT_HD void potri(Size nn, T* buf, const T* inv_diag) {
  const index_t n = static_cast<index_t>(nn);
  // X_ij = -X_ii sum_{k=j}^{i-1} L_ik X_kj; ascending j reads L_ik (k >= j) before it is
  // overwritten, rows above are already X.
  for (index_t i = 0; i < n; ++i) {
    T* li = buf + tri(i, 0) * W;
    for (index_t j = 0; j < i; ++j) {
      T s[W];
      CURVKIT_SIMD
      for (int w = 0; w < W; ++w) s[w] = T(0);
      for (index_t k = j; k < i; ++k) {
        const T* xkj = buf + tri(k, j) * W;
        CURVKIT_SIMD
        for (int w = 0; w < W; ++w) s[w] += li[k * W + w] * xkj[w];
      }
      CURVKIT_SIMD
      for (int w = 0; w < W; ++w) li[j * W + w] = -inv_diag[i * W + w] * s[w];
    }
    CURVKIT_SIMD
    for (int w = 0; w < W; ++w) li[i * W + w] = inv_diag[i * W + w];
  }
  // (X^T X)_ij = sum_{k >= i} X_ki X_kj (j <= i): row i needs rows k >= i only, so rows are
  // overwritten top-down; within a row ascending j keeps X_ii (read by all j) until last.
  for (index_t i = 0; i < n; ++i) {
    for (index_t j = 0; j <= i; ++j) {
      T s[W];
      CURVKIT_SIMD
      for (int w = 0; w < W; ++w) s[w] = T(0);
      for (index_t k = i; k < n; ++k) {
        const T* xk = buf + tri(k, 0) * W;
        CURVKIT_SIMD
        for (int w = 0; w < W; ++w) s[w] += xk[i * W + w] * xk[j * W + w];
      }
      T* out = buf + tri(i, j) * W;
      CURVKIT_SIMD
      for (int w = 0; w < W; ++w) out[w] = s[w];
    }
  }
}

}  // namespace curvkit::device::lanes
