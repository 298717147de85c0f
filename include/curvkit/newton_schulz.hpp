// Newton–Schulz family: inverses, square roots, inverse p-th roots and polar factors of
// batched (uniform or grouped) and single large matrices by matrix-multiplication-only
// iterations (seeds-mbf-mbag.md §IV-B, seeds-ren-thesis.md §6 / §15, anchors-libraries.md
// B5–B7).  Every iteration is a few GEMMs, so these run where eigendecompositions do not: in
// huge batches of small matrices and on GPUs.
//
// newton_schulz_inverse        X = (A + eps I)^{-1} by Hotelling's X <- X (2I - A X),
//                              X_0 = A^T / (||A||_1 ||A||_inf); residual ||I - A X||_F / sqrt(n).
//                              2 GEMMs (4 n^3 flops) per iteration.
// newton_schulz_sqrt           (A + eps I)^{1/2} and (A + eps I)^{-1/2} (SPD A) by the coupled
//                              iteration MBAG uses: with c = ||A||_F, Y_0 = A / c, Z_0 = I,
//                                T = (3I - Z Y) / 2,  Y <- Y T,  Z <- T Z
//                              Y -> (A/c)^{1/2}, Z -> (A/c)^{-1/2}; outputs sqrt(c) Y and Z /
//                              sqrt(c). Residual ||I - Z Y||_F / sqrt(n).  3 GEMMs (6 n^3 flops)
//                              per iteration.  With a fixed count, eigenvalues far below the
//                              largest are inaccurate (5 iterations: relative error > 1e-3 below
//                              about 0.12 of ||A||_F; seeds-mbf-mbag.md) — the residual stop fixes
//                              it.
// newton_schulz_inverse_root   X = (A + eps I)^{-1/p}, p >= 1 integer (Shampoo: p = 2k), by the
//                              coupled Newton iteration of scalable Shampoo: z = (1+p) / (2
//                              ||A||_F), M_0 = z A, X_0 = z^{1/p} I,
//                                T = I + (I - M) / p,  X <- X T,  M <- T^p M
//                              M -> I.  Residual ||I - M||_F / sqrt(n).  (2 + popcount-ish)
//                              GEMMs per iteration: T^p by repeated squaring.
// newton_schulz_polar          the orthogonal polar factor U V^T of a rectangular A = U S V^T
//                              (Muon's orthogonalisation), X_0 = A / ||A||_F, with B the Gram of
//                              the shorter side (X^T X for a tall X, X X^T for a wide one):
//                                cubic    X <- X (3I - B) / 2                 (converges, p(1) = 1)
//                                quintic  X <- a X + (b B + c B^2) X          (Muon: a, b, c =
//                                         3.4445, -4.7750, 2.0315; does NOT converge: singular
//                                         values above ~1.5e-3 ||A||_F end in about [0.7, 1.2],
//                                         smaller ones grow at most a^5 ~ 490-fold in 5 steps)
//                                convergent  the quintic for `iterations` steps, then the cubic
//                                         until the residual stop (singular values -> 1)
//                              Residual ||I - B||_F / sqrt(min(rows, cols)).
//
// Stopping (NewtonSchulzOptions::stop): `fixed` runs exactly `iterations` steps (the papers'
// 5 or 7); `residual` stops at the first step whose residual is <= tolerance, or when the
// residual stops decreasing below 1 (the rounding floor), or after `iterations` steps.  Per matrix
// the number of steps taken and the final residual are returned (optional outputs).
//
// info per matrix (curvkit/core/info.hpp conventions; outputs NaN whenever info < 0 or >= 2):
//    0  done (fixed count), or converged to the tolerance (residual stop)
//    1  residual stop: the tolerance was not reached (the outputs are the last iterate: usable
//       but less accurate than asked; `residual` says how much)
//    2  zero matrix (nothing to normalise by; A + eps I = 0)
//    3  root functions: not SPD (a diagonal entry of A + eps I is <= 0)
//   -1  NaN or Inf in the input
//   -2  diverged: the residual became NaN/Inf, exceeded twice max(its starting value, 1), or
//       grew while >= 1 (e.g. an indefinite or singular input)
//
// Arguments are validated once on the host (Status::invalid_argument naming the argument).
#pragma once

#include <cstddef>

#include "curvkit/core/context.hpp"
#include "curvkit/core/status.hpp"
#include "curvkit/core/view.hpp"

namespace curvkit {

enum class NsStop : int {
  fixed = 0,     ///< exactly `iterations` steps
  residual = 1,  ///< until residual <= tolerance (at most `iterations` steps)
};

/// Arithmetic of the GEMMs.  `native` is the scalar type everywhere; `tf32` and `bf16`
/// (float only, CUDA backend only) use tensor cores with FP32 accumulation.
enum class NsCompute : int {
  native = 0,
  tf32 = 1,
  bf16 = 2,
};

struct NewtonSchulzOptions {
  NsStop stop = NsStop::fixed;
  int iterations = 5;       ///< fixed: the count; residual: the maximum (>= 1)
  double tolerance = 1e-6;  ///< residual stop (> 0)
  double epsilon = 0.0;     ///< damping: the iteration runs on A + eps I (>= 0; not polar)
  NsCompute compute = NsCompute::native;
};

enum class PolarSchedule : int {
  cubic = 0,       ///< X (3I - B) / 2 every step
  quintic = 1,     ///< a X + (b B + c B^2) X every step (Muon)
  convergent = 2,  ///< quintic for `iterations` steps, then cubic to the tolerance
};

struct PolarOptions {
  PolarSchedule schedule = PolarSchedule::quintic;
  double a = 3.4445, b = -4.7750, c = 2.0315;  ///< quintic coefficients
  int cubic_iterations = 20;  ///< convergent: the most cubic steps after the quintic ones
};

/// Per-matrix outputs, in the backend's memory, one entry per matrix (grouped calls: group 0's
/// matrices first).  `info` is required; `iterations` and `residual` may be null.
template <class T>
struct NsReport {
  int* info = nullptr;
  int* iterations = nullptr;
  T* residual = nullptr;
};

/// Bytes of Context workspace the ops need for these shapes (the same query for all four ops,
/// by the number of n x n temporaries they keep: 0 on the reference backend).
template <class T>
std::size_t newton_schulz_workspace_size(const Context& ctx, GroupedBatch<const T> a);

/// X = (A + eps I)^{-1} per matrix (square a and x of the same shape).
template <class T>
Status newton_schulz_inverse(const Context& ctx, MatrixBatch<const T> a, MatrixBatch<T> x,
                             NsReport<T> report, const NewtonSchulzOptions& options = {});
template <class T>
Status newton_schulz_inverse(const Context& ctx, GroupedBatch<const T> a, GroupedBatch<T> x,
                             NsReport<T> report, const NewtonSchulzOptions& options = {});

/// sqrt = (A + eps I)^{1/2} and inv_sqrt = (A + eps I)^{-1/2} per SPD matrix; either output
/// may be empty (data == nullptr) but not both.
template <class T>
Status newton_schulz_sqrt(const Context& ctx, MatrixBatch<const T> a, MatrixBatch<T> sqrt,
                          MatrixBatch<T> inv_sqrt, NsReport<T> report,
                          const NewtonSchulzOptions& options = {});
template <class T>
Status newton_schulz_sqrt(const Context& ctx, GroupedBatch<const T> a, GroupedBatch<T> sqrt,
                          GroupedBatch<T> inv_sqrt, NsReport<T> report,
                          const NewtonSchulzOptions& options = {});

/// X = (A + eps I)^{-1/p} per SPD matrix, p >= 1.
template <class T>
Status newton_schulz_inverse_root(const Context& ctx, MatrixBatch<const T> a, int p,
                                  MatrixBatch<T> x, NsReport<T> report,
                                  const NewtonSchulzOptions& options = {});
template <class T>
Status newton_schulz_inverse_root(const Context& ctx, GroupedBatch<const T> a, int p,
                                  GroupedBatch<T> x, NsReport<T> report,
                                  const NewtonSchulzOptions& options = {});

/// U = the polar factor of each (rectangular) A, u of a's shape.
template <class T>
Status newton_schulz_polar(const Context& ctx, MatrixBatch<const T> a, MatrixBatch<T> u,
                           NsReport<T> report, const NewtonSchulzOptions& options = {},
                           const PolarOptions& polar = {});
template <class T>
Status newton_schulz_polar(const Context& ctx, GroupedBatch<const T> a, GroupedBatch<T> u,
                           NsReport<T> report, const NewtonSchulzOptions& options = {},
                           const PolarOptions& polar = {});

}  // namespace curvkit
