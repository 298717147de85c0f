// TENGraD (curvkit/optim/tengrad.hpp) on every compiled backend, float and double:
//   - several steps against the dense per-layer formula (docs/optimizer-spec-2.md §5.6): with
//     J_l built here from explicit per-sample gradients P_i = sum_t g_{i,t} a_{i,t}^T of the last
//     refresh's batch and F_l = (1/m) J_l^T J_l, W~ <- (1 - lr wd) W~ - lr (F_l + lambda I)^{-1}
//     vec(M~), the inverse by eigendecomposition in long double; for t2 = 1 and t2 = 3 (statistics
//     drawn fresh every step: only refresh steps may use them), sampled labels and empirical;
//     linear layers with and without a bias, convolutions (S = 4 with a padded; S = 64, whose Gram
//     takes khatri_rao_gram's direct path and its workspace), a vector layer;
//   - a refresh whose batch holds a NaN keeps that layer's previous preconditioner (the others
//     refresh), and health() reports it;
//   - bad options and layer descriptions are invalid_argument.
#include <algorithm>
#include <limits>

#include "curvkit/khatri_rao.hpp"
#include "curvkit/optim/tengrad.hpp"
#include "eigen_oracle.hpp"
#include "optim_stats_util.hpp"

namespace curvkit::test {
namespace {

using optim::TengradOptions;
using Mat = std::vector<real>;

// The second convolution (S = 64) takes khatri_rao_gram's direct path, which needs workspace.
const std::vector<Spec> kSpecs = {{LayerKind::linear, 3, 4, true},
                                  {LayerKind::linear, 2, 3, false},
                                  {LayerKind::conv2d, 2, 6, true, 4, 2},
                                  {LayerKind::conv2d, 2, 9, true, 64},
                                  {LayerKind::vector, 1, 5, false}};

// TENGraD's recurrence on the host in long double, on the flattened parameters (w then b per
// layer), with dense per-layer Fishers.
class HostTengrad {
 public:
  HostTengrad(const TengradOptions& o, std::vector<Spec> specs)
      : o_(o), specs_(std::move(specs)), state_(specs_.size()) {
    for (std::size_t l = 0; l < specs_.size(); ++l) {
      const index_t n = size(l);
      state_[l].mom.assign(std::size_t(n), 0);
      state_[l].inv.assign(std::size_t(n * n), 0);
      for (index_t e = 0; e < n; ++e) state_[l].inv[std::size_t(e * n + e)] = 1 / o.damping;
    }
  }

  // One step; the layers in `stale` keep their preconditioner on a refresh step.
  template <class T>
  void step(int k, const StatsNet<T>& sn, std::vector<double>& w, const std::vector<double>& g,
            const std::vector<std::size_t>& stale = {}) {
    const bool refresh = k % o_.t2 == 0;
    const real lr = real(o_.lr), decay = 1 - lr * real(o_.weight_decay), mu = real(o_.momentum);
    std::size_t at = 0;
    for (std::size_t l = 0; l < specs_.size(); ++l) {
      const Spec& s = specs_[l];
      State& st = state_[l];
      const std::size_t w_at = at, b_at = at + std::size_t(s.d_out * s.d_in);
      at = b_at + (s.bias ? std::size_t(s.d_out) : 0);
      if (s.kind == LayerKind::vector) {
        for (std::size_t e = 0; e < st.mom.size(); ++e) {
          st.mom[e] = mu * st.mom[e] + real(g[w_at + e]);
          w[w_at + e] = double(decay * real(w[w_at + e]) - lr / real(o_.damping) * st.mom[e]);
        }
        continue;
      }
      const index_t da = s.d_a(), n = size(l);
      // Folded index (o, j) -> flat parameter index.
      auto flat = [&](index_t o, index_t j) {
        return j < s.d_in ? w_at + std::size_t(o * s.d_in + j) : b_at + std::size_t(o);
      };
      if (refresh && std::find(stale.begin(), stale.end(), l) == stale.end()) {
        st.inv = dense_inverse(sn, l);
        st.kappa = kappa_;
      }
      for (index_t o = 0; o < s.d_out; ++o)
        for (index_t j = 0; j < da; ++j)
          st.mom[std::size_t(o * da + j)] =
              mu * st.mom[std::size_t(o * da + j)] + real(g[flat(o, j)]);
      for (index_t o = 0; o < s.d_out; ++o)
        for (index_t j = 0; j < da; ++j) {
          real d = 0;
          for (index_t e = 0; e < n; ++e)
            d += real(st.inv[std::size_t((o * da + j) * n + e)]) * st.mom[std::size_t(e)];
          w[flat(o, j)] = double(decay * real(w[flat(o, j)]) - lr * d);
        }
    }
  }

  // The largest condition number of F_l + lambda I in use.
  double kappa() const {
    double k = 1;
    for (const State& s : state_) k = std::max(k, s.kappa);
    return k;
  }

 private:
  struct State {
    std::vector<real> mom;
    Dense inv;
    double kappa = 1;
  };

  index_t size(std::size_t l) const {
    const Spec& s = specs_[l];
    return s.kind == LayerKind::vector ? s.d_out * s.d_in : s.d_out * s.d_a();
  }

  // (F_l + lambda I)^{-1}, F_l = (1/m) J^T J from the per-sample gradients of sn's statistics.
  template <class T>
  Dense dense_inverse(const StatsNet<T>& sn, std::size_t l) {
    const Spec& s = specs_[l];
    const index_t da = s.d_a(), n = size(l), m = sn.m;
    const std::vector<double>& a = sn.stats[l].a_host;
    const std::vector<double>& gs = o_.empirical ? sn.stats[l].g_host : sn.stats[l].gs_host;
    Mat j(std::size_t(m * n), 0);
    for (index_t i = 0; i < m; ++i)
      for (index_t t = 0; t < s.s; ++t) {
        const index_t r = i * s.s + t;
        for (index_t o = 0; o < s.d_out; ++o)
          for (index_t c = 0; c < da; ++c)
            j[std::size_t(i * n + o * da + c)] +=
                real(gs[std::size_t(r * s.d_out + o)]) * real(a[std::size_t(r * da + c)]);
      }
    Mat f(std::size_t(n * n), 0);
    for (index_t p = 0; p < n; ++p)
      for (index_t q = 0; q < n; ++q) {
        real v = 0;
        for (index_t i = 0; i < m; ++i) v += j[std::size_t(i * n + p)] * j[std::size_t(i * n + q)];
        f[std::size_t(p * n + q)] = v / real(m) + (p == q ? real(o_.damping) : 0);
      }
    std::vector<real> ev, q;
    jacobi_eigen(f, n, &ev, &q);
    const auto [lo, hi] = std::minmax_element(ev.begin(), ev.end());
    kappa_ = double(*hi / *lo);
    return matrix_function(f, n, [](real v) { return 1 / v; });
  }

  TengradOptions o_;
  std::vector<Spec> specs_;
  std::vector<State> state_;
  double kappa_ = 1;
};

class TengradTest : public BackendTest {
 protected:
  // Several steps with statistics drawn every step and given when needs() asks, against
  // HostTengrad.  `poison` (step, layer): that step's a of that layer holds a NaN.
  template <class T>
  void recurrence(const TengradOptions& o, int steps,
                  std::pair<int, std::size_t> poison = {-1, 0}) {
    SCOPED_TRACE(trace() + (sizeof(T) == 4 ? ", float" : ", double") + ", t2 " +
                 std::to_string(o.t2) + (o.empirical ? ", empirical" : ""));
    const index_t m = 5;
    StatsNet<T> sn(backend(), kSpecs, m, rng_);
    const Context c = ctx();
    auto opt = optim::make_tengrad<T>(o);
    sn.draw_statistics(rng_);
    ASSERT_TRUE(opt->init(c, sn.views(true)).ok());
    HostTengrad host(o, kSpecs);
    std::vector<double> want = sn.net.params();
    std::normal_distribution<double> n;
    for (int k = 0; k < steps; ++k) {
      const optim::Needs needs = opt->needs();
      const bool refresh = k % o.t2 == 0;
      EXPECT_EQ(needs.a, refresh) << "step " << k;
      EXPECT_EQ(needs.g_sampled, refresh && !o.empirical) << "step " << k;
      EXPECT_EQ(needs.g, refresh && o.empirical) << "step " << k;
      std::vector<double> g(want.size());
      for (auto& x : g) x = n(rng_);
      sn.net.set_grads(g);
      g = sn.net.grads();
      sn.draw_statistics(rng_);
      std::vector<std::size_t> stale;
      if (k == poison.first) {
        const std::size_t l = poison.second;
        std::vector<double> a = sn.stats[l].a_host;
        a[1] = std::numeric_limits<double>::quiet_NaN();
        sn.set_statistics(l, a, sn.stats[l].g_host, sn.stats[l].gs_host);
        stale.push_back(l);
      }
      const Status st = opt->step(c, sn.views(refresh));
      ASSERT_TRUE(st.ok()) << st.to_string();
      ASSERT_TRUE(synchronize(c).ok());
      host.step(k, sn, want, g, stale);
      const double tol = 16.0 * 20 * host.kappa() * eps<T>() * (k + 1);
      EXPECT_LE(relative_error(sn.net.params(), want), tol)
          << "step " << k << ", kappa " << host.kappa();
      if (k == poison.first) {
        optim::Health h;
        ASSERT_TRUE(opt->health(c, &h).ok());
        ASSERT_FALSE(h.entries.empty());
        std::size_t failed = 0;
        for (const auto& [code, count] : h.entries[0].codes) failed += code < 0 ? count : 0;
        EXPECT_EQ(failed, 1u) << h.to_string();
      }
    }
    EXPECT_EQ(opt->iteration(), steps);
  }
};

TEST_P(TengradTest, FollowsTheDensePerLayerFisherSolve) {
  ASSERT_EQ(khatri_rao_gram_path(5, 64, 10, 2), GramPath::direct);  // kSpecs[3]
  TengradOptions o;
  o.lr = 0.05;
  o.damping = 0.5;
  o.weight_decay = 0.01;
  o.t2 = 1;
  recurrence<float>(o, 3);
  recurrence<double>(o, 3);
}

TEST_P(TengradTest, KeepsTheRefreshBatchBetweenRefreshes) {
  TengradOptions o;
  o.lr = 0.05;
  o.damping = 0.5;
  o.t2 = 3;
  recurrence<float>(o, 5);
  recurrence<double>(o, 5);
  o.empirical = true;
  o.t2 = 2;
  recurrence<double>(o, 4);
}

TEST_P(TengradTest, AFailedRefreshKeepsThePreviousPreconditioner) {
  TengradOptions o;
  o.lr = 0.05;
  o.damping = 0.5;
  o.t2 = 1;
  recurrence<double>(o, 3, {1, 0});  // layer 0's refresh at step 1 fails; the others go on
  recurrence<double>(o, 2, {0, 2});  // the convolution's first refresh fails: J = 0, M~ / lambda
}

TEST_P(TengradTest, RejectsBadOptionsAndLayers) {
  using T = double;
  const Context c = ctx();
  StatsNet<T> sn(backend(), kSpecs, 5, rng_);
  sn.draw_statistics(rng_);
  auto expect_invalid = [](const Status& s, const std::string& what) {
    EXPECT_EQ(s.code(), StatusCode::invalid_argument) << s.to_string();
    EXPECT_NE(s.to_string().find(what), std::string::npos) << s.to_string();
  };
  for (auto [field, value] : std::vector<std::pair<int, double>>{
           {0, 0.0}, {0, -1.0}, {1, 1.0}, {1, -0.1}, {2, 0.0}, {3, NAN}}) {
    TengradOptions o;
    if (field == 0) o.damping = value;
    if (field == 1) o.momentum = value;
    if (field == 2) o.t2 = int(value);
    if (field == 3) o.lr = value;
    expect_invalid(optim::make_tengrad<T>(o)->init(c, sn.views(true)), "options.");
  }
  auto opt = optim::make_tengrad<T>();
  auto v = sn.views(true);
  v[1].m = 4;  // the layers disagree on m
  expect_invalid(opt->init(c, v), "layers[1].m");
  ASSERT_TRUE(opt->init(c, sn.views(true)).ok());
  v = sn.views(true);
  v[0].a = {};
  expect_invalid(opt->step(c, v), "layers[0].a");  // step 0 refreshes: a is needed
  v = sn.views(true);
  v[2].g_sampled.rows -= 1;
  expect_invalid(opt->step(c, v), "layers[2].g_sampled");
  EXPECT_EQ(opt->iteration(), 0);
  EXPECT_TRUE(opt->step(c, sn.views(true)).ok());
}

INSTANTIATE_TEST_SUITE_P(Backends, TengradTest,
                         ::testing::Values(Backend::reference, Backend::kokkos, Backend::cuda),
                         backend_test_name);

}  // namespace
}  // namespace curvkit::test
