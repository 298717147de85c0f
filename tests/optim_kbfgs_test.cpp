// K-BFGS (curvkit/optim/kbfgs.hpp) on every compiled backend, float and double:
//   - several steps against the whole recurrence simulated here in long double with dense
//     matrices (docs/optimizer-spec-2.md §2.6): H_A = ((1/m) a^T a + lambda_A I)^{-1} from the
//     first batch and H_G = I / lambda_G, P~ = H_G M~ H_A, the Hessian-action pair and BFGS
//     update of H_A from the first pass, the s_G / y_G EMAs over both passes, D_P D_LM damping
//     and the BFGS update of H_G; curvature every step and every second step; linear layers
//     with and without a bias, a convolution (S = 4: lambda_A = sqrt(S lambda), lambda_G =
//     sqrt(lambda / S), A summed over positions), a vector layer; statistics drawn fresh for
//     every pass;
//   - K-BFGS(L) (history p): the same recurrence with H_G the BFGS chain from I / lambda_G over
//     the last p damped pairs, zero pairs left out: p larger than the number of curvature steps
//     (the chain over every pair, i.e. K-BFGS), p = 2 over 6 steps (the window drops the
//     oldest pair and moves its rows), and a zero pair (a second pass equal to the first);
//   - the damped pair satisfies the inequalities the damping promises;
//   - the schedule: needs() asks for the second pass only on curvature steps, finish_step()
//     without a pending step and step() with one are invalid_argument; bad options.
#include <algorithm>
#include <deque>

#include "curvkit/optim/kbfgs.hpp"
#include "eigen_oracle.hpp"
#include "optim_stats_util.hpp"

namespace curvkit::test {
namespace {

using optim::KbfgsOptions;
using Mat = std::vector<real>;

const std::vector<Spec> kSpecs = {{LayerKind::linear, 3, 4, true},
                                  {LayerKind::linear, 2, 3, false},
                                  {LayerKind::conv2d, 2, 6, true, 4, 2},
                                  {LayerKind::vector, 1, 5, false}};

Mat matvec(const Mat& h, const Mat& x, index_t n) {
  Mat y(std::size_t(n), 0);
  for (index_t i = 0; i < n; ++i)
    for (index_t j = 0; j < n; ++j) y[i] += h[i * n + j] * x[j];
  return y;
}

real dot(const Mat& x, const Mat& y) {
  real s = 0;
  for (std::size_t i = 0; i < x.size(); ++i) s += x[i] * y[i];
  return s;
}

// H+ = (I - rho s y^T) H (I - rho y s^T) + rho s s^T.
Mat bfgs(const Mat& h, const Mat& s, const Mat& y, index_t n) {
  const real rho = 1 / dot(s, y);
  const Mat w = matvec(h, y, n);
  const real ywy = dot(y, w);
  Mat out = h;
  for (index_t i = 0; i < n; ++i)
    for (index_t j = 0; j < n; ++j)
      out[i * n + j] += (rho + rho * rho * ywy) * s[i] * s[j] - rho * (s[i] * w[j] + w[i] * s[j]);
  return out;
}

// K-BFGS's recurrence in long double on the flattened parameters (w then b per layer).
class HostKbfgs {
 public:
  HostKbfgs(const KbfgsOptions& o, std::vector<Spec> specs) : o_(o), specs_(std::move(specs)) {
    for (const Spec& s : specs_) {
      State st;
      const index_t n = s.kind == LayerKind::vector ? s.d_out * s.d_in : s.d_out * s.d_a();
      st.mom.assign(std::size_t(n), 0);
      st.s_g.assign(std::size_t(s.d_out), 0);
      st.y_g.assign(std::size_t(s.d_out), 0);
      layers_.push_back(st);
    }
  }

  // step() of iteration k with the first pass's statistics in `net`.
  template <class T>
  void step(int k, const StatsNet<T>& net, std::vector<double>& w, const std::vector<double>& g) {
    const real lr = real(o_.lr), decay = 1 - lr * real(o_.weight_decay), beta = real(o_.momentum);
    std::size_t at = 0;
    for (std::size_t l = 0; l < specs_.size(); ++l) {
      const Spec& s = specs_[l];
      State& st = layers_[l];
      if (s.kind == LayerKind::vector) {
        for (std::size_t e = 0; e < st.mom.size(); ++e, ++at) {
          st.mom[e] = beta * st.mom[e] + real(g[at]);
          w[at] = double(decay * real(w[at]) - lr / real(o_.damping) * st.mom[e]);
        }
        continue;
      }
      const index_t da = s.d_a(), dg = s.d_out, rows = net.rows(l);
      const real lambda_a = std::sqrt(real(s.s) * real(o_.damping));
      const auto& a = net.stats[l].a_host;
      if (k == 0) {
        Mat f(std::size_t(da * da), 0);
        for (index_t i = 0; i < da; ++i)
          for (index_t j = 0; j < da; ++j) {
            real v = 0;
            for (index_t r = 0; r < rows; ++r) v += real(a[r * da + i]) * real(a[r * da + j]);
            f[i * da + j] = v / real(net.m) + (i == j ? lambda_a : 0);
          }
        const Dense inv = matrix_function(f, da, [](real v) { return 1 / v; });
        st.h_a.assign(inv.begin(), inv.end());
        st.h_g.assign(std::size_t(dg * dg), 0);
        for (index_t i = 0; i < dg; ++i) st.h_g[i * dg + i] = 1 / lambda_g(s);
      }
      // M~ <- beta M~ + [dW | db];  P~ = H_G M~ H_A;  W~ <- decay W~ - lr P~.
      const std::size_t w_at = at, b_at = at + std::size_t(dg * s.d_in);
      at = b_at + (s.bias ? std::size_t(dg) : 0);
      auto flat = [&](index_t i, index_t j) {
        return j < s.d_in ? w_at + std::size_t(i * s.d_in + j) : b_at + std::size_t(i);
      };
      for (index_t i = 0; i < dg; ++i)
        for (index_t j = 0; j < da; ++j)
          st.mom[i * da + j] = beta * st.mom[i * da + j] + real(g[flat(i, j)]);
      for (index_t i = 0; i < dg; ++i)
        for (index_t j = 0; j < da; ++j) {
          real p = 0;
          for (index_t q = 0; q < dg; ++q)
            for (index_t r = 0; r < da; ++r)
              p += st.h_g[i * dg + q] * st.mom[q * da + r] * st.h_a[r * da + j];
          w[flat(i, j)] = double(decay * real(w[flat(i, j)]) - lr * p);
        }
      if (k % o_.t != 0) continue;
      // Activation pair from the first pass, then the first half of the s_G, y_G EMAs.
      Mat abar(std::size_t(da), 0);
      for (index_t r = 0; r < rows; ++r)
        for (index_t j = 0; j < da; ++j) abar[j] += real(a[r * da + j]) / real(rows);
      const Mat s_a = matvec(st.h_a, abar, da);
      Mat y_a(std::size_t(da), 0);
      for (index_t r = 0; r < rows; ++r) {
        real as = 0;
        for (index_t j = 0; j < da; ++j) as += real(a[r * da + j]) * s_a[j];
        for (index_t j = 0; j < da; ++j) y_a[j] += real(a[r * da + j]) * as / real(net.m);
      }
      for (index_t j = 0; j < da; ++j) y_a[j] += lambda_a * s_a[j];
      EXPECT_GE(double(dot(s_a, y_a)), double(lambda_a * dot(s_a, s_a)) * (1 - 1e-12));
      st.h_a = bfgs(st.h_a, s_a, y_a, da);
      means(net, l, -(1 - beta), beta);
    }
  }

  // finish_step() with the second pass's statistics in `net`.
  template <class T>
  void finish(const StatsNet<T>& net) {
    const real beta = real(o_.momentum), mu1 = real(o_.mu1);
    for (std::size_t l = 0; l < specs_.size(); ++l) {
      const Spec& s = specs_[l];
      if (s.kind == LayerKind::vector) continue;
      State& st = layers_[l];
      means(net, l, 1 - beta, 1);
      const index_t dg = s.d_out;
      const Mat hy = matvec(st.h_g, st.y_g, dg);
      const real yhy = dot(st.y_g, hy), sy = dot(st.s_g, st.y_g);
      const real theta = sy < mu1 * yhy ? (1 - mu1) * yhy / (yhy - sy) : 1;
      Mat sd(static_cast<std::size_t>(dg)), yd(static_cast<std::size_t>(dg));
      for (index_t i = 0; i < dg; ++i) sd[i] = theta * st.s_g[i] + (1 - theta) * hy[i];
      for (index_t i = 0; i < dg; ++i) yd[i] = st.y_g[i] + lambda_g(s) * sd[i];
      // The damping's promises: s~^T y >= mu1 y^T H y, s~^T y~ >= lambda_G |s~|^2.
      EXPECT_GE(double(dot(sd, st.y_g)), double(mu1 * yhy) - 1e-12 * double(std::abs(yhy)));
      EXPECT_GE(double(dot(sd, yd)), double(lambda_g(s) * dot(sd, sd)) * (1 - 1e-12));
      if (theta < 1) ++damped_;
      if (o_.history == 0) {
        st.h_g = bfgs(st.h_g, sd, yd, dg);
        continue;
      }
      // K-BFGS(L): the chain from I / lambda_G over the last p pairs, zero pairs left out.
      st.pairs.push_back({sd, yd});
      if (int(st.pairs.size()) > o_.history) st.pairs.pop_front();
      st.h_g.assign(std::size_t(dg * dg), 0);
      for (index_t i = 0; i < dg; ++i) st.h_g[i * dg + i] = 1 / lambda_g(s);
      for (const auto& [ps, py] : st.pairs)
        if (dot(ps, ps) + dot(py, py) > 0)
          st.h_g = bfgs(st.h_g, ps, py, dg);
        else
          ++zero_pairs_;
    }
  }
  int zero_pairs() const { return zero_pairs_; }

  // The largest condition number among the H_A and H_G in use.
  double kappa() const {
    double k = 1;
    for (std::size_t l = 0; l < specs_.size(); ++l) {
      if (specs_[l].kind == LayerKind::vector || layers_[l].h_a.empty()) continue;
      k = std::max({k, condition(layers_[l].h_a, specs_[l].d_a()),
                    condition(layers_[l].h_g, specs_[l].d_out)});
    }
    return k;
  }
  int damped() const { return damped_; }

 private:
  struct State {
    Mat h_a, h_g, mom, s_g, y_g;
    std::deque<std::pair<Mat, Mat>> pairs;  // K-BFGS(L)'s damped pairs, oldest first
  };
  real lambda_g(const Spec& s) const { return std::sqrt(real(o_.damping) / real(s.s)); }

  // s_G <- b s_G + c zbar, y_G <- b y_G + c gbar (z is the StatsNet's g_sampled buffer).
  template <class T>
  void means(const StatsNet<T>& net, std::size_t l, real c, real b) {
    const Spec& s = specs_[l];
    State& st = layers_[l];
    const index_t rows = net.rows(l), dg = s.d_out;
    for (index_t i = 0; i < dg; ++i) {
      real zb = 0, gb = 0;
      for (index_t r = 0; r < rows; ++r) {
        zb += real(net.stats[l].gs_host[r * dg + i]);
        gb += real(net.stats[l].g_host[r * dg + i]);
      }
      st.s_g[i] = b * st.s_g[i] + c * zb / real(rows);
      st.y_g[i] = b * st.y_g[i] + c * gb / real(rows);
    }
  }

  KbfgsOptions o_;
  std::vector<Spec> specs_;
  std::vector<State> layers_;
  int damped_ = 0, zero_pairs_ = 0;
};

class KbfgsTest : public BackendTest {
 protected:
  // The step's views with z (the StatsNet's g_sampled buffer) and g, and a.
  template <class T>
  static std::vector<LayerView<T>> views(StatsNet<T>& sn, bool statistics) {
    auto v = sn.views(statistics);
    for (auto& x : v) {
      x.z = x.g_sampled;
      x.g_sampled = {};
    }
    return v;
  }

  // Runs `steps` steps against HostKbfgs; returns how often Powell damping acted.  With
  // `zero_pair_at` >= 0 both passes of that step see z = g = 0 (a layer without signal), so its
  // s_G, y_G are exactly zero when they start from zero (step 0).
  template <class T>
  int recurrence(const KbfgsOptions& o, int steps, int zero_pair_at = -1) {
    SCOPED_TRACE(trace() + (sizeof(T) == 4 ? ", float" : ", double") + ", t " +
                 std::to_string(o.t) + ", history " + std::to_string(o.history));
    const index_t m = 5;
    StatsNet<T> sn(backend(), kSpecs, m, rng_);
    const Context c = ctx();
    auto opt = optim::make_kbfgs<T>(o);
    sn.draw_statistics(rng_);
    EXPECT_TRUE(opt->init(c, views(sn, true)).ok());
    HostKbfgs host(o, kSpecs);
    std::vector<double> want = sn.net.params();
    std::normal_distribution<double> n;
    for (int k = 0; k < steps; ++k) {
      const optim::Needs needs = opt->needs();
      const bool curvature = k % o.t == 0;
      EXPECT_EQ(needs.second_pass,
                curvature ? optim::SecondPass::forward_backward : optim::SecondPass::none)
          << "step " << k;
      EXPECT_EQ(needs.a && needs.g && needs.z, curvature) << "step " << k;
      std::vector<double> g(want.size());
      for (auto& x : g) x = n(rng_);
      sn.net.set_grads(g);
      g = sn.net.grads();
      sn.draw_statistics(rng_);
      if (k == zero_pair_at)
        for (std::size_t l = 0; l < kSpecs.size(); ++l)
          if (kSpecs[l].kind != LayerKind::vector) {
            const std::vector<double> zero(sn.stats[l].g_host.size(), 0.0);
            sn.set_statistics(l, sn.stats[l].a_host, zero, zero);
          }
      const Status st = opt->step(c, views(sn, curvature));
      EXPECT_TRUE(st.ok()) << st.to_string();
      if (!st.ok()) return 0;
      host.step(k, sn, want, g);
      if (curvature) {
        if (k != zero_pair_at) sn.draw_statistics(rng_);  // the second pass
        const Status fs = opt->finish_step(c, views(sn, true));
        EXPECT_TRUE(fs.ok()) << fs.to_string();
        host.finish(sn);
      }
      EXPECT_TRUE(synchronize(c).ok());
      const double tol = 64.0 * 12 * host.kappa() * eps<T>() * (k + 1);
      EXPECT_LE(relative_error(sn.net.params(), want), tol)
          << "step " << k << ", kappa " << host.kappa();
    }
    optim::Health h;
    EXPECT_TRUE(opt->health(c, &h).ok());
    EXPECT_TRUE(h.clean()) << h.to_string();
    EXPECT_EQ(host.zero_pairs() > 0, zero_pair_at >= 0 && o.history > 0);
    return host.damped();
  }
};

TEST_P(KbfgsTest, FollowsTheDenseRecurrence) {
  KbfgsOptions o;
  o.lr = 0.05;
  o.damping = 0.5;
  o.weight_decay = 0.01;
  const int damped = recurrence<double>(o, 4);
  EXPECT_GT(damped, 0) << "Powell damping must act on random pairs in this test";
  recurrence<float>(o, 3);
  o.t = 2;  // curvature at 0, 2, 4
  o.momentum = 0.5;
  recurrence<double>(o, 5);
}

TEST_P(KbfgsTest, LimitedMemoryFollowsTheDenseRecurrence) {
  KbfgsOptions o;
  o.lr = 0.05;
  o.damping = 0.5;
  o.weight_decay = 0.01;
  o.history = 10;  // more than the steps: the chain over every pair, as K-BFGS
  EXPECT_GT(recurrence<double>(o, 4), 0);
  recurrence<float>(o, 3);
  o.history = 2;  // drops the oldest pair from step 2 on, moves the window's rows at step 5
  recurrence<double>(o, 7);
  o.t = 2;
  recurrence<double>(o, 9);
  o.t = 1;
  o.history = 3;
  recurrence<double>(o, 5, 0);  // step 0 stores a zero pair, skipped by the operator
}

TEST_P(KbfgsTest, ScheduleAndBadInput) {
  using T = double;
  const Context c = ctx();
  StatsNet<T> sn(backend(), kSpecs, 5, rng_);
  sn.draw_statistics(rng_);
  auto expect_invalid = [](const Status& s, const std::string& what) {
    EXPECT_EQ(s.code(), StatusCode::invalid_argument) << s.to_string();
    EXPECT_NE(s.to_string().find(what), std::string::npos) << s.to_string();
  };
  for (auto bad : std::vector<void (*)(KbfgsOptions&)>{
           [](KbfgsOptions& o) { o.damping = 0; }, [](KbfgsOptions& o) { o.mu1 = 1; },
           [](KbfgsOptions& o) { o.momentum = -0.1; }, [](KbfgsOptions& o) { o.t = 0; },
           [](KbfgsOptions& o) { o.lr = NAN; }, [](KbfgsOptions& o) { o.history = -1; }}) {
    KbfgsOptions o;
    bad(o);
    expect_invalid(optim::make_kbfgs<T>(o)->init(c, views(sn, true)), "options.");
  }
  KbfgsOptions o;
  o.t = 2;
  auto opt = optim::make_kbfgs<T>(o);
  ASSERT_TRUE(opt->init(c, views(sn, true)).ok());
  expect_invalid(opt->finish_step(c, views(sn, true)), "no curvature step");
  auto v = views(sn, true);
  v[0].z = {};
  expect_invalid(opt->step(c, v), "layers[0].z");
  ASSERT_TRUE(opt->step(c, views(sn, true)).ok());
  expect_invalid(opt->step(c, views(sn, true)), "finish_step() was not called");
  v = views(sn, true);
  v[2].g.rows -= 1;
  expect_invalid(opt->finish_step(c, v), "layers[2].g");
  ASSERT_TRUE(opt->finish_step(c, views(sn, true)).ok());
  EXPECT_EQ(opt->needs().second_pass, optim::SecondPass::none);  // k = 1 is not a curvature step
  ASSERT_TRUE(opt->step(c, views(sn, false)).ok());
  expect_invalid(opt->finish_step(c, views(sn, true)), "no curvature step");
}

INSTANTIATE_TEST_SUITE_P(Backends, KbfgsTest,
                         ::testing::Values(Backend::reference, Backend::kokkos, Backend::cuda),
                         backend_test_name);

}  // namespace
}  // namespace curvkit::test
