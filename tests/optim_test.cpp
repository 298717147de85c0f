// Optimizer-layer tests (curvkit/optim/optimizer.hpp), every compiled backend, float and double:
// each optimizer's update against its dense formula on tiny layers over several steps (fresh
// random gradients each step), a loss that decreases on a small deterministic least-squares
// problem, and bad layer descriptions.
#include <functional>

#include "optim_test_util.hpp"

namespace curvkit::test {
namespace {

const std::vector<std::tuple<LayerKind, index_t, index_t, bool>> kLayers = {
    {LayerKind::linear, 3, 4, true},
    {LayerKind::vector, 1, 5, false},
    {LayerKind::linear, 2, 3, true}};

class OptimTest : public BackendTest {
 protected:
  template <class T>
  void follows(optim::Optimizer<T>& opt, int steps, const HostUpdate& update,
               const std::string& what) {
    expect_follows<T>(opt, backend(), ctx(), rng_, kLayers, steps, update, 20 * eps<T>(),
                      trace() + ", " + what);
  }

  template <class T>
  void sgd() {
    optim::SgdOptions o{0.05, 0.9, 0.1};
    auto opt = optim::make_sgd<T>(o);
    std::vector<double> m;
    follows<T>(
        *opt, 4,
        [&](std::vector<double>& w, const std::vector<double>& g, int) {
          if (m.empty()) m.assign(w.size(), 0.0);
          for (std::size_t e = 0; e < w.size(); ++e) {
            m[e] = o.momentum * m[e] + g[e];
            w[e] = (1 - o.lr * o.weight_decay) * w[e] - o.lr * m[e];
          }
        },
        "sgd");
  }

  template <class T>
  void adamw() {
    optim::AdamWOptions o{0.01, 0.9, 0.99, 1e-3, 0.05};
    auto opt = optim::make_adamw<T>(o);
    std::vector<double> m, v;
    follows<T>(
        *opt, 4,
        [&](std::vector<double>& w, const std::vector<double>& g, int k) {
          if (m.empty()) m.assign(w.size(), 0.0), v.assign(w.size(), 0.0);
          const double c1 = 1 - std::pow(o.beta1, k + 1), c2 = 1 - std::pow(o.beta2, k + 1);
          for (std::size_t e = 0; e < w.size(); ++e) {
            m[e] = o.beta1 * m[e] + (1 - o.beta1) * g[e];
            v[e] = o.beta2 * v[e] + (1 - o.beta2) * g[e] * g[e];
            const double d = (m[e] / c1) / (std::sqrt(v[e] / c2) + o.epsilon);
            w[e] = (1 - o.lr * o.weight_decay) * w[e] - o.lr * d;
          }
        },
        "adamw");
  }
};

TEST_P(OptimTest, SgdFollowsItsRecurrence) {
  sgd<float>();
  sgd<double>();
}

TEST_P(OptimTest, AdamWFollowsItsRecurrence) {
  adamw<float>();
  adamw<double>();
}

TEST_P(OptimTest, LossDecreasesOnLeastSquares) {
  auto sgd = optim::make_sgd<double>({0.1, 0.9, 0});
  auto [s0, s1] = train_least_squares<double>(*sgd, backend(), ctx(), 12345, 3, 2, true, 60, 0.01);
  EXPECT_LT(s1, 0.05 * s0) << trace() << ", sgd";
  auto adam = optim::make_adamw<float>({0.05, 0.9, 0.999, 1e-8, 0});
  auto [a0, a1] = train_least_squares<float>(*adam, backend(), ctx(), 12345, 3, 2, true, 200, 0.01);
  EXPECT_LT(a1, 0.05 * a0) << trace() << ", adamw";
}

TEST_P(OptimTest, BadLayersAreReported) {
  using T = double;
  const Context c = ctx();
  Net<T> net(backend(), kLayers, rng_);
  auto views = net.views();
  auto opt = optim::make_adamw<T>();
  auto bad = views;
  bad[0].dw.cols += 1;
  Status s = opt->init(c, bad);
  EXPECT_EQ(s.code(), StatusCode::invalid_argument);
  EXPECT_NE(s.to_string().find("layers[0].dw"), std::string::npos) << s.to_string();
  bad = views;
  bad[2].b.cols = 1;
  EXPECT_EQ(opt->init(c, bad).code(), StatusCode::invalid_argument);
  ASSERT_TRUE(opt->init(c, views).ok());
  bad = views;
  bad.pop_back();
  s = opt->step(c, bad);
  EXPECT_EQ(s.code(), StatusCode::invalid_argument);
  EXPECT_NE(s.to_string().find("init"), std::string::npos) << s.to_string();
  EXPECT_EQ(opt->iteration(), 0);
}

INSTANTIATE_TEST_SUITE_P(Backends, OptimTest,
                         ::testing::Values(Backend::reference, Backend::kokkos, Backend::cuda),
                         backend_test_name);

}  // namespace
}  // namespace curvkit::test
