// Muon (curvkit/optim/muon.hpp) on every compiled backend, float and double: hidden weights
// follow momentum -> Nesterov vector -> the Muon quintic run here in long double -> scaled update;
// biases, vector parameters and the output layer follow AdamW; a zero gradient gives a zero
// update (no NaN); the loss of a two-layer least-squares problem decreases.
#include "curvkit/optim/muon.hpp"
#include "optim_test_util.hpp"

namespace curvkit::test {
namespace {

using real = long double;
using Mat = std::vector<real>;  // row-major

Mat matmul(const Mat& a, const Mat& b, index_t n, index_t k, index_t m, bool tb = false) {
  Mat c(std::size_t(n * m), 0);
  for (index_t i = 0; i < n; ++i)
    for (index_t j = 0; j < m; ++j) {
      real s = 0;
      for (index_t e = 0; e < k; ++e) s += a[i * k + e] * (tb ? b[j * k + e] : b[e * m + j]);
      c[i * m + j] = s;
    }
  return c;
}

// Muon's orthogonalisation of the rows x cols u: X = u / ||u||_F, 5 times
// X <- a X + b (X X^T) X + c (X X^T)^2 X.
Mat quintic(Mat x, index_t rows, index_t cols) {
  real f = 0;
  for (real v : x) f += v * v;
  for (real& v : x) v /= std::sqrt(f);
  const real a = 3.4445L, b = -4.7750L, c = 2.0315L;
  for (int s = 0; s < 5; ++s) {
    const Mat g = matmul(x, x, rows, cols, rows, true);  // X X^T
    const Mat g2 = matmul(g, g, rows, rows, rows);
    Mat p(g.size());
    for (std::size_t e = 0; e < p.size(); ++e) p[e] = b * g[e] + c * g2[e];
    const Mat px = matmul(p, x, rows, rows, cols);
    for (std::size_t e = 0; e < x.size(); ++e) x[e] = a * x[e] + px[e];
  }
  return x;
}

// Hidden (Muon) layers: the first two; the third is the output layer; one vector layer.
const std::vector<std::tuple<LayerKind, index_t, index_t, bool>> kMuonLayers = {
    {LayerKind::linear, 3, 5, true},
    {LayerKind::vector, 1, 4, false},
    {LayerKind::conv2d, 6, 3, true},  // expanding: lr scale sqrt(2)
    {LayerKind::linear, 2, 6, true}};

class MuonTest : public BackendTest {
 protected:
  template <class T>
  void follows_its_recurrence() {
    optim::MuonOptions o;
    o.lr = 0.05;
    o.weight_decay = 0.1;
    o.aux = {0.01, 0.9, 0.95, 1e-3, 0.02};
    auto opt = optim::make_muon<T>(o);
    // Host state: per tensor of the flattened parameter list.
    struct Tensor {
      std::size_t at, size;
      index_t rows, cols;
      bool muon;
    };
    std::vector<Tensor> tensors;
    std::size_t at = 0;
    for (std::size_t l = 0; l < kMuonLayers.size(); ++l) {
      const auto [kind, rows, cols, bias] = kMuonLayers[l];
      const bool hidden = kind != LayerKind::vector && l + 1 < kMuonLayers.size();
      tensors.push_back({at, std::size_t(rows * cols), rows, cols, hidden});
      at += std::size_t(rows * cols);
      if (bias) {
        tensors.push_back({at, std::size_t(rows), 1, rows, false});
        at += std::size_t(rows);
      }
    }
    std::vector<double> m(at, 0.0), am(at, 0.0), av(at, 0.0);
    const HostUpdate update = [&](std::vector<double>& w, const std::vector<double>& g, int k) {
      const double beta = o.momentum;
      for (const Tensor& t : tensors) {
        if (t.muon) {
          Mat u(t.size);
          for (std::size_t e = 0; e < t.size; ++e) {
            m[t.at + e] = beta * m[t.at + e] + (1 - beta) * g[t.at + e];
            u[e] = (1 - beta) * g[t.at + e] + beta * m[t.at + e];
          }
          const Mat x = quintic(u, t.rows, t.cols);
          const double s = std::sqrt(std::max(1.0, double(t.rows) / double(t.cols)));
          for (std::size_t e = 0; e < t.size; ++e)
            w[t.at + e] = (1 - o.lr * o.weight_decay) * w[t.at + e] - o.lr * s * double(x[e]);
        } else {
          const auto& a = o.aux;
          const double c1 = 1 - std::pow(a.beta1, k + 1), c2 = 1 - std::pow(a.beta2, k + 1);
          for (std::size_t e = t.at; e < t.at + t.size; ++e) {
            am[e] = a.beta1 * am[e] + (1 - a.beta1) * g[e];
            av[e] = a.beta2 * av[e] + (1 - a.beta2) * g[e] * g[e];
            const double d = (am[e] / c1) / (std::sqrt(av[e] / c2) + a.epsilon);
            w[e] = (1 - a.lr * a.weight_decay) * w[e] - a.lr * d;
          }
        }
      }
    };
    // The quintic amplifies the rounding of its 15 products (float: ~1e-5 relative).
    expect_follows<T>(*opt, backend(), ctx(), rng_, kMuonLayers, 3, update, 200 * eps<T>(),
                      trace() + ", muon",
                      [](std::vector<LayerView<T>>& v) { v.back().output_layer = true; });
  }
};

TEST_P(MuonTest, FollowsItsRecurrence) {
  follows_its_recurrence<float>();
  follows_its_recurrence<double>();
}

TEST_P(MuonTest, ZeroAndNonFiniteGradientsGiveZeroUpdates) {
  using T = float;
  const Context c = ctx();
  Net<T> net(backend(), {{LayerKind::linear, 4, 3, false}, {LayerKind::linear, 3, 4, false}}, rng_);
  auto views = net.views();
  optim::MuonOptions o;
  o.weight_decay = 0;
  auto opt = optim::make_muon<T>(o);
  ASSERT_TRUE(opt->init(c, views).ok());
  const auto before = net.params();
  std::vector<double> g(before.size(), 0.0);
  g[before.size() - 1] = std::numeric_limits<double>::quiet_NaN();  // second layer: NaN
  net.set_grads(g);
  ASSERT_TRUE(opt->step(c, views).ok());
  ASSERT_TRUE(synchronize(c).ok());
  const auto after = net.params();
  for (std::size_t e = 0; e < after.size(); ++e)
    EXPECT_EQ(after[e], before[e]) << trace() << ", element " << e;
  // health() reports both: the zero weight (polar info 2) and the NaN one (info -1).
  optim::Health h;
  ASSERT_TRUE(opt->health(c, &h).ok());
  ASSERT_EQ(h.entries.size(), 1u);
  EXPECT_FALSE(h.clean());
  EXPECT_EQ(h.entries[0].matrices, 2u);
  EXPECT_EQ(h.entries[0].codes[2], 1u) << h.to_string();
  EXPECT_EQ(h.entries[0].codes[-1], 1u) << h.to_string();
}

TEST_P(MuonTest, LossDecreasesOnTwoLayerLeastSquares) {
  // y = W2 W1 x with W1 (6 x 4) hidden (Muon) and W2 (2 x 6) the output layer (AdamW); the
  // gradients on the host; 80 steps.
  using T = double;
  std::mt19937_64 rng(777);
  std::normal_distribution<double> n;
  const index_t m = 40, d0 = 4, d1 = 6, d2 = 2;
  std::vector<double> x(std::size_t(m * d0)), y(std::size_t(m * d2));
  for (auto& v : x) v = n(rng);
  for (index_t i = 0; i < m; ++i)
    for (index_t o = 0; o < d2; ++o) {
      double s = 0;
      for (index_t j = 0; j < d0; ++j) s += std::sin(double(3 * o + j)) * x[i * d0 + j];
      y[i * d2 + o] = s;
    }
  const Context c = ctx();
  Net<T> net(backend(), {{LayerKind::linear, d1, d0, false}, {LayerKind::linear, d2, d1, false}},
             rng);
  auto views = net.views();
  views.back().output_layer = true;
  optim::MuonOptions o;
  o.lr = 0.02;
  o.aux.lr = 0.01;
  auto opt = optim::make_muon<T>(o);
  ASSERT_TRUE(opt->init(c, views).ok());
  auto loss_and_grad = [&](std::vector<double>* g) {
    const auto p = net.params();  // W1 then W2
    const double* w1 = p.data();
    const double* w2 = p.data() + d1 * d0;
    g->assign(p.size(), 0.0);
    double loss = 0;
    for (index_t i = 0; i < m; ++i) {
      std::vector<double> h(std::size_t(d1), 0.0), r(std::size_t(d2), 0.0);
      for (index_t a = 0; a < d1; ++a)
        for (index_t j = 0; j < d0; ++j) h[a] += w1[a * d0 + j] * x[i * d0 + j];
      for (index_t o2 = 0; o2 < d2; ++o2) {
        for (index_t a = 0; a < d1; ++a) r[o2] += w2[o2 * d1 + a] * h[a];
        r[o2] -= y[i * d2 + o2];
        loss += r[o2] * r[o2] / (2.0 * double(m));
      }
      for (index_t o2 = 0; o2 < d2; ++o2)
        for (index_t a = 0; a < d1; ++a) {
          (*g)[std::size_t(d1 * d0 + o2 * d1 + a)] += r[o2] * h[a] / double(m);
          for (index_t j = 0; j < d0; ++j)
            (*g)[std::size_t(a * d0 + j)] += r[o2] * w2[o2 * d1 + a] * x[i * d0 + j] / double(m);
        }
    }
    return loss;
  };
  std::vector<double> g;
  const double start = loss_and_grad(&g);
  double loss = start;
  for (int k = 0; k < 80; ++k) {
    net.set_grads(g);
    ASSERT_TRUE(opt->step(c, views).ok());
    ASSERT_TRUE(synchronize(c).ok());
    loss = loss_and_grad(&g);
    ASSERT_TRUE(std::isfinite(loss)) << trace() << ", step " << k;
  }
  EXPECT_LT(loss, 0.2 * start) << trace();
}

INSTANTIATE_TEST_SUITE_P(Backends, MuonTest,
                         ::testing::Values(Backend::reference, Backend::kokkos, Backend::cuda),
                         backend_test_name);

}  // namespace
}  // namespace curvkit::test
