// Sherman–Morrison / Woodbury family tests, part 2 (quasi-Newton): every compiled backend
// against the reference on fresh random inputs, plus the identities of the thesis
// (research/seeds-ren-thesis.md §13.2):
//   secant equation H+ y = s after a BFGS update; H+ = H when H y = s already;
//   Theorem 1: BFGS with the Hessian-action pair from H = A^{-1} equals the Sherman–Morrison
//     inverse of A + c a a^T;
//   damping inequalities s~^T y >= mu1 y^T H y and s~^T y~ >= mu2 |s~|^2 (equality when the
//     damping triggered), theta in (0, 1];
//   compact L-BFGS = two-loop = p successive BFGS updates from gamma I.
// Tolerances: c (n + k) kappa eps(T), c = 16, kappa a bound on the condition number involved.
#include "family_test_util.hpp"

namespace curvkit::test {
namespace {

template <class T>
struct QnRun {
  Status status;
  Operand<T> a, b;  // the op's in/out operands (H, or s and y, or X)
  std::vector<int> info, flags;
  std::vector<T> theta;
};

template <class T>
QnRun<T> run_bfgs(Backend backend, const Operand<T>& h0, const Operand<T>& s, const Operand<T>& y,
                  const BfgsOptions& o, const std::vector<int>* mask = nullptr) {
  OnBackend<T> h(backend, h0), sb(backend, s), yb(backend, y);
  IntsOnBackend info(backend, h0.l.batch), skipped(backend, h0.l.batch);
  std::unique_ptr<Buffer<int>> mb;
  if (mask) mb = std::make_unique<Buffer<int>>(backend, *mask);
  const Context ctx = context_for(backend);
  QnRun<T> r;
  r.status = bfgs_update(ctx, h.view(), sb.cview(), yb.cview(), info.data(), o,
                         mb ? mb->data() : nullptr, skipped.data());
  EXPECT_TRUE(synchronize(ctx).ok());
  r.a = h.get();
  r.info = info.get();
  r.flags = skipped.get();
  return r;
}

template <class T>
QnRun<T> run_damping(Backend backend, const Operand<T>* h0, const Operand<T>& s,
                     const Operand<T>& y, const DampingOptions& o) {
  std::unique_ptr<OnBackend<T>> h;
  if (h0) h = std::make_unique<OnBackend<T>>(backend, *h0);
  OnBackend<T> sb(backend, s), yb(backend, y);
  IntsOnBackend info(backend, s.l.batch), skip(backend, s.l.batch);
  Buffer<T> theta(backend, std::size_t(2 * s.l.batch + 1));
  const Context ctx = context_for(backend);
  QnRun<T> r;
  r.status = bfgs_damping(ctx, h ? h->cview() : MatrixBatch<const T>{}, sb.view(), yb.view(),
                          info.data(), o, theta.data(), skip.data());
  EXPECT_TRUE(synchronize(ctx).ok());
  r.a = sb.get();
  r.b = yb.get();
  r.info = info.get();
  r.flags = skip.get();
  r.theta = theta.download();
  r.theta.resize(2 * s.l.batch);
  return r;
}

template <class T>
QnRun<T> run_hessian_action(Backend backend, const Operand<T>& h0, const Operand<T>& abar,
                            const Operand<T>& x, const HessianActionOptions& o) {
  OnBackend<T> h(backend, h0), ab(backend, abar), xb(backend, x);
  Operand<T> out(h0.l.batch, 1, h0.l.rows);
  OnBackend<T> s(backend, out), y(backend, out);
  IntsOnBackend info(backend, h0.l.batch);
  const Context ctx = context_for(backend);
  QnRun<T> r;
  r.status = hessian_action_pair(ctx, h.cview(), ab.cview(), xb.cview(), s.view(), y.view(),
                                 info.data(), o);
  EXPECT_TRUE(synchronize(ctx).ok());
  r.a = s.get();
  r.b = y.get();
  r.info = info.get();
  return r;
}

enum class Lbfgs { compact, compact_given_products, two_loop };

template <class T>
QnRun<T> run_lbfgs(Backend backend, Lbfgs which, const Operand<T>& s, const Operand<T>& y,
                   const Operand<T>& x0, const LbfgsOptions& o) {
  OnBackend<T> sb(backend, s), yb(backend, y), x(backend, x0);
  IntsOnBackend info(backend, s.l.batch);
  Context ctx = context_for(backend);
  const std::size_t ws = which == Lbfgs::two_loop
                             ? lbfgs_two_loop_workspace_size(ctx, sb.cview(), x.cview())
                             : lbfgs_apply_workspace_size(ctx, sb.cview(), x.cview());
  Buffer<double> work(backend, ws / sizeof(double) + 1);
  ctx.set_workspace(work.data(), ws);
  QnRun<T> r;
  if (which == Lbfgs::two_loop) {
    r.status = lbfgs_two_loop(ctx, sb.cview(), yb.cview(), x.view(), info.data(), o);
  } else if (which == Lbfgs::compact) {
    r.status = lbfgs_apply(ctx, sb.cview(), yb.cview(), x.view(), info.data(), o);
  } else {
    const index_t p = s.l.rows;
    Operand<T> sty(s.l.batch, p, p, 1, 0), yty(s.l.batch, p, p);
    for (index_t b = 0; b < s.l.batch; ++b)
      for (index_t i = 0; i < p; ++i)
        for (index_t j = 0; j < p; ++j) {
          double a = 0, c = 0;
          for (index_t q = 0; q < s.l.cols; ++q) {
            a += double(s(b, i, q)) * double(y(b, j, q));
            c += double(y(b, i, q)) * double(y(b, j, q));
          }
          sty(b, i, j) = T(a);
          yty(b, i, j) = T(c);
        }
    OnBackend<T> stb(backend, sty), ytb(backend, yty);
    r.status = lbfgs_apply(ctx, sb.cview(), yb.cview(), x.view(), info.data(), o, stb.cview(),
                           ytb.cview());
  }
  EXPECT_TRUE(synchronize(ctx).ok());
  r.a = x.get();
  r.info = info.get();
  return r;
}

// Pairs with s^T y > 0: y = A s for SPD A of condition `cond` (one A per matrix and pair).
template <class T>
std::pair<Operand<T>, Operand<T>> curvature_pairs(index_t batch, index_t k, index_t n, double cond,
                                                  std::mt19937_64& rng, index_t pad = 0) {
  auto s = gaussian<T>(batch, k, n, rng, 1.0, pad, pad);
  Operand<T> y(batch, k, n, pad, pad);
  for (index_t b = 0; b < batch; ++b)
    for (index_t j = 0; j < k; ++j) {
      const auto a = random_spd(n, cond, rng);
      for (index_t i = 0; i < n; ++i) {
        double v = 0;
        for (index_t c = 0; c < n; ++c) v += a[i * n + c] * double(s(b, j, c));
        y(b, j, i) = T(v);
      }
    }
  return {s, y};
}

class QuasiNewtonTest : public BackendTest {};

TEST_P(QuasiNewtonTest, BfgsMatchesReferenceAndSatisfiesTheSecantEquation) {
  for (index_t n : {1, 2, 4, 9, 16, 33})
    for (index_t k : {1, 3}) {
      auto check = [&](auto tag, bool mirror) {
        using T = decltype(tag);
        SCOPED_TRACE(trace() + ", n " + std::to_string(n) + ", k " + std::to_string(k) +
                     (sizeof(T) == 4 ? ", float" : ", double"));
        const index_t batch = 5;
        const double cond = 10;
        const auto h0 = spd<T>(batch, n, cond, rng_, true, 1.0, n % 3, 1);
        const auto [s, y] = curvature_pairs<T>(batch, k, n, cond, rng_, 1);
        BfgsOptions o;
        o.mirror_upper = mirror;
        const auto r = run_bfgs(backend(), h0, s, y, o);
        ASSERT_TRUE(r.status.ok()) << r.status.to_string();
        EXPECT_EQ(r.info, std::vector<int>(batch, 0));
        expect_untouched_outside(
            h0, r.a, [&](index_t i, index_t j) { return mirror || j <= i; }, "bfgs_update");
        // BFGS with pairs of curvature cond keeps kappa(H) below ~cond^3 for k <= 3.
        const double tol = 16.0 * double(n + k) * cond * cond * cond * eps<T>();
        // Secant equation for the last pair: |H+ y - s| / (|H+| |y|).
        for (index_t b = 0; b < batch; ++b) {
          double num = 0, nh = 0, ny = 0;
          for (index_t i = 0; i < n; ++i) {
            double v = -double(s(b, k - 1, i));
            for (index_t c = 0; c < n; ++c) {
              const double hic = double(r.a(b, std::max(i, c), std::min(i, c)));
              v += hic * double(y(b, k - 1, c));
              nh += hic * hic;
            }
            num += v * v;
            ny += double(y(b, k - 1, i)) * double(y(b, k - 1, i));
          }
          EXPECT_LE(std::sqrt(num / (nh * ny)), tol) << "secant equation, matrix " << b;
        }
        if (backend() == Backend::reference) return;
        const auto ref = run_bfgs(Backend::reference, h0, s, y, o);
        EXPECT_LE(max_rel_err(r.a, ref.a, [&](index_t i, index_t j) { return mirror || j <= i; }),
                  tol);
      };
      check(double{}, true);
      check(float{}, false);
    }
}

TEST_P(QuasiNewtonTest, BfgsIsInvariantWhenTheSecantEquationAlreadyHolds) {
  SCOPED_TRACE(trace());
  const index_t n = 12, batch = 3;
  const auto h0 = spd<double>(batch, n, 20.0, rng_, false);
  const auto y = gaussian<double>(batch, 1, n, rng_);
  Operand<double> s(batch, 1, n);
  for (index_t b = 0; b < batch; ++b)
    for (index_t i = 0; i < n; ++i) {
      double v = 0;
      for (index_t c = 0; c < n; ++c) v += h0(b, i, c) * y(b, 0, c);
      s(b, 0, i) = v;  // s = H y
    }
  const auto r = run_bfgs(backend(), h0, s, y, BfgsOptions{});
  EXPECT_LE(max_rel_err(r.a, h0), 16.0 * n * 20 * eps<double>());
}

// Rejected pairs (s^T y <= 0), NaN pairs, the skip options and the skip mask.
TEST_P(QuasiNewtonTest, BfgsRejectsBadPairs) {
  SCOPED_TRACE(trace());
  const index_t n = 6, k = 2, batch = 4;
  const auto h0 = spd<double>(batch, n, 5.0, rng_, false);
  auto [s, y] = curvature_pairs<double>(batch, k, n, 5.0, rng_);
  for (index_t i = 0; i < n; ++i) y(1, 1, i) = -y(1, 1, i);  // matrix 1, pair 2: s^T y < 0
  for (index_t i = 0; i < n; ++i) y(2, 0, i) = 0;            // matrix 2, pair 1: s^T y = 0
  s(3, 1, 4) = std::numeric_limits<double>::quiet_NaN();     // matrix 3, pair 2: NaN
  const auto r = run_bfgs(backend(), h0, s, y, BfgsOptions{});
  EXPECT_EQ(r.info, (std::vector<int>{0, 2, 1, -2}));
  EXPECT_FALSE(all_nan(r.a, 0));
  for (index_t b = 1; b < batch; ++b) EXPECT_TRUE(all_nan(r.a, b));
  // skip_rejected: the bad pair is left out, the others applied; NaN still fails.
  BfgsOptions skip;
  skip.skip_rejected = true;
  const auto r2 = run_bfgs(backend(), h0, s, y, skip);
  EXPECT_EQ(r2.info, (std::vector<int>{0, 0, 0, -2}));
  EXPECT_EQ(r2.flags[0], 0);
  EXPECT_EQ(r2.flags[1], 1);
  EXPECT_EQ(r2.flags[2], 1);
  Operand<double> s1 = s, y1 = y;  // matrix 1 with only its first pair
  s1.l.rows = y1.l.rows = 1;
  const auto only_first = run_bfgs(Backend::reference, h0, s1, y1, BfgsOptions{});
  EXPECT_LE(max_rel_err(
                r2.a, only_first.a, [](index_t, index_t) { return true; },
                [](index_t b) { return b == 1; }),
            1e-12);
  // The skip mask leaves masked matrices untouched.
  const std::vector<int> mask = {1, 0, 1, 1};
  const auto r3 = run_bfgs(backend(), h0, s, y, BfgsOptions{}, &mask);
  EXPECT_EQ(r3.info, (std::vector<int>{0, 2, 0, 0}));
  EXPECT_EQ(max_rel_err(
                r3.a, h0, [](index_t, index_t) { return true; }, [](index_t b) { return b != 1; }),
            0.0);
}

// Thesis Theorem 1: with H = A^{-1}, s = H a and y = (A + c a a^T) s, the BFGS update equals
// the Sherman–Morrison inverse of A + c a a^T.  The pair comes from hessian_action_pair with
// A + c a a^T = scale X^T X + lambda I, a = the first row of X, c = scale.
TEST_P(QuasiNewtonTest, HessianActionBfgsEqualsShermanMorrison) {
  for (index_t n : {3, 10, 24}) {
    SCOPED_TRACE(trace() + ", n " + std::to_string(n));
    using T = double;
    const index_t m = 2 * n, batch = 3;
    const double lambda = 0.3, scale = 1.0 / double(m);
    const auto x = gaussian<T>(batch, m, n, rng_, 1.0, 1, 2);
    Operand<T> abar(batch, 1, n), h0(batch, n, n), direct(batch, n, n);
    for (index_t b = 0; b < batch; ++b) {
      std::vector<double> a(n * n, 0.0), aplus(n * n, 0.0);
      for (index_t r = 0; r < m; ++r)
        for (index_t i = 0; i < n; ++i)
          for (index_t j = 0; j < n; ++j) {
            const double v = scale * double(x(b, r, i)) * double(x(b, r, j));
            aplus[i * n + j] += v;
            if (r > 0) a[i * n + j] += v;
          }
      for (index_t i = 0; i < n; ++i) {
        a[i * n + i] += lambda;
        aplus[i * n + i] += lambda;
        abar(b, 0, i) = x(b, 0, i);
      }
      const auto h = spd_inverse(a, n), hp = spd_inverse(aplus, n);
      for (index_t i = 0; i < n; ++i)
        for (index_t j = 0; j < n; ++j) {
          h0(b, i, j) = h[i * n + j];
          direct(b, i, j) = hp[i * n + j];
        }
    }
    HessianActionOptions ho;
    ho.lambda = lambda;
    const auto pair = run_hessian_action(backend(), h0, abar, x, ho);  // scale 1/m by default
    ASSERT_EQ(pair.info, std::vector<int>(batch, 0));
    if (backend() != Backend::reference) {
      const auto ref = run_hessian_action(Backend::reference, h0, abar, x, ho);
      EXPECT_LE(max_rel_err(pair.a, ref.a), 1e-12);
      EXPECT_LE(max_rel_err(pair.b, ref.b), 1e-12);
    }
    const auto bfgs = run_bfgs(backend(), h0, pair.a, pair.b, BfgsOptions{});
    ASSERT_EQ(bfgs.info, std::vector<int>(batch, 0));
    Rank1Options sm;
    sm.weight = scale;
    OnBackend<T> h(backend(), h0), a(backend(), abar);
    IntsOnBackend info(backend(), batch);
    ASSERT_TRUE(rank1_update(context_for(backend()), h.view(), a.cview(), info.data(), sm).ok());
    ASSERT_TRUE(synchronize(context_for(backend())).ok());
    const double kappa = 1 + double(n) / lambda;  // bound on cond(A + c a a^T)
    EXPECT_LE(max_rel_err(bfgs.a, direct), 16.0 * n * kappa * eps<T>());
    EXPECT_LE(max_rel_err(h.get(), direct), 16.0 * n * kappa * eps<T>());
  }
}

// Damping schemes: vs reference, theta in (0, 1], the guaranteed inequalities (equalities
// when the damping triggered), pairs left alone when nothing triggers.
TEST_P(QuasiNewtonTest, DampingSchemesGuaranteeTheirInequalities) {
  for (DampingScheme scheme :
       {DampingScheme::powell_lm, DampingScheme::double_damping, DampingScheme::powell_identity_lm})
    for (bool skip_test : {false, true}) {
      SCOPED_TRACE(trace() + ", scheme " + std::to_string(int(scheme)));
      using T = double;
      const index_t n = 11, batch = 40;
      const auto h0 = spd<T>(batch, n, 10.0, rng_, true);
      // Mixed curvature: s^T y of both signs and of every size relative to y^T H y.
      auto s = gaussian<T>(batch, 1, n, rng_);
      auto y = gaussian<T>(batch, 1, n, rng_);
      for (index_t b = 0; b < batch / 2; ++b)
        for (index_t i = 0; i < n; ++i) y(b, 0, i) = T(0.1 * y(b, 0, i) + s(b, 0, i) * (b % 5));
      DampingOptions o;
      o.scheme = scheme;
      o.mu1 = 0.2;
      o.mu2 = scheme == DampingScheme::double_damping ? 0.5 : 1.7;
      o.skip_test = skip_test;
      const bool uses_h = scheme != DampingScheme::powell_identity_lm || skip_test;
      const auto r = run_damping(backend(), uses_h ? &h0 : nullptr, s, y, o);
      ASSERT_TRUE(r.status.ok()) << r.status.to_string();
      EXPECT_EQ(r.info, std::vector<int>(batch, 0));
      if (backend() != Backend::reference) {
        const auto ref = run_damping(Backend::reference, uses_h ? &h0 : nullptr, s, y, o);
        EXPECT_LE(max_rel_err(r.a, ref.a), 1e-10);
        EXPECT_LE(max_rel_err(r.b, ref.b), 1e-10);
        EXPECT_EQ(r.flags, ref.flags);
        for (index_t i = 0; i < 2 * batch; ++i) EXPECT_NEAR(r.theta[i], ref.theta[i], 1e-12);
      }
      const double tol = 1e-12;
      for (index_t b = 0; b < batch; ++b) {
        std::vector<double> sv = s.dense(b), yv = y.dense(b), st = r.a.dense(b), yt = r.b.dense(b);
        std::vector<double> hy(n, 0.0);
        for (index_t i = 0; i < n; ++i)
          for (index_t c = 0; c < n; ++c)
            hy[i] += (scheme == DampingScheme::powell_identity_lm
                          ? (i == c ? 1 / o.mu2 : 0.0)
                          : double(h0(b, std::max(i, c), std::min(i, c)))) *
                     yv[c];
        auto dot = [&](const std::vector<double>& a, const std::vector<double>& c) {
          double v = 0;
          for (index_t i = 0; i < n; ++i) v += a[i] * c[i];
          return v;
        };
        const double theta1 = r.theta[2 * b], theta2 = r.theta[2 * b + 1];
        EXPECT_GT(theta1, 0);
        EXPECT_LE(theta1, 1);
        EXPECT_GT(theta2, 0);
        EXPECT_LE(theta2, 1);
        const double yhy = dot(yv, hy);
        EXPECT_GE(dot(st, yv), o.mu1 * yhy - tol * yhy);
        if (theta1 < 1) {
          EXPECT_NEAR(dot(st, yv), o.mu1 * yhy, tol * yhy);
        } else {
          for (index_t i = 0; i < n; ++i) EXPECT_EQ(st[i], sv[i]);
        }
        const double ss = dot(st, st);
        EXPECT_GE(dot(st, yt), o.mu2 * ss - tol * ss);
        if (scheme == DampingScheme::double_damping && theta2 < 1) {
          EXPECT_NEAR(dot(st, yt), o.mu2 * ss, tol * ss);
        }
      }
    }
}

TEST_P(QuasiNewtonTest, DampingWithGivenHyEqualsDampingWithH) {
  SCOPED_TRACE(trace());
  using T = double;
  const index_t n = 9, batch = 12;
  const auto h0 = spd<T>(batch, n, 10.0, rng_, false);
  auto s = gaussian<T>(batch, 1, n, rng_);
  auto y = gaussian<T>(batch, 1, n, rng_);
  for (index_t b = 0; b < batch / 2; ++b)  // half with s^T y > 0
    for (index_t i = 0; i < n; ++i) y(b, 0, i) = T(0.2 * y(b, 0, i) + s(b, 0, i));
  Operand<T> hy(batch, 1, n, 1, 2);
  for (index_t b = 0; b < batch; ++b)
    for (index_t i = 0; i < n; ++i) {
      double v = 0;
      for (index_t c = 0; c < n; ++c) v += double(h0(b, i, c)) * double(y(b, 0, c));
      hy(b, 0, i) = T(v);
    }
  DampingOptions o;
  o.mu2 = 0.6;
  const auto want = run_damping(Backend::reference, &h0, s, y, o);
  o.scheme = DampingScheme::powell_lm_hy;
  const auto r = run_damping(backend(), &hy, s, y, o);
  ASSERT_TRUE(r.status.ok()) << r.status.to_string();
  EXPECT_EQ(r.info, std::vector<int>(batch, 0));
  EXPECT_LE(max_rel_err(r.a, want.a), 1e-12);
  EXPECT_LE(max_rel_err(r.b, want.b), 1e-12);
  int damped = 0;
  for (index_t i = 0; i < batch; ++i) {
    EXPECT_NEAR(r.theta[2 * i], want.theta[2 * i], 1e-12);
    damped += want.theta[2 * i] < 1;
  }
  EXPECT_GT(damped, 0);
  EXPECT_LT(damped, batch);
  // H itself where H y is expected, and the skip test that needs H: invalid.
  o.skip_test = true;
  EXPECT_EQ(run_damping(backend(), &hy, s, y, o).status.code(), StatusCode::invalid_argument);
  o.skip_test = false;
  EXPECT_EQ(run_damping(backend(), &h0, s, y, o).status.code(), StatusCode::invalid_argument);
}

TEST_P(QuasiNewtonTest, LbfgsSkipsZeroPairsOnRequest) {
  using T = double;
  const index_t d = 13, p = 6, batch = 3, nrhs = 2;
  auto [s, y] = curvature_pairs<T>(batch, p, d, 4.0, rng_, 1);
  const auto x = gaussian<T>(batch, d, nrhs, rng_);
  // Matrix 0: pairs 1 and 5 (the newest) zero; matrix 1: none; matrix 2: all zero.
  auto zero = [&](index_t b, index_t i) {
    for (index_t c = 0; c < d; ++c) s(b, i, c) = y(b, i, c) = T(0);
  };
  zero(0, 1);
  zero(0, p - 1);
  for (index_t i = 0; i < p; ++i) zero(2, i);
  for (double gamma : {0.7, 0.0}) {
    SCOPED_TRACE(trace() + ", gamma " + std::to_string(gamma));
    LbfgsOptions o;
    o.gamma = gamma;
    // The expected result: each matrix with its zero pairs removed, without the option.
    std::vector<Operand<T>> want;
    for (index_t b = 0; b < batch; ++b) {
      std::vector<index_t> kept;
      for (index_t i = 0; i < p; ++i)
        if (!(b == 2 || (b == 0 && (i == 1 || i == p - 1)))) kept.push_back(i);
      const index_t k = index_t(kept.size());
      Operand<T> sb(1, k, d), yb(1, k, d), xb(1, d, nrhs);
      for (index_t i = 0; i < k; ++i)
        for (index_t c = 0; c < d; ++c) {
          sb(0, i, c) = s(b, kept[i], c);
          yb(0, i, c) = y(b, kept[i], c);
        }
      for (index_t i = 0; i < d; ++i)
        for (index_t c = 0; c < nrhs; ++c) xb(0, i, c) = x(b, i, c);
      const auto r = run_lbfgs(Backend::reference, Lbfgs::compact, sb, yb, xb, o);
      EXPECT_EQ(r.info, std::vector<int>{0});
      want.push_back(r.a);
    }
    o.skip_zero_pairs = true;
    for (Lbfgs which : {Lbfgs::compact, Lbfgs::two_loop}) {
      const auto r = run_lbfgs(backend(), which, s, y, x, o);
      ASSERT_TRUE(r.status.ok()) << r.status.to_string();
      EXPECT_EQ(r.info, std::vector<int>(batch, 0));
      for (index_t b = 0; b < batch; ++b) {
        double err = 0, ref = 0;
        for (index_t i = 0; i < d; ++i)
          for (index_t c = 0; c < nrhs; ++c) {
            err = std::max(err, std::abs(double(r.a(b, i, c)) - double(want[b](0, i, c))));
            ref = std::max(ref, std::abs(double(want[b](0, i, c))));
          }
        EXPECT_LE(err, 1e-12 * ref)
            << "matrix " << b << (which == Lbfgs::compact ? " compact" : " two-loop");
      }
    }
    // Without the option a zero pair is an error (info: the first one, 1-based).
    o.skip_zero_pairs = false;
    for (Lbfgs which : {Lbfgs::compact, Lbfgs::two_loop}) {
      const auto r = run_lbfgs(backend(), which, s, y, x, o);
      EXPECT_EQ(r.info, (std::vector<int>{2, 0, 1}));
      EXPECT_TRUE(all_nan(r.a, 0));
    }
  }
}

TEST_P(QuasiNewtonTest, LbfgsCompactEqualsTwoLoopEqualsBfgsChain) {
  for (index_t d : {1, 7, 40})
    for (index_t p : {0, 1, 5, 12})
      for (index_t nrhs : {1, 3})
        for (double gamma : {0.7, 0.0}) {
          SCOPED_TRACE(trace() + ", d " + std::to_string(d) + ", p " + std::to_string(p) +
                       ", nrhs " + std::to_string(nrhs) + ", gamma " + std::to_string(gamma));
          using T = double;
          const index_t batch = 3;
          const double cond = 4;
          const auto [s, y] = curvature_pairs<T>(batch, p, d, cond, rng_, 1);
          const auto x = gaussian<T>(batch, d, nrhs, rng_, 1.0, nrhs % 2, 1);
          LbfgsOptions o;
          o.gamma = gamma;
          // Pair curvatures s^T y / s^T s lie in the spectrum of A (width cond), so kappa(H_p)
          // <= cond^2 with gamma in it; the compact form's solves with R = triu(S^T Y) add at
          // most another factor cond: tolerance c (d + p) cond^3 eps.
          const double tol = 16.0 * double(d + p) * cond * cond * cond * eps<T>();
          const auto compact = run_lbfgs(backend(), Lbfgs::compact, s, y, x, o);
          const auto given = run_lbfgs(backend(), Lbfgs::compact_given_products, s, y, x, o);
          const auto two = run_lbfgs(backend(), Lbfgs::two_loop, s, y, x, o);
          for (const auto* r : {&compact, &given, &two}) {
            ASSERT_TRUE(r->status.ok()) << r->status.to_string();
            EXPECT_EQ(r->info, std::vector<int>(batch, 0));
            expect_untouched_outside(
                x, r->a, [](index_t, index_t) { return true; }, "lbfgs");
          }
          EXPECT_LE(max_rel_err(compact.a, two.a), tol);
          EXPECT_LE(max_rel_err(given.a, two.a), tol);
          const auto ref = run_lbfgs(Backend::reference, Lbfgs::compact, s, y, x, o);
          EXPECT_LE(max_rel_err(compact.a, ref.a), tol);
          EXPECT_LE(max_rel_err(two.a, ref.a), tol);
          // p successive BFGS updates from gamma I (gamma from the newest pair when 0).
          double g = gamma;
          Operand<T> h0(batch, d, d), hx(batch, d, nrhs);
          for (index_t b = 0; b < batch; ++b) {
            if (gamma == 0) {
              double sy = 0, yy = 0;
              for (index_t i = 0; i < d && p > 0; ++i) {
                sy += s(b, p - 1, i) * y(b, p - 1, i);
                yy += y(b, p - 1, i) * y(b, p - 1, i);
              }
              g = p > 0 ? sy / yy : 1.0;
            }
            for (index_t i = 0; i < d; ++i)
              for (index_t j = 0; j < d; ++j) h0(b, i, j) = i == j ? g : 0;
          }
          const auto chain = run_bfgs(backend(), h0, s, y, BfgsOptions{});
          for (index_t b = 0; b < batch; ++b)
            for (index_t i = 0; i < d; ++i)
              for (index_t c = 0; c < nrhs; ++c) {
                double v = 0;
                for (index_t j = 0; j < d; ++j) v += chain.a(b, i, j) * x(b, j, c);
                hx(b, i, c) = v;
              }
          EXPECT_LE(max_rel_err(compact.a, hx), tol);
        }
}

TEST_P(QuasiNewtonTest, LbfgsFloatAndBadPairs) {
  SCOPED_TRACE(trace());
  const index_t d = 20, p = 4, batch = 3;
  auto [s, y] = curvature_pairs<float>(batch, p, d, 3.0, rng_);
  const auto x = gaussian<float>(batch, d, 2, rng_);
  const auto ref = run_lbfgs(Backend::reference, Lbfgs::compact, s, y, x, LbfgsOptions{});
  for (Lbfgs which : {Lbfgs::compact, Lbfgs::two_loop}) {
    const auto r = run_lbfgs(backend(), which, s, y, x, LbfgsOptions{});
    EXPECT_LE(max_rel_err(r.a, ref.a), 16.0 * (d + p) * 9 * eps<float>() * 10);
  }
  for (index_t i = 0; i < d; ++i) y(1, 2, i) = -y(1, 2, i);  // pair 3 of matrix 1: s^T y < 0
  s(2, 0, 5) = std::numeric_limits<float>::infinity();       // pair 1 of matrix 2: Inf
  for (Lbfgs which : {Lbfgs::compact, Lbfgs::two_loop}) {
    const auto r = run_lbfgs(backend(), which, s, y, x, LbfgsOptions{});
    EXPECT_EQ(r.info, (std::vector<int>{0, 3, -1}));
    EXPECT_FALSE(all_nan(r.a, 0));
    EXPECT_TRUE(all_nan(r.a, 1));
    EXPECT_TRUE(all_nan(r.a, 2));
  }
}

TEST_P(QuasiNewtonTest, BadArgumentsAreRejectedWithoutSideEffects) {
  SCOPED_TRACE(trace());
  using T = double;
  const index_t n = 5, batch = 2;
  const auto h0 = spd<T>(batch, n, 5.0, rng_, false);
  auto [s0, y0] = curvature_pairs<T>(batch, 1, n, 5.0, rng_);
  OnBackend<T> h(backend(), h0), s(backend(), s0), y(backend(), y0);
  IntsOnBackend info(backend(), batch, 42);
  const Context c = ctx();
  auto expect_invalid = [&](Status st, const char* needle) {
    EXPECT_EQ(st.code(), StatusCode::invalid_argument) << st.to_string();
    EXPECT_NE(st.message().find(needle), std::string::npos) << st.message();
  };
  auto y_short = y.cview();
  y_short.cols = 4;
  expect_invalid(bfgs_update(c, h.view(), s.cview(), y_short, info.data()), "y is");
  const MatrixBatch<const T> s_in_h{h.view().data, batch, 1, n, n, n * n};
  expect_invalid(bfgs_update(c, h.view(), s_in_h, y.cview(), info.data()), "overlaps");
  BfgsOptions bo;
  bo.min_curvature = std::numeric_limits<double>::quiet_NaN();
  expect_invalid(bfgs_update(c, h.view(), s.cview(), y.cview(), info.data(), bo), "min_curvature");
  DampingOptions dopt;
  dopt.mu1 = 1.5;
  expect_invalid(bfgs_damping(c, h.cview(), s.view(), y.view(), info.data(), dopt), "mu1");
  dopt = {};
  dopt.scheme = DampingScheme::double_damping;
  dopt.mu2 = 2;
  expect_invalid(bfgs_damping(c, h.cview(), s.view(), y.view(), info.data(), dopt), "mu2");
  dopt = {};
  expect_invalid(bfgs_damping(c, MatrixBatch<const T>{}, s.view(), y.view(), info.data(), dopt),
                 "h is");
  expect_invalid(bfgs_damping(c, h.cview(), s.view(), s.view(), info.data(), dopt), "overlaps");
  HessianActionOptions ho;
  ho.lambda = -1;
  expect_invalid(
      hessian_action_pair(c, h.cview(), s.cview(), y.cview(), s.view(), y.view(), info.data(), ho),
      "lambda");
  auto x0 = gaussian<T>(batch, n + 1, 1, rng_);
  OnBackend<T> x(backend(), x0);
  expect_invalid(lbfgs_apply(c, s.cview(), y.cview(), x.view(), info.data()), "x must be");
  expect_invalid(lbfgs_two_loop(c, s.cview(), y.cview(), x.view(), nullptr), "x must be");
  // Nothing was written.
  EXPECT_EQ(max_rel_err(h.get(), h0), 0.0);
  EXPECT_EQ(max_rel_err(s.get(), s0), 0.0);
  EXPECT_EQ(max_rel_err(y.get(), y0), 0.0);
  EXPECT_EQ(info.get(), std::vector<int>(batch, 42));
}

INSTANTIATE_TEST_SUITE_P(Backends, QuasiNewtonTest,
                         ::testing::Values(Backend::reference, Backend::kokkos, Backend::cuda),
                         backend_test_name);

}  // namespace
}  // namespace curvkit::test
