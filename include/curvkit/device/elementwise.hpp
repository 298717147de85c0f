// Embedded elementwise updates (curvkit/elementwise.hpp's contract, one element per call):
// the per-element math of every map the Kokkos and CUDA backends run, usable inside any host or
// device kernel.  A map has up to four operand slots; slot 2 is always the output.
//
//   kind               slots (0, 1, 2, 3)                    scalars c[]; per-matrix values
//   axpby              x (null if a = 0), y (null if b = 0), z  a, b
//   fill               -, -, z                               value
//   add_diagonal       -, -, z (its diagonal only)           c; shift[b]
//   add_scalar         -, -, z                               c; shift[b]
//   square_ema         x, -, s                               beta, c
//   diag_precondition  x, s, z                               lambda, power (0: 1, 1: 1/2)
//   adam               g, m, d, v                            b1, b2, eps, 1/(1-b1^t), 1/(1-b2^t)
//   scale_by_ratio     -, -, z                               eps; num_sq[b], den_sq[b]
//   copy_if_ok         x, -, z                               -; info[b]
//   clip_by_quadratic  -, -, z                               bound; pm0 = sum of q (shared)
//   axpby_scaled       x, y (null if b = 0), z               a, b; pm0 = the scale (shared)
//
// lm_damping_update is the one scalar update (one work item): the Levenberg–Marquardt rule.
#pragma once

#include <cmath>
#include <limits>

#include "curvkit/core/types.hpp"

namespace curvkit::device {

enum class MapKind : int {
  axpby,
  fill,
  add_diagonal,
  add_scalar,
  square_ema,
  diag_precondition,
  adam,
  scale_by_ratio,
  copy_if_ok,
  clip_by_quadratic,
  axpby_scaled,
};

/// The scalar constants of one map (meaning per kind above), in double on the host.
struct MapScalars {
  double c[5] = {0, 0, 0, 0, 0};
};

/// Per-matrix values of one map: pm0 / pm1 (shift, or num_sq / den_sq), ok (info 0 or 1).
template <class T>
struct MapPerMatrix {
  T pm0 = T(0), pm1 = T(0);
  bool ok = true;
};

/// min(1, sqrt(bound / |q|)): 1 for q = 0, NaN for a NaN q (never a plausible factor).
CURVKIT_HD_INLINE double clip_factor(double bound, double q) {
  if (q != q) return q;
  const double a = q < 0 ? -q : q;
  return bound >= a ? 1.0 : std::sqrt(bound / a);
}

/// One element: s0..s3 point at the element of each slot (null where a slot is unused).  Only
/// slot 2 is written, and Adam's moments in slots 1 and 3.
template <MapKind K, class T>
CURVKIT_HD_INLINE void map_element(const MapScalars& k, const MapPerMatrix<T>& pm, const T* s0,
                                   T* s1, T* s2, T* s3) {
  if constexpr (K == MapKind::axpby) {
    T z = T(0);
    if (s0 != nullptr) z = T(k.c[0]) * *s0;
    if (s1 != nullptr) z += T(k.c[1]) * *s1;
    *s2 = z;
  } else if constexpr (K == MapKind::fill) {
    *s2 = T(k.c[0]);
  } else if constexpr (K == MapKind::add_diagonal || K == MapKind::add_scalar) {
    *s2 += T(k.c[0]) + pm.pm0;
  } else if constexpr (K == MapKind::square_ema) {
    const T x = *s0;
    *s2 = k.c[0] == 0 ? T(k.c[1]) * x * x : T(k.c[0]) * *s2 + T(k.c[1]) * x * x;
  } else if constexpr (K == MapKind::diag_precondition) {
    const T s = *s1;
    *s2 = *s0 / ((k.c[1] == 0 ? s : T(std::sqrt(s))) + T(k.c[0]));
  } else if constexpr (K == MapKind::adam) {
    const T g = *s0;
    const T m = T(k.c[0]) * *s1 + T(1 - k.c[0]) * g;
    const T v = T(k.c[1]) * *s3 + T(1 - k.c[1]) * g * g;
    *s1 = m;
    *s3 = v;
    *s2 = (m * T(k.c[3])) / (T(std::sqrt(v * T(k.c[4]))) + T(k.c[2]));
  } else if constexpr (K == MapKind::scale_by_ratio) {
    *s2 *= T(std::sqrt(pm.pm0)) / (T(std::sqrt(pm.pm1)) + T(k.c[0]));
  } else if constexpr (K == MapKind::copy_if_ok) {
    if (pm.ok) *s2 = *s0;
  } else if constexpr (K == MapKind::clip_by_quadratic) {
    *s2 *= T(clip_factor(k.c[0], double(pm.pm0)));
  } else if constexpr (K == MapKind::axpby_scaled) {
    T z = T(k.c[0]) * pm.pm0 * *s0;
    if (s1 != nullptr) z += T(k.c[1]) * *s1;
    *s2 = z;
  }
}

/// The Levenberg–Marquardt damping rule (curvkit::lm_damping_update), in double: reads the
/// state's lambda (state[1]), the mean losses f0, f1 and the count partial products gv, vv;
/// writes state[0..4] and `copies` copies of the new lambda from state[5].
template <class T>
CURVKIT_HD_INLINE void lm_damping_update(double lr, double boost, double drop, double epsilon,
                                         double floor, T f0, T f1, const T* gv, const T* vv,
                                         index_t count, T* state, index_t copies) {
  const double lambda = double(state[1]);
  double g = 0, v = 0;
  for (index_t i = 0; i < count; ++i) {
    g += double(gv[i]);
    v += double(vv[i]);
  }
  const double q = g / lambda, dd = v / (lambda * lambda);
  const double pred = lr * q - 0.5 * lr * lr * (q - lambda * dd);
  const double f1d = double(f1);
  double lm = double(state[0]), rho = std::numeric_limits<double>::quiet_NaN();
  if (f1d - f1d != 0) {  // the new loss is NaN or Inf: the step blew up
    lm *= boost;
  } else if (pred > 0 && pred - pred == 0) {
    rho = (double(f0) - f1d) / pred;
    if (rho < epsilon)
      lm *= boost;
    else if (rho > 1 - epsilon)
      lm *= drop;
  }
  const double next = lm + floor;
  state[0] = T(lm);
  state[1] = T(next);
  state[2] = T(1 / next);
  state[3] = T(rho);
  state[4] = T(pred);
  for (index_t i = 0; i < copies; ++i) state[5 + i] = T(next);
}

}  // namespace curvkit::device
