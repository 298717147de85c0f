// Newton–Schulz family tests (curvkit/newton_schulz.hpp): every compiled backend on fresh random
// inputs of controlled spectrum against oracles built here by a Jacobi eigensolver in long
// double (f(A) = Q f(L) Q^T; polar U = A (A^T A)^{-1/2}), plus
//   the backends against the reference iteration step for step (fixed counts),
//   the scalar recurrence on diagonal inputs and MBAG's caveat (5 steps are off by > 1e-3 for
//   eigenvalues below ~0.12 of ||A||_F; the residual stop fixes it),
//   the coupled invariant sqrt = A inv_sqrt after any number of steps,
//   the Muon quintic's singular-value band and the convergent schedule's U^T U = I,
//   bad input (non-SPD, indefinite, NaN, zero matrix, p <= 0, shapes, precision modes).
//
// Tolerances: a converged iterate carries ~ kappa n eps(T) relative error (kappa the condition
// number, n the accumulation depth); the tests allow 20 kappa n eps(T).
#include <deque>
#include <memory>

#include "eigen_oracle.hpp"
#include "family_test_util.hpp"

namespace curvkit::test {
namespace {

// SPD matrix with eigenvalues spread geometrically over [scale / kappa, scale].
template <class T>
Operand<T> spd_spectrum(index_t batch, index_t n, double kappa, double scale,
                        std::mt19937_64& rng) {
  Operand<T> o(batch, n, n, 1, 2);
  for (index_t b = 0; b < batch; ++b) {
    const auto a = random_spd(n, kappa, rng);  // eigenvalues in [1/kappa, 1]
    for (index_t i = 0; i < n; ++i)
      for (index_t j = 0; j < n; ++j) o(b, i, j) = T(scale * a[i * n + j]);
  }
  return o;
}

template <class T>
std::vector<real> as_real(const Operand<T>& o, index_t b, double eps = 0) {
  std::vector<real> m(std::size_t(o.l.rows * o.l.cols));
  for (index_t i = 0; i < o.l.rows; ++i)
    for (index_t j = 0; j < o.l.cols; ++j)
      m[i * o.l.cols + j] = real(o(b, i, j)) + (i == j ? eps : 0);
  return m;
}

template <class T>
double rel_err(const Operand<T>& x, index_t b, const Dense& want) {
  double num = 0, den = 0;
  for (index_t i = 0; i < x.l.rows; ++i)
    for (index_t j = 0; j < x.l.cols; ++j) {
      const double d = double(x(b, i, j)) - want[i * x.l.cols + j];
      num += d * d;
      den += want[i * x.l.cols + j] * want[i * x.l.cols + j];
    }
  return std::isnan(num) ? std::numeric_limits<double>::infinity() : std::sqrt(num / den);
}

// Per-matrix outputs on a backend.
template <class T>
struct Report {
  IntsOnBackend info, iters;
  Buffer<T> res;
  index_t count;
  Report(Backend be, index_t n)
      : info(be, n),
        iters(be, n),
        res(be, std::vector<T>(std::size_t(std::max<index_t>(n, 1)), T(-1))),
        count(n) {}
  NsReport<T> view() { return {info.data(), iters.data(), res.data()}; }
  std::vector<T> residuals() const {
    auto v = res.download();
    v.resize(std::size_t(count));
    return v;
  }
};

// A Context with a workspace of the size the family's query asks for `groups` (the buffer
// lives as long as this object).
struct Workspaced {
  Context ctx;
  Buffer<char> buf;
  template <class T>
  Workspaced(Backend be, const Context& c, GroupedBatch<const T> groups)
      : ctx(c), buf(be, std::vector<char>(newton_schulz_workspace_size<T>(c, groups) + 1)) {
    ctx.set_workspace(buf.data(), newton_schulz_workspace_size<T>(c, groups));
  }
};

enum class Fn { inverse, sqrt, inv_sqrt, root };

class NewtonSchulzTest : public BackendTest {
 protected:
  // One square op on a batch: returns the outputs (x; for sqrt also inv in *second).
  template <class T>
  Operand<T> run_square(Fn fn, const Operand<T>& a, int p, const NewtonSchulzOptions& o,
                        Report<T>* rep, Operand<T>* second = nullptr) {
    const index_t batch = a.l.batch, n = a.l.rows;
    OnBackend<T> ab(backend(), a), xb(backend(), Operand<T>(batch, n, n, 2, 1)),
        yb(backend(), Operand<T>(batch, n, n, 1, 3));
    const MatrixBatch<const T> av = ab.cview();
    const Workspaced w(backend(), ctx(), GroupedBatch<const T>(&av, 1));
    const Context& c = w.ctx;
    Status st;
    if (fn == Fn::inverse)
      st = newton_schulz_inverse<T>(c, ab.cview(), xb.view(), rep->view(), o);
    else if (fn == Fn::root)
      st = newton_schulz_inverse_root<T>(c, ab.cview(), p, xb.view(), rep->view(), o);
    else
      st = newton_schulz_sqrt<T>(c, ab.cview(), xb.view(), yb.view(), rep->view(), o);
    EXPECT_TRUE(st.ok()) << st.to_string();
    EXPECT_TRUE(synchronize(c).ok());
    if (second) *second = yb.get();
    return xb.get();
  }

  template <class T>
  void converged_against_eigen() {
    const double kappa = 20;
    for (index_t n : {1, 5, 16, 33, 70}) {
      const index_t batch = n > 40 ? 2 : 3;
      const auto a = spd_spectrum<T>(batch, n, kappa, 3.0, rng_);
      NewtonSchulzOptions o;
      o.stop = NsStop::residual;
      o.iterations = 60;
      o.tolerance = 10 * std::sqrt(double(n)) * eps<T>();
      o.epsilon = 0.05;
      const double tol = 20 * kappa * double(n + 2) * eps<T>();
      for (Fn fn : {Fn::inverse, Fn::sqrt, Fn::root})
        for (int p : fn == Fn::root ? std::vector<int>{1, 2, 4, 6} : std::vector<int>{1}) {
          SCOPED_TRACE(trace() + ", n " + std::to_string(n) + ", fn " + std::to_string(int(fn)) +
                       ", p " + std::to_string(p) + (sizeof(T) == 4 ? ", float" : ", double"));
          Report<T> rep(backend(), batch);
          Operand<T> inv;
          const auto x = run_square<T>(fn, a, p, o, &rep, &inv);
          const auto info = rep.info.get(), its = rep.iters.get();
          const auto res = rep.residuals();
          for (index_t b = 0; b < batch; ++b) {
            EXPECT_TRUE(info[b] == 0 || info[b] == 1) << "info " << info[b];
            EXPECT_GE(its[b], n > 1 ? 1 : 0);  // n = 1 starts exact
            EXPECT_LE(its[b], o.iterations);
            EXPECT_LE(double(res[b]), 1e3 * o.tolerance);
            const auto ar = as_real(a, b, o.epsilon);
            if (fn == Fn::inverse) {
              EXPECT_LE(rel_err(x, b, matrix_function(ar, n, [](real v) { return 1 / v; })), tol);
            } else if (fn == Fn::sqrt) {
              EXPECT_LE(rel_err(x, b, matrix_function(ar, n, [](real v) { return std::sqrt(v); })),
                        tol);
              EXPECT_LE(
                  rel_err(inv, b, matrix_function(ar, n, [](real v) { return 1 / std::sqrt(v); })),
                  tol);
            } else {
              EXPECT_LE(rel_err(x, b,
                                matrix_function(
                                    ar, n, [p](real v) { return std::pow(v, -1.0L / real(p)); })),
                        tol);
            }
          }
        }
    }
  }

  // Fixed counts: the backend follows the reference step for step.
  template <class T>
  void matches_reference_steps() {
    if (backend() == Backend::reference) return;
    for (index_t n : {3, 17, 40}) {
      const auto a = spd_spectrum<T>(2, n, 10, 1.5, rng_);
      NewtonSchulzOptions o;
      o.iterations = 4;
      for (Fn fn : {Fn::inverse, Fn::sqrt, Fn::root}) {
        SCOPED_TRACE(trace() + ", n " + std::to_string(n) + ", fn " + std::to_string(int(fn)));
        Report<T> r1(backend(), 2), r2(Backend::reference, 2);
        const auto x = run_square<T>(fn, a, 4, o, &r1);
        OnBackend<T> ab(Backend::reference, a), xb(Backend::reference, Operand<T>(2, n, n));
        Status st;
        if (fn == Fn::inverse)
          st = newton_schulz_inverse<T>(Context::reference(), ab.cview(), xb.view(), r2.view(), o);
        else if (fn == Fn::root)
          st = newton_schulz_inverse_root<T>(Context::reference(), ab.cview(), 4, xb.view(),
                                             r2.view(), o);
        else
          st = newton_schulz_sqrt<T>(Context::reference(), ab.cview(), xb.view(), {}, r2.view(), o);
        ASSERT_TRUE(st.ok());
        const auto want = xb.get();
        for (index_t b = 0; b < 2; ++b)
          EXPECT_LE(rel_err(x, b, want.dense(b)), 100 * double(n) * eps<T>());
        EXPECT_EQ(r1.iters.get(), r2.iters.get());
      }
    }
  }
};

TEST_P(NewtonSchulzTest, ConvergedResultsEqualEigendecomposition) {
  converged_against_eigen<float>();
  converged_against_eigen<double>();
}

TEST_P(NewtonSchulzTest, FixedCountsFollowTheReferenceStepForStep) {
  matches_reference_steps<float>();
  matches_reference_steps<double>();
}

// Diagonal inputs: every eigenvalue follows the scalar recurrence x <- x (3 - y x) / 2,
// y <- (3 - y x) y / 2 from a' = a / ||A||_F; MBAG's caveat and its fix.
TEST_P(NewtonSchulzTest, ScalarRecurrenceAndMbagCaveat) {
  using T = double;
  const std::vector<double> d = {1.0, 0.5, 0.2, 0.05, 0.01};
  const index_t n = index_t(d.size());
  Operand<T> a(1, n, n);
  double fro = 0;
  for (index_t i = 0; i < n; ++i) {
    for (index_t j = 0; j < n; ++j) a(0, i, j) = i == j ? d[i] : 0.0;
    fro += d[i] * d[i];
  }
  fro = std::sqrt(fro);
  NewtonSchulzOptions o;
  o.iterations = 5;
  Report<T> rep(backend(), 1);
  Operand<T> inv;
  const auto sq = run_square<T>(Fn::sqrt, a, 1, o, &rep, &inv);
  for (index_t i = 0; i < n; ++i) {
    double x = d[i] / fro, y = 1;  // Y_0 = a', Z_0 = 1
    for (int k = 0; k < 5; ++k) {
      const double t = (3 - y * x) / 2;
      x *= t;
      y *= t;
    }
    EXPECT_NEAR(sq(0, i, i), x * std::sqrt(fro), 1e-13) << "eigenvalue " << d[i];
    EXPECT_NEAR(inv(0, i, i), y / std::sqrt(fro), 1e-12) << "eigenvalue " << d[i];
    const double err = std::abs(sq(0, i, i) - std::sqrt(d[i])) / std::sqrt(d[i]);
    if (d[i] / fro < 0.12) {
      EXPECT_GT(err, 1e-3) << "caveat: eigenvalue " << d[i];
    } else if (d[i] / fro > 0.3) {
      EXPECT_LT(err, 1e-3) << "eigenvalue " << d[i];
    }
  }
  // The residual stop reaches every eigenvalue.
  o.stop = NsStop::residual;
  o.iterations = 60;
  o.tolerance = 1e-13;
  Report<T> rep2(backend(), 1);
  const auto sq2 = run_square<T>(Fn::sqrt, a, 1, o, &rep2);
  for (index_t i = 0; i < n; ++i)
    EXPECT_NEAR(sq2(0, i, i), std::sqrt(d[i]), 1e-12 * std::sqrt(d[i]) * 10) << d[i];
  EXPECT_GT(rep2.iters.get()[0], 5);
}

// sqrt = A inv_sqrt after any number of steps (both iterates are polynomials in A).
TEST_P(NewtonSchulzTest, CoupledInvariant) {
  using T = double;
  const index_t n = 12;
  const auto a = spd_spectrum<T>(1, n, 50, 2.0, rng_);
  for (int its : {1, 2, 3}) {
    NewtonSchulzOptions o;
    o.iterations = its;
    Report<T> rep(backend(), 1);
    Operand<T> inv;
    const auto sq = run_square<T>(Fn::sqrt, a, 1, o, &rep, &inv);
    Dense ainv(std::size_t(n * n), 0.0);
    for (index_t i = 0; i < n; ++i)
      for (index_t j = 0; j < n; ++j)
        for (index_t k = 0; k < n; ++k) ainv[i * n + j] += a(0, i, k) * inv(0, k, j);
    EXPECT_LE(rel_err(sq, 0, ainv), 1e-12) << trace() << ", iterations " << its;
  }
}

// Polar factor: the convergent schedule gives U^T U = I and the eigen oracle's U; the Muon
// quintic leaves singular values in a band around 1; tall and wide; grouped.
TEST_P(NewtonSchulzTest, PolarFactor) {
  auto run = [&](auto zero) {
    using T = decltype(zero);
    for (auto [rows, cols] : {std::pair<index_t, index_t>{20, 12}, {9, 30}, {16, 16}, {1, 5}}) {
      SCOPED_TRACE(trace() + ", " + std::to_string(rows) + " x " + std::to_string(cols) +
                   (sizeof(T) == 4 ? ", float" : ", double"));
      // A = P diag(s) Q^T with random orthogonal P, Q and singular values s in [0.1, 1] (x 3).
      const index_t k = std::min(rows, cols);
      Operand<T> a(2, rows, cols, 1, 1);
      for (index_t b = 0; b < 2; ++b) {
        const auto pm = random_orthogonal(rows, rng_), qm = random_orthogonal(cols, rng_);
        for (index_t i = 0; i < rows; ++i)
          for (index_t j = 0; j < cols; ++j) {
            double v = 0;
            for (index_t e = 0; e < k; ++e)
              v += pm[i * rows + e] * 3.0 *
                   std::pow(10.0, -double(e) / double(std::max<index_t>(k - 1, 1))) *
                   qm[j * cols + e];
            a(b, i, j) = T(v);
          }
      }
      const Context c = ctx();
      for (PolarSchedule sch : {PolarSchedule::convergent, PolarSchedule::quintic}) {
        NewtonSchulzOptions o;
        o.iterations = sch == PolarSchedule::quintic ? 5 : 8;
        o.tolerance = 10 * std::sqrt(double(k)) * eps<T>();
        PolarOptions po;
        po.schedule = sch;
        po.cubic_iterations = 40;
        OnBackend<T> ab(backend(), a), ub(backend(), Operand<T>(2, rows, cols, 2, 2));
        Report<T> rep(backend(), 2);
        const MatrixBatch<const T> av = ab.cview();
        const Workspaced w(backend(), c, GroupedBatch<const T>(&av, 1));
        const Context& cw = w.ctx;
        const Status st = newton_schulz_polar<T>(cw, av, ub.view(), rep.view(), o, po);
        ASSERT_TRUE(st.ok()) << st.to_string();
        ASSERT_TRUE(synchronize(c).ok());
        const auto u = ub.get();
        const auto info = rep.info.get();
        for (index_t b = 0; b < 2; ++b) {
          // Singular values of U: eigenvalues of the short-side Gram.
          std::vector<real> gram(std::size_t(k * k), 0);
          for (index_t i = 0; i < k; ++i)
            for (index_t j = 0; j < k; ++j)
              for (index_t e = 0; e < std::max(rows, cols); ++e)
                gram[i * k + j] += rows >= cols ? real(u(b, e, i)) * real(u(b, e, j))
                                                : real(u(b, i, e)) * real(u(b, j, e));
          std::vector<real> w, q;
          jacobi_eigen(gram, k, &w, &q);
          if (sch == PolarSchedule::convergent) {
            EXPECT_TRUE(info[b] == 0 || info[b] == 1) << info[b];
            for (real v : w) EXPECT_NEAR(double(std::sqrt(v)), 1.0, 50 * double(k + 2) * eps<T>());
          } else {
            EXPECT_EQ(info[b], 0);
            for (real v : w) {
              EXPECT_GT(double(std::sqrt(v)), 0.6);
              EXPECT_LT(double(std::sqrt(v)), 1.35);
            }
          }
        }
      }
    }
  };
  run(float{});
  run(double{});
}

// A grouped call (two sizes) equals one uniform call per group; per-matrix outputs are flat in
// group order.
TEST_P(NewtonSchulzTest, GroupedEqualsUniform) {
  using T = float;
  const auto a0 = spd_spectrum<T>(2, 5, 10, 1.0, rng_), a1 = spd_spectrum<T>(3, 9, 10, 2.0, rng_);
  NewtonSchulzOptions o;
  o.stop = NsStop::residual;
  o.iterations = 40;
  o.tolerance = 1e-5;
  const Context c = ctx();
  OnBackend<T> g0(backend(), a0), g1(backend(), a1), x0(backend(), Operand<T>(2, 5, 5)),
      x1(backend(), Operand<T>(3, 9, 9));
  std::vector<MatrixBatch<const T>> av = {g0.cview(), g1.cview()};
  std::vector<MatrixBatch<T>> xv = {x0.view(), x1.view()};
  Report<T> rep(backend(), 5);
  const Workspaced w(backend(), c, GroupedBatch<const T>(av));
  const Context& cw = w.ctx;
  const Status st = newton_schulz_inverse_root<T>(cw, av, 2, xv, rep.view(), o);
  ASSERT_TRUE(st.ok()) << st.to_string();
  ASSERT_TRUE(synchronize(cw).ok());
  Report<T> r0(backend(), 2), r1(backend(), 3);
  const auto u0 = run_square<T>(Fn::root, a0, 2, o, &r0),
             u1 = run_square<T>(Fn::root, a1, 2, o, &r1);
  const auto y0 = x0.get(), y1 = x1.get();
  for (index_t b = 0; b < 2; ++b) EXPECT_LE(rel_err(y0, b, u0.dense(b)), 1e-6) << trace();
  for (index_t b = 0; b < 3; ++b) EXPECT_LE(rel_err(y1, b, u1.dense(b)), 1e-6) << trace();
  const auto its = rep.iters.get(), i0 = r0.iters.get(), i1 = r1.iters.get();
  EXPECT_EQ(std::vector<int>(its.begin(), its.begin() + 2), i0);
  EXPECT_EQ(std::vector<int>(its.begin() + 2, its.end()), i1);
}

// Large matrices (order >= 512) take the Kokkos backend's gemm loop (products as GEMMs over
// all threads, the CUDA backend's cuBLAS path): against closed forms on A = Q^T diag(l) Q with a
// random orthogonal Q (no eigensolver at this size), in one grouped call whose first group is
// small (per-matrix path) so the report offsets across paths are checked too; the polar factor
// of tall and wide matrices; the screening's reductions on bad input.  The reference backend
// takes the same steps at every size (long double at n = 512 would cost seconds), so it skips.
TEST_P(NewtonSchulzTest, LargeMatricesAgainstClosedForms) {
  if (backend() == Backend::reference) GTEST_SKIP() << "the reference is checked at small n";
  const index_t n = 512;
  // Eigenvalues geometric over [2/kappa, 2]; f(A) = Q^T f(l) Q.
  const double kappa = 20;
  std::vector<double> lam(static_cast<std::size_t>(n));
  for (index_t i = 0; i < n; ++i) lam[i] = 2 * std::pow(kappa, -double(i) / double(n - 1));
  const auto q = random_orthogonal(n, rng_);
  auto function_of = [&](auto f) {
    Dense out(std::size_t(n * n), 0.0);
    for (index_t k = 0; k < n; ++k) {
      const double fk = f(lam[k]);
      for (index_t i = 0; i < n; ++i)
        for (index_t j = 0; j < n; ++j) out[i * n + j] += q[k * n + i] * fk * q[k * n + j];
    }
    return out;
  };
  const Dense dense_a = function_of([](double v) { return v; });
  auto run = [&](auto zero) {
    using T = decltype(zero);
    SCOPED_TRACE(trace() + (sizeof(T) == 4 ? ", float" : ", double"));
    const double tol = 20 * kappa * std::sqrt(double(n)) * eps<T>();
    Operand<T> small = spd_spectrum<T>(3, 8, 10, 1.0, rng_), big(2, n, n, 1, 1);
    for (index_t b = 0; b < 2; ++b)
      for (index_t i = 0; i < n; ++i)
        for (index_t j = 0; j < n; ++j) big(b, i, j) = T(dense_a[i * n + j] * (b + 1));
    NewtonSchulzOptions o;
    o.stop = NsStop::residual;
    o.iterations = 40;
    o.tolerance = 10 * std::sqrt(double(n)) * eps<T>();
    const Context c = ctx();
    OnBackend<T> sb(backend(), small), bb(backend(), big), xs(backend(), Operand<T>(3, 8, 8)),
        xb(backend(), Operand<T>(2, n, n, 2, 1));
    std::vector<MatrixBatch<const T>> av = {sb.cview(), bb.cview()};
    std::vector<MatrixBatch<T>> xv = {xs.view(), xb.view()};
    Report<T> rep(backend(), 5);
    const Workspaced w(backend(), c, GroupedBatch<const T>(av));
    const Context& cw = w.ctx;
    ASSERT_TRUE(newton_schulz_sqrt<T>(cw, av, {}, xv, rep.view(), o).ok());
    ASSERT_TRUE(synchronize(cw).ok());
    const auto info = rep.info.get(), its = rep.iters.get();
    const auto inv_small = xs.get(), inv_big = xb.get();
    for (index_t b = 0; b < 3; ++b) {
      EXPECT_TRUE(info[b] == 0 || info[b] == 1) << info[b];
      EXPECT_LE(
          rel_err(inv_small, b,
                  matrix_function(as_real(small, b), 8, [](real v) { return 1 / std::sqrt(v); })),
          20 * 10 * 10 * eps<T>());
    }
    for (index_t b = 0; b < 2; ++b) {
      EXPECT_TRUE(info[3 + b] == 0 || info[3 + b] == 1) << info[3 + b];
      EXPECT_GT(its[3 + b], 5);
      const double s = double(b + 1);
      EXPECT_LE(rel_err(inv_big, b, function_of([s](double v) { return 1 / std::sqrt(s * v); })),
                tol);
    }
    // Five fixed steps: the scalar recurrence on every eigenvalue (MBAG's caveat included).
    o.stop = NsStop::fixed;
    o.iterations = 5;
    Report<T> r5(backend(), 1);
    Operand<T> one(1, n, n), inv5;
    for (index_t i = 0; i < n; ++i)
      for (index_t j = 0; j < n; ++j) one(0, i, j) = big(0, i, j);
    double fro = 0;
    for (double v : lam) fro += v * v;
    fro = std::sqrt(fro);
    const auto sq5 = run_square<T>(Fn::sqrt, one, 1, o, &r5, &inv5);
    auto recurrence = [fro](double v, bool want_sqrt) {
      double y = v / fro, z = 1;
      for (int k = 0; k < 5; ++k) {
        const double t = (3 - z * y) / 2;
        y *= t;
        z *= t;
      }
      return want_sqrt ? y * std::sqrt(fro) : z / std::sqrt(fro);
    };
    EXPECT_LE(rel_err(sq5, 0, function_of([&](double v) { return recurrence(v, true); })),
              100 * double(n) * eps<T>());
    EXPECT_LE(rel_err(inv5, 0, function_of([&](double v) { return recurrence(v, false); })),
              100 * double(n) * eps<T>());
    // Inverse, and the inverse 4th root with damping.
    o.stop = NsStop::residual;
    o.iterations = 60;
    Report<T> ri(backend(), 1), rr(backend(), 1);
    EXPECT_LE(rel_err(run_square<T>(Fn::inverse, one, 1, o, &ri), 0,
                      function_of([](double v) { return 1 / v; })),
              tol);
    o.epsilon = 0.01;
    EXPECT_LE(rel_err(run_square<T>(Fn::root, one, 4, o, &rr), 0,
                      function_of([](double v) { return std::pow(v + 0.01, -0.25); })),
              tol);
    // Float may end at its rounding floor just above the tolerance (info 1): bound the
    // residual that is returned instead.
    for (Report<T>* r : {&ri, &rr}) {
      EXPECT_TRUE(r->info.get()[0] == 0 || r->info.get()[0] == 1) << r->info.get()[0];
      EXPECT_LE(double(r->residuals()[0]), 1e2 * o.tolerance);
    }
  };
  run(float{});
  run(double{});

  // Polar factors in one grouped call: a tall and a wide Gaussian matrix that take the gemm
  // loop, a 200 x 200 one (per-matrix path on one thread; the loop when the batch cannot fill
  // the threads) and an empty group of order 512, all sharing one workspace.  Convergent
  // schedule: U^T U = I on the short side, and H = U^T A (tall; A U^T wide) symmetric with a
  // positive diagonal, i.e. A = U H with H positive definite: the polar factor, not a
  // sign-flipped one.
  using T = double;
  const std::vector<std::pair<index_t, index_t>> shapes = {{600, 200}, {150, 520}, {200, 200}};
  std::vector<Operand<T>> as;
  std::deque<OnBackend<T>> abs_, ubs;  // a deque: its elements never move
  for (auto [rows, cols] : shapes) {
    as.push_back(gaussian<T>(1, rows, cols, rng_));
    abs_.emplace_back(backend(), as.back());
    ubs.emplace_back(backend(), Operand<T>(1, rows, cols));
  }
  const Operand<T> empty(0, n, n);
  OnBackend<T> eb(backend(), empty), eu(backend(), empty);
  std::vector<MatrixBatch<const T>> av;
  std::vector<MatrixBatch<T>> uv;
  for (std::size_t g = 0; g < shapes.size(); ++g) {
    av.push_back(abs_[g].cview());
    uv.push_back(ubs[g].view());
  }
  av.push_back(eb.cview());
  uv.push_back(eu.view());
  NewtonSchulzOptions po_opts;
  po_opts.iterations = 6;
  po_opts.tolerance = 1e-12;
  PolarOptions po;
  po.schedule = PolarSchedule::convergent;
  po.cubic_iterations = 40;
  Report<T> prep(backend(), index_t(shapes.size()));
  {
    const Workspaced w(backend(), ctx(), GroupedBatch<const T>(av));
    ASSERT_TRUE(newton_schulz_polar<T>(w.ctx, av, uv, prep.view(), po_opts, po).ok());
    ASSERT_TRUE(synchronize(w.ctx).ok());
  }
  const auto pinfo = prep.info.get();
  for (std::size_t g = 0; g < shapes.size(); ++g) {
    const auto [rows, cols] = shapes[g];
    SCOPED_TRACE(trace() + ", polar " + std::to_string(rows) + " x " + std::to_string(cols));
    EXPECT_EQ(pinfo[g], 0);
    const auto u = ubs[g].get();
    const Operand<T>& a = as[g];
    const bool tall = rows >= cols;
    const index_t k = std::min(rows, cols), depth = std::max(rows, cols);
    auto at = [&](const Operand<T>& m, index_t e, index_t i) {  // short-side column i
      return tall ? double(m(0, e, i)) : double(m(0, i, e));
    };
    double orth = 0, asym = 0, hnorm = 0, hdiag_min = 1e300;
    for (index_t i = 0; i < k; ++i)
      for (index_t j = 0; j < k; ++j) {
        double gij = 0, h = 0, ht = 0;
        for (index_t e = 0; e < depth; ++e) {
          gij += at(u, e, i) * at(u, e, j);
          h += at(u, e, i) * at(a, e, j);
          ht += at(u, e, j) * at(a, e, i);
        }
        orth += (gij - (i == j)) * (gij - (i == j));
        asym += (h - ht) * (h - ht);
        hnorm += h * h;
        if (i == j) hdiag_min = std::min(hdiag_min, h);
      }
    EXPECT_LE(std::sqrt(orth / double(k)), 1e-10);
    EXPECT_LE(std::sqrt(asym / hnorm), 1e-10);
    EXPECT_GT(hdiag_min, 0.0);
  }

  // The Muon quintic (5 fixed steps, float) in the gemm loop follows the reference step for
  // step: thin shapes whose long side takes the loop (cheap for the long-double reference) and
  // two small ones (per-matrix path).
  for (auto [rows, cols] : {std::pair<index_t, index_t>{520, 16}, {12, 530}, {20, 12}, {9, 30}}) {
    SCOPED_TRACE(trace() + ", quintic " + std::to_string(rows) + " x " + std::to_string(cols));
    using F = float;
    const Operand<F> a = gaussian<F>(1, rows, cols, rng_);
    NewtonSchulzOptions o;
    Report<F> r1(backend(), 1), r2(Backend::reference, 1);
    OnBackend<F> ab(backend(), a), ub(backend(), Operand<F>(1, rows, cols));
    const MatrixBatch<const F> one = ab.cview();
    const Workspaced w(backend(), ctx(), GroupedBatch<const F>(&one, 1));
    ASSERT_TRUE(newton_schulz_polar<F>(w.ctx, one, ub.view(), r1.view(), o).ok());
    ASSERT_TRUE(synchronize(w.ctx).ok());
    OnBackend<F> ar(Backend::reference, a), ur(Backend::reference, Operand<F>(1, rows, cols));
    ASSERT_TRUE(
        newton_schulz_polar<F>(Context::reference(), ar.cview(), ur.view(), r2.view(), o).ok());
    EXPECT_EQ(r1.info.get()[0], 0);
    EXPECT_LE(rel_err(ub.get(), 0, ur.get().dense(0)),
              100 * double(std::max(rows, cols)) * eps<F>());
  }

  // Bad input found by the large path's screening (reductions over rows).
  const Context c = ctx();
  auto info_of = [&](const Operand<T>& a) {
    OnBackend<T> ab(backend(), a), xb(backend(), Operand<T>(1, n, n));
    Report<T> rep(backend(), 1);
    const MatrixBatch<const T> av = ab.cview();
    const Workspaced w(backend(), c, GroupedBatch<const T>(&av, 1));
    const Context& cw = w.ctx;
    EXPECT_TRUE(newton_schulz_sqrt<T>(cw, av, xb.view(), {}, rep.view()).ok());
    EXPECT_TRUE(synchronize(cw).ok());
    EXPECT_TRUE(all_nan(xb.get(), 0)) << trace();
    return rep.info.get()[0];
  };
  Operand<T> bad = gaussian<T>(1, n, n, rng_);
  for (index_t i = 0; i < n; ++i) bad(0, i, i) = 1 + std::abs(bad(0, i, i));
  bad(0, 300, 7) = std::numeric_limits<T>::quiet_NaN();
  EXPECT_EQ(info_of(bad), -1);
  bad(0, 300, 7) = 0;
  bad(0, 400, 400) = -1;
  EXPECT_EQ(info_of(bad), 3);
  Operand<T> zero(1, n, n);
  for (index_t i = 0; i < n; ++i)
    for (index_t j = 0; j < n; ++j) zero(0, i, j) = 0;
  EXPECT_EQ(info_of(zero), 2);
}

// CUDA's opt-in tensor-core modes (float only; FP32 accumulation): products with operands
// rounded to TF32 (unit u = 2^-11) or BF16 (u = 2^-8).  A CPU emulation of the iteration with
// that rounding (tools/ns_precision_model.py) puts the converged error and the residual floor
// at 0.6-2 u whatever n and kappa, so both are bounded by 4 u: loose enough for another
// accumulation order or a truncating TF32 conversion (2.5x the error), tight enough that BF16
// passed off as TF32, or fewer than 6 steps (error > 1.2e-2 on these inputs), fail.
//   12 fixed steps: sqrt and inv_sqrt within 4 u of the eigendecomposition, info 0;
//   residual stop at 1e-6 (below the floor): info 1, stopped at the floor (fewer than the 30
//   steps allowed) with a residual <= 4 u; at tolerance 4 u: info 0.
// Both the fused (n <= 128) and the cuBLAS (n = 200) paths.
TEST_P(NewtonSchulzTest, ReducedPrecisionModesOnCuda) {
  if (backend() != Backend::cuda) GTEST_SKIP() << "tf32 / bf16 exist on the cuda backend only";
  using T = float;
  for (index_t n : {32, 200})
    for (NsCompute mode : {NsCompute::tf32, NsCompute::bf16}) {
      SCOPED_TRACE(trace() + ", n " + std::to_string(n) + ", mode " + std::to_string(int(mode)));
      const double u = std::ldexp(1.0, mode == NsCompute::tf32 ? -11 : -8);
      const auto a = spd_spectrum<T>(2, n, 10, 1.0, rng_);
      NewtonSchulzOptions o;
      o.iterations = 12;
      o.compute = mode;
      Report<T> rep(backend(), 2);
      Operand<T> inv;
      const auto sq = run_square<T>(Fn::sqrt, a, 1, o, &rep, &inv);
      for (index_t b = 0; b < 2; ++b) {
        EXPECT_EQ(rep.info.get()[b], 0);
        const auto ar = as_real(a, b);
        EXPECT_LE(rel_err(sq, b, matrix_function(ar, n, [](real v) { return std::sqrt(v); })),
                  4 * u);
        EXPECT_LE(rel_err(inv, b, matrix_function(ar, n, [](real v) { return 1 / std::sqrt(v); })),
                  4 * u);
      }
      o.stop = NsStop::residual;
      o.iterations = 30;
      for (double tolerance : {1e-6, 4 * u}) {
        o.tolerance = tolerance;
        Report<T> r(backend(), 2);
        (void)run_square<T>(Fn::sqrt, a, 1, o, &r);
        const auto info = r.info.get(), its = r.iters.get();
        const auto res = r.residuals();
        for (index_t b = 0; b < 2; ++b) {
          EXPECT_EQ(info[b], tolerance < u ? 1 : 0) << "tolerance " << tolerance;
          EXPECT_LT(its[b], 30);
          EXPECT_LE(double(res[b]), 4 * u);
        }
      }
    }
}

TEST_P(NewtonSchulzTest, BadInputIsReported) {
  using T = double;
  const Context c = ctx();
  auto one = [&](Fn fn, const Operand<T>& a, int expect_info, NsStop stop) {
    NewtonSchulzOptions o;
    o.stop = stop;
    o.iterations = 30;
    o.tolerance = 1e-12;
    Report<T> rep(backend(), 1);
    Operand<T> second;
    const auto x = run_square<T>(fn, a, 2, o, &rep, &second);
    EXPECT_EQ(rep.info.get()[0], expect_info) << trace() << " fn " << int(fn);
    EXPECT_TRUE(all_nan(x, 0)) << "outputs of a failed matrix must be NaN";
  };
  Operand<T> neg(1, 2, 2), indef(1, 2, 2), nan(1, 2, 2), zero(1, 2, 2);
  for (index_t i = 0; i < 2; ++i)
    for (index_t j = 0; j < 2; ++j) {
      neg(0, i, j) = i == j ? (i == 0 ? 1.0 : -1.0) : 0.0;
      indef(0, i, j) = i == j ? 1.0 : 2.0;  // eigenvalues 3 and -1, positive diagonal
      nan(0, i, j) = i == j ? 1.0 : 0.0;
      zero(0, i, j) = 0.0;
    }
  nan(0, 1, 0) = std::nan("");
  for (Fn fn : {Fn::sqrt, Fn::root}) {
    one(fn, neg, 3, NsStop::fixed);
    one(fn, indef, -2, NsStop::residual);
  }
  for (Fn fn : {Fn::inverse, Fn::sqrt, Fn::root}) {
    one(fn, nan, -1, NsStop::fixed);
    one(fn, zero, 2, NsStop::fixed);
  }
  // Argument errors.
  OnBackend<T> a(backend(), zero), x(backend(), Operand<T>(1, 2, 2)),
      r(backend(), Operand<T>(1, 2, 3));
  Report<T> rep(backend(), 1);
  NewtonSchulzOptions o;
  auto bad = [](const Status& s, const char* what) {
    EXPECT_EQ(s.code(), StatusCode::invalid_argument) << what << ": " << s.to_string();
  };
  bad(newton_schulz_inverse_root<T>(c, a.cview(), 0, x.view(), rep.view(), o), "p = 0");
  bad(newton_schulz_inverse_root<T>(c, a.cview(), -2, x.view(), rep.view(), o), "p < 0");
  bad(newton_schulz_inverse<T>(c, a.cview(), r.view(), rep.view(), o), "x shape");
  bad(newton_schulz_inverse<T>(c, r.cview(), r.view(), rep.view(), o), "not square");
  bad(newton_schulz_inverse<T>(c, a.cview(), x.view(), NsReport<T>{}, o), "info null");
  bad(newton_schulz_sqrt<T>(c, a.cview(), {}, {}, rep.view(), o), "no output");
  o.iterations = 0;
  bad(newton_schulz_inverse<T>(c, a.cview(), x.view(), rep.view(), o), "iterations 0");
  o = {};
  o.tolerance = 0;
  bad(newton_schulz_inverse<T>(c, a.cview(), x.view(), rep.view(), o), "tolerance 0");
  o = {};
  o.epsilon = -1;
  bad(newton_schulz_inverse<T>(c, a.cview(), x.view(), rep.view(), o), "epsilon < 0");
  o = {};
  o.epsilon = 0.1;
  bad(newton_schulz_polar<T>(c, a.cview(), x.view(), rep.view(), o), "polar with epsilon");
  o = {};
  MatrixBatch<T> alias{const_cast<T*>(a.cview().data), 1, 2, 2, 2, 4};
  bad(newton_schulz_inverse<T>(c, a.cview(), alias, rep.view(), o), "x overlaps a");
  // Reduced precision: float on CUDA only.
  o.compute = NsCompute::tf32;
  const Status s = newton_schulz_inverse<T>(c, a.cview(), x.view(), rep.view(), o);
  EXPECT_EQ(s.code(), StatusCode::not_supported) << s.to_string();
}

INSTANTIATE_TEST_SUITE_P(Backends, NewtonSchulzTest,
                         ::testing::Values(Backend::reference, Backend::kokkos, Backend::cuda),
                         backend_test_name);

}  // namespace
}  // namespace curvkit::test
