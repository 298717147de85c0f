// MBAG (curvkit/optim/mbag.hpp) on every compiled backend: several steps against the recurrence
// simulated here in long double, group by group (tau-chunks, a convolution's kernels, remainder
// groups): G_pi = lambda I + sum_j g_j g_j^T, R_pi = G_pi^{-1/2} by eigendecomposition (residual
// stop) or the paper's fixed count through the scalar recurrence on H's eigenvalues, stale
// between refreshes; v <- beta v + R g; theta <- (1 - lr wd) theta - lr v.  MBAG-N uses R = H.
#include "curvkit/optim/mbag.hpp"
#include "eigen_oracle.hpp"
#include "optim_test_util.hpp"

namespace curvkit::test {
namespace {

using Mat = std::vector<real>;

// Linear 3 x 5 with bias (tau 4: three groups and a remainder of 3; the bias one group of 3),
// a convolution 2 x (2 * 2 x 2) (kernels of 4: four groups), a vector of 6 (4 + 2).
const std::vector<std::tuple<LayerKind, index_t, index_t, bool>> kMbagLayers = {
    {LayerKind::linear, 3, 5, true},
    {LayerKind::conv2d, 2, 8, false},
    {LayerKind::vector, 1, 6, false}};

struct Group {
  std::size_t at;
  index_t size;
};

class HostMbag {
 public:
  HostMbag(const optim::MbagOptions& o) : o_(o) {
    auto cut = [&](std::size_t at, index_t n, index_t tau) {
      for (index_t s = 0; s < n; s += tau)
        groups_.push_back({at + std::size_t(s), std::min(tau, n - s)});
    };
    cut(0, 15, o.tau);
    cut(15, 3, o.tau);
    for (index_t k = 0; k < 4; ++k) cut(18 + std::size_t(4 * k), 4, 4);
    cut(34, 6, o.tau);
    v_.assign(40, 0);
    for (const Group& g : groups_) {
      Mat eye(std::size_t(g.size * g.size), 0);
      for (index_t a = 0; a < g.size; ++a) eye[std::size_t(a * g.size + a)] = real(o.damping);
      big_g_.push_back(eye);
      Mat r(eye.size(), 0);
      for (index_t a = 0; a < g.size; ++a)
        r[std::size_t(a * g.size + a)] = 1 / std::sqrt(real(o.damping));
      root_.push_back(r);
    }
  }

  void step(std::vector<double>& w, const std::vector<double>& g, int k) {
    for (std::size_t p = 0; p < groups_.size(); ++p) {
      const Group& gr = groups_[p];
      const index_t n = gr.size;
      Mat& G = big_g_[p];
      for (index_t a = 0; a < n; ++a)
        for (index_t b = 0; b < n; ++b)
          G[std::size_t(a * n + b)] +=
              real(g[gr.at + std::size_t(a)]) * real(g[gr.at + std::size_t(b)]);
      if (o_.no_root) {
        const Dense h = matrix_function(G, n, [](real v) { return 1 / v; });
        root_[p] = Mat(h.begin(), h.end());
      } else if (k % o_.t_sqr == 0) {
        if (o_.ns_stop == NsStop::residual) {
          const Dense r = matrix_function(G, n, [](real v) { return 1 / std::sqrt(v); });
          root_[p] = Mat(r.begin(), r.end());
        } else {
          // The coupled iteration on H = G^{-1} from H / ||H||_F: eigenvalue h -> sqrt(c) y_N.
          std::vector<real> lam, q;
          jacobi_eigen(G, n, &lam, &q);
          real c = 0;
          for (real l : lam) c += 1 / (l * l);
          c = std::sqrt(c);
          Mat r(std::size_t(n * n), 0);
          for (index_t e = 0; e < n; ++e) {
            real y = (1 / lam[std::size_t(e)]) / c, z = 1;
            for (int s = 0; s < o_.ns_iterations; ++s) {
              const real t = (3 - z * y) / 2;
              y *= t;
              z *= t;
            }
            for (index_t a = 0; a < n; ++a)
              for (index_t b = 0; b < n; ++b)
                r[std::size_t(a * n + b)] +=
                    q[std::size_t(a * n + e)] * std::sqrt(c) * y * q[std::size_t(b * n + e)];
          }
          root_[p] = r;
        }
      }
      for (index_t a = 0; a < n; ++a) {
        real s = 0;
        for (index_t b = 0; b < n; ++b)
          s += root_[p][std::size_t(a * n + b)] * real(g[gr.at + std::size_t(b)]);
        const std::size_t e = gr.at + std::size_t(a);
        v_[e] = real(o_.momentum) * v_[e] + s;
        w[e] = double((1 - real(o_.lr) * real(o_.weight_decay)) * real(w[e]) - real(o_.lr) * v_[e]);
      }
    }
  }

 private:
  optim::MbagOptions o_;
  std::vector<Group> groups_;
  std::vector<Mat> big_g_, root_;
  std::vector<real> v_;
};

class MbagTest : public BackendTest {
 protected:
  template <class T>
  void follows(NsStop stop, int t_sqr, bool no_root, double tol) {
    optim::MbagOptions o;
    o.lr = 0.05;
    o.damping = 0.5;
    o.weight_decay = 0.01;
    o.tau = 4;
    o.t_sqr = t_sqr;
    o.ns_iterations = stop == NsStop::residual ? 60 : 5;
    o.ns_stop = stop;
    o.ns_tolerance = sizeof(T) == 4 ? 1e-6 : 1e-13;
    o.no_root = no_root;
    auto opt = optim::make_mbag<T>(o);
    HostMbag host(o);
    expect_follows<T>(
        *opt, backend(), ctx(), rng_, kMbagLayers, 5,
        [&](std::vector<double>& w, const std::vector<double>& g, int k) { host.step(w, g, k); },
        tol, trace() + ", mbag stop " + std::to_string(int(stop)) + (no_root ? " (N)" : ""),
        [](std::vector<LayerView<T>>& v) {
          v[1].c_in = 2;
          v[1].kh = v[1].kw = 2;
        });
  }
};

TEST_P(MbagTest, ConvergedRootsFollowTheRecurrence) {
  follows<float>(NsStop::residual, 1, false, 2e-4);
  follows<double>(NsStop::residual, 1, false, 1e-9);
}

TEST_P(MbagTest, PapersFixedCountWithStaleRoots) {
  follows<double>(NsStop::fixed, 2, false, 1e-9);
}

TEST_P(MbagTest, MbagNUsesTheInverse) {
  follows<double>(NsStop::fixed, 1, true, 1e-9);
}

INSTANTIATE_TEST_SUITE_P(Backends, MbagTest,
                         ::testing::Values(Backend::reference, Backend::kokkos, Backend::cuda),
                         backend_test_name);

}  // namespace
}  // namespace curvkit::test
