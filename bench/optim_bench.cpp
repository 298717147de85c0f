// Optimizer-step cost (issue "Optimizer layer I", item 3): one step of each optimizer — its
// statistics, its refresh amortised over the refresh period, and the update — on the layer
// shapes of the seeds' deep autoencoder (784-1000-500-250-30-250-500-1000-784, biases, batch
// m = 1000), against Adam's step and against the model's forward and backward products (three
// GEMMs of 2 m d_in d_out flops per layer: Y = A W^T, dA = G W, dW = G^T A).
//
//   optim_step/<backend>/<name>   mean time of one step over a whole refresh period (20 steps
//                                 of the autoencoder preset, after one untimed period; the
//                                 ms_per_step counter divides by the 20 steps);
//   model_fwd_bwd/<backend>       the 24 GEMMs of one forward + backward pass.
// Inputs are fixed random tensors; the trainer's statistics (a with its ones column, g,
// g_sampled, sampled gradients) are given on every step so each optimizer takes what needs()
// asks for.
#include <memory>
#include <string>
#include <vector>

#include "bench_common.hpp"
#include "curvkit/core/memory.hpp"
#include "curvkit/gemm.hpp"
#include "curvkit/optim/registry.hpp"

namespace curvkit::bench {
namespace {

using T = float;
constexpr index_t kBatch = 1000;
constexpr int kPeriod = 20;  // the autoencoder presets' refresh period
const std::vector<index_t> kWidths = {784, 1000, 500, 250, 30, 250, 500, 1000, 784};

// The autoencoder's tensors in the Context's memory: per layer w, b, dw, db, a, g and the
// sampled versions, filled once with Gaussian values (a's last column ones).
class Autoencoder {
 public:
  explicit Autoencoder(const Context& ctx) : ctx_(ctx) {
    for (std::size_t l = 0; l + 1 < kWidths.size(); ++l) {
      const index_t din = kWidths[l], dout = kWidths[l + 1];
      Layer y;
      y.w = array(dout * din, 0.05, 10 * l + 1);
      y.b = array(dout, 0.05, 10 * l + 2);
      y.dw = array(dout * din, 1e-3, 10 * l + 3);
      y.db = array(dout, 1e-3, 10 * l + 4);
      y.dws = array(dout * din, 1e-3, 10 * l + 5);
      y.dbs = array(dout, 1e-3, 10 * l + 6);
      std::vector<T> a(std::size_t(kBatch * (din + 1)));
      std::mt19937_64 rng(10 * l + 7);
      std::normal_distribution<double> n;
      for (index_t i = 0; i < kBatch; ++i)
        for (index_t j = 0; j <= din; ++j)
          a[std::size_t(i * (din + 1) + j)] = j < din ? T(n(rng)) : T(1);
      y.a = BackendArray<T>(ctx, a);
      y.g = array(kBatch * dout, 1.0, 10 * l + 8);
      y.gs = array(kBatch * dout, 1.0, 10 * l + 9);
      y.din = din;
      y.dout = dout;
      layers_.push_back(std::move(y));
    }
  }

  std::vector<optim::LayerView<T>> views() {
    std::vector<optim::LayerView<T>> v;
    for (std::size_t l = 0; l < layers_.size(); ++l) {
      Layer& y = layers_[l];
      const index_t i = y.din, o = y.dout;
      optim::LayerView<T> x;
      x.w = {y.w.data(), 1, o, i, i, o * i};
      x.b = {y.b.data(), 1, 1, o, o, o};
      x.dw = MatrixBatch<T>{y.dw.data(), 1, o, i, i, o * i};
      x.db = MatrixBatch<T>{y.db.data(), 1, 1, o, o, o};
      x.dw_sampled = MatrixBatch<T>{y.dws.data(), 1, o, i, i, o * i};
      x.db_sampled = MatrixBatch<T>{y.dbs.data(), 1, 1, o, o, o};
      x.m = kBatch;
      x.a = MatrixBatch<T>{y.a.data(), 1, kBatch, i + 1, i + 1, kBatch * (i + 1)};
      x.g = MatrixBatch<T>{y.g.data(), 1, kBatch, o, o, kBatch * o};
      x.g_sampled = MatrixBatch<T>{y.gs.data(), 1, kBatch, o, o, kBatch * o};
      x.output_layer = l + 1 == layers_.size();
      v.push_back(x);
    }
    return v;
  }

  // One forward and backward pass's GEMMs (the activations' own costs are left out).
  Status forward_backward() {
    for (Layer& y : layers_) {
      const index_t i = y.din, o = y.dout;
      const MatrixBatch<const T> a{y.a.data(), 1, kBatch, i, i + 1, kBatch * (i + 1)};
      const MatrixBatch<const T> w{y.w.data(), 1, o, i, i, o * i};
      const MatrixBatch<const T> g{y.g.data(), 1, kBatch, o, o, kBatch * o};
      const MatrixBatch<T> out{y.gs.data(), 1, kBatch, o, o, kBatch * o};
      const MatrixBatch<T> da{y.a.data(), 1, kBatch, i, i + 1, kBatch * (i + 1)};
      const MatrixBatch<T> dw{y.dws.data(), 1, o, i, i, o * i};
      if (Status s = gemm<T>(ctx_, Op::none, Op::trans, 1, a, w, 0, out); !s.ok()) return s;
      if (Status s = gemm<T>(ctx_, Op::trans, Op::none, 1, g, a, 0, dw); !s.ok()) return s;
      // dA = G W overwrites a's first i columns with values of the same scale.
      if (Status s = gemm<T>(ctx_, Op::none, Op::none, 1, g, w, 0, da); !s.ok()) return s;
    }
    return Status::success();
  }

  double flops() const {
    double f = 0;
    for (const Layer& y : layers_) f += 3 * 2.0 * double(kBatch) * double(y.din) * double(y.dout);
    return f;
  }

 private:
  struct Layer {
    BackendArray<T> w, b, dw, db, dws, dbs, a, g, gs;
    index_t din = 0, dout = 0;
  };
  BackendArray<T> array(index_t n, double scale, std::uint64_t seed) {
    std::vector<T> h(static_cast<std::size_t>(n));
    std::mt19937_64 rng(seed);
    std::normal_distribution<double> g;
    for (auto& x : h) x = T(scale * g(rng));
    return BackendArray<T>(ctx_, h);
  }
  Context ctx_;
  std::vector<Layer> layers_;
};

void bm_step(benchmark::State& st, const std::string& name) {
  const Context ctx = Context::kokkos();
  Autoencoder net(ctx);
  auto views = net.views();
  auto opt = optim::make_optimizer<T>(name, "autoencoder");
  if (!opt) return st.SkipWithError(("unknown optimizer " + name).c_str());
  if (Status s = opt->init(ctx, views); !s.ok()) return st.SkipWithError(s.to_string().c_str());
  // One untimed period first: the state's pages are touched and the statistics are warm.
  for (int k = 0; k < kPeriod; ++k)
    if (Status s = opt->step(ctx, views); !s.ok()) return st.SkipWithError(s.to_string().c_str());
  (void)synchronize(ctx);
  for (auto _ : st) {
    for (int k = 0; k < kPeriod; ++k)
      if (Status s = opt->step(ctx, views); !s.ok()) return st.SkipWithError(s.to_string().c_str());
    (void)synchronize(ctx);
  }
  // Milliseconds per step: elapsed seconds / (steps / 1000).
  st.counters["ms_per_step"] =
      benchmark::Counter(double(st.iterations() * kPeriod) / 1e3,
                         benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
}

void bm_model(benchmark::State& st) {
  const Context ctx = Context::kokkos();
  Autoencoder net(ctx);
  for (auto _ : st) {
    if (Status s = net.forward_backward(); !s.ok()) return st.SkipWithError(s.to_string().c_str());
    (void)synchronize(ctx);
  }
  set_rate_counters(st, net.flops(), 0);
}

void register_all() {
  for (const std::string& name : optim::optimizer_names())
    benchmark::RegisterBenchmark(("optim_step/kokkos/" + name).c_str(),
                                 [name](benchmark::State& st) { bm_step(st, name); })
        ->Unit(benchmark::kMillisecond)
        ->UseRealTime()
        ->Iterations(1);
  add("model_fwd_bwd/kokkos", bm_model);
}

}  // namespace
}  // namespace curvkit::bench

int main(int argc, char** argv) {
  return curvkit::bench::run_main(argc, argv, curvkit::bench::register_all);
}
