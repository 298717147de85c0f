// Reference backend of the Khatri–Rao family (khatri_rao.hpp): the test oracle.  Plain loops
// in long double, from the definitions:
//   khatri_rao_gram   K_ij = sum_{t,t'} (a_{i,t}.a_{j,t'} + bias)(g_{i,t}.g_{j,t'}) for every
//                     pair and every position pair (no tiles, no per-sample gradients, no path
//                     choice: both backend paths are checked against this one formula)
//   khatri_rao_jv     u_i = sum_t g_{i,t}^T V a~_{i,t}, element by element
//   khatri_rao_jtu    V = sum_i u_i sum_t g_{i,t} a~_{i,t}^T, element by element
//   layer sums, coarse Gram: the sums and Grams written out
// It shares no code with the backends it checks.
#include <vector>

#include "khatri_rao_backends.hpp"

namespace curvkit::reference {
namespace {

using real = long double;

// Element (b, r, c) of layer input `a` with the bias column: c == a.cols is the trailing 1.
template <class T>
real augmented(const MatrixBatch<const T>& a, index_t b, index_t r, index_t c) {
  return c == a.cols ? real(1) : real(a(b, r, c));
}

template <class T>
real dot_rows(const MatrixBatch<const T>& x, index_t b, index_t r1, index_t r2) {
  real s = 0;
  for (index_t c = 0; c < x.cols; ++c) s += real(x(b, r1, c)) * real(x(b, r2, c));
  return s;
}

// sum_{t,t'} (a_{i,t}.a_{j,t'} + bias)(g_{i,t}.g_{j,t'}) of one layer.
template <class T>
real gram_entry(const MatrixBatch<const T>& a, const MatrixBatch<const T>& g, index_t b, index_t s,
                index_t i, index_t j, bool bias) {
  real sum = 0;
  for (index_t t = 0; t < s; ++t)
    for (index_t u = 0; u < s; ++u) {
      const index_t ri = i * s + t, rj = j * s + u;
      sum += (dot_rows(a, b, ri, rj) + (bias ? 1 : 0)) * dot_rows(g, b, ri, rj);
    }
  return sum;
}

// out = alpha sum + beta out, out not read when beta == 0.
template <class T>
void store(T& out, real alpha, real sum, real beta) {
  out = static_cast<T>(beta == 0 ? alpha * sum : alpha * sum + beta * real(out));
}

}  // namespace

template <class T>
Status khatri_rao_gram(const Context&, GroupedBatch<const T> a, GroupedBatch<const T> g,
                       GroupedBatch<T> k, const KhatriRaoOptions& o) {
  const bool summed = k.size() == 1;
  for (std::size_t out = 0; out < k.size(); ++out) {
    const MatrixBatch<T>& kk = k[out];
    const index_t m = kk.rows;
    for (index_t b = 0; b < kk.batch; ++b)
      for (index_t i = 0; i < m; ++i)
        for (index_t j = 0; j <= i; ++j) {
          real sum = 0;
          for (std::size_t l = summed ? 0 : out; l < (summed ? a.size() : out + 1); ++l)
            sum += gram_entry(a[l], g[l], b, detail::positions(a[l].rows, m), i, j, o.bias);
          store(kk(b, i, j), real(o.alpha), sum, real(o.beta));
          if (o.fill == Fill::full && j < i) kk(b, j, i) = kk(b, i, j);
        }
  }
  return Status::success();
}

template <class T>
Status khatri_rao_jv(const Context&, GroupedBatch<const T> a, GroupedBatch<const T> g,
                     GroupedBatch<const T> v, GroupedBatch<T> u, const KhatriRaoOptions& o) {
  const bool summed = u.size() == 1;
  for (std::size_t out = 0; out < u.size(); ++out) {
    const MatrixBatch<T>& uu = u[out];
    const index_t m = uu.rows;
    for (index_t b = 0; b < uu.batch; ++b)
      for (index_t i = 0; i < m; ++i) {
        real sum = 0;
        for (std::size_t l = summed ? 0 : out; l < (summed ? a.size() : out + 1); ++l) {
          const index_t s = detail::positions(a[l].rows, m);
          for (index_t t = 0; t < s; ++t)
            for (index_t p = 0; p < g[l].cols; ++p)
              for (index_t c = 0; c < v[l].cols; ++c)
                sum += real(g[l](b, i * s + t, p)) * real(v[l](b, p, c)) *
                       augmented(a[l], b, i * s + t, c);
        }
        store(uu(b, i, 0), real(o.alpha), sum, real(o.beta));
      }
  }
  return Status::success();
}

template <class T>
Status khatri_rao_jtu(const Context&, GroupedBatch<const T> a, GroupedBatch<const T> g,
                      GroupedBatch<const T> u, GroupedBatch<T> v, const KhatriRaoOptions& o) {
  for (std::size_t l = 0; l < v.size(); ++l) {
    const MatrixBatch<const T>& uu = u[u.size() == 1 ? 0 : l];
    const index_t m = uu.rows, s = detail::positions(a[l].rows, m);
    for (index_t b = 0; b < v[l].batch; ++b)
      for (index_t p = 0; p < v[l].rows; ++p)
        for (index_t c = 0; c < v[l].cols; ++c) {
          real sum = 0;
          for (index_t i = 0; i < m; ++i)
            for (index_t t = 0; t < s; ++t)
              sum += real(uu(b, i, 0)) * real(g[l](b, i * s + t, p)) *
                     augmented(a[l], b, i * s + t, c);
          store(v[l](b, p, c), real(o.alpha), sum, real(o.beta));
        }
  }
  return Status::success();
}

template <class T>
Status khatri_rao_layer_sums(const Context&, GroupedBatch<const T> x, MatrixBatch<T> sums,
                             bool bias) {
  const index_t m = sums.rows;
  for (std::size_t l = 0; l < x.size(); ++l) {
    const index_t s = detail::positions(x[l].rows, m);
    for (index_t b = 0; b < sums.batch; ++b)
      for (index_t i = 0; i < m; ++i) {
        real sum = bias ? real(s) : real(0);
        for (index_t t = 0; t < s; ++t)
          for (index_t c = 0; c < x[l].cols; ++c) sum += real(x[l](b, i * s + t, c));
        sums(b, i, static_cast<index_t>(l)) = static_cast<T>(sum);
      }
  }
  return Status::success();
}

template <class T>
Status coarse_gram(const Context&, MatrixBatch<const T> sums_a, MatrixBatch<const T> sums_g,
                   MatrixBatch<T> s_a, MatrixBatch<T> s_g, MatrixBatch<T> f,
                   const CoarseGramOptions& o) {
  const index_t m = sums_a.rows, layers = sums_a.cols;
  const real beta = real(o.beta), w = m > 0 ? (1 - beta) / real(m) : real(0);
  for (index_t b = 0; b < sums_a.batch; ++b)
    for (index_t i = 0; i < layers; ++i)
      for (index_t j = 0; j < layers; ++j) {
        real sa = 0, sg = 0;
        for (index_t r = 0; r < m; ++r) {
          sa += real(sums_a(b, r, i)) * real(sums_a(b, r, j));
          sg += real(sums_g(b, r, i)) * real(sums_g(b, r, j));
        }
        store(s_a(b, i, j), w, sa, beta);
        store(s_g(b, i, j), w, sg, beta);
        f(b, i, j) = static_cast<T>(real(s_a(b, i, j)) * real(s_g(b, i, j)));
      }
  return Status::success();
}

}  // namespace curvkit::reference

CURVKIT_INSTANTIATE_KHATRI_RAO_BACKEND(reference)
