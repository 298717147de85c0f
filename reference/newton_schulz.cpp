// Reference backend of the Newton–Schulz family (newton_schulz.hpp): the test oracle for the
// iterations themselves.  The same steps as the contract in long double with plain loops
// (T^p of the inverse root by p - 1 products, not by squaring).  How close an iterate is to
// the true matrix function is checked in the tests against eigendecompositions, not here.
// It shares no code with the backends it checks.
#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "newton_schulz_backends.hpp"

namespace curvkit::reference {
namespace {

using real = long double;

struct Mat {
  index_t r = 0, c = 0;
  std::vector<real> v;
  Mat(index_t rows, index_t cols, real fill = 0)
      : r(rows), c(cols), v(std::size_t(rows * cols), fill) {}
  real& operator()(index_t i, index_t j) { return v[std::size_t(i * c + j)]; }
  real operator()(index_t i, index_t j) const { return v[std::size_t(i * c + j)]; }
};

Mat identity(index_t n, real scale = 1) {
  Mat m(n, n);
  for (index_t i = 0; i < n; ++i) m(i, i) = scale;
  return m;
}

// x^T (tx) or x, times y^T (ty) or y.
Mat product(const Mat& x, bool tx, const Mat& y, bool ty) {
  const index_t rows = tx ? x.c : x.r, inner = tx ? x.r : x.c, cols = ty ? y.r : y.c;
  Mat z(rows, cols);
  for (index_t i = 0; i < rows; ++i)
    for (index_t j = 0; j < cols; ++j) {
      real s = 0;
      for (index_t k = 0; k < inner; ++k) s += (tx ? x(k, i) : x(i, k)) * (ty ? y(j, k) : y(k, j));
      z(i, j) = s;
    }
  return z;
}
Mat product(const Mat& x, const Mat& y) {
  return product(x, false, y, false);
}

// alpha x + beta y.
Mat combine(real alpha, const Mat& x, real beta, const Mat& y) {
  Mat z(x.r, x.c);
  for (std::size_t e = 0; e < z.v.size(); ++e) z.v[e] = alpha * x.v[e] + beta * y.v[e];
  return z;
}

real frobenius(const Mat& x) {
  real s = 0;
  for (real e : x.v) s += e * e;
  return std::sqrt(s);
}

// ||I - x||_F / sqrt(n).
real residual(const Mat& x) {
  real s = 0;
  for (index_t i = 0; i < x.r; ++i)
    for (index_t j = 0; j < x.c; ++j) {
      const real d = (i == j ? 1 : 0) - x(i, j);
      s += d * d;
    }
  return std::sqrt(s / real(std::max<index_t>(x.r, 1)));
}

template <class T>
Mat load(const MatrixBatch<const T>& a, index_t b, real eps) {
  Mat m(a.rows, a.cols);
  for (index_t i = 0; i < a.rows; ++i)
    for (index_t j = 0; j < a.cols; ++j) m(i, j) = real(a(b, i, j)) + (i == j ? eps : 0);
  return m;
}

template <class T>
void store(const MatrixBatch<T>& out, index_t b, const Mat& m, real scale) {
  if (out.data == nullptr) return;
  for (index_t i = 0; i < out.rows; ++i)
    for (index_t j = 0; j < out.cols; ++j) out(b, i, j) = static_cast<T>(scale * m(i, j));
}

template <class T>
void store_nan(const MatrixBatch<T>& out, index_t b) {
  if (out.data == nullptr) return;
  for (index_t i = 0; i < out.rows; ++i)
    for (index_t j = 0; j < out.cols; ++j) out(b, i, j) = std::numeric_limits<T>::quiet_NaN();
}

bool finite(const Mat& m) {
  for (real e : m.v)
    if (!std::isfinite(e)) return false;
  return true;
}

// Checks common to every op before iterating; returns the info code (0: go on).
int screen(const Mat& a, bool needs_spd) {
  if (!finite(a)) return -1;
  if (frobenius(a) == 0) return 2;
  if (needs_spd)
    for (index_t i = 0; i < a.r; ++i)
      if (!(a(i, i) > 0)) return 3;
  return 0;
}

// The loop every op shares: `step` advances the iterate and returns its residual.  Returns
// info and sets *steps (the contract's stopping and divergence rules).
template <class Step>
int iterate(const NewtonSchulzOptions& o, int max_steps, bool residual_stop, real r0, Step step,
            int* steps, real* r_out) {
  real r = r0;
  int k = 0;
  int code = 0;
  while (k < max_steps) {
    if (residual_stop && r <= real(o.tolerance)) break;
    const real next = step();
    ++k;
    if (!std::isfinite(next) || next > 2 * std::max<real>(r0, 1)) {
      code = -2;
      r = next;
      break;
    }
    if (next >= r && next >= 1) {  // growing while >= 1: divergence, not the rounding floor
      code = -2;
      r = next;
      break;
    }
    const bool stalled = residual_stop && next >= r;
    r = next;
    if (stalled) break;
  }
  if (code == 0 && residual_stop && !(r <= real(o.tolerance))) code = 1;
  *steps = k;
  *r_out = r;
  return code;
}

template <class T>
void report(const NsReport<T>& rep, index_t idx, int code, int steps, real r) {
  rep.info[idx] = code;
  if (rep.iterations) rep.iterations[idx] = steps;
  if (rep.residual) rep.residual[idx] = static_cast<T>(r);
}

}  // namespace

template <class T>
std::size_t newton_schulz_workspace_size(const Context&, GroupedBatch<const T>) {
  return 0;
}

template <class T>
Status newton_schulz_inverse(const Context&, GroupedBatch<const T> a, GroupedBatch<T> x,
                             NsReport<T> rep, const NewtonSchulzOptions& o) {
  index_t idx = 0;
  for (std::size_t g = 0; g < a.size(); ++g)
    for (index_t b = 0; b < a[g].batch; ++b, ++idx) {
      const index_t n = a[g].rows;
      const Mat ad = load(a[g], b, real(o.epsilon));
      if (const int code = screen(ad, false); code != 0) {
        store_nan(x[g], b);
        report(rep, idx, code, 0, std::numeric_limits<real>::quiet_NaN());
        continue;
      }
      real norm1 = 0, norminf = 0;
      for (index_t j = 0; j < n; ++j) {
        real col = 0, row = 0;
        for (index_t i = 0; i < n; ++i) {
          col += std::abs(ad(i, j));
          row += std::abs(ad(j, i));
        }
        norm1 = std::max(norm1, col);
        norminf = std::max(norminf, row);
      }
      Mat xk(n, n);
      for (index_t i = 0; i < n; ++i)
        for (index_t j = 0; j < n; ++j) xk(i, j) = ad(j, i) / (norm1 * norminf);
      Mat r = product(ad, xk);
      auto step = [&] {
        xk = combine(2, xk, -1, product(xk, r));  // X (2I - A X)
        r = product(ad, xk);
        return residual(r);
      };
      int steps = 0;
      real res = 0;
      const int code =
          iterate(o, o.iterations, o.stop == NsStop::residual, residual(r), step, &steps, &res);
      if (code < 0)
        store_nan(x[g], b);
      else
        store(x[g], b, xk, 1);
      report(rep, idx, code, steps, res);
    }
  return Status::success();
}

template <class T>
Status newton_schulz_sqrt(const Context&, GroupedBatch<const T> a, GroupedBatch<T> sq,
                          GroupedBatch<T> inv, NsReport<T> rep, const NewtonSchulzOptions& o) {
  index_t idx = 0;
  for (std::size_t g = 0; g < a.size(); ++g)
    for (index_t b = 0; b < a[g].batch; ++b, ++idx) {
      const index_t n = a[g].rows;
      const Mat ad = load(a[g], b, real(o.epsilon));
      if (const int code = screen(ad, true); code != 0) {
        store_nan(sq[g], b);
        store_nan(inv[g], b);
        report(rep, idx, code, 0, std::numeric_limits<real>::quiet_NaN());
        continue;
      }
      const real c = frobenius(ad);
      Mat y = combine(1 / c, ad, 0, ad), z = identity(n), w = product(z, y);
      auto step = [&] {
        const Mat t = combine(real(1.5), identity(n), real(-0.5), w);  // (3I - Z Y) / 2
        y = product(y, t);
        z = product(t, z);
        w = product(z, y);
        return residual(w);
      };
      int steps = 0;
      real res = 0;
      const int code =
          iterate(o, o.iterations, o.stop == NsStop::residual, residual(w), step, &steps, &res);
      if (code < 0) {
        store_nan(sq[g], b);
        store_nan(inv[g], b);
      } else {
        store(sq[g], b, y, std::sqrt(c));
        store(inv[g], b, z, 1 / std::sqrt(c));
      }
      report(rep, idx, code, steps, res);
    }
  return Status::success();
}

template <class T>
Status newton_schulz_inverse_root(const Context&, GroupedBatch<const T> a, int p, GroupedBatch<T> x,
                                  NsReport<T> rep, const NewtonSchulzOptions& o) {
  index_t idx = 0;
  for (std::size_t g = 0; g < a.size(); ++g)
    for (index_t b = 0; b < a[g].batch; ++b, ++idx) {
      const index_t n = a[g].rows;
      const Mat ad = load(a[g], b, real(o.epsilon));
      if (const int code = screen(ad, true); code != 0) {
        store_nan(x[g], b);
        report(rep, idx, code, 0, std::numeric_limits<real>::quiet_NaN());
        continue;
      }
      const real z = real(1 + p) / (2 * frobenius(ad));
      Mat m = combine(z, ad, 0, ad), xk = identity(n, std::pow(z, real(1) / real(p)));
      auto step = [&] {
        const Mat t = combine(1 + real(1) / real(p), identity(n), -real(1) / real(p), m);
        xk = product(xk, t);
        for (int q = 0; q < p; ++q) m = product(t, m);  // M <- T^p M
        return residual(m);
      };
      int steps = 0;
      real res = 0;
      const int code =
          iterate(o, o.iterations, o.stop == NsStop::residual, residual(m), step, &steps, &res);
      if (code < 0)
        store_nan(x[g], b);
      else
        store(x[g], b, xk, 1);
      report(rep, idx, code, steps, res);
    }
  return Status::success();
}

template <class T>
Status newton_schulz_polar(const Context&, GroupedBatch<const T> a, GroupedBatch<T> u,
                           NsReport<T> rep, const NewtonSchulzOptions& o, const PolarOptions& po) {
  index_t idx = 0;
  for (std::size_t g = 0; g < a.size(); ++g)
    for (index_t b = 0; b < a[g].batch; ++b, ++idx) {
      const bool tall = a[g].rows >= a[g].cols;
      const Mat a0 = load(a[g], b, 0);
      if (const int code = screen(a0, false); code != 0) {
        store_nan(u[g], b);
        report(rep, idx, code, 0, std::numeric_limits<real>::quiet_NaN());
        continue;
      }
      Mat x = combine(1 / frobenius(a0), a0, 0, a0);
      auto gram = [&] { return tall ? product(x, true, x, false) : product(x, false, x, true); };
      Mat bm = gram();
      const index_t k = bm.r;
      bool cubic = po.schedule == PolarSchedule::cubic;
      auto step = [&] {
        // Cubic: X (3I - B) / 2; quintic: a X + (b B + c B^2) X, on the side of the Gram.
        const Mat poly = cubic ? combine(real(1.5), identity(k), real(-0.5), bm)
                               : combine(real(po.a), identity(k), 1,
                                         combine(real(po.b), bm, real(po.c), product(bm, bm)));
        x = tall ? product(x, poly) : product(poly, x);
        bm = gram();
        return residual(bm);
      };
      const real r0 = residual(bm);
      int steps = 0;
      real res = r0;
      int code = iterate(o, o.iterations,
                         o.stop == NsStop::residual && po.schedule != PolarSchedule::convergent, r0,
                         step, &steps, &res);
      if (code == 0 && po.schedule == PolarSchedule::convergent) {
        cubic = true;
        int more = 0;
        code = iterate(o, po.cubic_iterations, true, res, step, &more, &res);
        steps += more;
      }
      if (code < 0)
        store_nan(u[g], b);
      else
        store(u[g], b, x, 1);
      report(rep, idx, code, steps, res);
    }
  return Status::success();
}

}  // namespace curvkit::reference

CURVKIT_INSTANTIATE_NS_BACKEND(reference)
