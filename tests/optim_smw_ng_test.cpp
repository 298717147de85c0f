// SMW-NG and SMW-NG-BD (curvkit/optim/smw_ng.hpp) on every compiled backend, float and double,
// against the dense formulas (docs/optimizer-spec-2.md §3.6), evaluated here in long double:
//   - the per-sample gradients P_{l,i} = sum_t g_{l,i,t} a_{l,i,t}^T of the first N2 samples
//     formed explicitly, J their rows, B = (1/N2) J^T J, g the folded mean gradient:
//     SMW-NG's update is W~ - lr solve(B + lambda I, g), SMW-NG-BD's the same per layer block;
//     linear layers with and without a bias and a convolution (S = 4), statistics drawn fresh
//     every step; lambda at the floor (B has rank N2 < n: cancellation); N2 = m;
//   - SMW-GN (gauss_newton): the same with the N2 R pseudo-samples (i, r) whose gradient rows
//     are sum_t q_{(i,r),t} a_{i,t}^T, from random cotangent backprops q (R = 3), B = (1/N2)
//     sum over them; the optimizer repeats a's rows itself;
//   - the LM rule across steps: second-pass losses chosen so that rho = 0.1, 0.5, 0.9 and a
//     NaN loss; each next step must use the lambda the rule gives (boost, keep, drop, boost);
//   - bad input: vector layers, N2 > m, missing losses, the finish_step() schedule, options.
#include <cmath>

#include "curvkit/optim/smw_ng.hpp"
#include "eigen_oracle.hpp"
#include "optim_stats_util.hpp"

namespace curvkit::test {
namespace {

using optim::SmwNgOptions;

const std::vector<Spec> kSpecs = {{LayerKind::linear, 3, 4, true},
                                  {LayerKind::linear, 2, 3, false},
                                  {LayerKind::conv2d, 2, 6, true, 4, 1}};

// The dense SMW-NG / SMW-NG-BD step in long double on the flattened parameters (w then b per
// layer, as Net::params()).
class HostSmwNg {
 public:
  HostSmwNg(const SmwNgOptions& o, index_t m) : o_(o), m_(m) {
    n2_ = o.curvature_samples > 0 ? o.curvature_samples : m / 2;
    lm_ = o.damping;
    lambda_ = lm_ + o.floor;
  }

  // One step: updates w from the gradient g and the statistics; returns pred (for the LM rule).
  // `q` (SMW-GN): per layer the (N2 R S) x d_out cotangent backprops, R outputs.
  template <class T>
  real step(const StatsNet<T>& net, std::vector<double>& w, const std::vector<double>& g,
            const std::vector<std::vector<double>>& q = {}, index_t outputs = 1) {
    // Folded index of (layer, row, col) -> flat parameter index; block offsets.
    std::vector<std::size_t> flat;
    std::vector<index_t> block_start;
    std::size_t at = 0;
    for (const Spec& s : kSpecs) {
      block_start.push_back(index_t(flat.size()));
      const std::size_t b_at = at + std::size_t(s.d_out * s.d_in);
      for (index_t i = 0; i < s.d_out; ++i)
        for (index_t j = 0; j < s.d_a(); ++j)
          flat.push_back(j < s.d_in ? at + std::size_t(i * s.d_in + j) : b_at + std::size_t(i));
      at = b_at + (s.bias ? std::size_t(s.d_out) : 0);
    }
    block_start.push_back(index_t(flat.size()));
    const index_t n = index_t(flat.size());
    // J: one row per (pseudo-)sample p = i R + r: the folded gradient sum_t g_{p,t} a_{i,t}^T
    // (SMW-NG: R = 1 and g the true-label output gradients; SMW-GN: g = q).
    const index_t rows_j = n2_ * outputs;
    std::vector<real> jac(std::size_t(rows_j * n), 0);
    for (std::size_t l = 0; l < kSpecs.size(); ++l) {
      const Spec& s = kSpecs[l];
      const auto& a = net.stats[l].a_host;
      const auto& gg = q.empty() ? net.stats[l].g_host : q[l];
      for (index_t p = 0; p < rows_j; ++p)
        for (index_t t = 0; t < s.s; ++t) {
          const index_t ra = (p / outputs) * s.s + t, rg = p * s.s + t;
          for (index_t o = 0; o < s.d_out; ++o)
            for (index_t j = 0; j < s.d_a(); ++j)
              jac[p * n + block_start[l] + o * s.d_a() + j] +=
                  real(gg[rg * s.d_out + o]) * real(a[ra * s.d_a() + j]);
        }
    }
    std::vector<real> gf(static_cast<std::size_t>(n)), d(static_cast<std::size_t>(n), 0);
    for (index_t e = 0; e < n; ++e) gf[e] = real(g[flat[e]]);
    // B + lambda I over the whole network or per block.
    std::vector<real> b(std::size_t(n * n), 0);
    for (index_t p = 0; p < n; ++p)
      for (index_t c = 0; c < n; ++c) {
        real v = 0;
        for (index_t i = 0; i < rows_j; ++i) v += jac[i * n + p] * jac[i * n + c];
        b[p * n + c] = v / real(n2_);
      }
    kappa_ = 1;
    const std::size_t blocks = o_.block_diagonal ? kSpecs.size() : 1;
    for (std::size_t k = 0; k < blocks; ++k) {
      const index_t lo = o_.block_diagonal ? block_start[k] : 0;
      const index_t hi = o_.block_diagonal ? block_start[k + 1] : n, nb = hi - lo;
      std::vector<real> blk(std::size_t(nb * nb));
      for (index_t p = 0; p < nb; ++p)
        for (index_t c = 0; c < nb; ++c)
          blk[p * nb + c] = b[(lo + p) * n + lo + c] + (p == c ? lambda_ : 0);
      kappa_ = std::max(kappa_, condition(blk, nb));
      const Dense inv = matrix_function(blk, nb, [](real v) { return 1 / v; });
      for (index_t p = 0; p < nb; ++p)
        for (index_t c = 0; c < nb; ++c) d[lo + p] += real(inv[p * nb + c]) * gf[lo + c];
    }
    const real lr = real(o_.lr), decay = 1 - lr * real(o_.weight_decay);
    for (index_t e = 0; e < n; ++e) w[flat[e]] = double(decay * real(w[flat[e]]) - lr * d[e]);
    // pred = lr g^T d - lr^2 d^T B d / 2 with this step's B (the block diagonal one for BD).
    real gd = 0, dbd = 0;
    for (index_t p = 0; p < n; ++p) {
      gd += gf[p] * d[p];
      for (index_t c = 0; c < n; ++c) {
        const bool same_block =
            !o_.block_diagonal || block_of(block_start, p) == block_of(block_start, c);
        if (same_block) dbd += d[p] * b[p * n + c] * d[c];
      }
    }
    return lr * gd - lr * lr * dbd / 2;
  }

  // The LM rule given rho (NaN: the new loss was not finite).
  void update(real rho) {
    if (std::isnan(rho) || rho < real(o_.epsilon))
      lm_ *= real(o_.boost);
    else if (rho > 1 - real(o_.epsilon))
      lm_ *= real(o_.drop);
    lambda_ = lm_ + real(o_.floor);
  }
  double kappa() const { return kappa_; }

 private:
  static std::size_t block_of(const std::vector<index_t>& starts, index_t p) {
    std::size_t k = 0;
    while (starts[k + 1] <= p) ++k;
    return k;
  }
  SmwNgOptions o_;
  index_t m_, n2_;
  real lm_, lambda_;
  double kappa_ = 1;
};

class SmwNgTest : public BackendTest {
 protected:
  // Runs `rhos.size()` steps; the second pass's losses make the rule see rhos[k] (NaN: a NaN
  // loss).  Compares the parameters with HostSmwNg after every step.
  template <class T>
  void run(const SmwNgOptions& o, const std::vector<double>& rhos) {
    SCOPED_TRACE(trace() + (sizeof(T) == 4 ? ", float" : ", double") + ", bd " +
                 std::to_string(o.block_diagonal) + ", gn " + std::to_string(o.gauss_newton) +
                 ", N2 " + std::to_string(o.curvature_samples) + ", damping " +
                 std::to_string(o.damping));
    const index_t m = 6;
    StatsNet<T> sn(backend(), kSpecs, m, rng_);
    const Context c = ctx();
    Buffer<T> losses(backend(), static_cast<std::size_t>(m));
    // SMW-GN's cotangent backprops: R = 3 outputs, N2 samples, drawn fresh every step.
    const index_t outputs = o.gauss_newton ? 3 : 1;
    const index_t n2 = o.curvature_samples > 0 ? o.curvature_samples : m / 2;
    std::vector<std::vector<double>> q_host(kSpecs.size());
    std::vector<std::unique_ptr<Buffer<T>>> q_dev(kSpecs.size());
    auto draw_q = [&] {
      std::normal_distribution<double> nq;
      for (std::size_t l = 0; l < kSpecs.size() && o.gauss_newton; ++l) {
        std::vector<T> h(std::size_t(n2 * outputs * kSpecs[l].s * kSpecs[l].d_out));
        q_host[l].resize(h.size());
        for (std::size_t e = 0; e < h.size(); ++e) q_host[l][e] = double(h[e] = T(nq(rng_)));
        q_dev[l] = std::make_unique<Buffer<T>>(backend(), h);
      }
    };
    auto views = [&] {
      auto v = sn.views(true);
      v.back().losses = MatrixBatch<T>{losses.data(), 1, 1, m, m, m};
      for (std::size_t l = 0; l < kSpecs.size() && o.gauss_newton; ++l) {
        const index_t rows = n2 * outputs * kSpecs[l].s, c = kSpecs[l].d_out;
        v[l].q = MatrixBatch<T>{q_dev[l]->data(), 1, rows, c, c, rows * c};
        v[l].g = {};  // SMW-GN does not read g
      }
      return v;
    };
    draw_q();
    auto set_losses = [&](const std::vector<T>& x) { losses.upload(x); };
    auto opt = optim::make_smw_ng<T>(o);
    sn.draw_statistics(rng_);
    ASSERT_TRUE(opt->init(c, views()).ok());
    HostSmwNg host(o, m);
    std::vector<double> want = sn.net.params();
    std::normal_distribution<double> n;
    for (std::size_t k = 0; k < rhos.size(); ++k) {
      const optim::Needs needs = opt->needs();
      EXPECT_TRUE(needs.a && needs.losses);
      EXPECT_EQ(needs.g, !o.gauss_newton);
      EXPECT_EQ(needs.cotangents, o.gauss_newton ? n2 : 0);
      EXPECT_EQ(needs.second_pass, optim::SecondPass::forward);
      std::vector<double> g(want.size());
      for (auto& x : g) x = n(rng_);
      sn.net.set_grads(g);
      g = sn.net.grads();
      sn.draw_statistics(rng_);
      draw_q();
      std::vector<T> l0(static_cast<std::size_t>(m));
      double f0 = 0;
      for (auto& x : l0) f0 += double(x = T(2 + std::abs(n(rng_))));
      f0 = double(T(f0 / double(m)));
      set_losses(l0);
      const Status st = opt->step(c, views());
      ASSERT_TRUE(st.ok()) << st.to_string();
      const real pred =
          o.gauss_newton ? host.step(sn, want, g, q_host, outputs) : host.step(sn, want, g);
      // Second pass: every loss f1 = f0 - rho pred.
      const double f1 = std::isnan(rhos[k]) ? NAN : f0 - rhos[k] * double(pred);
      set_losses(std::vector<T>(static_cast<std::size_t>(m), T(f1)));
      const Status fs = opt->finish_step(c, views());
      ASSERT_TRUE(fs.ok()) << fs.to_string();
      host.update(real(rhos[k]));
      ASSERT_TRUE(synchronize(c).ok());
      const double tol = 64.0 * 35 * host.kappa() * eps<T>();
      EXPECT_LE(relative_error(sn.net.params(), want), tol)
          << "step " << k << ", kappa " << host.kappa();
    }
    optim::Health h;
    EXPECT_TRUE(opt->health(c, &h).ok());
    EXPECT_TRUE(h.clean()) << h.to_string();
  }
};

TEST_P(SmwNgTest, FollowsTheDenseSolveAndTheDampingRule) {
  SmwNgOptions o;
  o.lr = 0.5;
  o.damping = 0.299;  // lambda 0.3
  o.curvature_samples = 4;
  o.weight_decay = 0.01;
  const std::vector<double> rhos = {0.1, 0.5, 0.9, NAN, 0.6};
  run<double>(o, rhos);
  run<float>(o, {0.1, 0.9, 0.5});
  o.block_diagonal = true;
  run<double>(o, rhos);
  run<float>(o, {0.9, 0.1});
  o.block_diagonal = false;
  o.curvature_samples = 6;  // N2 = m
  run<double>(o, {0.5, 0.5});
  o.curvature_samples = 0;  // m / 2 = 3
  o.damping = 0;            // lambda at the floor 1e-3: B (rank N2) dominates
  run<double>(o, {0.9, 0.9});
}

TEST_P(SmwNgTest, GaussNewtonFollowsTheDenseSolve) {
  SmwNgOptions o;
  o.gauss_newton = true;
  o.lr = 0.5;
  o.damping = 0.299;
  o.curvature_samples = 2;  // N2 R = 6 pseudo-samples
  run<double>(o, {0.1, 0.9, double(NAN), 0.5});
  run<float>(o, {0.5, 0.9});
  o.block_diagonal = true;
  run<double>(o, {0.9, 0.1});
  o.block_diagonal = false;
  o.curvature_samples = 0;  // N2 = 3: 9 pseudo-samples
  run<double>(o, {0.5});
}

TEST_P(SmwNgTest, BadInput) {
  using T = double;
  const Context c = ctx();
  const index_t m = 6;
  auto expect_invalid = [](const Status& s, const std::string& what) {
    EXPECT_EQ(s.code(), StatusCode::invalid_argument) << s.to_string();
    EXPECT_NE(s.to_string().find(what), std::string::npos) << s.to_string();
  };
  {
    std::vector<Spec> with_vector = kSpecs;
    with_vector.push_back({LayerKind::vector, 1, 5, false});
    StatsNet<T> sn(backend(), with_vector, m, rng_);
    sn.draw_statistics(rng_);
    expect_invalid(optim::make_smw_ng<T>()->init(c, sn.views(true)), "vector");
  }
  StatsNet<T> sn(backend(), kSpecs, m, rng_);
  sn.draw_statistics(rng_);
  for (auto bad : std::vector<void (*)(SmwNgOptions&)>{
           [](SmwNgOptions& o) { o.lr = 0; }, [](SmwNgOptions& o) { o.damping = -1; },
           [](SmwNgOptions& o) { o.curvature_samples = 7; },
           [](SmwNgOptions& o) { o.epsilon = 0.6; }, [](SmwNgOptions& o) { o.boost = 0.9; }}) {
    SmwNgOptions o;
    bad(o);
    expect_invalid(optim::make_smw_ng<T>(o)->init(c, sn.views(true)), "options.");
  }
  Buffer<T> losses(backend(), std::vector<T>(std::size_t(m), 1.0));
  auto with_losses = [&] {
    auto v = sn.views(true);
    v.back().losses = MatrixBatch<T>{losses.data(), 1, 1, m, m, m};
    return v;
  };
  auto opt = optim::make_smw_ng<T>();
  ASSERT_TRUE(opt->init(c, with_losses()).ok());
  expect_invalid(opt->finish_step(c, with_losses()), "no step");
  expect_invalid(opt->step(c, sn.views(true)), "losses");
  auto v = with_losses();
  v.back().losses.cols = m - 1;
  expect_invalid(opt->step(c, v), "losses");
  v = with_losses();
  v[1].g = {};
  expect_invalid(opt->step(c, v), "layers[1].g");
  ASSERT_TRUE(opt->step(c, with_losses()).ok());
  expect_invalid(opt->step(c, with_losses()), "finish_step() was not called");
  ASSERT_TRUE(opt->finish_step(c, with_losses()).ok());
  ASSERT_TRUE(opt->step(c, with_losses()).ok());
  // SMW-GN without q, or with a q whose R differs between layers.
  SmwNgOptions gn;
  gn.gauss_newton = true;
  auto opt_gn = optim::make_smw_ng<T>(gn);
  ASSERT_TRUE(opt_gn->init(c, with_losses()).ok());
  EXPECT_EQ(opt_gn->needs().cotangents, m / 2);
  expect_invalid(opt_gn->step(c, with_losses()), "layers[0].q");
  Buffer<T> q(backend(), std::vector<T>(std::size_t(m / 2 * 3 * 4 * 3), 0.5));
  v = with_losses();
  for (std::size_t l = 0; l < kSpecs.size(); ++l) {
    const index_t outputs = l == 2 ? 3 : 2, rows = m / 2 * outputs * kSpecs[l].s;
    v[l].q =
        MatrixBatch<T>{q.data(), 1, rows, kSpecs[l].d_out, kSpecs[l].d_out, rows * kSpecs[l].d_out};
  }
  expect_invalid(opt_gn->step(c, v), "layers[2].q");
}

INSTANTIATE_TEST_SUITE_P(Backends, SmwNgTest,
                         ::testing::Values(Backend::reference, Backend::kokkos, Backend::cuda),
                         backend_test_name);

}  // namespace
}  // namespace curvkit::test
