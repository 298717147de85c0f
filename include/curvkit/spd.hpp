// Batched SPD family: Cholesky factorisation, solves and inverses of many small (or a few
// large) symmetric positive definite matrices.
//
// Math (per matrix, A symmetric n x n read from its lower triangle, lambda >= 0):
//   potrf  A + lambda I = L L^T                      L lower, written over A's lower triangle
//   potrs  X = (L L^T)^{-1} B                          B is n x nrhs, overwritten by X
//   posv   X = (A + lambda I)^{-1} B                   fused potrf + potrs; A is overwritten by L
//   potri  A := (A + lambda I)^{-1}                    fused factor + inverse; writes the FULL
//                                                      symmetric inverse (both triangles)
// Note: curvkit::potri starts from A, not from its factor (LAPACK's ?potri starts from L):
// K-FAC, MBF and TENGraD want A^{-1} from A, and fusing saves a pass over memory.
//
// Cost per matrix (flops; bytes for full storage of element size s):
//   potrf  n^3/3 + n^2/2 + n/6             reads n(n+1)/2 s, writes n(n+1)/2 s
//   potrs  2 n^2 nrhs                      reads n(n+1)/2 s + n nrhs s, writes n nrhs s
//   posv   potrf + potrs                   reads/writes A's triangle once, B once
//   potri  n^3 + n^2/2 + n/6 (approx.)     reads n(n+1)/2 s, writes n^2 s
//
// Failure handling (see curvkit/core/info.hpp): per-matrix `info` (one int per matrix, in the
// backend's memory, no host sync).  With NonSpdPolicy::report a matrix that is not SPD gets
// info = k > 0 (leading minor k), one with NaN/Inf gets info = -k, and all its outputs are NaN.
// With NonSpdPolicy::shift a matrix that is not SPD is retried with an escalating diagonal
// shift delta_r = shift_start * growth^r * scale, scale = max_i |a_ii| (1 if that is 0),
// r = 0..max_shift_retries-1; on success info = 0 and the shift used (delta_r, on top of
// lambda) is written to shift_used[b] if shift_used is not null (0 for matrices that needed none,
// NaN for matrices that failed, under either policy).
// Non-finite input is never retried.
//
// Uniform batches take MatrixBatch views; grouped batches take a span of them, with info and
// shift_used one flat array over all groups in order.  All pointers (data, info, shift_used)
// must be in the memory the backend runs on.
#pragma once

#include <type_traits>

#include "curvkit/core/context.hpp"
#include "curvkit/core/info.hpp"
#include "curvkit/core/status.hpp"
#include "curvkit/core/view.hpp"

namespace curvkit {

enum class NonSpdPolicy : int {
  report = 0,  ///< info != 0 and NaN outputs for a matrix that is not SPD
  shift = 1,   ///< retry it with an escalating diagonal shift, record the shift used
};

struct SpdOptions {
  /// lambda: the op factors A + lambda I (fused: no separate pass adds it).  Must be finite.
  double diagonal_shift = 0.0;
  NonSpdPolicy policy = NonSpdPolicy::report;
  /// First retry shift relative to max_i |a_ii|; <= 0 selects 16 * n * epsilon(T).
  double shift_start = 0.0;
  /// Factor by which each further retry grows the shift (> 1).
  double shift_growth = 10.0;
  /// Number of shifted retries before giving up (>= 1; ignored by the report policy).
  int max_shift_retries = 12;
};

/// Cholesky factorisation in place: the lower triangle of each A becomes L, the strict upper
/// triangle is neither read nor written.  `info` has a.batch entries; `shift_used` is
/// optional (nullptr) and has a.batch entries.
template <class T>
Status potrf(const Context& ctx, MatrixBatch<T> a, int* info, const SpdOptions& options = {},
             T* shift_used = nullptr);
template <class T>
Status potrf(const Context& ctx, GroupedBatch<T> a, int* info, const SpdOptions& options = {},
             T* shift_used = nullptr);

/// Solve (L L^T) X = B in place for each matrix, given the factor L from potrf (lower
/// triangle of `l`; the strict upper triangle is not read).  b.rows == l.rows, any b.cols
/// (number of right-hand sides).  info[b] = k > 0 if L's diagonal entry k is <= 0, -k if it is
/// NaN/Inf; then that X is NaN.
template <class T>
Status potrs(const Context& ctx, MatrixBatch<const T> l, MatrixBatch<T> b, int* info);
template <class T>
Status potrs(const Context& ctx, GroupedBatch<const T> l, GroupedBatch<T> b, int* info);
/// Convenience: a mutable factor view is accepted too (it is only read).
template <class T>
requires(!std::is_const_v<T>) Status
    potrs(const Context& ctx, MatrixBatch<T> l, MatrixBatch<T> b, int* info) {
  return potrs<T>(ctx, MatrixBatch<const T>(l), b, info);
}

/// Fused factor + solve: A's lower triangle becomes L, B becomes X = (A + lambda I)^{-1} B.
template <class T>
Status posv(const Context& ctx, MatrixBatch<T> a, MatrixBatch<T> b, int* info,
            const SpdOptions& options = {}, T* shift_used = nullptr);
template <class T>
Status posv(const Context& ctx, GroupedBatch<T> a, GroupedBatch<T> b, int* info,
            const SpdOptions& options = {}, T* shift_used = nullptr);

/// Fused factor + inverse: each A (lower triangle read) is replaced by the full symmetric
/// (A + lambda I)^{-1}, both triangles written.
template <class T>
Status potri(const Context& ctx, MatrixBatch<T> a, int* info, const SpdOptions& options = {},
             T* shift_used = nullptr);
template <class T>
Status potri(const Context& ctx, GroupedBatch<T> a, int* info, const SpdOptions& options = {},
             T* shift_used = nullptr);

}  // namespace curvkit
