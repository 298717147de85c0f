// MBF (curvkit/optim/mbf.hpp) on every compiled backend, float and double: several steps against
// the recurrence simulated here in long double — convolution kernels as kh kw x kh kw blocks,
// the averaged (d_in + 1)^2 block of a linear layer over the rows of [W | b] (or one per row,
// per_neuron), 1 x 1 blocks of a
// convolution bias, Adam for a vector; statistics every t1 from the raw gradient (not the
// momentum), inverses (lambda added only there) every t2; and the 1 x 1 formula: a
// 1 x 1 convolution, first step, no momentum: p = g / (g^2 + lambda).
#include "curvkit/optim/mbf.hpp"
#include "eigen_oracle.hpp"
#include "optim_test_util.hpp"

namespace curvkit::test {
namespace {

using Mat = std::vector<real>;

// A linear 3 x 4 with bias, a convolution 2 x (2 * 2 x 2) with bias, a vector of 3.
const std::vector<std::tuple<LayerKind, index_t, index_t, bool>> kMbfLayers = {
    {LayerKind::linear, 3, 4, true},
    {LayerKind::conv2d, 2, 8, true},
    {LayerKind::vector, 1, 3, false}};

Mat inverse(Mat s, index_t n, double lambda) {
  for (index_t a = 0; a < n; ++a) s[std::size_t(a * n + a)] += lambda;
  const Dense f = matrix_function(s, n, [](real v) { return 1 / v; });
  return Mat(f.begin(), f.end());
}

class HostMbf {
 public:
  explicit HostMbf(const optim::MbfOptions& o) : o_(o), m_(40, 0), am_(40, 0), av_(40, 0) {
    // Blocks: linear [W | b] 5 x 5 (one, or three per neuron), conv kernels 4 x 4 (four), conv
    // bias scalars (two).
    per_neuron_ = o.linear_blocks == optim::LinearBlocks::per_neuron;
    lin_s_.assign(per_neuron_ ? 3 : 1, Mat(25, 0));
    lin_p_.assign(per_neuron_ ? 3 : 1, identity(5, 1 / o.damping));
    conv_s_.assign(4, Mat(16, 0));
    conv_p_.assign(4, identity(4, 1 / o.damping));
    bias_s_.assign(2, 0);
    bias_frozen_.assign(2, 0);
  }

  // Flattened layout: W1 (0..11), b1 (12..14), W2 (15..30), b2 (31..32), vector (33..35).
  void step(std::vector<double>& w, const std::vector<double>& g, int k) {
    const bool stats = k % o_.t1 == 0, invert = k % o_.t2 == 0;
    const real beta = k == 0 ? 0 : real(o_.stat_decay), mu = real(o_.momentum);
    for (std::size_t e = 0; e < 33; ++e) m_[e] = mu * m_[e] + g[e];
    std::vector<real> p(36, 0);
    // Linear: G~ = [dW | db] 3 x 5.
    auto folded = [&](const std::vector<real>& src, index_t i, index_t j) {
      return j < 4 ? src[std::size_t(i * 4 + j)] : src[std::size_t(12 + i)];
    };
    const std::vector<real> gr(g.begin(), g.end());
    for (std::size_t q = 0; q < lin_s_.size(); ++q) {  // block q: all rows, or row q
      const index_t i0 = per_neuron_ ? index_t(q) : 0, i1 = per_neuron_ ? i0 + 1 : 3;
      Mat& ls = lin_s_[q];
      if (stats)
        for (index_t a = 0; a < 5; ++a)
          for (index_t b = 0; b < 5; ++b) {
            real s = 0;
            for (index_t i = i0; i < i1; ++i) s += folded(gr, i, a) * folded(gr, i, b);
            ls[std::size_t(a * 5 + b)] =
                beta * ls[std::size_t(a * 5 + b)] + (1 - beta) * s / real(i1 - i0);
          }
      if (invert) lin_p_[q] = inverse(ls, 5, o_.damping);
      for (index_t i = i0; i < i1; ++i)
        for (index_t b = 0; b < 5; ++b) {
          real s = 0;
          for (index_t a = 0; a < 5; ++a) s += folded(m_, i, a) * lin_p_[q][std::size_t(a * 5 + b)];
          (b < 4 ? p[std::size_t(i * 4 + b)] : p[std::size_t(12 + i)]) = s;
        }
    }
    // Convolution kernels: entries 15 + 4 q .. 15 + 4 q + 3, q = o * 2 + j.
    for (std::size_t q = 0; q < 4; ++q) {
      const std::size_t at = 15 + 4 * q;
      if (stats)
        for (std::size_t a = 0; a < 4; ++a)
          for (std::size_t b = 0; b < 4; ++b)
            conv_s_[q][a * 4 + b] =
                beta * conv_s_[q][a * 4 + b] + (1 - beta) * gr[at + a] * gr[at + b];
      if (invert) conv_p_[q] = inverse(conv_s_[q], 4, o_.damping);
      for (std::size_t b = 0; b < 4; ++b) {
        real s = 0;
        for (std::size_t a = 0; a < 4; ++a) s += m_[at + a] * conv_p_[q][a * 4 + b];
        p[at + b] = s;
      }
    }
    // Convolution bias: 1 x 1 blocks with the statistic frozen at inversion.
    for (std::size_t o = 0; o < 2; ++o) {
      if (stats) bias_s_[o] = beta * bias_s_[o] + (1 - beta) * gr[31 + o] * gr[31 + o];
      if (invert) bias_frozen_[o] = bias_s_[o];
      p[31 + o] = m_[31 + o] / (bias_frozen_[o] + real(o_.damping));
    }
    // Vector: Adam.
    const auto& a = o_.vector_adam;
    const real c1 = 1 - std::pow(real(a.beta1), real(k + 1)),
               c2 = 1 - std::pow(real(a.beta2), real(k + 1));
    for (std::size_t e = 33; e < 36; ++e) {
      am_[e] = real(a.beta1) * am_[e] + (1 - real(a.beta1)) * gr[e];
      av_[e] = real(a.beta2) * av_[e] + (1 - real(a.beta2)) * gr[e] * gr[e];
      p[e] = (am_[e] / c1) / (std::sqrt(av_[e] / c2) + real(a.epsilon));
    }
    for (std::size_t e = 0; e < 36; ++e)
      w[e] = double((1 - real(o_.lr) * real(o_.weight_decay)) * real(w[e]) - real(o_.lr) * p[e]);
  }

 private:
  static Mat identity(index_t n, double v) {
    Mat m(std::size_t(n * n), 0);
    for (index_t a = 0; a < n; ++a) m[std::size_t(a * n + a)] = v;
    return m;
  }
  optim::MbfOptions o_;
  std::vector<real> m_, am_, av_;
  bool per_neuron_ = false;
  std::vector<Mat> lin_s_, lin_p_;
  std::vector<Mat> conv_s_, conv_p_;
  std::vector<real> bias_s_, bias_frozen_;
};

class MbfTest : public BackendTest {
 protected:
  template <class T>
  void follows(int t1, int t2, optim::LinearBlocks linear_blocks = optim::LinearBlocks::averaged) {
    optim::MbfOptions o;
    o.linear_blocks = linear_blocks;
    o.lr = 0.02;
    o.damping = 0.3;
    o.weight_decay = 0.01;
    o.t1 = t1;
    o.t2 = t2;
    auto opt = optim::make_mbf<T>(o);
    HostMbf host(o);
    expect_follows<T>(
        *opt, backend(), ctx(), rng_, kMbfLayers, 5,
        [&](std::vector<double>& w, const std::vector<double>& g, int k) { host.step(w, g, k); },
        sizeof(T) == 4 ? 1e-5 : 1e-11,
        trace() + ", mbf t1 " + std::to_string(t1) + " t2 " + std::to_string(t2) +
            (linear_blocks == optim::LinearBlocks::per_neuron ? " per-neuron" : ""),
        [](std::vector<LayerView<T>>& v) {
          v[1].c_in = 2;
          v[1].kh = v[1].kw = 2;
        });
  }
};

TEST_P(MbfTest, FollowsTheBlockRecurrence) {
  follows<float>(1, 2);
  follows<double>(1, 2);
  follows<double>(2, 3);
}

TEST_P(MbfTest, PerNeuronLinearBlocksFollowTheirRecurrence) {
  follows<float>(1, 2, optim::LinearBlocks::per_neuron);
  follows<double>(2, 3, optim::LinearBlocks::per_neuron);
}

// The formula: a 1 x 1 convolution (every block 1 x 1), first step, no momentum.
TEST_P(MbfTest, OneByOneBlocksGiveGOverGSquaredPlusLambda) {
  using T = double;
  const Context c = ctx();
  Net<T> net(backend(), {{LayerKind::conv2d, 3, 2, true}}, rng_);
  auto views = net.views();
  views[0].c_in = 2;
  optim::MbfOptions o;
  o.lr = 0.1;
  o.momentum = 0;
  o.damping = 0.05;
  auto opt = optim::make_mbf<T>(o);
  ASSERT_TRUE(opt->init(c, views).ok());
  const auto w0 = net.params(), g = net.grads();
  ASSERT_TRUE(opt->step(c, views).ok());
  ASSERT_TRUE(synchronize(c).ok());
  const auto w1 = net.params();
  for (std::size_t e = 0; e < w0.size(); ++e)
    EXPECT_NEAR(w1[e], w0[e] - o.lr * g[e] / (g[e] * g[e] + o.damping), 1e-12)
        << trace() << " " << e;
}

INSTANTIATE_TEST_SUITE_P(Backends, MbfTest,
                         ::testing::Values(Backend::reference, Backend::kokkos, Backend::cuda),
                         backend_test_name);

}  // namespace
}  // namespace curvkit::test
