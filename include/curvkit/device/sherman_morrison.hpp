// Embedded building blocks of the Sherman–Morrison / Woodbury family: per-matrix routines,
// callable on the host and (under nvcc) inside anyone's CUDA / Kokkos kernel.  No allocation,
// no exceptions; scratch memory is the caller's (sizes below).
//
// Storage as in cholesky.hpp: row-major, element (i, j) at a[i * lda + j]; symmetric matrices
// are read from their lower triangle.  Vectors are contiguous.
#pragma once

#include "curvkit/core/info.hpp"
#include "curvkit/core/types.hpp"
#include "curvkit/device/cholesky.hpp"

namespace curvkit::device {

/// Vectors per pass over H in rank1_chain.
inline constexpr index_t kRank1Chunk = 8;

/// Machine epsilon of T (usable in device code without relaxed constexpr).
template <class T>
CURVKIT_HD_INLINE constexpr T epsilon() {
  return sizeof(T) == 4 ? T(1.1920928955078125e-7) : T(2.220446049250313080847e-16);
}

/// y = H x for symmetric H read from its lower triangle.  Row i contributes a dot product
/// with its strict lower part (to y_i) and an axpy of it (to y_0..y_{i-1}): both contiguous.
template <class T>
CURVKIT_HD void symv_lower(index_t n, const T* h, index_t ldh, const T* x, T* y) {
  for (index_t i = 0; i < n; ++i) y[i] = T(0);
  for (index_t i = 0; i < n; ++i) {
    const T* r = h + i * ldh;
    const T xi = x[i];
    T acc = T(0);
    CURVKIT_SIMD_REDUCTION(acc)
    for (index_t c = 0; c < i; ++c) {
      acc += r[c] * x[c];
      y[c] += r[c] * xi;
    }
    y[i] += acc + r[i] * xi;
  }
}

/// y -= alpha x over len elements.
template <class T>
CURVKIT_HD_INLINE void axpy_minus(index_t len, T alpha, const T* x, T* y) {
  CURVKIT_SIMD
  for (index_t c = 0; c < len; ++c) y[c] -= alpha * x[c];
}

/// Copies the strict lower triangle to the strict upper one.
template <class T>
CURVKIT_HD void mirror_lower(index_t n, T* a, index_t lda) {
  for (index_t i = 0; i < n; ++i)
    for (index_t j = 0; j < i; ++j) a[j * lda + i] = a[i * lda + j];
}

/// Scratch elements rank1_chain needs for order n.
CURVKIT_HD_INLINE constexpr index_t rank1_chain_scratch(index_t n) {
  return kRank1Chunk * (n + 1);
}

/// v_j = H_0 u_j for a chunk of kc vectors (rows of u, ldu; v_j at v + j n).  With `full`,
/// H's rows are complete (upper triangle valid) and V^T = U H is computed as a small GEMM:
/// a full chunk and a full column block keep their kRank1Chunk x kColBlock outputs in a local
/// tile (registers on the host) while the rows of H stream past once.  Otherwise (lower
/// triangle only) a dot with the row's strict lower part plus an axpy of it.
template <class T>
CURVKIT_HD void rank1_chunk_matvec(index_t n, const T* h, index_t ldh, const T* u, index_t ldu,
                                   index_t kc, bool full, T* v) {
  constexpr index_t kColBlock = 64 / sizeof(T);  // two 256-bit vectors
  index_t c0 = 0;
  if (full && kc == kRank1Chunk) {
    for (; c0 + kColBlock <= n; c0 += kColBlock) {
      T acc[kRank1Chunk][kColBlock] = {};
      for (index_t i = 0; i < n; ++i) {
        const T* r = h + i * ldh + c0;
        for (index_t j = 0; j < kRank1Chunk; ++j) {
          const T a = u[j * ldu + i];
          CURVKIT_SIMD
          for (index_t c = 0; c < kColBlock; ++c) acc[j][c] += a * r[c];
        }
      }
      for (index_t j = 0; j < kRank1Chunk; ++j)
        for (index_t c = 0; c < kColBlock; ++c) v[j * n + c0 + c] = acc[j][c];
    }
  }
  // The rest: columns c0..n-1 (all of them unless the tile ran).
  for (index_t j = 0; j < kc; ++j)
    for (index_t c = c0; c < n; ++c) v[j * n + c] = T(0);
  if (c0 == n) return;
  for (index_t i = 0; i < n; ++i) {
    const T* r = h + i * ldh;
    for (index_t j = 0; j < kc; ++j) {
      const T* uj = u + j * ldu;
      T* vj = v + j * n;
      const T ui = uj[i];
      if (full) {
        CURVKIT_SIMD
        for (index_t c = c0; c < n; ++c) vj[c] += ui * r[c];
        continue;
      }
      T acc = T(0);
      CURVKIT_SIMD_REDUCTION(acc)
      for (index_t c = 0; c < i; ++c) {
        acc += r[c] * uj[c];
        vj[c] += r[c] * ui;
      }
      vj[i] += acc + r[i] * ui;
    }
  }
}

/// H := s (H - sum_j gamma_j v_j v_j^T) over whole rows (mirror path of rank1_chain): for a
/// full chunk and column block the v_j slices stay in a local tile while the rows stream past;
/// the rest is one axpy per vector and row.  The two triangles then agree only to rounding:
/// rank1_chain mirrors the lower one at the end.
template <class T>
CURVKIT_HD void rank1_chunk_update_full(index_t n, T* h, index_t ldh, const T* v, const T* gamma,
                                        index_t kc, T s) {
  constexpr index_t kColBlock = 64 / sizeof(T);
  index_t c0 = 0;
  if (kc == kRank1Chunk) {
    for (; c0 + kColBlock <= n; c0 += kColBlock) {
      T tile[kRank1Chunk][kColBlock];
      for (index_t j = 0; j < kRank1Chunk; ++j)
        for (index_t c = 0; c < kColBlock; ++c) tile[j][c] = v[j * n + c0 + c];
      for (index_t i = 0; i < n; ++i) {
        T* r = h + i * ldh + c0;
        T coef[kRank1Chunk];
        for (index_t j = 0; j < kRank1Chunk; ++j) coef[j] = gamma[j] * v[j * n + i];
        CURVKIT_SIMD
        for (index_t c = 0; c < kColBlock; ++c) {
          T x = r[c];
          for (index_t j = 0; j < kRank1Chunk; ++j) x -= coef[j] * tile[j][c];
          r[c] = x * s;
        }
      }
    }
  }
  if (c0 == n) return;
  for (index_t i = 0; i < n; ++i) {
    T* r = h + i * ldh;
    for (index_t j = 0; j < kc; ++j)
      axpy_minus(n - c0, gamma[j] * v[j * n + i], v + j * n + c0, r + c0);
    if (s != T(1)) {
      CURVKIT_SIMD
      for (index_t c = c0; c < n; ++c) r[c] *= s;
    }
  }
}

/// The chain of sherman_morrison.hpp's rank1_update on one matrix: for each of the k vectors
/// (rows of u), G <- decay G + weight u u^T applied to H = G^{-1} (lower triangle; the upper
/// one too when `mirror`).  Returns info: 0, j > 0 if vector j (1-based) made the denominator
/// non-positive, -j if it is NaN/Inf; on failure H is NaN.
///
/// Per chunk of up to kRank1Chunk vectors, with H_0 the matrix at the chunk's start:
///   v_j = H_0 u_j - sum_{i<j} gamma_i v_i (v_i^T u_j)       (one pass over H for all v_j)
///   d_j = 1 + c' s_{j-1} u_j^T v_j,  gamma_j = c' s_{j-1} / d_j,  s_j = decay^{-j}
///   H   = s_kc (H_0 - sum_j gamma_j v_j v_j^T)             (one pass over H)
/// which equals the sequential chain (w_j = H_{j-1} u_j = s_{j-1} v_j).
/// With `mirror` the upper triangle is filled first and both passes run over whole rows
/// (contiguous, no triangular tails, no reductions); the lower triangle is mirrored again at
/// the end so that H is exactly symmetric.
template <class T>
CURVKIT_HD int rank1_chain(index_t n, T* h, index_t ldh, const T* u, index_t ldu, index_t k,
                           T decay, T weight, bool mirror, T* scratch) {
  T* v = scratch;                        // kRank1Chunk vectors of n
  T* gamma = scratch + kRank1Chunk * n;  // kRank1Chunk coefficients
  const T cp = weight / decay;
  const T inv_decay = T(1) / decay;
  int code = info::success;
  if (mirror) mirror_lower(n, h, ldh);
  for (index_t j0 = 0; j0 < k && code == info::success; j0 += kRank1Chunk) {
    const index_t kc = k - j0 < kRank1Chunk ? k - j0 : kRank1Chunk;
    const T* uc = u + j0 * ldu;
    rank1_chunk_matvec(n, h, ldh, uc, ldu, kc, mirror, v);
    // Sequential corrections in the chunk's small space.
    T s = T(1);
    for (index_t j = 0; j < kc; ++j) {
      const T* uj = uc + j * ldu;
      T* vj = v + j * n;
      for (index_t i = 0; i < j; ++i)
        axpy_minus(n, gamma[i] * dot(v + i * n, uj, n), v + i * n, vj);
      const T q = cp * s * dot(uj, vj, n);
      const T d = T(1) + q;
      if (!is_finite(d)) {
        code = info::non_finite(j0 + j);
        break;
      }
      if (!(d > T(8) * epsilon<T>() * (T(1) + (q < T(0) ? -q : q)))) {
        code = info::not_positive(j0 + j);
        break;
      }
      gamma[j] = cp * s / d;
      s *= inv_decay;
    }
    if (code != info::success) break;
    // H = s (H_0 - sum_j gamma_j v_j v_j^T): whole rows (mirror) or the lower triangle.
    if (mirror) {
      rank1_chunk_update_full(n, h, ldh, v, gamma, kc, s);
      continue;
    }
    for (index_t i = 0; i < n; ++i) {
      T* r = h + i * ldh;
      for (index_t j = 0; j < kc; ++j) axpy_minus(i + 1, gamma[j] * v[j * n + i], v + j * n, r);
      if (s != T(1)) {
        CURVKIT_SIMD
        for (index_t c = 0; c <= i; ++c) r[c] *= s;
      }
    }
  }
  if (code != info::success) {
    fill_nan(n, n, h, ldh, !mirror);
    return code;
  }
  if (mirror) mirror_lower(n, h, ldh);  // exact symmetry (the full-row passes round each side)
  return code;
}

/// Scratch elements woodbury_solve needs: M (k x k), P (k x nrhs), and C^{-1} (k x k) when C
/// is a matrix.
CURVKIT_HD_INLINE constexpr index_t woodbury_scratch(index_t k, index_t nrhs, bool c_matrix) {
  return k * k * (c_matrix ? 2 : 1) + k * nrhs;
}

/// How C is passed to woodbury_solve (mirrors curvkit::WoodburyC).
enum class CForm : int { scalar = 0, diagonal = 1, matrix = 2 };

/// B := (lambda I + U C U^T)^{-1} B for one matrix: ut is U^T (k x n), b is n x nrhs.
/// C: c_scale I, diag(c[0..k)), or the SPD matrix c (lower triangle, ldc).  gram (optional,
/// ldg) is U^T U (lower triangle).  Returns the info code of sherman_morrison.hpp; on failure
/// B is NaN.
template <class T>
CURVKIT_HD int woodbury_solve(index_t n, index_t k, index_t nrhs, const T* ut, index_t ldu, T* b,
                              index_t ldb, T lambda, CForm form, T c_scale, const T* c, index_t ldc,
                              const T* gram, index_t ldg, T* scratch) {
  T* m = scratch;          // k x k, lower triangle
  T* p = scratch + k * k;  // k x nrhs
  T* cinv = p + k * nrhs;  // k x k (matrix form)
  int code = info::success;
  // M = U^T U (lower).
  for (index_t i = 0; i < k; ++i)
    for (index_t j = 0; j <= i; ++j)
      m[i * k + j] = gram ? gram[i * ldg + j] : dot(ut + i * ldu, ut + j * ldu, n);
  // M += lambda C^{-1}.
  if (form == CForm::scalar) {
    for (index_t i = 0; i < k; ++i) m[i * k + i] += lambda / c_scale;
  } else if (form == CForm::diagonal) {
    for (index_t i = 0; i < k && code == info::success; ++i) {
      if (!is_finite(c[i]))
        code = info::non_finite(k + i);
      else if (!(c[i] > T(0)))
        code = info::not_positive(k + i);
      else
        m[i * k + i] += lambda / c[i];
    }
  } else {
    for (index_t i = 0; i < k; ++i)
      for (index_t j = 0; j <= i; ++j) cinv[i * k + j] = c[i * ldc + j];
    const int cc = potrf_lower_auto(k, cinv, k, T(0));
    if (cc != 0) {
      code = cc > 0 ? cc + static_cast<int>(k) : cc - static_cast<int>(k);
    } else {
      potri_from_factor(k, cinv, k);
      for (index_t i = 0; i < k; ++i)
        for (index_t j = 0; j <= i; ++j) m[i * k + j] += lambda * cinv[i * k + j];
    }
  }
  if (code == info::success) code = potrf_lower_auto(k, m, k, T(0));
  if (code != info::success) {
    fill_nan(n, nrhs, b, ldb, false);
    return code;
  }
  // P = U^T B.
  for (index_t j = 0; j < k; ++j) {
    T* pj = p + j * nrhs;
    const T* uj = ut + j * ldu;
    if (nrhs == 1 && ldb == 1) {
      pj[0] = dot(uj, b, n);
      continue;
    }
    for (index_t r = 0; r < nrhs; ++r) pj[r] = T(0);
    for (index_t i = 0; i < n; ++i) {
      const T a = uj[i];
      const T* bi = b + i * ldb;
      CURVKIT_SIMD
      for (index_t r = 0; r < nrhs; ++r) pj[r] += a * bi[r];
    }
  }
  potrs_lower(k, nrhs, m, k, p, nrhs);
  // B = (B - U P) / lambda.
  for (index_t j = 0; j < k; ++j) {
    const T* uj = ut + j * ldu;
    const T* pj = p + j * nrhs;
    if (nrhs == 1 && ldb == 1) {
      axpy_minus(n, pj[0], uj, b);
      continue;
    }
    for (index_t i = 0; i < n; ++i) axpy_minus(nrhs, uj[i], pj, b + i * ldb);
  }
  const T inv_lambda = T(1) / lambda;
  for (index_t i = 0; i < n; ++i) {
    T* bi = b + i * ldb;
    CURVKIT_SIMD
    for (index_t r = 0; r < nrhs; ++r) bi[r] *= inv_lambda;
  }
  return code;
}

}  // namespace curvkit::device
