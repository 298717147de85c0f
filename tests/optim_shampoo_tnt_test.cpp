// Shampoo and TNT (curvkit/optim/shampoo.hpp, tnt.hpp: the same tensor variables) on every
// compiled backend, float and double: several steps against the whole recurrence simulated here
// in long double (EMA mode statistics on k % t1 == 0; on k % t2 == 0 Shampoo's roots
// (S + eps I)^{-1/(2K)} or TNT's inverses (U + eps I)^{-1} of the trace-normalised statistics
// (eq. 4.10), both by eigendecomposition; momentum; the mode-product chain; grafting), for
// linear, convolution (3-way), bias and vector tensors; TNT's statistics from the sampled-label
// gradients; loss decrease; a rank-one gradient keeps everything finite.
#include <map>

#include "curvkit/optim/shampoo.hpp"
#include "curvkit/optim/tnt.hpp"
#include "eigen_oracle.hpp"
#include "optim_test_util.hpp"

namespace curvkit::test {
namespace {

using Mat = std::vector<real>;

// A tensor of the flattened parameter list and its dims.
struct Tensor {
  std::size_t at;
  std::vector<index_t> dims;
  index_t size() const {
    index_t s = 1;
    for (index_t d : dims) s *= d;
    return s;
  }
};

// mat_i(X) mat_i(X)^T of a row-major tensor.
Mat mode_gram(const std::vector<real>& x, const std::vector<index_t>& dims, std::size_t i) {
  const index_t d = dims[i];
  index_t outer = 1, inner = 1;
  for (std::size_t j = 0; j < i; ++j) outer *= dims[j];
  for (std::size_t j = i + 1; j < dims.size(); ++j) inner *= dims[j];
  Mat s(std::size_t(d * d), 0);
  for (index_t a = 0; a < d; ++a)
    for (index_t b = 0; b < d; ++b) {
      real v = 0;
      for (index_t o = 0; o < outer; ++o)
        for (index_t r = 0; r < inner; ++r)
          v += x[std::size_t((o * d + a) * inner + r)] * x[std::size_t((o * d + b) * inner + r)];
      s[std::size_t(a * d + b)] = v;
    }
  return s;
}

// Y = X x_i R (R symmetric d_i x d_i) in mode i.
std::vector<real> mode_product(const std::vector<real>& x, const std::vector<index_t>& dims,
                               std::size_t i, const Mat& r) {
  const index_t d = dims[i];
  index_t outer = 1, inner = 1;
  for (std::size_t j = 0; j < i; ++j) outer *= dims[j];
  for (std::size_t j = i + 1; j < dims.size(); ++j) inner *= dims[j];
  std::vector<real> y(x.size(), 0);
  for (index_t o = 0; o < outer; ++o)
    for (index_t a = 0; a < d; ++a)
      for (index_t r2 = 0; r2 < inner; ++r2) {
        real v = 0;
        for (index_t b = 0; b < d; ++b)
          v += r[std::size_t(a * d + b)] * x[std::size_t((o * d + b) * inner + r2)];
        y[std::size_t((o * d + a) * inner + r2)] = v;
      }
  return y;
}

// (S + eps I)^{-1/p}.
Mat inverse_root(Mat s, index_t d, double eps, int p) {
  for (index_t a = 0; a < d; ++a) s[std::size_t(a * d + a)] += eps;
  const Dense f = matrix_function(s, d, [p](real v) { return std::pow(v, -1.0L / real(p)); });
  return Mat(f.begin(), f.end());
}

const std::vector<std::tuple<LayerKind, index_t, index_t, bool>> kShampooLayers = {
    {LayerKind::linear, 3, 4, true},
    {LayerKind::conv2d, 2, 8, true},
    {LayerKind::vector, 1, 3, false}};

// TNT's normalisation (eq. 4.10) of one tensor's mode statistics, in place.
void tnt_normalize(std::vector<Mat>& u, const std::vector<index_t>& dims) {
  const std::size_t order = dims.size();
  real prod = 1, t = 0;
  for (index_t d : dims) prod *= real(d);
  for (std::size_t i = 0; i < order; ++i)
    for (index_t a = 0; a < dims[i]; ++a) t += u[i][std::size_t(a * dims[i] + a)];
  t /= real(order);
  if (!(t > 0)) return;
  const real c0 = std::pow(t / prod, 1 / real(order));
  for (std::size_t i = 0; i < order; ++i) {
    const real div = std::pow(c0, real(order - 1)) * prod / real(dims[i]);
    for (real& v : u[i]) v /= div;
  }
}

// The host simulation of Shampoo (or TNT, with `tnt`) over the layers above.
class HostShampoo {
 public:
  explicit HostShampoo(const optim::ShampooOptions& o, bool tnt = false) : o_(o), tnt_(tnt) {
    std::size_t at = 0;
    auto add = [&](std::vector<index_t> dims) {
      tensors_.push_back({at, dims});
      at += std::size_t(tensors_.back().size());
    };
    add({3, 4});
    add({3});
    add({2, 2, 4});  // c_out 2, c_in 2, kh kw = 2 x 2
    add({2});
    add({3});
    mom_.assign(at, 0);
    for (const Tensor& t : tensors_)
      for (index_t d : t.dims) {
        stats_.emplace_back(std::size_t(d * d), 0);
        Mat eye(std::size_t(d * d), 0);
        for (index_t a = 0; a < d; ++a) eye[std::size_t(a * d + a)] = 1;
        roots_.push_back(eye);
      }
  }

  // g: the gradients; gs: the statistics' gradients (TNT's sampled ones; g when empty).
  void step(std::vector<double>& w, const std::vector<double>& g, int k,
            const std::vector<double>& gs = {}) {
    for (std::size_t e = 0; e < w.size(); ++e) mom_[e] = real(o_.momentum) * mom_[e] + g[e];
    std::size_t mode = 0;
    for (const Tensor& t : tensors_) {
      const std::size_t n = std::size_t(t.size());
      const auto& src = gs.empty() ? g : gs;
      const std::vector<real> gt(src.begin() + long(t.at), src.begin() + long(t.at + n));
      std::vector<real> p(mom_.begin() + long(t.at), mom_.begin() + long(t.at + n));
      const int exponent = 2 * int(t.dims.size());
      const std::size_t first = mode;
      for (std::size_t i = 0; i < t.dims.size(); ++i)
        if (k % o_.t1 == 0) {
          const Mat s = mode_gram(gt, t.dims, i);
          const real beta = k == 0 ? 0 : real(o_.stat_decay);
          for (std::size_t e = 0; e < s.size(); ++e)
            stats_[first + i][e] = beta * stats_[first + i][e] + (1 - beta) * s[e];
        }
      if (k % o_.t2 == 0) {
        std::vector<Mat> u(stats_.begin() + long(first),
                           stats_.begin() + long(first + t.dims.size()));
        if (tnt_) tnt_normalize(u, t.dims);
        for (std::size_t i = 0; i < t.dims.size(); ++i)
          roots_[first + i] = inverse_root(u[i], t.dims[i], o_.epsilon, tnt_ ? 1 : exponent);
      }
      for (std::size_t i = 0; i < t.dims.size(); ++i, ++mode)
        p = mode_product(p, t.dims, i, roots_[mode]);
      if (o_.graft == optim::Graft::sgd) {
        real pn = 0, qn = 0;
        for (std::size_t e = 0; e < n; ++e) {
          pn += p[e] * p[e];
          qn += mom_[t.at + e] * mom_[t.at + e];
        }
        for (real& v : p) v *= std::sqrt(qn) / (std::sqrt(pn) + 1e-16L);
      }
      for (std::size_t e = 0; e < n; ++e)
        w[t.at + e] = double((1 - real(o_.lr) * real(o_.weight_decay)) * real(w[t.at + e]) -
                             real(o_.lr) * p[e]);
    }
  }

 private:
  optim::ShampooOptions o_;
  bool tnt_;
  std::vector<Tensor> tensors_;
  std::vector<real> mom_;
  std::vector<Mat> stats_, roots_;
};

class ShampooTest : public BackendTest {
 protected:
  template <class T>
  void follows(optim::Graft graft, int t1 = 2) {
    optim::ShampooOptions o;
    o.lr = 0.05;
    o.epsilon = 0.1;
    o.weight_decay = 0.01;
    o.t1 = t1;  // with t1 = 1 a root refreshed off schedule would see other statistics
    o.t2 = 3;
    o.graft = graft;
    o.ns_tolerance = sizeof(T) == 4 ? 1e-5 : 1e-12;
    auto opt = optim::make_shampoo<T>(o);
    HostShampoo host(o);
    expect_follows<T>(
        *opt, backend(), ctx(), rng_, kShampooLayers, 5,
        [&](std::vector<double>& w, const std::vector<double>& g, int k) { host.step(w, g, k); },
        sizeof(T) == 4 ? 2e-4 : 1e-9, trace() + ", shampoo graft " + std::to_string(int(graft)),
        [](std::vector<LayerView<T>>& v) {
          v[1].c_in = 2;
          v[1].kh = v[1].kw = 2;
        });
  }
};

TEST_P(ShampooTest, FollowsTheRecurrenceWithEigendecompositionRoots) {
  follows<float>(optim::Graft::none);
  follows<double>(optim::Graft::none);
  follows<double>(optim::Graft::none, 1);
}

TEST_P(ShampooTest, SgdGraftRescalesToTheMomentumNorm) {
  follows<double>(optim::Graft::sgd);
}

TEST_P(ShampooTest, LossDecreasesAndRankOneGradientsStayFinite) {
  using T = double;
  const Context c = ctx();
  optim::ShampooOptions o;
  o.lr = 0.05;
  o.epsilon = 1e-2;
  auto opt = optim::make_shampoo<T>(o);
  const auto [start, loss] = train_least_squares<T>(*opt, backend(), c, 4242, 5, 3, false, 60);
  EXPECT_LT(loss, 0.1 * start) << trace();
  // Rank-one gradients (singular statistics; eps alone keeps the roots finite).
  std::mt19937_64 rng(1);
  const index_t din = 5, dout = 3;
  Net<T> net(backend(), {{LayerKind::linear, dout, din, false}}, rng);
  auto views = net.views();
  opt = optim::make_shampoo<T>(o);
  ASSERT_TRUE(opt->init(c, views).ok());
  std::vector<double> r1(std::size_t(din * dout));
  for (index_t o2 = 0; o2 < dout; ++o2)
    for (index_t j = 0; j < din; ++j) r1[std::size_t(o2 * din + j)] = double(o2 + 1) * 1e3;
  for (int k = 0; k < 25; ++k) {
    net.set_grads(r1);
    ASSERT_TRUE(opt->step(c, views).ok());
  }
  ASSERT_TRUE(synchronize(c).ok());
  for (double v : net.params()) EXPECT_TRUE(std::isfinite(v)) << trace();
}

// TNT: the statistics from dw_sampled / db_sampled, here views of a second set of gradients
// drawn per step (so that they differ from the momentum's).
TEST_P(ShampooTest, TntFollowsTheRecurrenceWithSampledStatistics) {
  auto run = [&](auto zero, bool empirical) {
    using T = decltype(zero);
    optim::TntOptions o;
    o.lr = 0.05;
    o.epsilon = 0.1;
    o.weight_decay = 0.01;
    o.t1 = 1;
    o.t2 = 2;
    o.empirical = empirical;
    // The host simulation shares Shampoo's machinery with TNT's normalisation and inverses.
    optim::ShampooOptions h;
    h.lr = o.lr;
    h.epsilon = o.epsilon;
    h.weight_decay = o.weight_decay;
    h.t1 = o.t1;
    h.t2 = o.t2;
    HostShampoo host(h, true);
    auto opt = optim::make_tnt<T>(o);
    EXPECT_EQ(opt->needs().grad_sampled, !empirical);
    Net<T> sampled(backend(), kShampooLayers, rng_);
    std::normal_distribution<double> n;
    expect_follows<T>(
        *opt, backend(), ctx(), rng_, kShampooLayers, 4,
        [&](std::vector<double>& w, const std::vector<double>& g, int k) {
          host.step(w, g, k, empirical ? std::vector<double>{} : sampled.grads());
          // The next step's sampled gradients.
          std::vector<double> next(g.size());
          for (auto& x : next) x = n(rng_);
          sampled.set_grads(next);
        },
        sizeof(T) == 4 ? 2e-4 : 1e-9, trace() + (empirical ? ", tnt-ef" : ", tnt"),
        [&](std::vector<LayerView<T>>& v) {
          v[1].c_in = 2;
          v[1].kh = v[1].kw = 2;
          const auto s = sampled.views();
          for (std::size_t l = 0; l < v.size(); ++l) {
            v[l].dw_sampled = s[l].dw;
            v[l].db_sampled = s[l].db;
          }
        });
  };
  run(float{}, false);
  run(double{}, false);
  run(double{}, true);
}

INSTANTIATE_TEST_SUITE_P(Backends, ShampooTest,
                         ::testing::Values(Backend::reference, Backend::kokkos, Backend::cuda),
                         backend_test_name);

}  // namespace
}  // namespace curvkit::test
