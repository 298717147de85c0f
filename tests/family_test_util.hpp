// Test helpers shared by the family tests after the SPD family: fresh random operands in
// (possibly padded, NaN-poisoned) layouts, copied to a backend's memory and back, and
// float64 comparisons by relative norm.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "curvkit/curvkit.hpp"
#include "spd_inputs.hpp"
#include "test_memory.hpp"

namespace curvkit::test {

template <class T>
double eps() {
  return std::numeric_limits<T>::epsilon();
}

inline std::mt19937_64 fresh_rng(std::uint64_t* seed_out) {
  *seed_out = (std::uint64_t(std::random_device{}()) << 32) ^ std::random_device{}();
  return std::mt19937_64(*seed_out);
}

/// One batched operand on the host: its layout and its elements (padding poisoned).
template <class T>
struct Operand {
  Layout l;
  std::vector<T> v;
  Operand() = default;
  Operand(index_t batch, index_t rows, index_t cols, index_t ld_pad = 0, index_t stride_pad = 0)
      : l(Layout::make(batch, rows, cols, ld_pad, stride_pad)), v(poisoned<T>(l)) {}
  T& operator()(index_t b, index_t i, index_t j) { return v[l.at(b, i, j)]; }
  T operator()(index_t b, index_t i, index_t j) const { return v[l.at(b, i, j)]; }
  /// Matrix b as a dense double rows x cols array.
  std::vector<double> dense(index_t b) const {
    std::vector<double> d(static_cast<std::size_t>(l.rows * l.cols));
    for (index_t i = 0; i < l.rows; ++i)
      for (index_t j = 0; j < l.cols; ++j) d[i * l.cols + j] = double((*this)(b, i, j));
    return d;
  }
};

/// Gaussian entries times `scale` in every element of the view (padding stays NaN).
template <class T>
Operand<T> gaussian(index_t batch, index_t rows, index_t cols, std::mt19937_64& rng,
                    double scale = 1.0, index_t ld_pad = 0, index_t stride_pad = 0) {
  Operand<T> o(batch, rows, cols, ld_pad, stride_pad);
  std::normal_distribution<double> g;
  for (index_t b = 0; b < batch; ++b)
    for (index_t i = 0; i < rows; ++i)
      for (index_t j = 0; j < cols; ++j) o(b, i, j) = static_cast<T>(scale * g(rng));
  return o;
}

/// Random SPD matrices of condition number `cond` (both triangles written unless
/// `lower_only`, in which case the strict upper triangle stays NaN).
template <class T>
Operand<T> spd(index_t batch, index_t n, double cond, std::mt19937_64& rng, bool lower_only,
               double scale = 1.0, index_t ld_pad = 0, index_t stride_pad = 0) {
  Operand<T> o(batch, n, n, ld_pad, stride_pad);
  for (index_t b = 0; b < batch; ++b) {
    const auto a = random_spd(n, cond, rng);
    for (index_t i = 0; i < n; ++i)
      for (index_t j = 0; j < (lower_only ? i + 1 : n); ++j)
        o(b, i, j) = static_cast<T>(scale * a[i * n + j]);
  }
  return o;
}

/// An operand copied into a backend's memory.
template <class T>
class OnBackend {
 public:
  OnBackend(Backend backend, const Operand<T>& o)
      : l_(o.l), buf_(backend, o.v.empty() ? std::vector<T>(1, T(0)) : o.v) {}
  MatrixBatch<T> view() { return l_.view(buf_.data()); }
  MatrixBatch<const T> cview() { return MatrixBatch<const T>(view()); }
  Operand<T> get() const {
    Operand<T> o;
    o.l = l_;
    o.v = buf_.download();
    o.v.resize(l_.elements());
    return o;
  }

 private:
  Layout l_;
  Buffer<T> buf_;
};

/// Per-matrix int outputs in a backend's memory, poisoned with `poison`.
class IntsOnBackend {
 public:
  IntsOnBackend(Backend backend, index_t count, int poison = -777)
      : count_(count),
        buf_(backend, std::vector<int>(std::size_t(std::max<index_t>(count, 1)), poison)) {}
  int* data() { return buf_.data(); }
  std::vector<int> get() const {
    auto v = buf_.download();
    v.resize(static_cast<std::size_t>(count_));
    return v;
  }

 private:
  index_t count_;
  Buffer<int> buf_;
};

/// max over matrices b with ok(b) of ||x_b - y_b||_F / ||y_b||_F over the selected elements;
/// infinity if a compared element of x is NaN.
template <class T, class U>
double max_rel_err(
    const Operand<T>& x, const Operand<U>& y,
    const std::function<bool(index_t, index_t)>& selected = [](index_t, index_t) { return true; },
    const std::function<bool(index_t)>& ok = [](index_t) { return true; }) {
  double worst = 0;
  for (index_t b = 0; b < x.l.batch; ++b) {
    if (!ok(b)) continue;
    double num = 0, den = 0;
    for (index_t i = 0; i < x.l.rows; ++i)
      for (index_t j = 0; j < x.l.cols; ++j) {
        if (!selected(i, j)) continue;
        const double d = double(x(b, i, j)) - double(y(b, i, j));
        num += d * d;
        den += double(y(b, i, j)) * double(y(b, i, j));
      }
    if (std::isnan(num)) return std::numeric_limits<double>::infinity();
    worst = std::max(worst, den > 0 ? std::sqrt(num / den) : std::sqrt(num));
  }
  return worst;
}

/// Every element of `after` outside the selected ones (padding included) equals `before`
/// (NaN poison stays NaN).
template <class T>
void expect_untouched_outside(const Operand<T>& before, const Operand<T>& after,
                              const std::function<bool(index_t, index_t)>& selected,
                              const std::string& what) {
  ASSERT_EQ(before.v.size(), after.v.size());
  for (std::size_t e = 0; e < before.v.size(); ++e) {
    const index_t b = index_t(e) / before.l.stride, off = index_t(e) % before.l.stride;
    const index_t i = off / before.l.ld, j = off % before.l.ld;
    const bool inside = i < before.l.rows && j < before.l.cols;
    if (inside && selected(i, j)) continue;
    const bool same = std::isnan(double(before.v[e])) ? std::isnan(double(after.v[e]))
                                                      : before.v[e] == after.v[e];
    ASSERT_TRUE(same) << what << ": element " << e << " (matrix " << b << ", " << i << ", " << j
                      << ") outside the output changed";
  }
}

/// All selected elements of matrix b are NaN.
template <class T>
bool all_nan(const Operand<T>& o, index_t b) {
  for (index_t i = 0; i < o.l.rows; ++i)
    for (index_t j = 0; j < o.l.cols; ++j)
      if (!std::isnan(double(o(b, i, j)))) return false;
  return true;
}

/// Dense n x n symmetric inverse of a symmetric positive definite double matrix (Cholesky in
/// long double); used to build exact test inputs, not as the oracle of any op.
inline std::vector<double> spd_inverse(std::vector<double> a, index_t n) {
  using real = long double;
  std::vector<real> l(static_cast<std::size_t>(n * n), 0.0L);
  for (index_t j = 0; j < n; ++j) {
    real d = a[j * n + j];
    for (index_t k = 0; k < j; ++k) d -= l[j * n + k] * l[j * n + k];
    l[j * n + j] = std::sqrt(d);
    for (index_t i = j + 1; i < n; ++i) {
      real s = a[i * n + j];
      for (index_t k = 0; k < j; ++k) s -= l[i * n + k] * l[j * n + k];
      l[i * n + j] = s / l[j * n + j];
    }
  }
  std::vector<double> inv(static_cast<std::size_t>(n * n));
  for (index_t c = 0; c < n; ++c) {
    std::vector<real> x(static_cast<std::size_t>(n), 0.0L);
    x[c] = 1;
    for (index_t i = 0; i < n; ++i) {
      real s = x[i];
      for (index_t k = 0; k < i; ++k) s -= l[i * n + k] * x[k];
      x[i] = s / l[i * n + i];
    }
    for (index_t i = n - 1; i >= 0; --i) {
      real s = x[i];
      for (index_t k = i + 1; k < n; ++k) s -= l[k * n + i] * x[k];
      x[i] = s / l[i * n + i];
    }
    for (index_t i = 0; i < n; ++i) inv[i * n + c] = double(x[i]);
  }
  return inv;
}

/// Base fixture: skips unusable backends, draws a fresh seed and names it in failures.
class BackendTest : public ::testing::TestWithParam<Backend> {
 protected:
  void SetUp() override {
    std::string why;
    if (!backend_usable(GetParam(), &why)) GTEST_SKIP() << why;
    rng_ = fresh_rng(&seed_);
  }
  Backend backend() const { return GetParam(); }
  Context ctx() const { return context_for(GetParam()); }
  std::string trace() const {
    return "seed " + std::to_string(seed_) + ", backend " + to_string(GetParam());
  }
  std::mt19937_64 rng_;
  std::uint64_t seed_ = 0;
};

inline std::string backend_test_name(const ::testing::TestParamInfo<Backend>& i) {
  return std::string(to_string(i.param));
}

}  // namespace curvkit::test
