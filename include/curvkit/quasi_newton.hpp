// Sherman–Morrison / Woodbury family, part 2: the quasi-Newton updates of K-BFGS and
// K-BFGS(L) (Ren & Goldfarb; thesis chapters 2-3).  Vectors are MatrixBatch views whose rows
// are the vectors: a batch of single vectors is batch x 1 x n, a history of p pairs is
// batch x p x n (oldest first).
//
// bfgs_update   the BFGS inverse update for each pair (s, y) in order, in O(n^2):
//                 H+ = (I - rho s y^T) H (I - rho y s^T) + rho s s^T,  rho = 1 / s^T y
//                    = H + (rho + rho^2 y^T w) s s^T - rho (s w^T + w s^T),  w = H y
//               flops per pair ~ 2 n^2 (symmetric matvec) + 3 n^2 (lower-triangle rank-2);
//               bytes: H's lower triangle read twice and written once per pair.
// bfgs_damping  makes a pair safe for BFGS (thesis Algorithms 3, 8, 11); returns theta and,
//               optionally, the skip test of Algorithm 5.  Powell damping on H:
//                 theta1 = (1 - mu1) y^T H y / (y^T H y - s^T y) if s^T y < mu1 y^T H y, else 1
//                 s~ = theta1 s + (1 - theta1) H y                 (then s~^T y >= mu1 y^T H y)
//               then either Levenberg–Marquardt  y~ = y + mu2 s~   (D_P D_LM, Algorithm 8) or
//               Powell with B = I (double damping, Algorithm 3):
//                 theta2 = (1 - mu2) s~^T s~ / (s~^T s~ - s~^T y) if s~^T y < mu2 s~^T s~, else 1
//                 y~ = theta2 y + (1 - theta2) s~                 (then s~^T y~ >= mu2 s~^T s~)
//               D_P(I) D_LM (Algorithm 11) is D_P D_LM with H = I / mu2 (H is not read).
//               For an H known only as an operator (K-BFGS(L)'s L-BFGS), powell_lm_hy takes
//               the product H y instead of H.
// hessian_action_pair  the pair of the activation factor A (never formed):
//                 s = H abar,  y = scale * X^T (X s) + lambda s
//               X holds the activation rows (m x n: samples, or samples x positions for a
//               convolution, thesis eq. 3.15); scale is 1/m by default (1/batch for convs).
//               By the thesis's Theorem 1, BFGS with this pair and H = A^{-1} gives exactly
//               (A + c a a^T)^{-1}: the Sherman–Morrison inverse.
// lbfgs_apply   X <- H_p X for p stored pairs and H_0 = gamma I, in the compact form of Byrd,
//               Nocedal and Schnabel (1994):
//                 H_p = gamma I + [S  gamma Y] [[R^-T (D + gamma Y^T Y) R^-1, -R^-T], [-R^-1, 0]]
//                                              [S^T; gamma Y^T]
//               S = [s_1..s_p], Y = [y_1..y_p] (d x p), R upper with R_ij = s_i^T y_j (i <= j),
//               D = diag(s_i^T y_i).  Work: 8 p d nrhs (four thin products) + 2 p^2 d for S^T Y
//               and Y^T Y unless given + O(p^2 nrhs); H_p is never formed.
// lbfgs_two_loop the same H_p X by the two-loop recursion (Nocedal & Wright, Algorithm 7.4),
//               column by column: 4 p d flops per column, no p x p products.
//
// gamma <= 0 in LbfgsOptions selects the usual scaling gamma = s_p^T y_p / y_p^T y_p (newest
// pair).
//
// info per matrix (every output of a failed matrix is NaN):
//   bfgs_update    j > 0: pair j (1-based) has s^T y <= min_curvature * |s| |y| (unless
//                  skipped by the options); -j: pair j produced NaN/Inf
//   bfgs_damping   -1: NaN/Inf in s, y or H y
//   hessian_action_pair  -1: NaN/Inf in s or y
//   lbfgs_*        i > 0: s_i^T y_i <= 0 (R singular: the pair should not have been stored,
//                  unless it is a zero pair under skip_zero_pairs);
//                  -i: s_i^T y_i is NaN/Inf (pair i holds NaN/Inf)
#pragma once

#include <cstddef>

#include "curvkit/core/context.hpp"
#include "curvkit/core/info.hpp"
#include "curvkit/core/status.hpp"
#include "curvkit/core/view.hpp"

namespace curvkit {

struct BfgsOptions {
  /// A pair with s^T y <= min_curvature * |s| |y| is rejected; <= 0 selects n * epsilon(T)
  /// (s^T y is then zero or negative to rounding).
  double min_curvature = 0.0;
  /// Rejected pairs: false = info j and NaN outputs; true = the pair is not applied (H is kept
  /// as it was before it) and counted in `skipped`.
  bool skip_rejected = false;
  /// Also write the strict upper triangle of H (never read).
  bool mirror_upper = true;
};

/// Applies the k = s.rows pairs of each matrix in order to the inverse approximation H
/// (batch x n x n, lower triangle read).  s and y are batch x k x n.  Optional: `skip_mask`
/// (one int per matrix, read) leaves matrices with skip_mask[b] != 0 untouched (info 0), e.g.
/// the flags of bfgs_damping's skip test; `skipped` (one int per matrix, written) counts the
/// rejected pairs under skip_rejected.
template <class T>
Status bfgs_update(const Context& ctx, MatrixBatch<T> h, MatrixBatch<const T> s,
                   MatrixBatch<const T> y, int* info, const BfgsOptions& options = {},
                   const int* skip_mask = nullptr, int* skipped = nullptr);

enum class DampingScheme : int {
  powell_lm = 0,           ///< D_P D_LM, thesis Algorithm 8 (the K-BFGS default)
  double_damping = 1,      ///< DD, thesis Algorithm 3 (chapter 2); needs mu2 <= 1
  powell_identity_lm = 2,  ///< D_P(I) D_LM, thesis Algorithm 11 (H = I / mu2; h not read)
  /// D_P D_LM with h holding the product H y (batch x 1 x n) instead of H: for an H that is
  /// only an operator, e.g. lbfgs_apply on a copy of y (K-BFGS(L)).  No skip_test (it needs H).
  powell_lm_hy = 3,
};

struct DampingOptions {
  DampingScheme scheme = DampingScheme::powell_lm;
  double mu1 = 0.2;  ///< in (0, 1)
  double mu2 = 1.0;  ///< > 0 (lambda_G in K-BFGS); <= 1 for double_damping
  /// Algorithm 5's test: flag the pair (skip[b] = 1) when s~^T y~ < mu1 y~^T H y~ after damping,
  /// by more than rounding (8 n eps |mu1 y~^T H y~|): Powell damping often meets the bound with
  /// equality, and such a pair is kept.
  bool skip_test = false;
};

/// Damps each pair in place: s becomes s~, y becomes y~ (batch x 1 x n each).  h is
/// batch x n x n (lower triangle read; may be empty for powell_identity_lm; batch x 1 x n, the
/// products H y, for powell_lm_hy).  Optional
/// outputs: theta (2 per matrix: theta1, theta2; theta2 = 1 for the LM schemes) and skip (one
/// int per matrix: 1 if skip_test flagged the pair, else 0).
template <class T>
Status bfgs_damping(const Context& ctx, MatrixBatch<const T> h, MatrixBatch<T> s, MatrixBatch<T> y,
                    int* info, const DampingOptions& options = {}, T* theta = nullptr,
                    int* skip = nullptr);

struct HessianActionOptions {
  double lambda = 0.0;  ///< >= 0: the LM damping lambda_A
  double scale = 0.0;   ///< > 0; <= 0 selects 1 / x.rows
};

/// s = H abar and y = scale X^T X s + lambda s for each matrix: h batch x n x n (lower
/// triangle read), abar batch x 1 x n, x batch x m x n; s and y are outputs (batch x 1 x n).
template <class T>
Status hessian_action_pair(const Context& ctx, MatrixBatch<const T> h, MatrixBatch<const T> abar,
                           MatrixBatch<const T> x, MatrixBatch<T> s, MatrixBatch<T> y, int* info,
                           const HessianActionOptions& options = {});

struct LbfgsOptions {
  double gamma = 1.0;  ///< H_0 = gamma I; <= 0 selects s_p^T y_p / y_p^T y_p
  /// A pair whose s_i and y_i are both exactly zero is treated as absent (without this: info
  /// i).  K-BFGS(L) stores such a pair, without a host sync, when a layer did not move; the
  /// automatic gamma then comes from the newest non-zero pair (1 if there is none).
  bool skip_zero_pairs = false;
};

/// Bytes of Context workspace lbfgs_apply / lbfgs_two_loop need on ctx's backend.
template <class T>
std::size_t lbfgs_apply_workspace_size(const Context& ctx, MatrixBatch<const T> s,
                                       MatrixBatch<const T> x);
template <class T>
std::size_t lbfgs_two_loop_workspace_size(const Context& ctx, MatrixBatch<const T> s,
                                          MatrixBatch<const T> x);

/// X <- H_p X by the compact form: s and y are batch x p x d (pairs as rows, oldest first),
/// x is batch x d x nrhs.  Optional sty (batch x p x p, entry (i, j) = s_i^T y_j, full) and
/// yty (batch x p x p, full) skip recomputing those products (K-BFGS(L) keeps them between
/// steps).
template <class T>
Status lbfgs_apply(const Context& ctx, MatrixBatch<const T> s, MatrixBatch<const T> y,
                   MatrixBatch<T> x, int* info, const LbfgsOptions& options = {},
                   MatrixBatch<const T> sty = {}, MatrixBatch<const T> yty = {});

/// X <- H_p X by the two-loop recursion, one column at a time (same shapes as lbfgs_apply).
template <class T>
Status lbfgs_two_loop(const Context& ctx, MatrixBatch<const T> s, MatrixBatch<const T> y,
                      MatrixBatch<T> x, int* info, const LbfgsOptions& options = {});

}  // namespace curvkit
