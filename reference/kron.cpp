// Reference backend of the Kronecker family (gemm.hpp, kron.hpp): the test oracle.  Plain loops
// in long double, from the definitions rather than the fast forms:
//   gemm, syrk        the element-by-element sums
//   mode_product      the index formula of the definition (multi-indices, no slabs)
//   mode_product_chain  the modes one after another in order 0..K-1 (backends pick an order)
//   mode_gram         mat_k(X) built by its index formula, then mat_k mat_k^T
//   kfac_pi_damping   the traces summed in long double, the formula as written
//   kron_apply        explicit inverses; the Cholesky form multiplies L L^T out and inverts it
//                     by Gauss-Jordan elimination (backends use triangular solves)
// It shares no code with the backends it checks.
#include <cmath>
#include <limits>
#include <vector>

#include "kron_backends.hpp"

namespace curvkit::reference {
namespace {

using real = long double;

template <class T>
real at(const MatrixBatch<T>& a, index_t b, Op op, index_t i, index_t j) {
  const index_t bb = a.batch == 1 ? 0 : b;
  return static_cast<real>(op == Op::none ? a(bb, i, j) : a(bb, j, i));
}

// Row-major dense matrix in long double.
struct Mat {
  index_t n = 0, m = 0;
  std::vector<real> v;
  Mat(index_t rows, index_t cols) : n(rows), m(cols), v(static_cast<std::size_t>(rows * cols)) {}
  real& operator()(index_t i, index_t j) { return v[static_cast<std::size_t>(i * m + j)]; }
};

// Inverse of a square matrix by Gauss-Jordan elimination with partial pivoting.
Mat inverse(Mat a) {
  const index_t n = a.n;
  Mat x(n, n);
  for (index_t i = 0; i < n; ++i) x(i, i) = 1;
  for (index_t c = 0; c < n; ++c) {
    index_t p = c;
    for (index_t r = c + 1; r < n; ++r)
      if (std::fabs(a(r, c)) > std::fabs(a(p, c))) p = r;
    for (index_t j = 0; j < n; ++j) {
      std::swap(a(c, j), a(p, j));
      std::swap(x(c, j), x(p, j));
    }
    const real d = a(c, c);
    for (index_t j = 0; j < n; ++j) {
      a(c, j) /= d;
      x(c, j) /= d;
    }
    for (index_t r = 0; r < n; ++r) {
      if (r == c) continue;
      const real f = a(r, c);
      for (index_t j = 0; j < n; ++j) {
        a(r, j) -= f * a(c, j);
        x(r, j) -= f * x(c, j);
      }
    }
  }
  return x;
}

// L L^T from the lower triangle of matrix b of `l`.
template <class T>
Mat lower_product(const MatrixBatch<T>& l, index_t b) {
  const index_t n = l.rows, bb = l.batch == 1 ? 0 : b;
  Mat g(n, n);
  for (index_t i = 0; i < n; ++i)
    for (index_t j = 0; j < n; ++j) {
      real s = 0;
      for (index_t q = 0; q <= (i < j ? i : j); ++q)
        s += static_cast<real>(l(bb, i, q)) * static_cast<real>(l(bb, j, q));
      g(i, j) = s;
    }
  return g;
}

template <class T>
Mat load_full(const MatrixBatch<T>& a, index_t b) {
  Mat m(a.rows, a.cols);
  for (index_t i = 0; i < a.rows; ++i)
    for (index_t j = 0; j < a.cols; ++j) m(i, j) = at(a, b, Op::none, i, j);
  return m;
}

// Linear offset inside a row-major tensor of the multi-index idx.
index_t offset(const index_t* dims, int order, const index_t* idx) {
  index_t o = 0;
  for (int k = 0; k < order; ++k) o = o * dims[k] + idx[k];
  return o;
}

// Advances a multi-index in row-major order; false after the last one.
bool next_index(const index_t* dims, int order, index_t* idx) {
  for (int k = order - 1; k >= 0; --k) {
    if (++idx[k] < dims[k]) return true;
    idx[k] = 0;
  }
  return false;
}

// One tensor as long double values plus its dims.
struct Tensor {
  int order = 0;
  index_t dims[kMaxTensorOrder] = {};
  std::vector<real> v;
  index_t size() const {
    index_t s = 1;
    for (int k = 0; k < order; ++k) s *= dims[k];
    return s;
  }
};

template <class T>
Tensor load_tensor(const TensorBatch<T>& x, index_t b) {
  Tensor t;
  t.order = x.order;
  for (int k = 0; k < x.order; ++k) t.dims[k] = x.dims[k];
  t.v.resize(static_cast<std::size_t>(t.size()));
  for (index_t e = 0; e < t.size(); ++e) t.v[static_cast<std::size_t>(e)] = x.tensor(b)[e];
  return t;
}

// Y = X x_mode op(U) by the definition: Y[.., i, ..] = sum_j op(U)[i, j] X[.., j, ..].
template <class T>
Tensor mode_product_one(const Tensor& x, int mode, const MatrixBatch<const T>& u, index_t b,
                        Op op) {
  Tensor y = x;
  y.dims[mode] = op == Op::none ? u.rows : u.cols;
  y.v.assign(static_cast<std::size_t>(y.size()), 0.0L);
  if (y.size() == 0) return y;
  index_t idx[kMaxTensorOrder] = {};
  do {
    const index_t i = idx[mode];
    real s = 0;
    index_t src[kMaxTensorOrder];
    for (int k = 0; k < x.order; ++k) src[k] = idx[k];
    for (index_t j = 0; j < x.dims[mode]; ++j) {
      src[mode] = j;
      s += at(u, b, op, i, j) * x.v[static_cast<std::size_t>(offset(x.dims, x.order, src))];
    }
    y.v[static_cast<std::size_t>(offset(y.dims, y.order, idx))] = s;
  } while (next_index(y.dims, y.order, idx));
  return y;
}

template <class T>
void store_tensor(const TensorBatch<T>& y, index_t b, const Tensor& t) {
  for (index_t e = 0; e < t.size(); ++e)
    y.tensor(b)[e] = static_cast<T>(t.v[static_cast<std::size_t>(e)]);
}

}  // namespace

template <class T>
Status gemm(const Context&, Op op_a, Op op_b, T alpha, GroupedBatch<const T> a,
            GroupedBatch<const T> b, T beta, GroupedBatch<T> c) {
  for (std::size_t g = 0; g < c.size(); ++g) {
    const index_t k = op_a == Op::none ? a[g].cols : a[g].rows;
    for (index_t m = 0; m < c[g].batch; ++m)
      for (index_t i = 0; i < c[g].rows; ++i)
        for (index_t j = 0; j < c[g].cols; ++j) {
          real s = 0;
          for (index_t q = 0; q < k; ++q) s += at(a[g], m, op_a, i, q) * at(b[g], m, op_b, q, j);
          real r = static_cast<real>(alpha) * s;
          if (beta != T(0)) r += static_cast<real>(beta) * static_cast<real>(c[g](m, i, j));
          c[g](m, i, j) = static_cast<T>(r);
        }
  }
  return Status::success();
}

template <class T>
Status syrk(const Context&, Op op_a, T alpha, GroupedBatch<const T> a, T beta, GroupedBatch<T> c,
            Fill fill) {
  for (std::size_t g = 0; g < c.size(); ++g) {
    const index_t k = op_a == Op::none ? a[g].cols : a[g].rows;
    for (index_t m = 0; m < c[g].batch; ++m)
      for (index_t i = 0; i < c[g].rows; ++i)
        for (index_t j = 0; j <= i; ++j) {
          real s = 0;
          for (index_t q = 0; q < k; ++q) s += at(a[g], m, op_a, i, q) * at(a[g], m, op_a, j, q);
          real r = static_cast<real>(alpha) * s;
          if (beta != T(0)) r += static_cast<real>(beta) * static_cast<real>(c[g](m, i, j));
          c[g](m, i, j) = static_cast<T>(r);
          if (fill == Fill::full) c[g](m, j, i) = c[g](m, i, j);
        }
  }
  return Status::success();
}

template <class T>
Status mode_product(const Context&, TensorBatch<const T> x, int mode, MatrixBatch<const T> u,
                    TensorBatch<T> y, Op op_u) {
  for (index_t b = 0; b < x.batch; ++b)
    store_tensor(y, b, mode_product_one(load_tensor(x, b), mode, u, b, op_u));
  return Status::success();
}

template <class T>
Status mode_product_chain(const Context&, TensorBatch<const T> x,
                          std::span<const MatrixBatch<const T>> u, TensorBatch<T> y, Op op_u) {
  for (index_t b = 0; b < x.batch; ++b) {
    Tensor t = load_tensor(x, b);
    for (int k = 0; k < x.order; ++k)
      if (u[static_cast<std::size_t>(k)].data != nullptr)
        t = mode_product_one(t, k, u[static_cast<std::size_t>(k)], b, op_u);
    store_tensor(y, b, t);
  }
  return Status::success();
}

template <class T>
Status mode_gram(const Context&, TensorBatch<const T> x, std::span<const MatrixBatch<T>> grams,
                 const ModeGramOptions& o) {
  for (int k = 0; k < x.order; ++k) {
    const MatrixBatch<T>& s = grams[static_cast<std::size_t>(k)];
    if (s.data == nullptr) continue;
    const index_t d = x.dims[k];
    for (index_t b = 0; b < x.batch; ++b) {
      // mat_k(X): column c enumerates the other indices in row-major order.
      const Tensor t = load_tensor(x, b);
      const index_t cols = d == 0 ? 0 : t.size() / d;
      Mat mk(d, cols);
      if (t.size() > 0) {
        index_t idx[kMaxTensorOrder] = {};
        do {
          index_t c = 0;
          for (int j = 0; j < t.order; ++j)
            if (j != k) c = c * t.dims[j] + idx[j];
          mk(idx[k], c) = t.v[static_cast<std::size_t>(offset(t.dims, t.order, idx))];
        } while (next_index(t.dims, t.order, idx));
      }
      for (index_t i = 0; i < d; ++i)
        for (index_t j = 0; j <= i; ++j) {
          real g = 0;
          for (index_t c = 0; c < cols; ++c) g += mk(i, c) * mk(j, c);
          real r = (1.0L - o.beta) * static_cast<real>(o.scale) * g;
          if (o.beta != 0) r += static_cast<real>(o.beta) * static_cast<real>(s(b, i, j));
          s(b, i, j) = static_cast<T>(r);
          if (o.fill == Fill::full) s(b, j, i) = s(b, i, j);
        }
    }
  }
  return Status::success();
}

template <class T>
Status tnt_normalize(const Context&, std::span<const MatrixBatch<T>> grams, int* info) {
  const int order = static_cast<int>(grams.size());
  const index_t batch = grams[0].batch;
  for (index_t b = 0; b < batch; ++b) {
    real mean_trace = 0, prod = 1;
    bool finite = true;
    for (const auto& s : grams) {
      real t = 0;
      for (index_t i = 0; i < s.rows; ++i) t += static_cast<real>(s(b, i, i));
      finite = finite && std::isfinite(t);
      mean_trace += t / order;
      prod *= static_cast<real>(s.rows);
    }
    info[b] = !finite ? -1 : (mean_trace > 0 ? 0 : 1);
    if (info[b] == 1) continue;
    const real c0 = std::pow(mean_trace / prod, 1.0L / order);
    for (const auto& s : grams) {
      // U_i = S_i / (c0^{K-1} prod_{j != i} d_j)
      const real divisor = std::pow(c0, static_cast<real>(order - 1)) * (prod / s.rows);
      for (index_t i = 0; i < s.rows; ++i)
        for (index_t j = 0; j < s.cols; ++j)
          s(b, i, j) = finite ? static_cast<T>(static_cast<real>(s(b, i, j)) / divisor)
                              : std::numeric_limits<T>::quiet_NaN();
    }
  }
  return Status::success();
}

template <class T>
Status kfac_pi_damping(const Context&, GroupedBatch<const T> a_factors,
                       GroupedBatch<const T> g_factors, double lambda, T* shift_a, T* shift_g,
                       int* info) {
  const real root_lambda = std::sqrt(static_cast<real>(lambda));
  index_t at = 0;
  for (std::size_t l = 0; l < a_factors.size(); ++l)
    for (index_t b = 0; b < a_factors[l].batch; ++b, ++at) {
      // Mean diagonal entry (the mean eigenvalue); an empty factor has mean 0.
      auto mean_diagonal = [b](const MatrixBatch<const T>& f) {
        real t = 0;
        for (index_t i = 0; i < f.rows; ++i) t += static_cast<real>(f(b, i, i));
        return f.rows == 0 ? t : t / static_cast<real>(f.rows);
      };
      const real t_a = mean_diagonal(a_factors[l]), t_g = mean_diagonal(g_factors[l]);
      real pi = 1;
      if (!std::isfinite(t_a) || !std::isfinite(t_g)) {
        info[at] = -1;
        shift_a[at] = shift_g[at] = std::numeric_limits<T>::quiet_NaN();
        continue;
      }
      if (t_a > 0 && t_g > 0) {
        pi = std::sqrt(t_a / t_g);
        info[at] = 0;
      } else {
        info[at] = 1;
      }
      shift_a[at] = static_cast<T>(pi * root_lambda);
      shift_g[at] = static_cast<T>(root_lambda / pi);
    }
  return Status::success();
}

template <class T>
Status kron_apply(const Context&, GroupedBatch<const T> g_factor, GroupedBatch<const T> a_factor,
                  GroupedBatch<const T> grad, GroupedBatch<T> out, const KronApplyOptions& o) {
  for (std::size_t l = 0; l < grad.size(); ++l) {
    const index_t d_out = grad[l].rows, d_in = grad[l].cols;
    for (index_t b = 0; b < grad[l].batch; ++b) {
      const bool chol = o.form == KronFactor::cholesky;
      Mat gi = chol ? inverse(lower_product(g_factor[l], b)) : load_full(g_factor[l], b);
      Mat ai = chol ? inverse(lower_product(a_factor[l], b)) : load_full(a_factor[l], b);
      Mat x = load_full(grad[l], b), t(d_out, d_in);
      for (index_t i = 0; i < d_out; ++i)
        for (index_t j = 0; j < d_in; ++j) {
          real s = 0;
          for (index_t q = 0; q < d_out; ++q) s += gi(i, q) * x(q, j);
          t(i, j) = s;
        }
      for (index_t i = 0; i < d_out; ++i)
        for (index_t j = 0; j < d_in; ++j) {
          real s = 0;
          for (index_t q = 0; q < d_in; ++q) s += t(i, q) * ai(q, j);
          out[l](b, i, j) = static_cast<T>(static_cast<real>(o.alpha) * s);
        }
    }
  }
  return Status::success();
}

}  // namespace curvkit::reference

CURVKIT_INSTANTIATE_KRON_BACKEND(reference)

namespace curvkit::reference {
template Status mode_product_chain<float>(const Context&, TensorBatch<const float>,
                                          std::span<const MatrixBatch<const float>>,
                                          TensorBatch<float>, Op);
template Status mode_product_chain<double>(const Context&, TensorBatch<const double>,
                                           std::span<const MatrixBatch<const double>>,
                                           TensorBatch<double>, Op);
}  // namespace curvkit::reference
