// Sherman–Morrison / Woodbury family tests, part 1 (rank-1 chains, Woodbury solves): every
// compiled backend against the reference on fresh random inputs, plus the identities
//   chain of k rank-1 updates from I/lambda  = inv(lambda I + sum u u^T) by potri (k = 1..256)
//   Woodbury solve                          = dense solve of lambda I + U C U^T (also k > n,
//                                              rank-deficient U)
//   TENGraD's scaled form = the damped Fisher solve; without the 1/m it must NOT match
//   a chain of m rank-1 updates with u = J_j / sqrt(m) = the Woodbury solve
// and the float drift of a 10^4-update chain (MBAG never refreshes its inverse).
//
// Tolerances are derived: c (n + k) kappa eps(T) with c = 16 and kappa a bound on the
// condition number of the matrix whose inverse is computed.
#include "family_test_util.hpp"

namespace curvkit::test {
namespace {

template <class T>
struct Rank1Run {
  Status status;
  Operand<T> h;
  std::vector<int> info;
};

template <class T>
Rank1Run<T> run_rank1(Backend backend, const Operand<T>& h0, const Operand<T>& u,
                      const Rank1Options& o) {
  OnBackend<T> h(backend, h0), uu(backend, u);
  IntsOnBackend info(backend, h0.l.batch);
  const Context ctx = context_for(backend);
  Rank1Run<T> r;
  r.status = rank1_update(ctx, h.view(), uu.cview(), info.data(), o);
  EXPECT_TRUE(synchronize(ctx).ok());
  r.h = h.get();
  r.info = info.get();
  return r;
}

class ShermanMorrisonTest : public BackendTest {
 protected:
  template <class T>
  void check_rank1(index_t n, index_t k, index_t batch, const Rank1Options& o, double u_scale,
                   index_t pad) {
    SCOPED_TRACE(trace() + ", n " + std::to_string(n) + ", k " + std::to_string(k) + ", decay " +
                 std::to_string(o.decay) + ", weight " + std::to_string(o.weight) +
                 (sizeof(T) == 4 ? ", float" : ", double"));
    const double cond = 10;
    const auto h0 = spd<T>(batch, n, cond, rng_, true, 1.0, pad, 2 * pad);
    const auto u = gaussian<T>(batch, k, n, rng_, u_scale / std::sqrt(double(n)), pad, pad);
    const auto r = run_rank1(backend(), h0, u, o);
    ASSERT_TRUE(r.status.ok()) << r.status.to_string();
    const auto written = [&](index_t i, index_t j) { return o.mirror_upper || j <= i; };
    expect_untouched_outside(h0, r.h, written, "rank1_update");
    for (index_t b = 0; b < batch; ++b) {
      ASSERT_EQ(r.info[b], 0);
      if (!o.mirror_upper) continue;
      for (index_t i = 0; i < n; ++i)
        for (index_t j = 0; j < i; ++j) ASSERT_EQ(r.h(b, i, j), r.h(b, j, i));
    }
    if (backend() == Backend::reference) return;
    const auto ref = run_rank1(Backend::reference, h0, u, o);
    EXPECT_EQ(r.info, ref.info);
    // The updated inverse stays within a factor (1 + k |u|^2 |H|)-ish of the start; with the
    // scales used here its condition number stays below 4 cond.
    EXPECT_LE(max_rel_err(r.h, ref.h, written), 16.0 * double(n + k) * 4 * cond * eps<T>());
  }
};

TEST_P(ShermanMorrisonTest, Rank1ChainMatchesReference) {
  for (index_t n : {1, 2, 5, 8, 16, 17, 33, 64})
    for (index_t k : {0, 1, 3, 8, 9, 20}) {
      const index_t batch = n <= 16 ? 7 : 3;
      check_rank1<float>(n, k, batch, Rank1Options::update(), 1.0, n % 2);
      check_rank1<double>(n, k, batch, Rank1Options::update(), 1.0, 0);
      check_rank1<double>(n, k, batch, Rank1Options::ema(0.9), 1.0, 1);
      check_rank1<float>(n, k, batch, Rank1Options::ema(0.95), 1.0, 0);
      // Small vectors keep a downdate chain positive definite: u^T H u <= |H| |u|^2 ~ 0.05.
      Rank1Options down = Rank1Options::downdate();
      down.mirror_upper = false;
      check_rank1<double>(n, k, batch, down, 0.1 / std::sqrt(double(k + 1)), 1);
      check_rank1<float>(n, k, batch, down, 0.1 / std::sqrt(double(k + 1)), 0);
    }
}

// H after k updates from I / lambda equals inv(lambda I + sum_j u_j u_j^T).
template <class T>
void check_chain_against_direct_inverse(Backend backend, index_t n, index_t k,
                                        std::mt19937_64& rng) {
  SCOPED_TRACE("n " + std::to_string(n) + ", k " + std::to_string(k));
  const index_t batch = 3;
  const double lambda = 0.5;
  Operand<T> h0(batch, n, n);
  for (index_t b = 0; b < batch; ++b)
    for (index_t i = 0; i < n; ++i)
      for (index_t j = 0; j < n; ++j) h0(b, i, j) = i == j ? T(1 / lambda) : T(0);
  // Gradients in a few dominant directions plus noise: an anisotropic G, as in training.
  const auto u = gaussian<T>(batch, k, n, rng, 1.0 / std::sqrt(double(n)));
  const auto r = run_rank1(backend, h0, u, Rank1Options::update());
  ASSERT_TRUE(r.status.ok());
  // G = lambda I + sum u u^T, inverted by the SPD family (potri, reference backend, double).
  Operand<double> direct(batch, n, n);
  double worst_cond = 1;
  for (index_t b = 0; b < batch; ++b) {
    double trace = 0;
    for (index_t i = 0; i < n; ++i)
      for (index_t c = 0; c < n; ++c) {
        double v = i == c ? lambda : 0.0;
        for (index_t j = 0; j < k; ++j) v += double(u(b, j, i)) * double(u(b, j, c));
        direct(b, i, c) = v;
        if (i == c) trace += v;
      }
    worst_cond = std::max(worst_cond, trace / lambda);  // lambda_max <= trace, lambda_min >= lambda
    EXPECT_EQ(r.info[b], 0);
  }
  std::vector<int> potri_info(batch, -1);
  ASSERT_TRUE(potri(Context::reference(), direct.l.view(direct.v.data()), potri_info.data()).ok());
  EXPECT_EQ(potri_info, std::vector<int>(batch, 0));
  EXPECT_LE(max_rel_err(r.h, direct), 16.0 * double(n + k) * worst_cond * eps<T>());
}

TEST_P(ShermanMorrisonTest, Rank1ChainEqualsInverseOfTheSum) {
  SCOPED_TRACE(trace());
  for (index_t k : {1, 2, 7, 8, 31, 64, 256}) {
    check_chain_against_direct_inverse<double>(backend(), 16, k, rng_);
    check_chain_against_direct_inverse<double>(backend(), 33, k, rng_);
    check_chain_against_direct_inverse<float>(backend(), 32, k, rng_);
  }
}

// A down-date that leaves G indefinite (1 - u^T H u < 0) or singular (= 0) fails for that
// matrix only, with info = the vector's index and NaN output; NaN vectors give -index.
TEST_P(ShermanMorrisonTest, Rank1FailuresArePerMatrix) {
  SCOPED_TRACE(trace());
  const index_t n = 6, k = 3, batch = 4;
  Operand<double> h0(batch, n, n);
  for (index_t b = 0; b < batch; ++b)
    for (index_t i = 0; i < n; ++i)
      for (index_t j = 0; j < n; ++j) h0(b, i, j) = i == j ? 1.0 : 0.0;  // H = G = I
  auto u = gaussian<double>(batch, k, n, rng_, 0.05);
  // Matrix 1: vector 2 has |u|^2 = 4, so 1 - u^T H u < 0.  Matrix 2: vector 3 is a unit
  // vector of a direction untouched before: 1 - u^T H u = 0 exactly.  Matrix 3: NaN in vector 1.
  for (index_t i = 0; i < n; ++i) u(1, 1, i) = i == 0 ? 2.0 : 0.0;
  for (index_t i = 0; i < n; ++i) {
    u(2, 0, i) = u(2, 1, i) = 0.0;
    u(2, 2, i) = i == 3 ? 1.0 : 0.0;
  }
  u(3, 0, 2) = std::numeric_limits<double>::quiet_NaN();
  const auto r = run_rank1(backend(), h0, u, Rank1Options::downdate());
  ASSERT_TRUE(r.status.ok());
  EXPECT_EQ(r.info, (std::vector<int>{0, 2, 3, -1}));
  EXPECT_FALSE(all_nan(r.h, 0));
  for (index_t b = 1; b < batch; ++b) EXPECT_TRUE(all_nan(r.h, b)) << "matrix " << b;
}

// MBAG's pattern: 10^4 single-vector updates in float, never refreshed.  Measured drift
// relative to the directly computed inverse (docs/algorithms.md): ~5e-5 at n = 16 with
// kappa(G) ~ 460, for the reference (rounding to float after every update) and Kokkos alike.
// Checked against the random-walk accumulation bound sqrt(steps) n eps(float) kappa(G)
// (~0.09 here): rounding errors of independent updates add like a random walk.
TEST_P(ShermanMorrisonTest, FloatDriftOverTenThousandUpdates) {
  SCOPED_TRACE(trace());
  const index_t n = 16, batch = 2, steps = 10000;
  const double lambda = 0.1;
  Operand<float> h(batch, n, n);
  for (index_t b = 0; b < batch; ++b)
    for (index_t i = 0; i < n; ++i)
      for (index_t j = 0; j < n; ++j) h(b, i, j) = i == j ? float(1 / lambda) : 0.0f;
  std::vector<double> g(static_cast<std::size_t>(batch * n * n), 0.0);
  for (index_t b = 0; b < batch; ++b)
    for (index_t i = 0; i < n; ++i) g[(b * n + i) * n + i] = lambda;
  // Gradients concentrated in 4 directions (plus small noise), decaying like 1/sqrt(t).
  const auto q = random_orthogonal(n, rng_);
  std::normal_distribution<double> nd;
  OnBackend<float> hb(backend(), h);
  IntsOnBackend info(backend(), batch);
  const Context c = ctx();
  Operand<float> u(batch, 1, n);
  for (index_t t = 0; t < steps; ++t) {
    const double scale = 1.0 / std::sqrt(double(t + 1));
    for (index_t b = 0; b < batch; ++b) {
      double z[4] = {nd(rng_), nd(rng_), nd(rng_), nd(rng_)};
      for (index_t i = 0; i < n; ++i) {
        double v = 1e-3 * nd(rng_);
        for (int d = 0; d < 4; ++d) v += z[d] * q[d * n + i];
        u(b, 0, i) = float(scale * v);
      }
      for (index_t i = 0; i < n; ++i)
        for (index_t j = 0; j < n; ++j)
          g[(b * n + i) * n + j] += double(u(b, 0, i)) * double(u(b, 0, j));
    }
    OnBackend<float> ub(backend(), u);
    ASSERT_TRUE(rank1_update(c, hb.view(), ub.cview(), info.data()).ok());
  }
  ASSERT_TRUE(synchronize(c).ok());
  const auto out = hb.get();
  EXPECT_EQ(info.get(), std::vector<int>(batch, 0));
  Operand<double> direct(batch, n, n);
  double worst_cond = 1;
  for (index_t b = 0; b < batch; ++b) {
    const std::vector<double> gb(g.begin() + b * n * n, g.begin() + (b + 1) * n * n);
    double trace = 0;
    for (index_t i = 0; i < n; ++i) trace += gb[i * n + i];
    worst_cond = std::max(worst_cond, trace / lambda);
    const auto inv = spd_inverse(gb, n);
    for (index_t i = 0; i < n; ++i)
      for (index_t j = 0; j < n; ++j) direct(b, i, j) = inv[i * n + j];
  }
  const double drift = max_rel_err(out, direct);
  RecordProperty("drift", std::to_string(drift));
  std::printf(
      "[ drift    ] %s: float chain of %lld updates, n %lld: relative error %.3g "
      "(kappa(G) <= %.3g)\n",
      to_string(backend()), (long long)steps, (long long)n, drift, worst_cond);
  EXPECT_LE(drift, std::sqrt(double(steps)) * double(n) * eps<float>() * worst_cond);
}

// ---- Woodbury ---------------------------------------------------------------------------------

template <class T>
struct WoodburyRun {
  Status status;
  Operand<T> x;
  std::vector<int> info;
};

template <class T>
WoodburyRun<T> run_woodbury(Backend backend, const Operand<T>& ut, const Operand<T>& b,
                            const WoodburyOptions& o, const Operand<T>* c = nullptr,
                            const Operand<T>* gram = nullptr) {
  OnBackend<T> u(backend, ut), x(backend, b);
  std::unique_ptr<OnBackend<T>> cb, gb;
  if (c) cb = std::make_unique<OnBackend<T>>(backend, *c);
  if (gram) gb = std::make_unique<OnBackend<T>>(backend, *gram);
  IntsOnBackend info(backend, ut.l.batch);
  Context ctx = context_for(backend);
  const std::size_t ws = woodbury_solve_workspace_size(ctx, u.cview(), x.cview());
  Buffer<double> work(backend, ws / sizeof(double) + 1);
  ctx.set_workspace(work.data(), ws);
  WoodburyRun<T> r;
  r.status = woodbury_solve(ctx, u.cview(), x.view(), info.data(), o,
                            cb ? cb->cview() : MatrixBatch<const T>{},
                            gb ? gb->cview() : MatrixBatch<const T>{});
  EXPECT_TRUE(synchronize(ctx).ok());
  r.x = x.get();
  r.info = info.get();
  return r;
}

// ||(lambda I + U C U^T) x - b|| / (||lambda I + U C U^T|| ||x||) per matrix (double).
template <class T>
double woodbury_residual(const Operand<T>& ut, const Operand<T>& b, const Operand<T>& x,
                         double lambda, const std::vector<std::vector<double>>& cmat) {
  const index_t k = ut.l.rows, n = ut.l.cols, nrhs = b.l.cols;
  double worst = 0;
  for (index_t m = 0; m < ut.l.batch; ++m) {
    std::vector<double> g(static_cast<std::size_t>(n * n), 0.0);
    for (index_t i = 0; i < n; ++i)
      for (index_t j = 0; j < n; ++j) {
        double s = i == j ? lambda : 0.0;
        for (index_t p = 0; p < k; ++p)
          for (index_t q = 0; q < k; ++q)
            s += double(ut(m, p, i)) * cmat[m][p * k + q] * double(ut(m, q, j));
        g[i * n + j] = s;
      }
    double num = 0, ng = 0, nx = 0;
    for (double v : g) ng += v * v;
    for (index_t i = 0; i < n; ++i)
      for (index_t c = 0; c < nrhs; ++c) {
        double s = -double(b(m, i, c));
        for (index_t j = 0; j < n; ++j) s += g[i * n + j] * double(x(m, j, c));
        num += s * s;
        nx += double(x(m, i, c)) * double(x(m, i, c));
      }
    worst = std::max(worst, std::sqrt(num / (ng * nx)));
  }
  return worst;
}

TEST_P(ShermanMorrisonTest, WoodburyMatchesDenseSolve) {
  for (WoodburyC form : {WoodburyC::scalar, WoodburyC::diagonal, WoodburyC::matrix})
    for (index_t n : {1, 5, 16, 33, 70})
      for (index_t k : {1, 3, 8, 40})
        for (index_t nrhs : {1, 3})
          for (bool with_gram : {false, true}) {
            SCOPED_TRACE(trace() + ", form " + std::to_string(int(form)) + ", n " +
                         std::to_string(n) + ", k " + std::to_string(k) + ", nrhs " +
                         std::to_string(nrhs) + (with_gram ? ", gram given" : ""));
            using T = double;
            const index_t batch = 3;
            WoodburyOptions o;
            o.lambda = 0.5;
            o.c_scale = 0.3;
            o.c_form = form;
            auto ut = gaussian<T>(batch, k, n, rng_, 1.0, k % 2, 1);
            if (k > 2)  // rank-deficient U: a repeated and a scaled row
              for (index_t i = 0; i < n; ++i) {
                ut(0, 1, i) = ut(0, 0, i);
                ut(1, 2, i) = 2 * ut(1, 0, i);
              }
            const auto b = gaussian<T>(batch, n, nrhs, rng_, 1.0, nrhs % 2, 3);
            Operand<T> c;
            std::vector<std::vector<double>> cmat(batch, std::vector<double>(k * k, 0.0));
            double c_max = o.c_scale, c_min = o.c_scale;
            if (form == WoodburyC::diagonal) {
              c = Operand<T>(batch, 1, k);
              std::uniform_real_distribution<double> ud(0.2, 2.0);
              for (index_t m = 0; m < batch; ++m)
                for (index_t i = 0; i < k; ++i) c(m, 0, i) = T(ud(rng_));
              c_max = 2.0, c_min = 0.2;
            } else if (form == WoodburyC::matrix) {
              c = spd<T>(batch, k, 10.0, rng_, true);
              c_max = 2.0, c_min = 0.05;
            }
            for (index_t m = 0; m < batch; ++m)
              for (index_t i = 0; i < k; ++i)
                for (index_t j = 0; j < k; ++j) {
                  if (form == WoodburyC::scalar) cmat[m][i * k + j] = i == j ? o.c_scale : 0;
                  if (form == WoodburyC::diagonal) cmat[m][i * k + j] = i == j ? c(m, 0, i) : 0;
                  if (form == WoodburyC::matrix)
                    cmat[m][i * k + j] = c(m, std::max(i, j), std::min(i, j));
                }
            Operand<T> gram;
            if (with_gram) {
              gram = Operand<T>(batch, k, k);
              for (index_t m = 0; m < batch; ++m)
                for (index_t i = 0; i < k; ++i)
                  for (index_t j = 0; j <= i; ++j) {
                    double s = 0;
                    for (index_t q = 0; q < n; ++q) s += double(ut(m, i, q)) * double(ut(m, j, q));
                    gram(m, i, j) = T(s);
                  }
            }
            const auto r =
                run_woodbury(backend(), ut, b, o, form == WoodburyC::scalar ? nullptr : &c,
                             with_gram ? &gram : nullptr);
            ASSERT_TRUE(r.status.ok()) << r.status.to_string();
            EXPECT_EQ(r.info, std::vector<int>(batch, 0));
            expect_untouched_outside(
                b, r.x, [](index_t, index_t) { return true; }, "woodbury");
            // kappa(M) <= (lambda / c_min + |U|_F^2) / (lambda / c_max) with M = lambda C^-1 + U^T
            // U.
            double u2 = 0;  // max_m |U_m|_F^2
            for (index_t m = 0; m < batch; ++m) {
              double f = 0;
              for (index_t i = 0; i < k; ++i)
                for (index_t q = 0; q < n; ++q) f += double(ut(m, i, q)) * double(ut(m, i, q));
              u2 = std::max(u2, f);
            }
            const double kappa = (o.lambda / c_min + u2) / (o.lambda / c_max);
            const double tol = 16.0 * double(n + k) * kappa * eps<T>();
            EXPECT_LE(woodbury_residual(ut, b, r.x, o.lambda, cmat), tol);
            if (backend() != Backend::reference) {
              const auto ref = run_woodbury(Backend::reference, ut, b, o,
                                            form == WoodburyC::scalar ? nullptr : &c);
              EXPECT_LE(max_rel_err(r.x, ref.x), tol);
            }
          }
}

// TENGraD / SMW-NG: (1/alpha)(g - (J^T/m)(J J^T/m + alpha I)^{-1} J g) is woodbury_solve with
// ut = J, lambda = alpha, C = I/m; it equals the damped Fisher solve (J^T J/m + alpha I)^-1 g
// and a chain of m rank-1 updates of I/alpha with u = J_j / sqrt(m), applied to g.  Dropping
// the 1/m (C = I) must give a clearly different answer: a test of the test.
TEST_P(ShermanMorrisonTest, TengradScaledFormAndItsNegative) {
  SCOPED_TRACE(trace());
  using T = double;
  const index_t m = 12, p = 50, batch = 2;
  const double alpha = 0.2;
  // Per-sample gradients of norm ~1: J J^T / m ~ I / m is comparable to alpha, as in training
  // with the paper's alpha = 0.1..0.3, so the 1/m matters.
  const auto j = gaussian<T>(batch, m, p, rng_, 1.0 / std::sqrt(double(p)));
  const auto g = gaussian<T>(batch, p, 1, rng_);
  WoodburyOptions o;
  o.lambda = alpha;
  o.c_scale = 1.0 / m;
  const auto r = run_woodbury(backend(), j, g, o);
  ASSERT_TRUE(r.status.ok());
  // Dense damped Fisher solve.
  std::vector<std::vector<double>> cmat(batch, std::vector<double>(m * m, 0.0));
  for (auto& cm : cmat)
    for (index_t i = 0; i < m; ++i) cm[i * m + i] = 1.0 / m;
  EXPECT_LE(woodbury_residual(j, g, r.x, alpha, cmat), 16.0 * (p + m) * 100 * eps<T>());
  // Chain of m rank-1 updates from I / alpha.
  Operand<T> h0(batch, p, p);
  for (index_t b = 0; b < batch; ++b)
    for (index_t i = 0; i < p; ++i)
      for (index_t c = 0; c < p; ++c) h0(b, i, c) = i == c ? 1 / alpha : 0;
  Operand<T> u(batch, m, p);
  for (index_t b = 0; b < batch; ++b)
    for (index_t i = 0; i < m; ++i)
      for (index_t c = 0; c < p; ++c) u(b, i, c) = j(b, i, c) / std::sqrt(double(m));
  const auto chain = run_rank1(backend(), h0, u, Rank1Options::update());
  Operand<T> hg(batch, p, 1);
  for (index_t b = 0; b < batch; ++b)
    for (index_t i = 0; i < p; ++i) {
      double s = 0;
      for (index_t c = 0; c < p; ++c) s += chain.h(b, i, c) * g(b, c, 0);
      hg(b, i, 0) = s;
    }
  EXPECT_LE(max_rel_err(hg, r.x), 16.0 * (p + m) * 100 * eps<T>());
  // Without the 1/m.
  WoodburyOptions wrong = o;
  wrong.c_scale = 1.0;
  const auto bad = run_woodbury(backend(), j, g, wrong);
  EXPECT_GT(max_rel_err(bad.x, r.x), 0.1);
}

TEST_P(ShermanMorrisonTest, WoodburyFailuresArePerMatrix) {
  SCOPED_TRACE(trace());
  using T = double;
  const index_t k = 3, n = 7, batch = 3;
  const auto ut = gaussian<T>(batch, k, n, rng_);
  const auto b = gaussian<T>(batch, n, 2, rng_);
  WoodburyOptions o;
  o.c_form = WoodburyC::matrix;
  auto c = spd<T>(batch, k, 5.0, rng_, true);
  c(1, 1, 1) = -5;  // C of matrix 1 is indefinite at minor 2 -> info k + 2
  c(2, 0, 0) = std::numeric_limits<T>::infinity();
  const auto r = run_woodbury(backend(), ut, b, o, &c);
  ASSERT_TRUE(r.status.ok());
  EXPECT_EQ(r.info, (std::vector<int>{0, int(k) + 2, -int(k) - 1}));
  EXPECT_FALSE(all_nan(r.x, 0));
  EXPECT_TRUE(all_nan(r.x, 1));
  EXPECT_TRUE(all_nan(r.x, 2));
  o.c_form = WoodburyC::diagonal;
  Operand<T> d(batch, 1, k);
  for (index_t m = 0; m < batch; ++m)
    for (index_t i = 0; i < k; ++i) d(m, 0, i) = 1;
  d(2, 0, 2) = 0;  // not positive
  const auto r2 = run_woodbury(backend(), ut, b, o, &d);
  EXPECT_EQ(r2.info, (std::vector<int>{0, 0, int(k) + 3}));
}

TEST_P(ShermanMorrisonTest, EmptyBatchesAndSizes) {
  SCOPED_TRACE(trace());
  // batch 0, n 0 and k 0 are valid and write nothing / apply nothing.
  for (index_t batch : {0, 2}) {
    const auto h0 = spd<float>(batch, 4, 5.0, rng_, false);
    const auto u0 = gaussian<float>(batch, 0, 4, rng_);
    const auto r = run_rank1(backend(), h0, u0, Rank1Options::update());
    ASSERT_TRUE(r.status.ok());
    EXPECT_EQ(max_rel_err(r.h, h0), 0.0);
    const auto ut = gaussian<float>(batch, 0, 5, rng_);
    const auto b = gaussian<float>(batch, 5, 2, rng_);
    WoodburyOptions o;
    o.lambda = 2;
    const auto w = run_woodbury(backend(), ut, b, o);  // k = 0: x = b / lambda
    ASSERT_TRUE(w.status.ok());
    for (index_t m = 0; m < batch; ++m)
      for (index_t i = 0; i < 5; ++i)
        for (index_t c = 0; c < 2; ++c) EXPECT_FLOAT_EQ(w.x(m, i, c), b(m, i, c) / 2);
  }
}

TEST_P(ShermanMorrisonTest, BadArgumentsAreRejectedWithoutSideEffects) {
  SCOPED_TRACE(trace());
  using T = double;
  const auto h0 = spd<T>(2, 5, 5.0, rng_, false);
  const auto u0 = gaussian<T>(2, 3, 5, rng_);
  OnBackend<T> h(backend(), h0), u(backend(), u0);
  IntsOnBackend info(backend(), 2, 42);
  const Context c = ctx();
  auto expect_invalid = [&](Status s, const char* needle) {
    EXPECT_EQ(s.code(), StatusCode::invalid_argument) << s.to_string();
    EXPECT_NE(s.message().find(needle), std::string::npos) << s.message();
  };
  auto hv = h.view();
  auto uv = u.cview();
  Rank1Options bad_decay;
  bad_decay.decay = 0;
  expect_invalid(rank1_update(c, hv, uv, info.data(), bad_decay), "decay");
  auto u_wrong = uv;
  u_wrong.cols = 4;
  expect_invalid(rank1_update(c, hv, u_wrong, info.data()), "u is");
  auto u_batch = uv;
  u_batch.batch = 1;
  expect_invalid(rank1_update(c, hv, u_batch, info.data()), "u is");
  MatrixBatch<const T> alias{hv.data, 2, 3, 5, 5, 25};
  expect_invalid(rank1_update(c, hv, alias, info.data()), "overlaps");
  expect_invalid(rank1_update(c, hv, uv, nullptr), "info");
  auto h_rect = hv;
  h_rect.cols = 4;
  expect_invalid(rank1_update(c, h_rect, uv, info.data()), "square");
  // Woodbury.
  auto b0 = gaussian<T>(2, 5, 1, rng_);
  OnBackend<T> b(backend(), b0);
  WoodburyOptions o;
  o.lambda = 0;
  expect_invalid(woodbury_solve(c, uv, b.view(), info.data(), o), "lambda");
  o.lambda = 1;
  auto b_wrong = b.view();
  b_wrong.rows = 4;
  expect_invalid(woodbury_solve(c, uv, b_wrong, info.data(), o), "b must be");
  o.c_form = WoodburyC::diagonal;
  expect_invalid(woodbury_solve(c, uv, b.view(), info.data(), o), "c is required");
  o.c_form = WoodburyC::scalar;
  o.c_scale = -1;
  expect_invalid(woodbury_solve(c, uv, b.view(), info.data(), o), "c_scale");
  o.c_scale = 1;
  MatrixBatch<const T> g_wrong{u.cview().data, 2, 3, 2, 2, 6};
  expect_invalid(woodbury_solve(c, uv, b.view(), info.data(), o, {}, g_wrong), "gram is");
  // Nothing was written.
  EXPECT_EQ(max_rel_err(h.get(), h0), 0.0);
  EXPECT_EQ(max_rel_err(b.get(), b0), 0.0);
  EXPECT_EQ(info.get(), std::vector<int>(2, 42));
}

INSTANTIATE_TEST_SUITE_P(Backends, ShermanMorrisonTest,
                         ::testing::Values(Backend::reference, Backend::kokkos, Backend::cuda),
                         backend_test_name);

}  // namespace
}  // namespace curvkit::test
