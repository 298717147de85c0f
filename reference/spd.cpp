// Reference backend of the SPD family: the test oracle.  Plain loops, one matrix at a time,
// every matrix copied into a long double buffer, textbook column Cholesky.  It shares no
// code with the backends it checks (it does not use include/curvkit/device/).
#include <cmath>
#include <limits>
#include <vector>

#include "spd_backends.hpp"

namespace curvkit::reference {
namespace {

using real = long double;

// A dense n x n working copy of one matrix, column index fastest.
struct Dense {
  index_t n = 0;
  std::vector<real> v;
  explicit Dense(index_t n_) : n(n_), v(static_cast<std::size_t>(n_ * n_), 0.0L) {}
  real& operator()(index_t i, index_t j) { return v[static_cast<std::size_t>(i * n + j)]; }
};

// Lower triangle of matrix b of `a` into a symmetric Dense.
template <class T>
Dense load_symmetric(const MatrixBatch<T>& a, index_t b) {
  Dense m(a.rows);
  for (index_t i = 0; i < a.rows; ++i)
    for (index_t j = 0; j <= i; ++j) m(i, j) = m(j, i) = static_cast<real>(a(b, i, j));
  return m;
}

// Cholesky of m + shift I into L (lower; upper set to 0).  Returns the info code.
int cholesky(Dense m, real shift, Dense& l) {
  const index_t n = m.n;
  for (index_t i = 0; i < n; ++i) m(i, i) += shift;
  for (index_t j = 0; j < n; ++j) {
    real d = m(j, j);
    for (index_t k = 0; k < j; ++k) d -= l(j, k) * l(j, k);
    if (!std::isfinite(d)) return -static_cast<int>(j + 1);
    if (!(d > 0)) return static_cast<int>(j + 1);
    l(j, j) = std::sqrt(d);
    for (index_t i = j + 1; i < n; ++i) {
      real s = m(i, j);
      for (index_t k = 0; k < j; ++k) s -= l(i, k) * l(j, k);
      l(i, j) = s / l(j, j);
    }
  }
  return 0;
}

struct Factor {
  int info = 0;
  real shift_used = 0;
  Dense l{0};
};

// Factor A + lambda I under the options' policy.
Factor factor(const Dense& a, const SpdOptions& o, real eps) {
  const index_t n = a.n;
  Factor f;
  f.l = Dense(n);
  const real lambda = o.diagonal_shift;
  f.info = cholesky(a, lambda, f.l);
  if (f.info != 0) f.shift_used = std::numeric_limits<real>::quiet_NaN();  // failure: NaN
  if (f.info <= 0 || o.policy != NonSpdPolicy::shift) return f;
  real scale = 0;
  for (index_t i = 0; i < n; ++i) scale = std::max(scale, std::fabs(a.v[i * n + i]));
  if (!(scale > 0)) scale = 1;
  const real start = o.shift_start > 0 ? real(o.shift_start) : 16.0L * real(n) * eps;
  real delta = start * scale;
  for (int r = 0; r < o.max_shift_retries; ++r, delta *= real(o.shift_growth)) {
    f.l = Dense(n);
    f.info = cholesky(a, lambda + delta, f.l);
    if (f.info <= 0) break;
  }
  f.shift_used = f.info == 0 ? delta : std::numeric_limits<real>::quiet_NaN();
  return f;
}

constexpr real nan_value = std::numeric_limits<real>::quiet_NaN();

// X := (L L^T)^{-1} X, X is n x m.
void solve(Dense& l, std::vector<real>& x, index_t n, index_t m) {
  for (index_t c = 0; c < m; ++c) {
    for (index_t i = 0; i < n; ++i) {
      real s = x[i * m + c];
      for (index_t k = 0; k < i; ++k) s -= l(i, k) * x[k * m + c];
      x[i * m + c] = s / l(i, i);
    }
    for (index_t i = n - 1; i >= 0; --i) {
      real s = x[i * m + c];
      for (index_t k = i + 1; k < n; ++k) s -= l(k, i) * x[k * m + c];
      x[i * m + c] = s / l(i, i);
    }
  }
}

template <class T>
void store_lower(const MatrixBatch<T>& a, index_t b, Dense& l, bool ok) {
  for (index_t i = 0; i < a.rows; ++i)
    for (index_t j = 0; j <= i; ++j) a(b, i, j) = static_cast<T>(ok ? l(i, j) : nan_value);
}

template <class T>
void store_rhs(const MatrixBatch<T>& x, index_t b, const std::vector<real>& v, bool ok) {
  for (index_t i = 0; i < x.rows; ++i)
    for (index_t c = 0; c < x.cols; ++c)
      x(b, i, c) = static_cast<T>(ok ? v[i * x.cols + c] : nan_value);
}

template <class T>
std::vector<real> load_rhs(const MatrixBatch<T>& x, index_t b) {
  std::vector<real> v(static_cast<std::size_t>(x.rows * x.cols));
  for (index_t i = 0; i < x.rows; ++i)
    for (index_t c = 0; c < x.cols; ++c) v[i * x.cols + c] = static_cast<real>(x(b, i, c));
  return v;
}

template <class T>
void record(int* info, T* shift_used, index_t k, const Factor& f) {
  info[k] = f.info;
  if (shift_used != nullptr) shift_used[k] = static_cast<T>(f.shift_used);
}

constexpr real eps_of(float) {
  return std::numeric_limits<float>::epsilon();
}
constexpr real eps_of(double) {
  return std::numeric_limits<double>::epsilon();
}

}  // namespace

template <class T>
Status potrf(const Context&, GroupedBatch<T> groups, int* info, const SpdOptions& o,
             T* shift_used) {
  index_t k = 0;
  for (const auto& a : groups) {
    for (index_t b = 0; b < a.batch; ++b, ++k) {
      Factor f = factor(load_symmetric(a, b), o, eps_of(T{}));
      store_lower(a, b, f.l, f.info == 0);
      record(info, shift_used, k, f);
    }
  }
  return Status::success();
}

template <class T>
Status potrs(const Context&, GroupedBatch<const T> ls, GroupedBatch<T> bs, int* info) {
  index_t k = 0;
  for (std::size_t g = 0; g < ls.size(); ++g) {
    const auto& lv = ls[g];
    const auto& xv = bs[g];
    for (index_t b = 0; b < lv.batch; ++b, ++k) {
      const index_t n = lv.rows;
      Dense l(n);
      int code = 0;
      for (index_t i = 0; i < n; ++i)
        for (index_t j = 0; j <= i; ++j) l(i, j) = static_cast<real>(lv(b, i, j));
      for (index_t i = 0; i < n && code == 0; ++i) {
        if (!std::isfinite(l(i, i)))
          code = -static_cast<int>(i + 1);
        else if (!(l(i, i) > 0))
          code = static_cast<int>(i + 1);
      }
      std::vector<real> x = load_rhs(xv, b);
      if (code == 0) solve(l, x, n, xv.cols);
      store_rhs(xv, b, x, code == 0);
      info[k] = code;
    }
  }
  return Status::success();
}

template <class T>
Status posv(const Context&, GroupedBatch<T> as, GroupedBatch<T> bs, int* info, const SpdOptions& o,
            T* shift_used) {
  index_t k = 0;
  for (std::size_t g = 0; g < as.size(); ++g) {
    const auto& a = as[g];
    const auto& xv = bs[g];
    for (index_t b = 0; b < a.batch; ++b, ++k) {
      Factor f = factor(load_symmetric(a, b), o, eps_of(T{}));
      std::vector<real> x = load_rhs(xv, b);
      if (f.info == 0) solve(f.l, x, a.rows, xv.cols);
      store_lower(a, b, f.l, f.info == 0);
      store_rhs(xv, b, x, f.info == 0);
      record(info, shift_used, k, f);
    }
  }
  return Status::success();
}

template <class T>
Status potri(const Context&, GroupedBatch<T> groups, int* info, const SpdOptions& o,
             T* shift_used) {
  index_t k = 0;
  for (const auto& a : groups) {
    const index_t n = a.rows;
    for (index_t b = 0; b < a.batch; ++b, ++k) {
      Factor f = factor(load_symmetric(a, b), o, eps_of(T{}));
      // Inverse = solve with the identity as right-hand side.
      std::vector<real> x(static_cast<std::size_t>(n * n), 0.0L);
      for (index_t i = 0; i < n; ++i) x[i * n + i] = 1;
      if (f.info == 0) solve(f.l, x, n, n);
      for (index_t i = 0; i < n; ++i)
        for (index_t j = 0; j < n; ++j) {
          // Symmetrise: the two triangles of a computed inverse differ by rounding.
          const real v = 0.5L * (x[i * n + j] + x[j * n + i]);
          a(b, i, j) = static_cast<T>(f.info == 0 ? v : nan_value);
        }
      record(info, shift_used, k, f);
    }
  }
  return Status::success();
}

}  // namespace curvkit::reference

CURVKIT_INSTANTIATE_SPD_BACKEND(reference, float)
CURVKIT_INSTANTIATE_SPD_BACKEND(reference, double)
