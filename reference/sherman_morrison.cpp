// Reference backend of the Sherman–Morrison / Woodbury family: the test oracle.  Plain loops
// in long double, one matrix at a time, written from the textbook forms rather than the fast
// ones, so that a test compares two different computations:
//   rank1_update   the sequential chain, one vector at a time (backends use chunks)
//   woodbury_solve the dense solve of lambda I + U C U^T (backends never form it)
//   bfgs_update    the product form (I - rho s y^T) H (I - rho y s^T) + rho s s^T
//   hessian_action_pair  A = scale X^T X formed explicitly
//   lbfgs_*        H_p formed densely by the recursion H_i = V_i^T H_{i-1} V_i + rho_i s_i s_i^T
// It shares no code with the backends it checks.
#include <cmath>
#include <limits>
#include <vector>

#include "sherman_morrison_backends.hpp"

namespace curvkit::reference {
namespace {

using real = long double;
constexpr real nan_value = std::numeric_limits<real>::quiet_NaN();

// A dense rows x cols working matrix, row-major.
struct Mat {
  index_t rows = 0, cols = 0;
  std::vector<real> v;
  Mat(index_t r, index_t c) : rows(r), cols(c), v(static_cast<std::size_t>(r * c), 0.0L) {}
  real& operator()(index_t i, index_t j) { return v[static_cast<std::size_t>(i * cols + j)]; }
  real operator()(index_t i, index_t j) const { return v[static_cast<std::size_t>(i * cols + j)]; }
};

template <class T>
Mat load(const MatrixBatch<T>& a, index_t b) {
  Mat m(a.rows, a.cols);
  for (index_t i = 0; i < a.rows; ++i)
    for (index_t j = 0; j < a.cols; ++j) m(i, j) = static_cast<real>(a(b, i, j));
  return m;
}

// The symmetric matrix whose lower triangle is matrix b of `a`.
template <class T>
Mat load_symmetric(const MatrixBatch<T>& a, index_t b) {
  Mat m(a.rows, a.rows);
  for (index_t i = 0; i < a.rows; ++i)
    for (index_t j = 0; j <= i; ++j) m(i, j) = m(j, i) = static_cast<real>(a(b, i, j));
  return m;
}

// Stores m (or NaN when !ok) into matrix b of `a`.
template <class T>
void store(const MatrixBatch<T>& a, index_t b, const Mat& m, bool ok) {
  for (index_t i = 0; i < a.rows; ++i)
    for (index_t j = 0; j < a.cols; ++j) a(b, i, j) = static_cast<T>(ok ? m(i, j) : nan_value);
}

// Stores the symmetric matrix m's lower triangle into matrix b of `a`, and mirrors it into the
// upper triangle unless `lower_only` (the two triangles of the computed m differ by rounding).
template <class T>
void store_symmetric(const MatrixBatch<T>& a, index_t b, const Mat& m, bool ok, bool lower_only) {
  for (index_t i = 0; i < a.rows; ++i)
    for (index_t j = 0; j <= i; ++j) {
      const T v = static_cast<T>(ok ? m(i, j) : nan_value);
      a(b, i, j) = v;
      if (!lower_only) a(b, j, i) = v;
    }
}

Mat multiply(const Mat& a, const Mat& b) {
  Mat c(a.rows, b.cols);
  for (index_t i = 0; i < a.rows; ++i)
    for (index_t p = 0; p < a.cols; ++p)
      for (index_t j = 0; j < b.cols; ++j) c(i, j) += a(i, p) * b(p, j);
  return c;
}

real dot(const std::vector<real>& x, const std::vector<real>& y) {
  real s = 0;
  for (std::size_t i = 0; i < x.size(); ++i) s += x[i] * y[i];
  return s;
}

std::vector<real> matvec(const Mat& a, const std::vector<real>& x) {
  std::vector<real> y(static_cast<std::size_t>(a.rows), 0.0L);
  for (index_t i = 0; i < a.rows; ++i)
    for (index_t j = 0; j < a.cols; ++j) y[i] += a(i, j) * x[j];
  return y;
}

template <class T>
std::vector<real> row(const MatrixBatch<T>& a, index_t b, index_t i) {
  std::vector<real> r(static_cast<std::size_t>(a.cols));
  for (index_t j = 0; j < a.cols; ++j) r[j] = static_cast<real>(a(b, i, j));
  return r;
}

// Cholesky of a symmetric matrix in place (lower triangle); returns the info code.
int cholesky(Mat& m) {
  const index_t n = m.rows;
  for (index_t j = 0; j < n; ++j) {
    real d = m(j, j);
    for (index_t k = 0; k < j; ++k) d -= m(j, k) * m(j, k);
    if (!std::isfinite(d)) return -static_cast<int>(j + 1);
    if (!(d > 0)) return static_cast<int>(j + 1);
    m(j, j) = std::sqrt(d);
    for (index_t i = j + 1; i < n; ++i) {
      real s = m(i, j);
      for (index_t k = 0; k < j; ++k) s -= m(i, k) * m(j, k);
      m(i, j) = s / m(j, j);
    }
  }
  return 0;
}

// X := (L L^T)^{-1} X for the factor in the lower triangle of l.
void cholesky_solve(const Mat& l, Mat& x) {
  const index_t n = l.rows;
  for (index_t c = 0; c < x.cols; ++c) {
    for (index_t i = 0; i < n; ++i) {
      real s = x(i, c);
      for (index_t k = 0; k < i; ++k) s -= l(i, k) * x(k, c);
      x(i, c) = s / l(i, i);
    }
    for (index_t i = n - 1; i >= 0; --i) {
      real s = x(i, c);
      for (index_t k = i + 1; k < n; ++k) s -= l(k, i) * x(k, c);
      x(i, c) = s / l(i, i);
    }
  }
}

template <class T>
real epsilon() {
  return std::numeric_limits<T>::epsilon();
}

}  // namespace

// ---- rank-1 chains ---------------------------------------------------------------------------

template <class T>
Status rank1_update(const Context&, MatrixBatch<T> hv, MatrixBatch<const T> uv, int* info,
                    const Rank1Options& o) {
  const index_t n = hv.rows;
  const real a = o.decay, c = o.weight / o.decay;
  for (index_t b = 0; b < hv.batch; ++b) {
    Mat h = load_symmetric(hv, b);
    int code = 0;
    for (index_t j = 0; j < uv.rows && code == 0; ++j) {
      const std::vector<real> u = row(uv, b, j);
      const std::vector<real> w = matvec(h, u);
      const real q = c * dot(u, w);
      const real d = 1 + q;
      if (!std::isfinite(d)) {
        code = -static_cast<int>(j + 1);
      } else if (!(d > 8 * epsilon<T>() * (1 + std::fabs(q)))) {
        code = static_cast<int>(j + 1);
      } else {
        for (index_t r = 0; r < n; ++r)
          for (index_t s = 0; s < n; ++s) h(r, s) = (h(r, s) - c * w[r] * w[s] / d) / a;
      }
    }
    store_symmetric(hv, b, h, code == 0, !o.mirror_upper);
    info[b] = code;
  }
  return Status::success();
}

// ---- Woodbury --------------------------------------------------------------------------------

template <class T>
Status woodbury_solve(const Context&, MatrixBatch<const T> ut, MatrixBatch<T> bv, int* info,
                      const WoodburyOptions& o, MatrixBatch<const T> cv, MatrixBatch<const T>) {
  const index_t k = ut.rows, n = ut.cols;
  for (index_t b = 0; b < ut.batch; ++b) {
    // C as a dense k x k matrix; a given SPD C must factor (its failure is reported as k + i).
    Mat c(k, k);
    int code = 0;
    if (o.c_form == WoodburyC::scalar) {
      for (index_t i = 0; i < k; ++i) c(i, i) = o.c_scale;
    } else if (o.c_form == WoodburyC::diagonal) {
      for (index_t i = 0; i < k; ++i) {
        c(i, i) = cv(b, 0, i);
        if (!std::isfinite(c(i, i)))
          code = code ? code : -static_cast<int>(k + i + 1);
        else if (!(c(i, i) > 0))
          code = code ? code : static_cast<int>(k + i + 1);
      }
    } else {
      c = load_symmetric(cv, b);
      Mat l = c;
      const int cc = cholesky(l);
      if (cc != 0) code = cc > 0 ? cc + static_cast<int>(k) : cc - static_cast<int>(k);
    }
    // G = lambda I + U C U^T (n x n), U(i, p) = ut(p, i); the gram argument is not used: the
    // oracle computes everything from U.
    Mat g(n, n);
    if (code == 0) {
      Mat u(n, k);
      for (index_t i = 0; i < n; ++i)
        for (index_t p = 0; p < k; ++p) u(i, p) = ut(b, p, i);
      const Mat uc = multiply(u, c);
      for (index_t i = 0; i < n; ++i)
        for (index_t j = 0; j < n; ++j) {
          real s = i == j ? real(o.lambda) : 0.0L;
          for (index_t p = 0; p < k; ++p) s += uc(i, p) * u(j, p);
          g(i, j) = s;
        }
      code = cholesky(g);
    }
    Mat x = load(bv, b);
    if (code == 0) cholesky_solve(g, x);
    store(bv, b, x, code == 0);
    info[b] = code;
  }
  return Status::success();
}

// ---- BFGS --------------------------------------------------------------------------------

template <class T>
Status bfgs_update(const Context&, MatrixBatch<T> hv, MatrixBatch<const T> sv,
                   MatrixBatch<const T> yv, int* info, const BfgsOptions& o, const int* skip_mask,
                   int* skipped) {
  const index_t n = hv.rows;
  const real min_curvature = o.min_curvature > 0 ? real(o.min_curvature) : n * epsilon<T>();
  for (index_t b = 0; b < hv.batch; ++b) {
    info[b] = 0;
    if (skipped) skipped[b] = 0;
    if (skip_mask && skip_mask[b] != 0) continue;
    Mat h = load_symmetric(hv, b);
    int code = 0;
    for (index_t j = 0; j < sv.rows && code == 0; ++j) {
      const std::vector<real> s = row(sv, b, j), y = row(yv, b, j);
      const real sy = dot(s, y);
      const real yhy = dot(y, matvec(h, y));
      if (!std::isfinite(sy) || !std::isfinite(yhy)) {
        code = -static_cast<int>(j + 1);
        break;
      }
      if (!(sy > min_curvature * std::sqrt(dot(s, s) * dot(y, y)))) {
        if (o.skip_rejected) {
          if (skipped) ++skipped[b];
          continue;
        }
        code = static_cast<int>(j + 1);
        break;
      }
      // V = I - rho y s^T;  H+ = V^T H V + rho s s^T.
      const real rho = 1 / sy;
      Mat v(n, n);
      for (index_t r = 0; r < n; ++r)
        for (index_t q = 0; q < n; ++q) v(r, q) = (r == q ? 1 : 0) - rho * y[r] * s[q];
      Mat vt(n, n);
      for (index_t r = 0; r < n; ++r)
        for (index_t q = 0; q < n; ++q) vt(r, q) = v(q, r);
      h = multiply(multiply(vt, h), v);
      for (index_t r = 0; r < n; ++r)
        for (index_t q = 0; q < n; ++q) h(r, q) += rho * s[r] * s[q];
    }
    store_symmetric(hv, b, h, code == 0, !o.mirror_upper);
    info[b] = code;
  }
  return Status::success();
}

template <class T>
Status bfgs_damping(const Context&, MatrixBatch<const T> hv, MatrixBatch<T> sv, MatrixBatch<T> yv,
                    int* info, const DampingOptions& o, T* theta, int* skip) {
  const index_t n = sv.cols;
  const real mu1 = o.mu1, mu2 = o.mu2;
  for (index_t b = 0; b < sv.batch; ++b) {
    std::vector<real> s = row(sv, b, 0), y = row(yv, b, 0);
    // Powell damping on H.
    std::vector<real> hy;
    if (o.scheme == DampingScheme::powell_lm_hy) {
      hy = row(hv, b, 0);
    } else {
      Mat h(n, n);
      if (o.scheme == DampingScheme::powell_identity_lm)
        for (index_t i = 0; i < n; ++i) h(i, i) = 1 / mu2;
      else
        h = load_symmetric(hv, b);
      hy = matvec(h, y);
    }
    const real sy = dot(s, y), yhy = dot(y, hy);
    const real theta1 = sy < mu1 * yhy ? (1 - mu1) * yhy / (yhy - sy) : 1.0L;
    for (index_t i = 0; i < n; ++i) s[i] = theta1 * s[i] + (1 - theta1) * hy[i];
    real theta2 = 1;
    if (o.scheme == DampingScheme::double_damping) {  // Powell with B = I
      const real ss = dot(s, s), sy2 = dot(s, y);
      theta2 = sy2 < mu2 * ss ? (1 - mu2) * ss / (ss - sy2) : 1.0L;
      for (index_t i = 0; i < n; ++i) y[i] = theta2 * y[i] + (1 - theta2) * s[i];
    } else {  // Levenberg–Marquardt
      for (index_t i = 0; i < n; ++i) y[i] += mu2 * s[i];
    }
    bool ok = std::isfinite(theta1) && std::isfinite(theta2);
    for (index_t i = 0; i < n; ++i) ok = ok && std::isfinite(s[i]) && std::isfinite(y[i]);
    int flag = 0;
    if (o.skip_test && ok) {
      const Mat hs = load_symmetric(hv, b);
      const real bound = mu1 * dot(y, matvec(hs, y));  // met with equality to rounding: no skip
      flag = dot(s, y) < bound - 8 * n * epsilon<T>() * std::fabs(bound) ? 1 : 0;
    }
    for (index_t i = 0; i < n; ++i) {
      sv(b, 0, i) = static_cast<T>(ok ? s[i] : nan_value);
      yv(b, 0, i) = static_cast<T>(ok ? y[i] : nan_value);
    }
    if (theta) {
      theta[2 * b] = static_cast<T>(ok ? theta1 : nan_value);
      theta[2 * b + 1] = static_cast<T>(ok ? theta2 : nan_value);
    }
    if (skip) skip[b] = flag;
    info[b] = ok ? 0 : -1;
  }
  return Status::success();
}

template <class T>
Status hessian_action_pair(const Context&, MatrixBatch<const T> hv, MatrixBatch<const T> av,
                           MatrixBatch<const T> xv, MatrixBatch<T> sv, MatrixBatch<T> yv, int* info,
                           const HessianActionOptions& o) {
  const index_t n = hv.rows, m = xv.rows;
  const real scale = o.scale > 0 ? real(o.scale) : (m > 0 ? 1.0L / m : 0.0L);
  for (index_t b = 0; b < hv.batch; ++b) {
    const std::vector<real> s = matvec(load_symmetric(hv, b), row(av, b, 0));
    Mat a(n, n);  // scale X^T X + lambda I
    for (index_t r = 0; r < m; ++r)
      for (index_t i = 0; i < n; ++i)
        for (index_t j = 0; j < n; ++j) a(i, j) += scale * xv(b, r, i) * xv(b, r, j);
    for (index_t i = 0; i < n; ++i) a(i, i) += o.lambda;
    const std::vector<real> y = matvec(a, s);
    bool ok = true;
    for (index_t i = 0; i < n; ++i) ok = ok && std::isfinite(s[i]) && std::isfinite(y[i]);
    for (index_t i = 0; i < n; ++i) {
      sv(b, 0, i) = static_cast<T>(ok ? s[i] : nan_value);
      yv(b, 0, i) = static_cast<T>(ok ? y[i] : nan_value);
    }
    info[b] = ok ? 0 : -1;
  }
  return Status::success();
}

// ---- L-BFGS: both ops against the dense recursion ---------------------------------------------

namespace {

// H_p for matrix b, or the info code of the first bad pair.  Zero pairs under skip_zero_pairs
// are left out.
template <class T>
int dense_lbfgs(MatrixBatch<const T> sv, MatrixBatch<const T> yv, index_t b, const LbfgsOptions& o,
                Mat& h) {
  const index_t p = sv.rows, d = sv.cols;
  std::vector<index_t> kept;
  for (index_t i = 0; i < p; ++i) {
    const std::vector<real> s = row(sv, b, i), y = row(yv, b, i);
    if (o.skip_zero_pairs && dot(s, s) == 0 && dot(y, y) == 0) continue;
    const real sy = dot(s, y);
    if (!std::isfinite(sy)) return -static_cast<int>(i + 1);
    if (!(sy > 0)) return static_cast<int>(i + 1);
    kept.push_back(i);
  }
  real gamma = o.gamma;
  if (gamma <= 0) {
    gamma = 1;
    if (!kept.empty()) {
      const std::vector<real> s = row(sv, b, kept.back()), y = row(yv, b, kept.back());
      gamma = dot(s, y) / dot(y, y);
    }
  }
  h = Mat(d, d);
  for (index_t i = 0; i < d; ++i) h(i, i) = gamma;
  for (index_t i : kept) {
    const std::vector<real> s = row(sv, b, i), y = row(yv, b, i);
    const real rho = 1 / dot(s, y);
    Mat v(d, d), vt(d, d);
    for (index_t r = 0; r < d; ++r)
      for (index_t q = 0; q < d; ++q) {
        v(r, q) = (r == q ? 1 : 0) - rho * y[r] * s[q];
        vt(q, r) = v(r, q);
      }
    h = multiply(multiply(vt, h), v);
    for (index_t r = 0; r < d; ++r)
      for (index_t q = 0; q < d; ++q) h(r, q) += rho * s[r] * s[q];
  }
  return 0;
}

template <class T>
Status dense_lbfgs_apply(MatrixBatch<const T> sv, MatrixBatch<const T> yv, MatrixBatch<T> xv,
                         int* info, const LbfgsOptions& o) {
  for (index_t b = 0; b < sv.batch; ++b) {
    Mat h(0, 0);
    const int code = dense_lbfgs(sv, yv, b, o, h);
    Mat x = load(xv, b);
    if (code == 0) x = multiply(h, x);
    store(xv, b, x, code == 0);
    info[b] = code;
  }
  return Status::success();
}

}  // namespace

template <class T>
Status lbfgs_apply(const Context&, MatrixBatch<const T> s, MatrixBatch<const T> y, MatrixBatch<T> x,
                   int* info, const LbfgsOptions& o, MatrixBatch<const T>, MatrixBatch<const T>) {
  return dense_lbfgs_apply(s, y, x, info, o);
}

template <class T>
Status lbfgs_two_loop(const Context&, MatrixBatch<const T> s, MatrixBatch<const T> y,
                      MatrixBatch<T> x, int* info, const LbfgsOptions& o) {
  return dense_lbfgs_apply(s, y, x, info, o);
}

}  // namespace curvkit::reference

CURVKIT_INSTANTIATE_SM_BACKEND(reference)
