// The per-element and per-row math of the trainer kernels, written once for the host loops
// (ops_host.cpp) and the CUDA kernels (ops_cuda.cu): activations and their derivatives, the
// numerically stable losses, and a counter-based random number generator so that labels sampled
// on the host and on a GPU are the same for the same seed.
#pragma once

#include <cmath>
#include <cstdint>

#include "curvkit/core/types.hpp"

namespace fmnist::ops {

enum class Activation : int {
  identity = 0,
  relu = 1,
  sigmoid = 2,
};

namespace math {

template <class T>
CURVKIT_HD_INLINE T sigmoid(T z) {
  // exp of a negative number only: no overflow for large |z|.
  if (z >= T(0)) return T(1) / (T(1) + std::exp(-z));
  const T e = std::exp(z);
  return e / (T(1) + e);
}

/// log(1 + exp(z)) without overflow.
template <class T>
CURVKIT_HD_INLINE T softplus(T z) {
  return (z > T(0) ? z : T(0)) + std::log1p(std::exp(-std::fabs(z)));
}

template <class T>
CURVKIT_HD_INLINE T activate(Activation act, T z) {
  switch (act) {
    case Activation::relu:
      return z > T(0) ? z : T(0);
    case Activation::sigmoid:
      return sigmoid(z);
    default:
      return z;
  }
}

/// d act / d z at the pre-activation z (ReLU's derivative at 0 is taken as 0).
template <class T>
CURVKIT_HD_INLINE T activate_derivative(Activation act, T z) {
  switch (act) {
    case Activation::relu:
      return z > T(0) ? T(1) : T(0);
    case Activation::sigmoid: {
      const T s = sigmoid(z);
      return s * (T(1) - s);
    }
    default:
      return T(1);
  }
}

/// SplitMix64's finaliser: a bijective mix of 64 bits.
CURVKIT_HD_INLINE std::uint64_t mix64(std::uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

/// A uniform number in [0, 1) for (seed, stream, index): the same on every backend and
/// independent of the order in which threads draw.
CURVKIT_HD_INLINE double uniform01(std::uint64_t seed, std::uint64_t stream, std::uint64_t index) {
  const std::uint64_t x = mix64(mix64(seed ^ mix64(stream)) + index);
  return double(x >> 11) * (1.0 / 9007199254740992.0);  // 53 bits
}

/// Softmax cross-entropy of one row of C logits against `label`: the loss -log p_label, the
/// gradient p - e_label (nullable), and whether the arg-max is the label.
template <class T>
CURVKIT_HD_INLINE void softmax_xent_row(const T* z, int classes, int label, T* grad, T* loss,
                                        T* correct) {
  int best = 0;
  T zmax = z[0];
  for (int c = 1; c < classes; ++c)
    if (z[c] > zmax) zmax = z[c], best = c;
  double sum = 0;
  for (int c = 0; c < classes; ++c) sum += std::exp(double(z[c] - zmax));
  const double lse = double(zmax) + std::log(sum);
  *loss = T(lse - double(z[label]));
  if (correct != nullptr) *correct = best == label ? T(1) : T(0);
  if (grad != nullptr)
    for (int c = 0; c < classes; ++c)
      grad[c] = T(std::exp(double(z[c]) - lse)) - (c == label ? T(1) : T(0));
}

/// The softmax of one row of logits as p_c = exp(z_c - zmax) / sum: returns sum, sets *zmax.
template <class T>
CURVKIT_HD_INLINE double softmax_shift(const T* z, int classes, T* zmax) {
  T m = z[0];
  for (int c = 1; c < classes; ++c) m = z[c] > m ? z[c] : m;
  double sum = 0;
  for (int c = 0; c < classes; ++c) sum += std::exp(double(z[c] - m));
  *zmax = m;
  return sum;
}

/// The gradient p - e_y of one row with y drawn from the row's softmax p by the uniform u.
template <class T>
CURVKIT_HD_INLINE void softmax_sampled_row(const T* z, int classes, double u, T* grad) {
  T zmax;
  const double sum = softmax_shift(z, classes, &zmax);
  // Inverse-CDF sampling; the last class takes what rounding leaves over.
  const double target = u * sum;
  double cumulative = 0;
  int y = classes - 1;
  for (int c = 0; c < classes; ++c) {
    cumulative += std::exp(double(z[c] - zmax));
    if (target < cumulative) {
      y = c;
      break;
    }
  }
  for (int c = 0; c < classes; ++c)
    grad[c] = T(std::exp(double(z[c] - zmax)) / sum) - (c == y ? T(1) : T(0));
}

/// Row r of the softmax cross-entropy Hessian's symmetric factor at logits z: (C e_r)^T with
/// C = diag(sqrt p) - p sqrt(p)^T, i.e. out[c] = sqrt(p_r) (delta_rc - p_c).  C C^T =
/// diag(p) - p p^T because the p sum to 1 (docs/optimizer-spec-2.md §4.1).
template <class T>
CURVKIT_HD_INLINE void softmax_hessian_sqrt_row(const T* z, int classes, int r, T* out) {
  T zmax;
  const double sum = softmax_shift(z, classes, &zmax);
  const double root = std::sqrt(std::exp(double(z[r] - zmax)) / sum);
  for (int c = 0; c < classes; ++c)
    out[c] = T(root * ((c == r ? 1.0 : 0.0) - std::exp(double(z[c] - zmax)) / sum));
}

/// Binary cross-entropy of a sigmoid output with logit z against a target x in [0, 1]:
/// softplus(z) - x z, and its derivative sigmoid(z) - x.
template <class T>
CURVKIT_HD_INLINE T bce(T z, T x) {
  return softplus(z) - x * z;
}
template <class T>
CURVKIT_HD_INLINE T bce_derivative(T z, T x) {
  return sigmoid(z) - x;
}

}  // namespace math
}  // namespace fmnist::ops
