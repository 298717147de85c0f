// Shared by the optimizer tests that take statistics (K-FAC, TENGraD, ...): a network's tensors
// with, per non-vector layer, the layer inputs a, output gradients g and g_sampled on the backend
// and their host copies.
#pragma once

#include <limits>
#include <memory>

#include "optim_test_util.hpp"

namespace curvkit::test {

// A layer of the test networks: kind, d_out, d_in, bias, positions S, padding of a's ld.
struct Spec {
  LayerKind kind;
  index_t d_out, d_in;
  bool bias;
  index_t s = 1;
  index_t a_pad = 0;
  index_t d_a() const { return d_in + (bias ? 1 : 0); }
};

// A network with statistics: Net's tensors plus, per non-vector layer, a (m S x d_A with
// its column of ones, ld d_A + a_pad), g and g_sampled (m S x d_out) on the backend, and the
// host copies (as T, in double) the oracles use.
template <class T>
struct StatsNet {
  std::vector<Spec> specs;
  index_t m;
  Net<T> net;
  struct Stats {
    std::unique_ptr<Buffer<T>> a, g, gs;
    std::vector<double> a_host, g_host, gs_host;  // dense (ld = cols)
  };
  std::vector<Stats> stats;

  static std::vector<std::tuple<LayerKind, index_t, index_t, bool>> shapes(
      const std::vector<Spec>& specs) {
    std::vector<std::tuple<LayerKind, index_t, index_t, bool>> s;
    for (const Spec& x : specs) s.emplace_back(x.kind, x.d_out, x.d_in, x.bias);
    return s;
  }

  StatsNet(Backend be, std::vector<Spec> sp, index_t samples, std::mt19937_64& rng)
      : specs(std::move(sp)), m(samples), net(be, shapes(specs), rng), stats(specs.size()) {}

  index_t rows(std::size_t l) const { return m * specs[l].s; }

  // Fresh Gaussian a (ones column kept), g and g_sampled for every non-vector layer.
  void draw_statistics(std::mt19937_64& rng) {
    std::normal_distribution<double> n;
    for (std::size_t l = 0; l < specs.size(); ++l) {
      if (specs[l].kind == LayerKind::vector) continue;
      std::vector<double> a(std::size_t(rows(l) * specs[l].d_a())),
          g(std::size_t(rows(l) * specs[l].d_out)), gs(g.size());
      for (index_t r = 0; r < rows(l); ++r)
        for (index_t j = 0; j < specs[l].d_a(); ++j)
          a[r * specs[l].d_a() + j] = specs[l].bias && j == specs[l].d_in ? 1.0 : n(rng);
      for (auto& x : g) x = n(rng);
      for (auto& x : gs) x = n(rng);
      set_statistics(l, a, g, gs);
    }
  }

  void set_statistics(std::size_t l, const std::vector<double>& a, const std::vector<double>& g,
                      const std::vector<double>& gs) {
    const Spec& s = specs[l];
    const index_t ld = s.d_a() + s.a_pad;
    std::vector<T> ah(std::size_t(rows(l) * ld), std::numeric_limits<T>::quiet_NaN());
    Stats& st = stats[l];
    st.a_host = a;
    for (index_t r = 0; r < rows(l); ++r)
      for (index_t j = 0; j < s.d_a(); ++j) {
        ah[r * ld + j] = T(a[r * s.d_a() + j]);
        st.a_host[r * s.d_a() + j] = double(ah[r * ld + j]);
      }
    auto round = [](const std::vector<double>& x, std::vector<double>* host) {
      std::vector<T> t(x.size());
      host->resize(x.size());
      for (std::size_t e = 0; e < x.size(); ++e) (*host)[e] = double(t[e] = T(x[e]));
      return t;
    };
    const std::vector<T> gh = round(g, &st.g_host), gsh = round(gs, &st.gs_host);
    st.a = std::make_unique<Buffer<T>>(net.be, ah);
    st.g = std::make_unique<Buffer<T>>(net.be, gh);
    st.gs = std::make_unique<Buffer<T>>(net.be, gsh);
  }

  // The step's LayerViews; statistics only when `with_statistics`.
  std::vector<LayerView<T>> views(bool with_statistics) {
    auto v = net.views();
    for (std::size_t l = 0; l < specs.size(); ++l) {
      const Spec& s = specs[l];
      if (s.kind == LayerKind::conv2d) {  // c_in kh kw = d_in with kh = 1, kw = d_in / c_in
        v[l].c_in = s.d_in % 2 == 0 ? 2 : 1;
        v[l].kh = 1;
        v[l].kw = s.d_in / v[l].c_in;
      }
      if (!with_statistics || s.kind == LayerKind::vector) continue;
      const index_t r = rows(l);
      v[l].m = m;
      v[l].a = MatrixBatch<T>{stats[l].a->data(),     1, r, s.d_a(), s.d_a() + s.a_pad,
                              r * (s.d_a() + s.a_pad)};
      v[l].g = MatrixBatch<T>{stats[l].g->data(), 1, r, s.d_out, s.d_out, r * s.d_out};
      v[l].g_sampled = MatrixBatch<T>{stats[l].gs->data(), 1, r, s.d_out, s.d_out, r * s.d_out};
    }
    return v;
  }
};

}  // namespace curvkit::test
