// Shared by the optimizer-layer tests: a network's parameter tensors and gradients on a backend,
// described to an optimizer as LayerViews, with host copies for the dense formulas.
#pragma once

#include <functional>
#include <memory>
#include <tuple>

#include "curvkit/optim/optimizer.hpp"
#include "family_test_util.hpp"

namespace curvkit::test {

using optim::LayerKind;
using optim::LayerView;

/// A network's tensors on a backend: per layer w (and b), with gradient buffers.
template <class T>
struct Net {
  struct Layer {
    LayerKind kind;
    index_t rows, cols;
    bool bias;
    std::unique_ptr<Buffer<T>> w, b, dw, db;
  };
  std::vector<Layer> layers;
  Backend be;

  Net(Backend backend, const std::vector<std::tuple<LayerKind, index_t, index_t, bool>>& shapes,
      std::mt19937_64& rng)
      : be(backend) {
    std::normal_distribution<double> n;
    auto random = [&](index_t count) {
      std::vector<T> v(static_cast<std::size_t>(count));
      for (auto& x : v) x = T(n(rng));
      return v;
    };
    for (auto [kind, rows, cols, bias] : shapes) {
      Layer l{kind, rows, cols, bias, {}, {}, {}, {}};
      l.w = std::make_unique<Buffer<T>>(be, random(rows * cols));
      l.dw = std::make_unique<Buffer<T>>(be, random(rows * cols));
      if (bias) {
        l.b = std::make_unique<Buffer<T>>(be, random(rows));
        l.db = std::make_unique<Buffer<T>>(be, random(rows));
      }
      layers.push_back(std::move(l));
    }
  }
  std::vector<LayerView<T>> views() {
    std::vector<LayerView<T>> v;
    for (auto& l : layers) {
      LayerView<T> x;
      x.kind = l.kind;
      x.w = {l.w->data(), 1, l.rows, l.cols, l.cols, l.rows * l.cols};
      x.dw = MatrixBatch<T>{l.dw->data(), 1, l.rows, l.cols, l.cols, l.rows * l.cols};
      if (l.bias) {
        x.b = {l.b->data(), 1, 1, l.rows, l.rows, l.rows};
        x.db = MatrixBatch<T>{l.db->data(), 1, 1, l.rows, l.rows, l.rows};
      }
      v.push_back(x);
    }
    return v;
  }
  // All parameters (w then b per layer) and all gradients, flattened on the host.
  std::vector<double> params() const { return flat(false); }
  std::vector<double> grads() const { return flat(true); }
  void set_grads(const std::vector<double>& g) {
    std::size_t at = 0;
    for (auto& l : layers)
      for (auto* buf : {l.dw.get(), l.db.get()}) {
        if (buf == nullptr) continue;
        std::vector<T> h(buf->size());
        for (auto& x : h) x = T(g[at++]);
        buf->upload(h);
      }
  }

 private:
  std::vector<double> flat(bool grads) const {
    std::vector<double> out;
    for (const auto& l : layers)
      for (auto* buf : grads ? std::vector<Buffer<T>*>{l.dw.get(), l.db.get()}
                             : std::vector<Buffer<T>*>{l.w.get(), l.b.get()}) {
        if (buf == nullptr) continue;
        for (T x : buf->download()) out.push_back(double(x));
      }
    return out;
  }
};

/// ||got - want|| / ||want||.
inline double relative_error(const std::vector<double>& got, const std::vector<double>& want) {
  double num = 0, den = 0;
  for (std::size_t e = 0; e < want.size(); ++e) {
    num += (got[e] - want[e]) * (got[e] - want[e]);
    den += want[e] * want[e];
  }
  return std::sqrt(num / den);
}

/// The host-side recurrence of an optimizer: updates `params` (every tensor flattened, w then b
/// per layer) given the step's gradients and the step number k.
using HostUpdate = std::function<void(std::vector<double>&, const std::vector<double>&, int)>;

/// Runs `steps` steps of `opt` on a fresh network of `shapes` with random gradients and checks
/// the parameters after each step against `update` (relative norm <= tol (k + 1)).
template <class T>
void expect_follows(optim::Optimizer<T>& opt, Backend be, const Context& c, std::mt19937_64& rng,
                    const std::vector<std::tuple<LayerKind, index_t, index_t, bool>>& shapes,
                    int steps, const HostUpdate& update, double tol, const std::string& what,
                    const std::function<void(std::vector<LayerView<T>>&)>& describe = {}) {
  Net<T> net(be, shapes, rng);
  auto views = net.views();
  if (describe) describe(views);
  ASSERT_TRUE(opt.init(c, views).ok());
  std::vector<double> want = net.params();
  std::normal_distribution<double> n;
  for (int k = 0; k < steps; ++k) {
    std::vector<double> g(want.size());
    for (auto& x : g) x = n(rng);
    net.set_grads(g);
    g = net.grads();  // as T, as the optimizer sees them
    const Status st = opt.step(c, views);
    ASSERT_TRUE(st.ok()) << st.to_string();
    ASSERT_TRUE(synchronize(c).ok());
    update(want, g, k);
    EXPECT_LE(relative_error(net.params(), want), tol * (k + 1))
        << what << ", step " << k << (sizeof(T) == 4 ? ", float" : ", double");
  }
  EXPECT_EQ(opt.iteration(), steps);
}

/// Trains one linear layer (dout x din, with bias when `bias`) on least squares
/// min (1/2m) ||X W^T + 1 b^T - Y||^2 with fixed data from `seed` (Y a linear function of X
/// plus `noise`), gradients on the host, for `steps` steps.  Returns the losses before and after;
/// fails the test when a step is refused or the loss stops being finite.
template <class T>
std::pair<double, double> train_least_squares(optim::Optimizer<T>& opt, Backend be,
                                              const Context& c, std::uint64_t seed, index_t din,
                                              index_t dout, bool bias, int steps,
                                              double noise = 0.0) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> n;
  const index_t m = 32;
  std::vector<double> x(static_cast<std::size_t>(m * din)), y(static_cast<std::size_t>(m * dout));
  for (auto& v : x) v = n(rng);
  for (index_t i = 0; i < m; ++i)
    for (index_t o = 0; o < dout; ++o) {
      double s = bias ? 0.5 * double(o) - 0.25 : 0.0;
      for (index_t j = 0; j < din; ++j)
        s += std::cos(double(o * din + j)) * x[std::size_t(i * din + j)];
      y[std::size_t(i * dout + o)] = s + noise * n(rng);
    }
  Net<T> net(be, {{LayerKind::linear, dout, din, bias}}, rng);
  auto views = net.views();
  const Status st = opt.init(c, views);
  EXPECT_TRUE(st.ok()) << st.to_string();
  auto loss_and_grad = [&](std::vector<double>* g) {
    const auto p = net.params();  // w (dout x din), then b (dout)
    g->assign(p.size(), 0.0);
    double loss = 0;
    for (index_t i = 0; i < m; ++i)
      for (index_t o = 0; o < dout; ++o) {
        double r = (bias ? p[std::size_t(dout * din + o)] : 0.0) - y[std::size_t(i * dout + o)];
        for (index_t j = 0; j < din; ++j)
          r += p[std::size_t(o * din + j)] * x[std::size_t(i * din + j)];
        loss += r * r / (2.0 * double(m));
        for (index_t j = 0; j < din; ++j)
          (*g)[std::size_t(o * din + j)] += r * x[std::size_t(i * din + j)] / double(m);
        if (bias) (*g)[std::size_t(dout * din + o)] += r / double(m);
      }
    return loss;
  };
  std::vector<double> g;
  const double start = loss_and_grad(&g);
  double loss = start;
  for (int k = 0; k < steps && st.ok(); ++k) {
    net.set_grads(g);
    const Status s = opt.step(c, views);
    EXPECT_TRUE(s.ok()) << s.to_string();
    if (!s.ok()) break;
    EXPECT_TRUE(synchronize(c).ok());
    loss = loss_and_grad(&g);
    EXPECT_TRUE(std::isfinite(loss)) << opt.name() << ", step " << k;
    if (!std::isfinite(loss)) break;
  }
  return {start, loss};
}

}  // namespace curvkit::test
