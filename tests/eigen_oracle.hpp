// Test oracle shared by the Newton–Schulz and Shampoo tests: eigendecompositions of symmetric
// matrices by cyclic Jacobi rotations in long double, and matrix functions f(A) = Q f(L) Q^T.
#pragma once

#include <cmath>
#include <vector>

#include "curvkit/core/types.hpp"

namespace curvkit::test {

using real = long double;
using Dense = std::vector<double>;

// Eigen-decomposition of a symmetric n x n matrix by cyclic Jacobi rotations: a = Q diag(w) Q^T.
inline void jacobi_eigen(std::vector<real> a, index_t n, std::vector<real>* w,
                         std::vector<real>* q) {
  q->assign(std::size_t(n * n), 0);
  for (index_t i = 0; i < n; ++i) (*q)[i * n + i] = 1;
  for (int sweep = 0; sweep < 100; ++sweep) {
    real off = 0;
    for (index_t i = 0; i < n; ++i)
      for (index_t j = 0; j < n; ++j)
        if (i != j) off += a[i * n + j] * a[i * n + j];
    if (off < 1e-40L) break;
    for (index_t p = 0; p < n; ++p)
      for (index_t r = p + 1; r < n; ++r) {
        const real apr = a[p * n + r];
        if (std::abs(apr) < 1e-300L) continue;
        const real theta = (a[r * n + r] - a[p * n + p]) / (2 * apr);
        const real t = (theta >= 0 ? 1 : -1) / (std::abs(theta) + std::sqrt(theta * theta + 1));
        const real c = 1 / std::sqrt(t * t + 1), s = t * c;
        for (index_t k = 0; k < n; ++k) {  // A <- J^T A J, columns then rows
          const real akp = a[k * n + p], akr = a[k * n + r];
          a[k * n + p] = c * akp - s * akr;
          a[k * n + r] = s * akp + c * akr;
        }
        for (index_t k = 0; k < n; ++k) {
          const real apk = a[p * n + k], ark = a[r * n + k];
          a[p * n + k] = c * apk - s * ark;
          a[r * n + k] = s * apk + c * ark;
        }
        for (index_t k = 0; k < n; ++k) {
          const real qkp = (*q)[k * n + p], qkr = (*q)[k * n + r];
          (*q)[k * n + p] = c * qkp - s * qkr;
          (*q)[k * n + r] = s * qkp + c * qkr;
        }
      }
  }
  w->assign(std::size_t(n), 0);
  for (index_t i = 0; i < n; ++i) (*w)[i] = a[i * n + i];
}

// f(A) for a symmetric A given as dense long double.
template <class F>
Dense matrix_function(const std::vector<real>& a, index_t n, F f) {
  std::vector<real> w, q;
  jacobi_eigen(a, n, &w, &q);
  Dense out(std::size_t(n * n), 0.0);
  for (index_t i = 0; i < n; ++i)
    for (index_t j = 0; j < n; ++j) {
      real s = 0;
      for (index_t k = 0; k < n; ++k) s += q[i * n + k] * f(w[k]) * q[j * n + k];
      out[i * n + j] = double(s);
    }
  return out;
}

// Largest over smallest eigenvalue of a symmetric positive definite matrix.
inline double condition(const std::vector<real>& a, index_t n) {
  std::vector<real> w, q;
  jacobi_eigen(a, n, &w, &q);
  real lo = w[0], hi = w[0];
  for (real v : w) {
    lo = v < lo ? v : lo;
    hi = v > hi ? v : hi;
  }
  return double(hi / lo);
}

}  // namespace curvkit::test
