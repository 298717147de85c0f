// Test inputs for the SPD family: random SPD matrices of controlled condition number laid
// out in (possibly padded) batches whose unused memory is poisoned with NaN.
#pragma once

#include <algorithm>
#include <cmath>
#include <limits>
#include <random>
#include <vector>

#include "curvkit/core/view.hpp"

namespace curvkit::test {

/// Random orthogonal n x n (row-major, double) from Gram-Schmidt on a Gaussian matrix.
inline std::vector<double> random_orthogonal(index_t n, std::mt19937_64& rng) {
  std::normal_distribution<double> g;
  std::vector<double> q(static_cast<std::size_t>(n * n));
  for (auto& x : q) x = g(rng);
  // Orthonormalise the rows (twice, for double-precision orthogonality).
  for (int pass = 0; pass < 2; ++pass)
    for (index_t i = 0; i < n; ++i) {
      double* qi = &q[i * n];
      for (index_t k = 0; k < i; ++k) {
        const double* qk = &q[k * n];
        double d = 0;
        for (index_t j = 0; j < n; ++j) d += qi[j] * qk[j];
        for (index_t j = 0; j < n; ++j) qi[j] -= d * qk[j];
      }
      double nrm = 0;
      for (index_t j = 0; j < n; ++j) nrm += qi[j] * qi[j];
      nrm = std::sqrt(nrm);
      for (index_t j = 0; j < n; ++j) qi[j] /= nrm;
    }
  return q;
}

/// Random symmetric n x n (row-major, double) with eigenvalues s * cond^(-i/(n-1)),
/// s uniform in [0.5, 2]: 2-norm condition number exactly `cond`.
inline std::vector<double> random_spd(index_t n, double cond, std::mt19937_64& rng) {
  std::uniform_real_distribution<double> u(0.5, 2.0);
  const double s = u(rng);
  std::vector<double> lam(static_cast<std::size_t>(n));
  for (index_t i = 0; i < n; ++i)
    lam[i] = s * (n > 1 ? std::pow(cond, -double(i) / double(n - 1)) : 1.0);
  const auto q = random_orthogonal(n, rng);
  std::vector<double> a(static_cast<std::size_t>(n * n), 0.0);
  for (index_t i = 0; i < n; ++i)
    for (index_t j = 0; j <= i; ++j) {
      double v = 0;
      for (index_t k = 0; k < n; ++k) v += q[k * n + i] * lam[k] * q[k * n + j];
      a[i * n + j] = a[j * n + i] = v;
    }
  return a;
}

/// Memory layout of one batched operand with optional padding.
struct Layout {
  index_t batch = 0, rows = 0, cols = 0, ld = 0, stride = 0;
  static Layout make(index_t batch, index_t rows, index_t cols, index_t ld_pad = 0,
                     index_t stride_pad = 0) {
    Layout l{batch, rows, cols, std::max<index_t>(cols + ld_pad, 1), 0};  // ld >= 1 as in LAPACK
    l.stride = rows * l.ld + stride_pad;
    return l;
  }
  std::size_t elements() const { return static_cast<std::size_t>(batch * stride); }
  std::size_t at(index_t b, index_t i, index_t j) const {
    return static_cast<std::size_t>(b * stride + i * ld + j);
  }
  template <class T>
  MatrixBatch<T> view(T* data) const {
    return {data, batch, rows, cols, ld, stride};
  }
};

template <class T>
std::vector<T> poisoned(const Layout& l) {
  return std::vector<T>(l.elements(), std::numeric_limits<T>::quiet_NaN());
}

}  // namespace curvkit::test
