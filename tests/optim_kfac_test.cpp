// K-FAC (curvkit/optim/kfac.hpp) on every compiled backend, float and double:
//   - the first step against the dense factored formula: with Omega_d = Omega + pi sqrt(lambda) I
//     and Gamma_d = Gamma + sqrt(lambda)/pi I, vec(P) = (Omega_d (x) Gamma_d)^{-1} vec([dW | db])
//     by Gaussian elimination on the Kronecker matrix (docs/optimizer-spec.md §3.6), for a linear
//     layer with a bias (d_out 3, d_in 4), one without, a convolution with S = 4 positions and a
//     vector layer; inverse and Cholesky forms, the pi split on and off, g_sampled and g;
//   - several steps against the whole recurrence simulated here (statistics only when
//     k % t1 == 0, from the a and g given on those steps; inverses only when k % t2 == 0, from
//     the factors of that moment; momentum; eigendecomposition inverses), with needs() checked
//     and no statistics given on the other steps;
//   - the loss of a small softmax classifier (two layers, labels sampled from the model)
//     decreases;
//   - a singular problem (zero and duplicated input columns, a zero output gradient, lambda 0)
//     stays finite with NonSpdPolicy::shift (and does not with report);
//   - a NaN statistic makes its layer's update NaN, never a plausible one;
//   - bad options and layer descriptions are invalid_argument and change nothing.
// Tolerances: an inverse of a damped factor carries ~ n kappa eps(T) relative error and the
// apply multiplies two of them, so P is within c (d_A + d_G) kappa_Omega kappa_Gamma eps(T).
#include <algorithm>

#include "curvkit/optim/kfac.hpp"
#include "eigen_oracle.hpp"
#include "optim_stats_util.hpp"

namespace curvkit::test {
namespace {

using optim::KfacOptions;

// Dense row-major long double matrices.
using Mat = std::vector<real>;

Mat gram(const std::vector<double>& x, index_t rows, index_t cols, real scale) {
  Mat s(std::size_t(cols * cols), 0);
  for (index_t i = 0; i < cols; ++i)
    for (index_t j = 0; j < cols; ++j) {
      real v = 0;
      for (index_t r = 0; r < rows; ++r) v += real(x[r * cols + i]) * real(x[r * cols + j]);
      s[i * cols + j] = scale * v;
    }
  return s;
}

real mean_diagonal(const Mat& a, index_t n) {
  real t = 0;
  for (index_t i = 0; i < n; ++i) t += a[i * n + i];
  return t / real(n);
}

Mat shifted(Mat a, index_t n, real shift) {
  for (index_t i = 0; i < n; ++i) a[i * n + i] += shift;
  return a;
}

// The pi-split shifts of (Omega, Gamma): {shift_a, shift_g}.
std::pair<real, real> shifts(const Mat& omega, index_t da, const Mat& gamma, index_t dg,
                             double lambda, bool pi_split) {
  const real ta = mean_diagonal(omega, da), tg = mean_diagonal(gamma, dg);
  const real pi = pi_split && ta > 0 && tg > 0 ? std::sqrt(ta / tg) : 1;
  const real r = std::sqrt(real(lambda));
  return {pi * r, r / pi};
}

// x = K^{-1} y by Gaussian elimination with partial pivoting (K n x n, row-major).
std::vector<real> solve(Mat k, std::vector<real> y) {
  const index_t n = index_t(y.size());
  for (index_t c = 0; c < n; ++c) {
    index_t p = c;
    for (index_t r = c + 1; r < n; ++r)
      if (std::fabs(k[r * n + c]) > std::fabs(k[p * n + c])) p = r;
    for (index_t j = 0; j < n; ++j) std::swap(k[c * n + j], k[p * n + j]);
    std::swap(y[c], y[p]);
    for (index_t r = c + 1; r < n; ++r) {
      const real f = k[r * n + c] / k[c * n + c];
      for (index_t j = c; j < n; ++j) k[r * n + j] -= f * k[c * n + j];
      y[r] -= f * y[c];
    }
  }
  for (index_t r = n - 1; r >= 0; --r) {
    for (index_t j = r + 1; j < n; ++j) y[r] -= k[r * n + j] * y[j];
    y[r] /= k[r * n + r];
  }
  return y;
}

// K-FAC's recurrence on the host in long double, on the flattened parameters (w then b per
// layer): the oracle of the multi-step tests.  Inverses by eigendecomposition.  With two_level
// the coarse correction from dense per-sample layer sums; with kl_clip the clip factor.
class HostKfac {
 public:
  HostKfac(const KfacOptions& o, std::vector<Spec> specs) : o_(o), specs_(std::move(specs)) {
    for (const Spec& s : specs_) {
      State st;
      const index_t n = s.kind == LayerKind::vector ? s.d_out * s.d_in : s.d_out * s.d_a();
      st.mom.assign(std::size_t(n), 0);
      layers_.push_back(st);
    }
  }
  double kappa() const { return kappa_; }

  template <class T>
  void step(int k, const StatsNet<T>& net, std::vector<double>& w, const std::vector<double>& g,
            double lr) {
    const bool statistics = k % o_.t1 == 0, refresh = k % o_.t2 == 0;
    const real beta = seen_ ? o_.stat_decay : 0;
    std::size_t at = 0;
    for (std::size_t l = 0; l < specs_.size(); ++l) {
      const Spec& s = specs_[l];
      State& st = layers_[l];
      if (s.kind == LayerKind::vector) {
        for (std::size_t e = 0; e < st.mom.size(); ++e, ++at) {
          st.mom[e] = o_.momentum * st.mom[e] + g[at];
          w[at] = double((1 - lr * o_.weight_decay) * real(w[at]) - lr * st.mom[e]);
        }
        continue;
      }
      const index_t da = s.d_a(), dg = s.d_out, r = net.rows(l);
      if (statistics) {
        const auto& x = net.stats[l];
        const Mat om = gram(x.a_host, r, da, real(1) / real(net.m));
        const Mat ga = gram(o_.empirical ? x.g_host : x.gs_host, r, dg, real(1) / real(r));
        st.omega.resize(om.size(), 0);
        st.gamma.resize(ga.size(), 0);
        for (std::size_t e = 0; e < om.size(); ++e)
          st.omega[e] = beta * st.omega[e] + (1 - beta) * om[e];
        for (std::size_t e = 0; e < ga.size(); ++e)
          st.gamma[e] = beta * st.gamma[e] + (1 - beta) * ga[e];
      }
      if (refresh) {
        const auto [sa, sg] = shifts(st.omega, da, st.gamma, dg, o_.damping, o_.pi_split);
        const Mat od = shifted(st.omega, da, sa), gd = shifted(st.gamma, dg, sg);
        kappa_ = std::max({kappa_, condition(od, da), condition(gd, dg)});
        auto inv = [](const std::vector<real>& x, index_t n) {
          const Dense d = matrix_function(x, n, [](real v) { return 1 / v; });
          return Mat(d.begin(), d.end());
        };
        st.h_omega = inv(od, da);
        st.h_gamma = inv(gd, dg);
      }
      // M~ = mu M~ + [dW | db];  P~ = H_Gamma M~ H_Omega.
      const std::size_t w_at = at, b_at = at + std::size_t(dg * s.d_in);
      for (index_t i = 0; i < dg; ++i)
        for (index_t j = 0; j < da; ++j) {
          const double gij = j < s.d_in ? g[w_at + i * s.d_in + j] : g[b_at + i];
          st.mom[i * da + j] = o_.momentum * st.mom[i * da + j] + gij;
        }
      Mat t(std::size_t(dg * da), 0), p(t.size(), 0);
      for (index_t i = 0; i < dg; ++i)
        for (index_t j = 0; j < da; ++j)
          for (index_t q = 0; q < dg; ++q)
            t[i * da + j] += st.h_gamma[i * dg + q] * st.mom[q * da + j];
      for (index_t i = 0; i < dg; ++i)
        for (index_t j = 0; j < da; ++j)
          for (index_t q = 0; q < da; ++q) p[i * da + j] += t[i * da + q] * st.h_omega[q * da + j];
      st.p = p;
      st.w_at = w_at;
      st.b_at = b_at;
      at = b_at + (s.bias ? std::size_t(dg) : 0);
    }
    if (o_.two_level) coarse(net, statistics, refresh, beta);
    real nu = 1;
    if (o_.kl_clip > 0) {
      real q = 0;
      for (std::size_t l = 0; l < specs_.size(); ++l)
        for (std::size_t e = 0; e < layers_[l].p.size(); ++e)
          q += layers_[l].p[e] * layers_[l].mom[e];
      const real bound = real(o_.kl_clip) / (real(lr) * real(lr));
      nu = bound >= std::abs(q) ? 1 : std::sqrt(bound / std::abs(q));
      last_nu_ = double(nu);
    }
    // W~ -= lr (nu P~ + wd W~).
    for (std::size_t l = 0; l < specs_.size(); ++l) {
      const Spec& s = specs_[l];
      if (s.kind == LayerKind::vector) continue;
      const State& st = layers_[l];
      const index_t da = s.d_a();
      for (index_t i = 0; i < s.d_out; ++i)
        for (index_t j = 0; j < da; ++j) {
          double& x = j < s.d_in ? w[st.w_at + i * s.d_in + j] : w[st.b_at + i];
          x = double((1 - lr * o_.weight_decay) * real(x) - lr * nu * st.p[i * da + j]);
        }
    }
    if (statistics) seen_ = true;
  }

  double last_nu() const { return last_nu_; }
  // The largest condition number of F_c + lambda I so far.
  double coarse_kappa() const { return coarse_kappa_; }

 private:
  struct State {
    Mat omega, gamma, h_omega, h_gamma, mom, p;
    std::size_t w_at = 0, b_at = 0;
  };

  // Two-level: sigma sums of this batch, S_A, S_G, F_c; (F_c + lambda I)^{-1}; P~_l += c_l.
  template <class T>
  void coarse(const StatsNet<T>& net, bool statistics, bool refresh, real beta) {
    std::vector<std::size_t> ks;  // the K-FAC layers
    for (std::size_t l = 0; l < specs_.size(); ++l)
      if (specs_[l].kind != LayerKind::vector) ks.push_back(l);
    const index_t L = index_t(ks.size()), m = net.m;
    if (statistics) {
      std::vector<real> sa(std::size_t(m * L), 0), sg(sa.size(), 0);
      for (index_t c = 0; c < L; ++c) {
        const Spec& s = specs_[ks[c]];
        const auto& x = net.stats[ks[c]];
        const auto& gs = o_.empirical ? x.g_host : x.gs_host;
        for (index_t i = 0; i < m; ++i)
          for (index_t t = 0; t < s.s; ++t) {
            const index_t r = i * s.s + t;
            for (index_t j = 0; j < s.d_a(); ++j) sa[i * L + c] += real(x.a_host[r * s.d_a() + j]);
            for (index_t o = 0; o < s.d_out; ++o) sg[i * L + c] += real(gs[r * s.d_out + o]);
          }
      }
      s_a_.resize(std::size_t(L * L), 0);
      s_g_.resize(s_a_.size(), 0);
      f_c_.assign(s_a_.size(), 0);
      for (index_t p = 0; p < L; ++p)
        for (index_t q = 0; q < L; ++q) {
          real a = 0, g = 0;
          for (index_t i = 0; i < m; ++i) {
            a += sa[i * L + p] * sa[i * L + q];
            g += sg[i * L + p] * sg[i * L + q];
          }
          const std::size_t e = std::size_t(p * L + q);
          s_a_[e] = beta * s_a_[e] + (1 - beta) * a / real(m);
          s_g_[e] = beta * s_g_[e] + (1 - beta) * g / real(m);
          f_c_[e] = s_a_[e] * s_g_[e];
        }
    }
    if (refresh) {
      const Mat d = shifted(f_c_, L, real(o_.damping));
      coarse_kappa_ = std::max(coarse_kappa_, condition(d, L));
      const Dense inv = matrix_function(d, L, [](real v) { return 1 / v; });
      c_inv_.assign(inv.begin(), inv.end());
    }
    std::vector<real> r(std::size_t(L), 0);
    for (index_t c = 0; c < L; ++c)
      for (real v : layers_[ks[c]].mom) r[std::size_t(c)] += v;
    for (index_t c = 0; c < L; ++c) {
      real cc = 0;
      for (index_t q = 0; q < L; ++q) cc += c_inv_[std::size_t(c * L + q)] * r[std::size_t(q)];
      for (real& v : layers_[ks[c]].p) v += cc;
    }
  }
  KfacOptions o_;
  std::vector<Spec> specs_;
  std::vector<State> layers_;
  bool seen_ = false;
  double kappa_ = 1, coarse_kappa_ = 1, last_nu_ = 1;
  Mat s_a_, s_g_, f_c_, c_inv_;
};

// d_out 3 x d_in 4 with a bias; 2 x 3 without; a convolution (c_out 2, c_in 2, 1 x 3 kernel,
// bias, S = 4 positions, a padded); a vector of 5.
const std::vector<Spec> kSpecs = {{LayerKind::linear, 3, 4, true},
                                  {LayerKind::linear, 2, 3, false},
                                  {LayerKind::conv2d, 2, 6, true, 4, 2},
                                  {LayerKind::vector, 1, 5, false}};

class KfacTest : public BackendTest {
 protected:
  // One step from zero state against the dense Kronecker solve, per layer.
  template <class T>
  void first_step(const KfacOptions& o, const std::string& what) {
    SCOPED_TRACE(trace() + ", " + what + (sizeof(T) == 4 ? ", float" : ", double"));
    const index_t m = 6;
    StatsNet<T> kn(backend(), kSpecs, m, rng_);
    kn.draw_statistics(rng_);
    const Context c = ctx();
    auto opt = optim::make_kfac<T>(o);
    auto views = kn.views(true);
    ASSERT_TRUE(opt->init(c, views).ok());
    const std::vector<double> w0 = kn.net.params(), g = kn.net.grads();
    const Status st = opt->step(c, views);
    ASSERT_TRUE(st.ok()) << st.to_string();
    ASSERT_TRUE(synchronize(c).ok());
    const std::vector<double> w1 = kn.net.params();
    std::size_t at = 0;
    for (std::size_t l = 0; l < kSpecs.size(); ++l) {
      const Spec& s = kSpecs[l];
      if (s.kind == LayerKind::vector) {
        for (index_t e = 0; e < s.d_in; ++e, ++at) {
          const double want = (1 - o.lr * o.weight_decay) * w0[at] - o.lr * g[at];
          EXPECT_NEAR(w1[at], want, 4 * eps<T>() * (std::fabs(want) + 1)) << "vector layer";
        }
        continue;
      }
      const index_t da = s.d_a(), dg = s.d_out, r = kn.rows(l);
      const auto& x = kn.stats[l];
      const Mat omega = gram(x.a_host, r, da, real(1) / real(m));
      const Mat gamma = gram(o.empirical ? x.g_host : x.gs_host, r, dg, real(1) / real(r));
      const auto [sa, sg] = shifts(omega, da, gamma, dg, o.damping, o.pi_split);
      const Mat od = shifted(omega, da, sa), gd = shifted(gamma, dg, sg);
      // (Omega_d (x) Gamma_d)[(p dg + q), (r dg + t)] = Omega_d[p, r] Gamma_d[q, t], and
      // vec(X)[j dg + i] = X[i, j] (column-major).
      const index_t n = da * dg;
      Mat kron(std::size_t(n * n));
      for (index_t p = 0; p < da; ++p)
        for (index_t q = 0; q < dg; ++q)
          for (index_t rr = 0; rr < da; ++rr)
            for (index_t t = 0; t < dg; ++t)
              kron[(p * dg + q) * n + rr * dg + t] = od[p * da + rr] * gd[q * dg + t];
      const std::size_t w_at = at, b_at = at + std::size_t(dg * s.d_in);
      std::vector<real> grad(static_cast<std::size_t>(n));
      for (index_t i = 0; i < dg; ++i)
        for (index_t j = 0; j < da; ++j)
          grad[j * dg + i] = j < s.d_in ? g[w_at + i * s.d_in + j] : g[b_at + i];
      const std::vector<real> p = solve(kron, grad);
      const double kappa = condition(od, da) * condition(gd, dg);
      const double tol_p = 8.0 * double(da + dg) * kappa * eps<T>();
      double err = 0, norm_p = 0, norm_w = 0;
      for (index_t i = 0; i < dg; ++i)
        for (index_t j = 0; j < da; ++j) {
          const std::size_t e =
              j < s.d_in ? w_at + std::size_t(i * s.d_in + j) : b_at + std::size_t(i);
          const double pij = double(p[j * dg + i]);
          const double want = (1 - o.lr * o.weight_decay) * w0[e] - o.lr * pij;
          err += (w1[e] - want) * (w1[e] - want);
          norm_p += pij * pij;
          norm_w += want * want;
        }
      EXPECT_LE(std::sqrt(err), o.lr * tol_p * std::sqrt(norm_p) + 4 * eps<T>() * std::sqrt(norm_w))
          << "layer " << l << " (kappa " << kappa << ")";
      at = b_at + (s.bias ? std::size_t(dg) : 0);
    }
  }

  // Several steps with statistics given only when needs() asks, against HostKfac.
  template <class T>
  void recurrence(const KfacOptions& o, int steps) {
    nus.clear();
    SCOPED_TRACE(trace() + (sizeof(T) == 4 ? ", float" : ", double"));
    const index_t m = 5;
    StatsNet<T> kn(backend(), kSpecs, m, rng_);
    const Context c = ctx();
    auto opt = optim::make_kfac<T>(o);
    kn.draw_statistics(rng_);
    ASSERT_TRUE(opt->init(c, kn.views(true)).ok());
    HostKfac host(o, kSpecs);
    index_t dims = 0;  // the largest d_A + d_G
    for (const Spec& s : kSpecs) dims = std::max(dims, s.d_a() + s.d_out);
    std::vector<double> want = kn.net.params();
    std::normal_distribution<double> n;
    for (int k = 0; k < steps; ++k) {
      const optim::Needs needs = opt->needs();
      const bool statistics = k % o.t1 == 0;
      EXPECT_EQ(needs.a, statistics) << "step " << k;
      EXPECT_EQ(needs.g_sampled, statistics && !o.empirical) << "step " << k;
      EXPECT_EQ(needs.g, statistics && o.empirical) << "step " << k;
      EXPECT_FALSE(needs.grad_sampled);
      std::vector<double> g(want.size());
      for (auto& x : g) x = n(rng_);
      kn.net.set_grads(g);
      g = kn.net.grads();
      kn.draw_statistics(rng_);  // fresh statistics every step: only statistics steps see them
      const Status st = opt->step(c, kn.views(statistics));
      ASSERT_TRUE(st.ok()) << st.to_string();
      ASSERT_TRUE(synchronize(c).ok());
      host.step(k, kn, want, g, o.lr);
      const auto got = kn.net.params();
      double num = 0, den = 0;
      for (std::size_t e = 0; e < want.size(); ++e) {
        num += (got[e] - want[e]) * (got[e] - want[e]);
        den += want[e] * want[e];
      }
      const double kappa = host.kappa() * host.kappa() + host.coarse_kappa();
      const double tol = 8.0 * double(dims) * kappa * eps<T>() * (k + 1);
      EXPECT_LE(std::sqrt(num / den), tol) << "step " << k << ", kappa " << host.kappa();
      if (o.kl_clip > 0) nus.push_back(host.last_nu());
    }
    EXPECT_EQ(opt->iteration(), steps);
  }
  std::vector<double> nus;  // the KL clip factors of the last recurrence()
};

TEST_P(KfacTest, FirstStepIsTheDenseFactoredSolve) {
  KfacOptions o;
  o.lr = 0.1;
  o.damping = 0.3;
  o.weight_decay = 0.05;
  o.momentum = 0.7;  // no effect on the first step: M~ = [dW | db]
  first_step<float>(o, "inverse");
  first_step<double>(o, "inverse");
  o.form = KronFactor::cholesky;
  first_step<float>(o, "cholesky");
  first_step<double>(o, "cholesky");
  o.form = KronFactor::inverse;
  o.empirical = true;
  first_step<double>(o, "empirical");
  o.empirical = false;
  o.pi_split = false;
  first_step<double>(o, "no pi split");
}

TEST_P(KfacTest, StatisticsEveryT1AndInversesEveryT2) {
  KfacOptions o;
  o.lr = 0.05;
  o.damping = 0.5;
  o.momentum = 0.8;
  o.stat_decay = 0.6;
  o.weight_decay = 0.01;
  o.t1 = 2;
  o.t2 = 3;  // statistics at 0, 2, 4, 6; inverses at 0, 3, 6 (from the factors of 2 at 3)
  recurrence<double>(o, 7);
  recurrence<float>(o, 7);
  o.t1 = 3;
  o.t2 = 2;  // inverses at 2 and 4 see the factors of 0; at 6 those of 3 and 6
  o.empirical = true;
  o.form = KronFactor::cholesky;
  recurrence<double>(o, 7);
}

// Two-level K-FAC: the coarse correction c = (F_c + lambda I)^{-1} (1^T M~_l 1)_l added to every
// entry of each layer's P~, F_c = S_A o S_G from dense per-sample layer sums (docs/optimizer-
// spec-2.md §6.6), with the statistics and refresh periods of K-FAC.
TEST_P(KfacTest, TwoLevelAddsTheCoarseCorrection) {
  KfacOptions o;
  o.lr = 0.05;
  o.damping = 0.5;
  o.momentum = 0.8;
  o.stat_decay = 0.6;
  o.two_level = true;
  recurrence<double>(o, 3);
  recurrence<float>(o, 3);
  o.t1 = 2;
  o.t2 = 3;
  o.empirical = true;
  recurrence<double>(o, 5);
}

// The KL clip scales the K-FAC layers' P~ (coarse term included) by nu < 1 when kappa is small,
// and leaves them alone when it is large.
TEST_P(KfacTest, KlClipScalesTheDirection) {
  KfacOptions o;
  o.lr = 0.05;
  o.damping = 0.5;
  o.kl_clip = 1e-4;
  recurrence<double>(o, 3);
  ASSERT_EQ(nus.size(), 3u);
  for (double nu : nus) EXPECT_LT(nu, 0.5) << "the clip must act in this test";
  o.two_level = true;
  recurrence<double>(o, 3);
  for (double nu : nus) EXPECT_LT(nu, 0.5);
  o.kl_clip = 1e6;
  recurrence<float>(o, 2);
  for (double nu : nus) EXPECT_EQ(nu, 1.0);
}

// Softmax regression with one hidden tanh layer on three Gaussian blobs (fixed seed), m = 60:
// forward, backward and the sampled-label backward on the host each step, statistics uploaded
// when needs() asks.
TEST_P(KfacTest, LossDecreasesOnASoftmaxClassifier) {
  using T = float;
  std::mt19937_64 rng(2024);
  std::normal_distribution<double> n;
  const index_t m = 60, din = 4, dh = 8, dout = 3;
  std::vector<double> x(std::size_t(m * din));
  std::vector<int> y(static_cast<std::size_t>(m));
  for (index_t i = 0; i < m; ++i) {
    y[i] = int(i % dout);
    for (index_t j = 0; j < din; ++j) x[i * din + j] = 1.5 * (j == y[i] ? 1 : 0) + 0.7 * n(rng);
  }
  const std::vector<Spec> specs = {{LayerKind::linear, dh, din, true},
                                   {LayerKind::linear, dout, dh, true}};
  StatsNet<T> kn(backend(), specs, m, rng);
  {  // small initial weights
    std::vector<double> p = kn.net.params();
    for (auto& v : p) v *= 0.3;
    std::size_t at = 0;
    for (auto& l : kn.net.layers)
      for (auto* buf : {l.w.get(), l.b.get()}) {
        std::vector<T> h(buf->size());
        for (auto& v : h) v = T(p[at++]);
        buf->upload(h);
      }
  }
  KfacOptions o;
  o.lr = 0.2;
  o.damping = 0.01;
  o.momentum = 0.5;
  auto opt = optim::make_kfac<T>(o);
  const Context c = ctx();
  ASSERT_TRUE(opt->init(c, kn.views(false)).ok());
  // Loss, gradients (flattened like Net::params) and the statistics of the current parameters.
  auto forward = [&](std::vector<double>* grads) {
    const auto p = kn.net.params();
    const double *w1 = p.data(), *b1 = w1 + dh * din, *w2 = b1 + dh, *b2 = w2 + dout * dh;
    grads->assign(p.size(), 0.0);
    double *gw1 = grads->data(), *gb1 = gw1 + dh * din, *gw2 = gb1 + dh, *gb2 = gw2 + dout * dh;
    std::vector<double> a1(std::size_t(m * (din + 1))), a2(std::size_t(m * (dh + 1))),
        g1(std::size_t(m * dh)), g2(std::size_t(m * dout)), g1s(g1.size()), g2s(g2.size());
    double loss = 0;
    for (index_t i = 0; i < m; ++i) {
      std::vector<double> h(static_cast<std::size_t>(dh)), z(static_cast<std::size_t>(dout));
      for (index_t j = 0; j < din; ++j) a1[i * (din + 1) + j] = x[i * din + j];
      a1[i * (din + 1) + din] = 1;
      for (index_t u = 0; u < dh; ++u) {
        double s = b1[u];
        for (index_t j = 0; j < din; ++j) s += w1[u * din + j] * x[i * din + j];
        h[u] = std::tanh(s);
        a2[i * (dh + 1) + u] = h[u];
      }
      a2[i * (dh + 1) + dh] = 1;
      double zmax = -1e300;
      for (index_t o2 = 0; o2 < dout; ++o2) {
        double s = b2[o2];
        for (index_t u = 0; u < dh; ++u) s += w2[o2 * dh + u] * h[u];
        z[o2] = s;
        zmax = std::max(zmax, s);
      }
      double sum = 0;
      for (auto& v : z) sum += (v = std::exp(v - zmax));
      for (auto& v : z) v /= sum;  // probabilities
      loss -= std::log(z[y[i]]) / double(m);
      // Sampled label from the model's categorical distribution.
      std::uniform_real_distribution<double> u01;
      double r = u01(rng), acc = 0;
      int ys = int(dout) - 1;
      for (index_t o2 = 0; o2 < dout; ++o2)
        if (r < (acc += z[o2])) {
          ys = int(o2);
          break;
        }
      for (index_t o2 = 0; o2 < dout; ++o2) {
        g2[i * dout + o2] = z[o2] - (o2 == y[i] ? 1 : 0);
        g2s[i * dout + o2] = z[o2] - (o2 == ys ? 1 : 0);
      }
      for (index_t u = 0; u < dh; ++u) {
        double s = 0, ss = 0;
        for (index_t o2 = 0; o2 < dout; ++o2) {
          s += w2[o2 * dh + u] * g2[i * dout + o2];
          ss += w2[o2 * dh + u] * g2s[i * dout + o2];
        }
        g1[i * dh + u] = s * (1 - h[u] * h[u]);
        g1s[i * dh + u] = ss * (1 - h[u] * h[u]);
      }
      // Mean gradients: (1/m) g^T a.
      for (index_t u = 0; u < dh; ++u) {
        for (index_t j = 0; j < din; ++j)
          gw1[u * din + j] += g1[i * dh + u] * x[i * din + j] / double(m);
        gb1[u] += g1[i * dh + u] / double(m);
      }
      for (index_t o2 = 0; o2 < dout; ++o2) {
        for (index_t u = 0; u < dh; ++u) gw2[o2 * dh + u] += g2[i * dout + o2] * h[u] / double(m);
        gb2[o2] += g2[i * dout + o2] / double(m);
      }
    }
    kn.set_statistics(0, a1, g1, g1s);
    kn.set_statistics(1, a2, g2, g2s);
    return loss;
  };
  std::vector<double> g;
  const double start = forward(&g);
  double loss = start;
  for (int k = 0; k < 40; ++k) {
    kn.net.set_grads(g);
    const Status st = opt->step(c, kn.views(opt->needs().a));
    ASSERT_TRUE(st.ok()) << st.to_string();
    ASSERT_TRUE(synchronize(c).ok());
    loss = forward(&g);
    ASSERT_TRUE(std::isfinite(loss)) << trace() << ", step " << k;
  }
  EXPECT_LT(loss, 0.1 * start) << trace() << ", from " << start;
}

// a with a zero column and two equal columns, g with a zero column, a layer whose output
// gradients are all zero (tr Gamma = 0: pi = 1), lambda = 0: the damped factors are singular.
template <class T>
bool singular_problem_stays_finite(Backend be, const Context& c, std::mt19937_64& rng,
                                   NonSpdPolicy policy) {
  const index_t m = 4;
  const std::vector<Spec> specs = {{LayerKind::linear, 3, 4, true},
                                   {LayerKind::linear, 2, 3, true}};
  StatsNet<T> kn(be, specs, m, rng);
  KfacOptions o;
  o.damping = 0;
  o.lr = 0.01;
  o.policy = policy;
  auto opt = optim::make_kfac<T>(o);
  EXPECT_TRUE(opt->init(c, kn.views(false)).ok());
  std::normal_distribution<double> n;
  bool finite = true;
  for (int k = 0; k < 4; ++k) {
    std::vector<double> a0(std::size_t(m * 5)), g0(std::size_t(m * 3)), a1(std::size_t(m * 4)),
        g1(std::size_t(m * 2), 0.0);
    for (index_t i = 0; i < m; ++i) {
      const double v = n(rng);
      a0[i * 5 + 0] = v;
      a0[i * 5 + 1] = v;  // duplicated column
      a0[i * 5 + 2] = 0;  // zero column
      a0[i * 5 + 3] = n(rng);
      a0[i * 5 + 4] = 1;
      g0[i * 3 + 0] = n(rng);
      g0[i * 3 + 1] = 0;  // zero column
      g0[i * 3 + 2] = n(rng);
      for (index_t j = 0; j < 3; ++j) a1[i * 4 + j] = n(rng);
      a1[i * 4 + 3] = 1;
    }
    kn.set_statistics(0, a0, g0, g0);
    kn.set_statistics(1, a1, g1, g1);  // zero output gradients
    std::vector<double> g(kn.net.params().size());
    for (auto& x : g) x = n(rng);
    kn.net.set_grads(g);
    EXPECT_TRUE(opt->step(c, kn.views(true)).ok());
    EXPECT_TRUE(synchronize(c).ok());
    for (double x : kn.net.params()) finite = finite && std::isfinite(x);
  }
  return finite;
}

TEST_P(KfacTest, SingularFactorsStayFiniteWithTheShiftPolicy) {
  EXPECT_TRUE(singular_problem_stays_finite<float>(backend(), ctx(), rng_, NonSpdPolicy::shift))
      << trace();
  EXPECT_TRUE(singular_problem_stays_finite<double>(backend(), ctx(), rng_, NonSpdPolicy::shift))
      << trace();
  // The same problem without the retries: the zero pivot makes the update NaN.
  EXPECT_FALSE(singular_problem_stays_finite<double>(backend(), ctx(), rng_, NonSpdPolicy::report))
      << trace();
}

TEST_P(KfacTest, NonFiniteStatisticsAreNotSilent) {
  // A NaN in one layer's inputs: that layer's update is NaN (with the pi split and without),
  // the other layer's is finite.
  using T = float;
  for (bool split : {true, false}) {
    StatsNet<T> kn(backend(), {{LayerKind::linear, 3, 4, true}, {LayerKind::linear, 2, 3, false}},
                   4, rng_);
    kn.draw_statistics(rng_);
    std::vector<double> a = kn.stats[0].a_host;
    a[5] = std::numeric_limits<double>::quiet_NaN();
    kn.set_statistics(0, a, kn.stats[0].g_host, kn.stats[0].gs_host);
    KfacOptions o;
    o.pi_split = split;
    auto opt = optim::make_kfac<T>(o);
    const Context c = ctx();
    ASSERT_TRUE(opt->init(c, kn.views(true)).ok());
    ASSERT_TRUE(opt->step(c, kn.views(true)).ok());
    ASSERT_TRUE(synchronize(c).ok());
    const auto p = kn.net.params();
    const std::size_t first = 3 * 4 + 3;  // layer 0's w and b
    for (std::size_t e = 0; e < p.size(); ++e)
      EXPECT_EQ(std::isnan(p[e]), e < first) << trace() << ", element " << e << ", split " << split;
  }
}

TEST_P(KfacTest, BadOptionsAndLayersAreReported) {
  using T = double;
  const Context c = ctx();
  StatsNet<T> kn(backend(), kSpecs, 3, rng_);
  kn.draw_statistics(rng_);
  auto expect_invalid = [&](Status s, const std::string& needle) {
    EXPECT_EQ(s.code(), StatusCode::invalid_argument) << s.to_string();
    EXPECT_NE(s.to_string().find(needle), std::string::npos) << s.to_string();
  };
  const std::vector<void (*)(KfacOptions&)> bad_options = {
      [](KfacOptions& o) { o.t1 = 0; },
      [](KfacOptions& o) { o.t2 = -1; },
      [](KfacOptions& o) { o.damping = -1; },
      [](KfacOptions& o) { o.momentum = 1; },
      [](KfacOptions& o) { o.stat_decay = std::nan(""); },
      [](KfacOptions& o) { o.kl_clip = -1; }};
  for (auto bad : bad_options) {
    KfacOptions o;
    bad(o);
    expect_invalid(optim::make_kfac<T>(o)->init(c, kn.views(true)), "options.");
  }
  {  // two-level sizes its layer sums by init()'s m, and a step must keep it
    KfacOptions o;
    o.two_level = true;
    expect_invalid(optim::make_kfac<T>(o)->init(c, kn.views(false)), "layers[0].m");
    auto two = optim::make_kfac<T>(o);
    ASSERT_TRUE(two->init(c, kn.views(true)).ok());
    auto v = kn.views(true);
    for (auto& x : v) x.m = x.m > 0 ? 1 : 0;
    expect_invalid(two->step(c, v), "init()'s m");
  }
  auto opt = optim::make_kfac<T>();
  expect_invalid(opt->step(c, kn.views(true)), "init");
  ASSERT_TRUE(opt->init(c, kn.views(false)).ok());
  const std::vector<double> w0 = kn.net.params();
  // Step 0 needs statistics: each missing or malformed piece is named.
  auto v = kn.views(false);
  expect_invalid(opt->step(c, v), "layers[0].m");
  v = kn.views(true);
  v[0].a = {};
  expect_invalid(opt->step(c, v), "layers[0].a");
  v = kn.views(true);
  v[2].a.cols -= 1;  // without the column of ones
  expect_invalid(opt->step(c, v), "layers[2].a");
  v = kn.views(true);
  v[1].m = 2;  // 3 S rows are not a multiple of m
  expect_invalid(opt->step(c, v), "layers[1].a");
  v = kn.views(true);
  v[1].g_sampled = {};
  expect_invalid(opt->step(c, v), "layers[1].g_sampled");
  v = kn.views(true);
  v[0].g_sampled.rows -= 1;
  expect_invalid(opt->step(c, v), "layers[0].g_sampled");
  v = kn.views(true);
  v[3].kind = LayerKind::linear;
  expect_invalid(opt->step(c, v), "layers[3].kind");
  v = kn.views(true);
  v[0].b = {};
  v[0].db = {};
  expect_invalid(opt->step(c, v), "init");
  // The empirical variant asks for g, not g_sampled.
  KfacOptions emp;
  emp.empirical = true;
  auto opt_e = optim::make_kfac<T>(emp);
  ASSERT_TRUE(opt_e->init(c, kn.views(false)).ok());
  v = kn.views(true);
  v[2].g = {};
  expect_invalid(opt_e->step(c, v), "layers[2].g ");
  // A conv layer whose geometry does not give its width.
  v = kn.views(true);
  v[2].c_in = 5;
  expect_invalid(optim::make_kfac<T>()->init(c, v), "layers[2].w");
  // Nothing moved.
  EXPECT_EQ(opt->iteration(), 0);
  EXPECT_EQ(kn.net.params(), w0);
  // With t1 = 2 the statistics may be left out on odd steps, and are required on even ones.
  KfacOptions o2;
  o2.t1 = 2;
  auto opt2 = optim::make_kfac<T>(o2);
  ASSERT_TRUE(opt2->init(c, kn.views(false)).ok());
  ASSERT_TRUE(opt2->step(c, kn.views(true)).ok());
  EXPECT_FALSE(opt2->needs().a);
  EXPECT_TRUE(opt2->step(c, kn.views(false)).ok());
  EXPECT_TRUE(opt2->needs().a);
  expect_invalid(opt2->step(c, kn.views(false)), "layers[0].m");
}

INSTANTIATE_TEST_SUITE_P(Backends, KfacTest,
                         ::testing::Values(Backend::reference, Backend::kokkos, Backend::cuda),
                         backend_test_name);

}  // namespace
}  // namespace curvkit::test
