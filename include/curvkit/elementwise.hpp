// Elementwise family: the bandwidth-bound updates an optimizer step is made of besides its
// GEMMs and solves (docs/optimizer-spec.md §9): linear combinations (momentum, EMA, the
// parameter update), state fills, diagonal shifts, squared-gradient EMAs, diagonal
// preconditioners, Adam's direction, per-matrix squared norms and the two per-matrix
// operations of grafting and failure handling.
//
// Math (per matrix b of a batch, element (i, j); all views row-major with any ld and stride):
//   axpby               z = a x + b y           a coefficient 0 means its operand is not read
//                                               (it may be empty): axpby(0, {}, b, y, z) scales
//   fill                z = value
//   add_diagonal        z_ii += c + shift[b]    i < min(rows, cols); shift (one per matrix, in
//                                               the backend's memory) may be null
//   add_scalar          z_ij += c + shift[b]    every element (two-level K-FAC's coarse term)
//   square_ema          s = beta s + c x * x    beta 0: s is not read
//   diag_precondition   z = x / (s^p + lambda)  p = 1 (MBF's 1 x 1 blocks: g / (g^2 + lambda))
//                                               or p = 1/2 (AdaGrad: g / (sqrt(A) + eps))
//   adam_direction      m = b1 m + (1 - b1) g,  v = b2 v + (1 - b2) g * g,
//                       d = (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps)
//   sum_squares         out[b] = (accumulate ? out[b] : 0) + sum_ij x_ij^2   (in double, stored
//                                               as T; out in the backend's memory)
//   sum_products        out[b] = (accumulate ? out[b] : 0) + sum_ij x_ij y_ij (the same)
//   scale_by_norm_ratio z *= sqrt(num_sq[b]) / (sqrt(den_sq[b]) + eps)   (Shampoo's grafting)
//   copy_if_ok          z = x where info[b] is 0 or 1, else z is untouched (keep the last good
//                                               preconditioner when a refresh failed)
//   clip_by_quadratic   z *= nu, nu = min(1, sqrt(bound / |sum_{i < count} q[i]|)), the same
//                       for every matrix (K-FAC's KL clip: q the per-layer <P, G>, bound
//                       kappa / lr^2); nu = 1 when the sum is 0, NaN when it is NaN
//   axpby_scaled        z = a scale[0] x + b y  scale one value in the backend's memory (SMW-NG's
//                                               1 / lambda, known only on the device)
//   lm_damping_update   the Levenberg–Marquardt rule on a device state (below): one work item
// Grouped calls (a network's layers: one group per tensor, shapes may differ) take the same
// coefficients for every group; per-matrix arrays (shift, out, num_sq, den_sq, info) are indexed
// by the matrix's position in the flattened grouped batch (group 0's matrices first).
//
// Aliasing: an output may be exactly one of the inputs (same data, ld and stride: in-place
// updates such as z = a x + b z); any other overlap is invalid_argument.  NaN propagates; no op
// has a numerical failure mode.  Cost: each op reads and writes every element once (bytes, not
// flops, bound it).
//
// Backends: reference (long-double arithmetic, the test oracle), Kokkos and CUDA (one
// element per work item / thread).  Arguments are validated once on the host
// (Status::invalid_argument naming the argument).
#pragma once

#include <cstdint>

#include "curvkit/core/context.hpp"
#include "curvkit/core/status.hpp"
#include "curvkit/core/view.hpp"

namespace curvkit {

/// The exponent of diag_precondition's denominator.
enum class DiagPower : int {
  one = 0,   ///< x / (s + lambda)
  half = 1,  ///< x / (sqrt(s) + lambda)
};

/// One Adam step's constants; t >= 1 is the step number of the bias corrections.
struct AdamStep {
  double beta1 = 0.9;
  double beta2 = 0.999;
  double epsilon = 1e-8;
  std::int64_t t = 1;
};

/// z = a x + b y.
template <class T>
Status axpby(const Context& ctx, double a, MatrixBatch<const T> x, double b, MatrixBatch<const T> y,
             MatrixBatch<T> z);
template <class T>
Status axpby(const Context& ctx, double a, GroupedBatch<const T> x, double b,
             GroupedBatch<const T> y, GroupedBatch<T> z);

/// z = a scale[0] x + b y: scale is one value in the backend's memory, shared by every matrix
/// (b = 0: y is not read).
template <class T>
Status axpby_scaled(const Context& ctx, double a, const T* scale, MatrixBatch<const T> x, double b,
                    MatrixBatch<const T> y, MatrixBatch<T> z);
template <class T>
Status axpby_scaled(const Context& ctx, double a, const T* scale, GroupedBatch<const T> x, double b,
                    GroupedBatch<const T> y, GroupedBatch<T> z);

/// The Levenberg–Marquardt damping rule (Kiros; Ren's thesis §5.2.3) for a step -lr d with
/// d = v / lambda, lambda = state[1], so that a model m(p) = f0 + g^T p + p^T B p / 2 with
/// d = (B + lambda I)^{-1} g predicts the reduction
///   pred = lr q - lr^2 (q - lambda dd) / 2,   q = g^T d = sum gv / lambda,
///                                              dd = |d|^2 = sum vv / lambda^2
/// (d^T B d = q - lambda dd).  rho = (f0 - f1) / pred; lambda_LM (state[0]) *= boost when
/// rho < epsilon or f1 is NaN/Inf, *= drop when rho > 1 - epsilon, and is unchanged when pred
/// <= 0 or rho is NaN; then lambda = lambda_LM + floor.
struct LmDampingRule {
  double lr = 0.1;
  double boost = 1.01;    ///< >= 1
  double drop = 0.99;     ///< in (0, 1]
  double epsilon = 0.25;  ///< in (0, 1/2)
  double floor = 1e-3;    ///< tau >= 0: lambda never falls below it
};

/// Applies the rule on the device: f0, f1 (one value each: the mean losses before and after
/// the step), gv[i] = <g_i, v_i> and vv[i] = |v_i|^2 for i < count (e.g. per layer, from
/// sum_products / sum_squares), all in the backend's memory.  state (backend memory, 5 + copies
/// values) is read and written: [0] lambda_LM, [1] lambda, [2] 1 / lambda, [3] rho (NaN when
/// undefined), [4] pred, [5, 5 + copies) lambda again (per-matrix shifts for add_diagonal).
/// The caller initialises it (lambda = lambda_LM + floor, 1 / lambda).  Launches one work item.
template <class T>
Status lm_damping_update(const Context& ctx, const T* f0, const T* f1, const T* gv, const T* vv,
                         index_t count, const LmDampingRule& rule, T* state, index_t copies = 0);

/// z = value.
template <class T>
Status fill(const Context& ctx, double value, MatrixBatch<T> z);
template <class T>
Status fill(const Context& ctx, double value, GroupedBatch<T> z);

/// z_ii += c + shift[b] (shift may be null).
template <class T>
Status add_diagonal(const Context& ctx, double c, const T* shift, MatrixBatch<T> z);
template <class T>
Status add_diagonal(const Context& ctx, double c, const T* shift, GroupedBatch<T> z);

/// z_ij += c + shift[b] (shift may be null).
template <class T>
Status add_scalar(const Context& ctx, double c, const T* shift, MatrixBatch<T> z);
template <class T>
Status add_scalar(const Context& ctx, double c, const T* shift, GroupedBatch<T> z);

/// s = beta s + c x * x.
template <class T>
Status square_ema(const Context& ctx, double beta, double c, MatrixBatch<const T> x,
                  MatrixBatch<T> s);
template <class T>
Status square_ema(const Context& ctx, double beta, double c, GroupedBatch<const T> x,
                  GroupedBatch<T> s);

/// z = x / (s^p + lambda).
template <class T>
Status diag_precondition(const Context& ctx, MatrixBatch<const T> x, MatrixBatch<const T> s,
                         double lambda, DiagPower power, MatrixBatch<T> z);
template <class T>
Status diag_precondition(const Context& ctx, GroupedBatch<const T> x, GroupedBatch<const T> s,
                         double lambda, DiagPower power, GroupedBatch<T> z);

/// Updates Adam's moments m and v with gradient g and writes the direction d.
template <class T>
Status adam_direction(const Context& ctx, MatrixBatch<const T> g, MatrixBatch<T> m,
                      MatrixBatch<T> v, MatrixBatch<T> d, const AdamStep& step);
template <class T>
Status adam_direction(const Context& ctx, GroupedBatch<const T> g, GroupedBatch<T> m,
                      GroupedBatch<T> v, GroupedBatch<T> d, const AdamStep& step);

/// out[b] = (accumulate ? out[b] : 0) + ||x_b||_F^2.
template <class T>
Status sum_squares(const Context& ctx, MatrixBatch<const T> x, T* out, bool accumulate = false);
template <class T>
Status sum_squares(const Context& ctx, GroupedBatch<const T> x, T* out, bool accumulate = false);

/// out[b] = (accumulate ? out[b] : 0) + sum_ij x_ij y_ij (x and y of one shape per group).
template <class T>
Status sum_products(const Context& ctx, MatrixBatch<const T> x, MatrixBatch<const T> y, T* out,
                    bool accumulate = false);
template <class T>
Status sum_products(const Context& ctx, GroupedBatch<const T> x, GroupedBatch<const T> y, T* out,
                    bool accumulate = false);

/// z *= min(1, sqrt(bound / |q[0] + ... + q[count - 1]|)), one factor for every matrix.
template <class T>
Status clip_by_quadratic(const Context& ctx, const T* q, index_t count, double bound,
                         MatrixBatch<T> z);
template <class T>
Status clip_by_quadratic(const Context& ctx, const T* q, index_t count, double bound,
                         GroupedBatch<T> z);

/// z_b *= sqrt(num_sq[b]) / (sqrt(den_sq[b]) + eps).
template <class T>
Status scale_by_norm_ratio(const Context& ctx, const T* num_sq, const T* den_sq, double eps,
                           MatrixBatch<T> z);
template <class T>
Status scale_by_norm_ratio(const Context& ctx, const T* num_sq, const T* den_sq, double eps,
                           GroupedBatch<T> z);

/// z_b = x_b where info[b] is 0 or 1.
template <class T>
Status copy_if_ok(const Context& ctx, MatrixBatch<const T> x, const int* info, MatrixBatch<T> z);
template <class T>
Status copy_if_ok(const Context& ctx, GroupedBatch<const T> x, const int* info, GroupedBatch<T> z);

}  // namespace curvkit
