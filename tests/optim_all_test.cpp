// Every optimizer of the registry (curvkit/optim/registry.hpp) trains a small two-layer linear
// network on a deterministic least-squares problem (fixed seed) on every compiled backend: the
// loss falls below half its start within 150 steps and stays finite; with duplicated input
// features (singular statistics) nothing becomes NaN.  The trainer's part is done here on the
// host: gradients, layer inputs a (with the ones column), per-sample output gradients g, and
// g_sampled / sampled mean gradients from targets drawn from the model's Gaussian likelihood,
// and SMW-GN's cotangent backprops.
#include <map>

#include "curvkit/optim/mbag.hpp"
#include "curvkit/optim/mbf.hpp"
#include "curvkit/optim/muon.hpp"
#include "curvkit/optim/registry.hpp"
#include "curvkit/optim/shampoo.hpp"
#include "curvkit/optim/tengrad.hpp"
#include "curvkit/optim/tnt.hpp"
#include "optim_test_util.hpp"

namespace curvkit::test {
namespace {

constexpr index_t kM = 48, kIn = 4, kHidden = 6, kOut = 2;

// Settings for this problem (the presets are tuned for real networks; MBF's damping 3e-4 and
// lr 1e-5, for one, leave a 2-output layer's null directions amplified 3000-fold): the preset
// of each optimizer with a learning rate and, where needed, the damping changed.
std::unique_ptr<optim::Optimizer<double>> make_for_test(const std::string& name) {
  using namespace optim;
  if (name == "mbf" || name == "mbf-true") {
    MbfOptions o;
    o.lr = 0.01;
    o.damping = 0.3;
    o.sampled_labels = name == "mbf-true";
    return make_mbf<double>(o);
  }
  if (name == "tengrad") {
    // The preset's lambda 0.1 (lr 0.03) diverges here: on the duplicated-input problem within
    // 30 steps, and with t2 = 1 on the plain one too.  Presumably the sampled Fisher of 48
    // samples misses some of the first layer's curvature, where the step is lr / lambda times
    // the momentum.  K-FAC's lambda 1 trains on both.
    TengradOptions o;
    o.damping = 1;
    o.lr = 0.1;
    return make_tengrad<double>(o);
  }
  if (name == "muon") {
    MuonOptions o;
    o.aux.lr = 0.02;  // the output layer
    return make_muon<double>(o);
  }
  static const std::map<std::string, double> lr = {
      {"sgd", 0.01},     {"adamw", 0.03},    {"shampoo", 1e-3}, {"tnt", 1e-3},
      {"tnt-ef", 3e-3},  {"mbag", 0.01},     {"mbag-n", 0.02},  {"kfac", 0.05},
      {"kfac-ef", 0.05}, {"kfac-2l", 0.05},  {"kbfgs", 0.05},   {"kbfgs-l", 0.05},
      {"smw-ng", 1.0},   {"smw-ng-bd", 1.0}, {"smw-gn", 1.0},   {"smw-gn-bd", 1.0}};
  const auto it = lr.find(name);
  return it == lr.end() ? nullptr : make_optimizer<double>(name, "autoencoder", it->second);
}

class Problem {
 public:
  Problem(std::uint64_t seed, bool duplicated) : rng_(seed) {
    std::normal_distribution<double> n;
    x_.resize(std::size_t(kM * kIn));
    for (index_t i = 0; i < kM; ++i)
      for (index_t j = 0; j < kIn; ++j)
        x_[std::size_t(i * kIn + j)] =
            duplicated && j == kIn - 1 ? x_[std::size_t(i * kIn)] : n(rng_);
    y_.resize(std::size_t(kM * kOut));
    for (index_t i = 0; i < kM; ++i)
      for (index_t o = 0; o < kOut; ++o) {
        double s = 0.3 * double(o);
        for (index_t j = 0; j < kIn; ++j)
          s += std::sin(double(5 * o + j + 1)) * x_[std::size_t(i * kIn + j)];
        y_[std::size_t(i * kOut + o)] = s;
      }
  }

  // Forward and backward at parameters p (W1 6x4, b1 6, W2 2x6, b2 2): the mean loss, and the
  // tensors an optimizer may ask for (host, row-major).
  struct Pass {
    double loss = 0;
    std::vector<double> grad, grad_sampled;        // flattened like the parameters
    std::vector<double> a1, g1, g1s, a2, g2, g2s;  // per layer
    std::vector<double> z1, z2;                    // pre-activations (the net is linear)
    std::vector<double> losses;                    // per sample (their mean is `loss`)
  };
  Pass run(const std::vector<double>& p) {
    const double* w1 = p.data();
    const double* b1 = w1 + kHidden * kIn;
    const double* w2 = b1 + kHidden;
    const double* b2 = w2 + kOut * kHidden;
    Pass r;
    r.grad.assign(p.size(), 0.0);
    r.grad_sampled.assign(p.size(), 0.0);
    r.a1.resize(std::size_t(kM * (kIn + 1)));
    r.a2.resize(std::size_t(kM * (kHidden + 1)));
    r.g1.resize(std::size_t(kM * kHidden));
    r.g1s.resize(r.g1.size());
    r.g2.resize(std::size_t(kM * kOut));
    r.g2s.resize(r.g2.size());
    r.z1.resize(r.g1.size());
    r.z2.resize(r.g2.size());
    r.losses.assign(std::size_t(kM), 0.0);
    std::normal_distribution<double> n;
    for (index_t i = 0; i < kM; ++i) {
      std::vector<double> h(static_cast<std::size_t>(kHidden));
      for (index_t a = 0; a < kHidden; ++a) {
        h[std::size_t(a)] = b1[a];
        for (index_t j = 0; j < kIn; ++j)
          h[std::size_t(a)] += w1[a * kIn + j] * x_[std::size_t(i * kIn + j)];
      }
      for (index_t j = 0; j <= kIn; ++j)
        r.a1[std::size_t(i * (kIn + 1) + j)] = j < kIn ? x_[std::size_t(i * kIn + j)] : 1;
      for (index_t a = 0; a <= kHidden; ++a)
        r.a2[std::size_t(i * (kHidden + 1) + a)] = a < kHidden ? h[std::size_t(a)] : 1;
      for (index_t a = 0; a < kHidden; ++a) r.z1[std::size_t(i * kHidden + a)] = h[std::size_t(a)];
      for (index_t o = 0; o < kOut; ++o) {
        double out = b2[o];
        for (index_t a = 0; a < kHidden; ++a) out += w2[o * kHidden + a] * h[std::size_t(a)];
        r.z2[std::size_t(i * kOut + o)] = out;
        const double res = out - y_[std::size_t(i * kOut + o)];
        r.loss += res * res / (2.0 * double(kM));
        r.losses[std::size_t(i)] += res * res / 2.0;
        r.g2[std::size_t(i * kOut + o)] = res;
        r.g2s[std::size_t(i * kOut + o)] = -n(rng_);  // target drawn from N(out, 1)
      }
      for (index_t a = 0; a < kHidden; ++a) {
        double s = 0, ss = 0;
        for (index_t o = 0; o < kOut; ++o) {
          s += w2[o * kHidden + a] * r.g2[std::size_t(i * kOut + o)];
          ss += w2[o * kHidden + a] * r.g2s[std::size_t(i * kOut + o)];
        }
        r.g1[std::size_t(i * kHidden + a)] = s;
        r.g1s[std::size_t(i * kHidden + a)] = ss;
      }
    }
    // Mean gradients (1/m) g^T a, split into W and b.
    auto mean_grad = [&](const std::vector<double>& g, const std::vector<double>& a, index_t dout,
                         index_t din, std::size_t at, std::vector<double>* out) {
      for (index_t o = 0; o < dout; ++o)
        for (index_t j = 0; j <= din; ++j) {
          double s = 0;
          for (index_t i = 0; i < kM; ++i)
            s += g[std::size_t(i * dout + o)] * a[std::size_t(i * (din + 1) + j)];
          s /= double(kM);
          (*out)[j < din ? at + std::size_t(o * din + j) : at + std::size_t(dout * din + o)] = s;
        }
    };
    const std::size_t second = std::size_t(kHidden * kIn + kHidden);
    mean_grad(r.g1, r.a1, kHidden, kIn, 0, &r.grad);
    mean_grad(r.g2, r.a2, kOut, kHidden, second, &r.grad);
    mean_grad(r.g1s, r.a1, kHidden, kIn, 0, &r.grad_sampled);
    mean_grad(r.g2s, r.a2, kOut, kHidden, second, &r.grad_sampled);
    return r;
  }

 private:
  std::mt19937_64 rng_;
  std::vector<double> x_, y_;
};

class AllOptimizersTest : public BackendTest {
 protected:
  // Trains with `name`; returns (start loss, final loss); asserts finiteness.
  std::pair<double, double> train(const std::string& name, bool duplicated, int steps) {
    using T = double;
    Problem prob(99, duplicated);
    std::mt19937_64 init(5);
    Net<T> net(backend(),
               {{LayerKind::linear, kHidden, kIn, true}, {LayerKind::linear, kOut, kHidden, true}},
               init);
    Net<T> sampled(
        backend(),
        {{LayerKind::linear, kHidden, kIn, true}, {LayerKind::linear, kOut, kHidden, true}}, init);
    auto opt = make_for_test(name);
    EXPECT_NE(opt, nullptr) << name << " has no settings in this test";
    if (!opt) return {0, 0};
    const Backend be = backend();
    Buffer<T> a1(be, std::size_t(kM * (kIn + 1))), g1(be, std::size_t(kM * kHidden)),
        g1s(be, std::size_t(kM * kHidden)), a2(be, std::size_t(kM * (kHidden + 1))),
        g2(be, std::size_t(kM * kOut)), g2s(be, std::size_t(kM * kOut)),
        z1(be, std::size_t(kM * kHidden)), z2(be, std::size_t(kM * kOut)),
        losses(be, std::size_t(kM));
    auto views = net.views();
    const auto sv = sampled.views();
    auto mat = [](Buffer<T>& b, index_t r, index_t c) {
      return MatrixBatch<const T>{b.data(), 1, r, c, c, r * c};
    };
    views[0].a = mat(a1, kM, kIn + 1);
    views[0].g = mat(g1, kM, kHidden);
    views[0].g_sampled = mat(g1s, kM, kHidden);
    views[1].a = mat(a2, kM, kHidden + 1);
    views[1].g = mat(g2, kM, kOut);
    views[1].g_sampled = mat(g2s, kM, kOut);
    views[0].z = mat(z1, kM, kHidden);
    views[1].z = mat(z2, kM, kOut);
    views[1].output_layer = true;
    views[1].losses = mat(losses, 1, kM);
    for (std::size_t l = 0; l < 2; ++l) {
      views[l].m = kM;
      views[l].dw_sampled = sv[l].dw;
      views[l].db_sampled = sv[l].db;
    }
    const Context c = ctx();
    const Status st0 = opt->init(c, views);
    EXPECT_TRUE(st0.ok()) << name << ": " << st0.to_string();
    // SMW-GN's cotangent backprops for its first n2 samples: the loss Hessian in the outputs is
    // I (C = I), so pseudo-sample (i, r) has q2 = e_r and, the network being linear, q1 = row r
    // of W2.
    const index_t n2 = opt->needs().cotangents;
    Buffer<T> q1(be, std::size_t(std::max<index_t>(n2 * kOut * kHidden, 1))),
        q2(be, std::size_t(std::max<index_t>(n2 * kOut * kOut, 1)));
    if (n2 > 0) {
      views[0].q = mat(q1, n2 * kOut, kHidden);
      views[1].q = mat(q2, n2 * kOut, kOut);
    }
    auto upload = [](Buffer<T>& b, const std::vector<double>& v) {
      b.upload(std::vector<T>(v.begin(), v.end()));
    };
    Problem::Pass pass = prob.run(net.params());
    const double start = pass.loss;
    auto upload_pass = [&] {
      net.set_grads(pass.grad);
      sampled.set_grads(pass.grad_sampled);
      upload(a1, pass.a1);
      upload(g1, pass.g1);
      upload(g1s, pass.g1s);
      upload(a2, pass.a2);
      upload(g2, pass.g2);
      upload(g2s, pass.g2s);
      upload(z1, pass.z1);
      upload(z2, pass.z2);
      upload(losses, pass.losses);
      if (n2 == 0) return;
      const std::vector<double> p = net.params();
      const double* w2 = p.data() + kHidden * kIn + kHidden;
      std::vector<double> h1, h2;
      for (index_t i = 0; i < n2; ++i)
        for (index_t r = 0; r < kOut; ++r) {
          for (index_t a = 0; a < kHidden; ++a) h1.push_back(w2[r * kHidden + a]);
          for (index_t o = 0; o < kOut; ++o) h2.push_back(o == r ? 1.0 : 0.0);
        }
      upload(q1, h1);
      upload(q2, h2);
    };
    for (int k = 0; k < steps; ++k) {
      upload_pass();
      const optim::Needs needs = opt->needs();
      const Status st = opt->step(c, views);
      EXPECT_TRUE(st.ok()) << name << ": " << st.to_string();
      if (!st.ok()) break;
      EXPECT_TRUE(synchronize(c).ok());
      pass = prob.run(net.params());
      if (needs.second_pass != optim::SecondPass::none) {  // the (full) batch at the new weights
        upload_pass();
        const Status fs = opt->finish_step(c, views);
        EXPECT_TRUE(fs.ok()) << name << ": " << fs.to_string();
        if (!fs.ok()) break;
      }
      EXPECT_TRUE(std::isfinite(pass.loss)) << trace() << ", " << name << ", step " << k;
      if (!std::isfinite(pass.loss)) break;
    }
    // health() reads back every watched info array; on this problem every op succeeded, up to
    // Newton–Schulz's info 1 (a residual stop at the rounding floor).
    optim::Health h;
    EXPECT_TRUE(opt->health(c, &h).ok());
    for (const auto& e : h.entries)
      for (const auto& [code, n] : e.codes)
        EXPECT_EQ(code, 1) << trace() << ", " << name << ": " << h.to_string();
    return {start, pass.loss};
  }
};

TEST_P(AllOptimizersTest, EachDecreasesTheLoss) {
  for (const std::string& name : optim::optimizer_names()) {
    const auto [start, end] = train(name, false, 150);
    EXPECT_LT(end, 0.5 * start) << trace() << ", " << name << ": " << start << " -> " << end;
  }
}

TEST_P(AllOptimizersTest, SingularStatisticsStayFinite) {
  for (const std::string& name : optim::optimizer_names()) (void)train(name, true, 40);
}

TEST_P(AllOptimizersTest, UnknownNamesAndPresets) {
  EXPECT_EQ(optim::make_optimizer<float>("nope"), nullptr);
  EXPECT_EQ(optim::make_optimizer<float>("sgd", "nope"), nullptr);
  for (const std::string& name : optim::optimizer_names()) {
    auto o = optim::make_optimizer<float>(name, "cnn");
    ASSERT_NE(o, nullptr) << name;
    EXPECT_EQ(o->name(), name);
  }
}

INSTANTIATE_TEST_SUITE_P(Backends, AllOptimizersTest,
                         ::testing::Values(Backend::reference, Backend::kokkos, Backend::cuda),
                         backend_test_name);

}  // namespace
}  // namespace curvkit::test
