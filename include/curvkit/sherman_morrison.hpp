// Sherman–Morrison / Woodbury family, part 1: low-rank changes of explicit inverses and
// low-rank-plus-scaled-identity solves.  (The quasi-Newton updates of the family are in
// curvkit/quasi_newton.hpp.)
//
// rank1_update: a chain of k rank-1 changes of an explicit SPD inverse H = G^{-1}, per matrix:
//   for j = 1..k:  G <- a G + c u_j u_j^T,   i.e.
//                  H <- (1/a) (H - c' w w^T / (1 + c' u_j^T w)),  w = H u_j,  c' = c / a
//   update (a = 1, c = 1)       MBAG's H = (lambda I + sum g g^T)^{-1}, one gradient per step
//   downdate (a = 1, c = -1)    removes a vector; fails when 1 - u^T H u <= 0 (G not SPD)
//   ema (a = beta, c = 1-beta)  H for beta G + (1 - beta) u u^T
// All k vectors are applied in one launch.  The vectors are processed in chunks of a few
// (device::kRank1Chunk on the host):
// for a chunk, V = H u_j for all its vectors in one pass over H, the sequential
// corrections v_j -= gamma_i v_i (v_i^T u_j) (i < j) in the small space, then one rank-chunk
// update of H.  In exact arithmetic this is the sequential chain; it reads and writes H once
// per chunk instead of twice per vector.
//   flops per matrix ~ k (2 n^2 + n^2 + 2 n kc)  (symmetric matvec from the lower triangle,
//   lower-triangle update, kc = chunk size); bytes per chunk: H's lower triangle read and
//   written, plus the vectors.
//
// woodbury_solve: x = (lambda I + U C U^T)^{-1} b without forming the n x n matrix:
//   x = (1/lambda) (b - U M^{-1} U^T b),   M = lambda C^{-1} + U^T U   (k x k, SPD)
//   U is n x k and is passed as its transpose `ut` (k x n: the k vectors as rows, as they are
//   stored by every caller: per-sample gradients, Jacobian rows, gradient history).
//   C is c I (scalar, default 1), diag(c_1..c_k), or a k x k SPD matrix (lower triangle).
//   TENGraD / SMW natural gradient:  (1/alpha)(g - (J^T/m)(J J^T/m + alpha I)^{-1} J g)  is
//   lambda = alpha, ut = J (m x p), C = (1/m) I.
//   The Gram U^T U may be passed in (the Khatri–Rao family computes it without forming U).
//   flops per matrix: k^2 n (Gram, unless given) + 4 k n nrhs (project, expand) + k^3/3
//   (Cholesky of M) + 2 k^2 nrhs; bytes: U read twice (once with a given Gram), b read and
//   written once.  Compare forming and factoring lambda I + U C U^T: n^2 k + n^3/3.
//
// Failures are per matrix (info, see curvkit/core/info.hpp); every output of a failed matrix
// is NaN:
//   rank1_update   info = j > 0: vector j (1-based) made the denominator 1 + c' u^T H u not
//                  positive (a downdate that leaves G indefinite or singular, to rounding);
//                  info = -j: the denominator of vector j is NaN/Inf (NaN/Inf in H or u_j)
//   woodbury_solve info = i in 1..k: M's leading minor i is not positive; i in k+1..2k: the
//                  given C's leading minor i-k is not positive; -i: NaN/Inf reached pivot i
//                  (of M, or of C for i > k).
// Arguments are validated once on the host (Status::invalid_argument naming the argument).
#pragma once

#include <cstddef>

#include "curvkit/core/context.hpp"
#include "curvkit/core/info.hpp"
#include "curvkit/core/status.hpp"
#include "curvkit/core/view.hpp"

namespace curvkit {

struct Rank1Options {
  double decay = 1.0;   ///< a > 0: G <- a G + c u u^T
  double weight = 1.0;  ///< c (finite, any sign)
  /// Also write the strict upper triangle (a full symmetric H, ready for GEMV/GEMM).  The
  /// strict upper triangle is never read.
  bool mirror_upper = true;

  static Rank1Options update() { return {}; }
  static Rank1Options downdate() { return {1.0, -1.0, true}; }
  /// H for beta G + (1 - beta) u u^T, 0 < beta < 1.
  static Rank1Options ema(double beta) { return {beta, 1.0 - beta, true}; }
};

/// Applies the k = u.rows vectors of each matrix (rows of u, u.cols == h.rows) in order to
/// the explicit inverse H (lower triangle read; see Rank1Options::mirror_upper).  `info` has
/// h.batch entries.  u must not overlap h.
template <class T>
Status rank1_update(const Context& ctx, MatrixBatch<T> h, MatrixBatch<const T> u, int* info,
                    const Rank1Options& options = {});

/// How C is given to woodbury_solve.
enum class WoodburyC : int {
  scalar = 0,    ///< C = c_scale I
  diagonal = 1,  ///< C = diag(c row b), c is batch x 1 x k, entries > 0
  matrix = 2,    ///< C = c matrix b, batch x k x k SPD (lower triangle read)
};

struct WoodburyOptions {
  double lambda = 1.0;   ///< > 0 and finite
  double c_scale = 1.0;  ///< C = c_scale I when c_form == scalar; > 0 and finite
  WoodburyC c_form = WoodburyC::scalar;
};

/// Bytes of Context workspace woodbury_solve needs for these shapes on ctx's backend (0 when
/// it needs none).
template <class T>
std::size_t woodbury_solve_workspace_size(const Context& ctx, MatrixBatch<const T> ut,
                                          MatrixBatch<const T> b);

/// Solves (lambda I + U C U^T) X = B in place for each matrix: ut is batch x k x n (U^T),
/// b is batch x n x nrhs and becomes X.  `c` is used only for the diagonal and matrix forms
/// (see WoodburyC).  `gram`, if not empty (data != nullptr), is U^T U (batch x k x k, lower
/// triangle read) and is used instead of computing it.  k may exceed n and U may be rank
/// deficient: M is SPD whenever lambda > 0 and C is SPD.
template <class T>
Status woodbury_solve(const Context& ctx, MatrixBatch<const T> ut, MatrixBatch<T> b, int* info,
                      const WoodburyOptions& options = {}, MatrixBatch<const T> c = {},
                      MatrixBatch<const T> gram = {});

}  // namespace curvkit
