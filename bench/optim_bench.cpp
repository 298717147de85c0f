// Optimizer-step cost (issue "Optimizer layer I", item 3): one step of each optimizer — its
// statistics, its refresh amortised over the refresh period, and the update — against Adam's
// step and against the model's forward and backward products, on two models' layer shapes:
//   autoencoder  the seeds' deep autoencoder 784-1000-500-250-30-250-500-1000-784, biases,
//                batch m = 1000, the "autoencoder" presets (refresh period 20);
//   cnn          the trainer's CNN (examples/train_fashion_mnist: conv 1->16 5x5 on 28x28,
//                conv 16->32 5x5 on 14x14, FC 1568-128, FC 128-10), batch 128, the "cnn"
//                presets (refresh period 100).
//
//   optim_step/<model>/<backend>/<name>  mean time of one step over a whole refresh period
//                                        (after one untimed period; the ms_per_step counter
//                                        divides by the period's steps); K-BFGS's second
//                                        forward and backward are not in it;
//   model_fwd_bwd/<model>/<backend>      three GEMMs per layer, 2 m S d_in d_out flops each
//                                        (Y = A W^T, dA = G W, dW = G^T A; S positions per
//                                        sample).  For the CNN this leaves out im2col / col2im,
//                                        pooling and activations, so it is a lower bound of the
//                                        trainer's forward + backward time.
// <backend>: kokkos (its default execution space), and cuda where compiled and a GPU is present.
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

struct LayerShape {
  index_t din, dout;     // W is dout x din (a convolution: c_out x c_in k k)
  index_t positions;     // S: output positions per sample (1 for a linear layer)
  index_t c_in, kernel;  // convolution geometry (0 for a linear layer)
};

struct ModelShape {
  std::string name;  // also the optimizer preset
  index_t batch;
  int period;  // the preset's refresh period: steps per timed iteration
  std::vector<LayerShape> layers;
};

ModelShape autoencoder() {
  const std::vector<index_t> widths = {784, 1000, 500, 250, 30, 250, 500, 1000, 784};
  ModelShape m{"autoencoder", 1000, 20, {}};
  for (std::size_t l = 0; l + 1 < widths.size(); ++l)
    m.layers.push_back({widths[l], widths[l + 1], 1, 0, 0});
  return m;
}

ModelShape cnn() {
  return {"cnn",
          128,
          100,
          {{25, 16, 28 * 28, 1, 5},
           {400, 32, 14 * 14, 16, 5},
           {1568, 128, 1, 0, 0},
           {128, 10, 1, 0, 0}}};
}

// A model's tensors in the Context's memory: per layer w, b, dw, db, a, g and the sampled
// versions, filled once with Gaussian values (a's last column ones).
class Model {
 public:
  Model(const Context& ctx, const ModelShape& shape) : ctx_(ctx), batch_(shape.batch) {
    for (std::size_t l = 0; l < shape.layers.size(); ++l) {
      const LayerShape& ls = shape.layers[l];
      const index_t din = ls.din, dout = ls.dout, rows = shape.batch * ls.positions;
      Layer y;
      y.w = array(dout * din, 0.05, 10 * l + 1);
      y.b = array(dout, 0.05, 10 * l + 2);
      y.dw = array(dout * din, 1e-3, 10 * l + 3);
      y.db = array(dout, 1e-3, 10 * l + 4);
      y.dws = array(dout * din, 1e-3, 10 * l + 5);
      y.dbs = array(dout, 1e-3, 10 * l + 6);
      std::vector<T> a(std::size_t(rows * (din + 1)));
      std::mt19937_64 rng(10 * l + 7);
      std::normal_distribution<double> n;
      for (index_t i = 0; i < rows; ++i)
        for (index_t j = 0; j <= din; ++j)
          a[std::size_t(i * (din + 1) + j)] = j < din ? T(n(rng)) : T(1);
      y.a = BackendArray<T>(ctx, a);
      y.g = array(rows * dout, 1.0, 10 * l + 8);
      y.gs = array(rows * dout, 1.0, 10 * l + 9);
      y.shape = ls;
      y.rows = rows;
      layers_.push_back(std::move(y));
    }
    losses_ = BackendArray<T>(ctx, std::vector<T>(std::size_t(shape.batch), T(1)));
  }

  // SMW-GN's cotangent backprops q for n2 samples: (n2 R S) x d_out random values per layer.
  void set_cotangents(index_t n2) {
    const index_t outputs = layers_.back().shape.dout;
    for (std::size_t l = 0; l < layers_.size(); ++l) {
      Layer& y = layers_[l];
      y.q_rows = n2 * outputs * (y.rows / batch_);
      y.q = array(y.q_rows * y.shape.dout, 1.0, 10 * l + 11);
    }
  }

  std::vector<optim::LayerView<T>> views() {
    std::vector<optim::LayerView<T>> v;
    for (std::size_t l = 0; l < layers_.size(); ++l) {
      Layer& y = layers_[l];
      const index_t i = y.shape.din, o = y.shape.dout, r = y.rows;
      optim::LayerView<T> x;
      if (y.shape.kernel > 0) {
        x.kind = optim::LayerKind::conv2d;
        x.c_in = y.shape.c_in;
        x.kh = x.kw = y.shape.kernel;
      }
      x.w = {y.w.data(), 1, o, i, i, o * i};
      x.b = {y.b.data(), 1, 1, o, o, o};
      x.dw = MatrixBatch<T>{y.dw.data(), 1, o, i, i, o * i};
      x.db = MatrixBatch<T>{y.db.data(), 1, 1, o, o, o};
      x.dw_sampled = MatrixBatch<T>{y.dws.data(), 1, o, i, i, o * i};
      x.db_sampled = MatrixBatch<T>{y.dbs.data(), 1, 1, o, o, o};
      x.m = batch_;
      x.a = MatrixBatch<T>{y.a.data(), 1, r, i + 1, i + 1, r * (i + 1)};
      x.g = MatrixBatch<T>{y.g.data(), 1, r, o, o, r * o};
      x.g_sampled = MatrixBatch<T>{y.gs.data(), 1, r, o, o, r * o};
      x.z = x.g_sampled;  // any (m S) x d_out values serve as pre-activations here
      x.output_layer = l + 1 == layers_.size();
      if (x.output_layer) x.losses = {losses_.data(), 1, 1, batch_, batch_, batch_};
      if (y.q_rows > 0) x.q = MatrixBatch<T>{y.q.data(), 1, y.q_rows, o, o, y.q_rows * o};
      v.push_back(x);
    }
    return v;
  }

  // One forward and backward pass's GEMMs (the activations' own costs are left out).
  Status forward_backward() {
    for (Layer& y : layers_) {
      const index_t i = y.shape.din, o = y.shape.dout, r = y.rows;
      const MatrixBatch<const T> a{y.a.data(), 1, r, i, i + 1, r * (i + 1)};
      const MatrixBatch<const T> w{y.w.data(), 1, o, i, i, o * i};
      const MatrixBatch<const T> g{y.g.data(), 1, r, o, o, r * o};
      const MatrixBatch<T> out{y.gs.data(), 1, r, o, o, r * o};
      const MatrixBatch<T> da{y.a.data(), 1, r, i, i + 1, r * (i + 1)};
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
    for (const Layer& y : layers_)
      f += 3 * 2.0 * double(y.rows) * double(y.shape.din) * double(y.shape.dout);
    return f;
  }

 private:
  struct Layer {
    BackendArray<T> w, b, dw, db, dws, dbs, a, g, gs, q;
    LayerShape shape{};
    index_t rows = 0;    // m S
    index_t q_rows = 0;  // n2 R S (SMW-GN)
  };
  BackendArray<T> array(index_t n, double scale, std::uint64_t seed) {
    std::vector<T> h(static_cast<std::size_t>(n));
    std::mt19937_64 rng(seed);
    std::normal_distribution<double> g;
    for (auto& x : h) x = T(scale * g(rng));
    return BackendArray<T>(ctx_, h);
  }
  Context ctx_;
  index_t batch_;
  std::vector<Layer> layers_;
  BackendArray<T> losses_;  // the output layer's per-sample losses (SMW-NG's LM rule)
};

void bm_step(benchmark::State& st, Backend backend, const ModelShape& shape,
             const std::string& name) {
  const Context ctx(backend);
  Model net(ctx, shape);
  auto views = net.views();
  auto opt = optim::make_optimizer<T>(name, shape.name);
  if (!opt) return st.SkipWithError(("unknown optimizer " + name).c_str());
  if (Status s = opt->init(ctx, views); !s.ok()) return st.SkipWithError(s.to_string().c_str());
  if (const index_t n2 = opt->needs().cotangents; n2 > 0) {
    net.set_cotangents(n2);
    views = net.views();
  }
  // One untimed period first: the state's pages are touched and the statistics are warm.
  // One step, and finish_step() when the optimizer asks for a second pass (that pass's forward
  // and backward are the model's cost, not timed here: add model_fwd_bwd per curvature step,
  // or a third of it (the forward GEMMs) for SMW-NG's forward-only pass; SMW-GN's cotangent
  // backprops, N2 R pseudo-samples through the network, are also the trainer's).
  auto one_step = [&] {
    const optim::Needs needs = opt->needs();
    Status s = opt->step(ctx, views);
    if (s.ok() && needs.second_pass != optim::SecondPass::none) s = opt->finish_step(ctx, views);
    return s;
  };
  for (int k = 0; k < shape.period; ++k)
    if (Status s = one_step(); !s.ok()) return st.SkipWithError(s.to_string().c_str());
  (void)synchronize(ctx);
  for (auto _ : st) {
    for (int k = 0; k < shape.period; ++k)
      if (Status s = one_step(); !s.ok()) return st.SkipWithError(s.to_string().c_str());
    (void)synchronize(ctx);
  }
  // Milliseconds per step: elapsed seconds / (steps / 1000).
  st.counters["ms_per_step"] =
      benchmark::Counter(double(st.iterations() * shape.period) / 1e3,
                         benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
}

void bm_model(benchmark::State& st, Backend backend, const ModelShape& shape) {
  const Context ctx(backend);
  Model net(ctx, shape);
  for (auto _ : st) {
    if (Status s = net.forward_backward(); !s.ok()) return st.SkipWithError(s.to_string().c_str());
    (void)synchronize(ctx);
  }
  set_rate_counters(st, net.flops(), 0);
}

// The Kokkos backend (its default execution space: the host, or the GPU in a Kokkos built for
// CUDA) and, where compiled and a GPU is present, the native CUDA backend.
void register_all() {
  std::vector<Backend> backends = {Backend::kokkos};
#if CURVKIT_HAVE_CUDA
  if (have_cuda_device()) backends.push_back(Backend::cuda);
#endif
  for (Backend backend : backends) {
    const std::string tag = to_string(backend);
    for (const ModelShape& shape : {autoencoder(), cnn()}) {
      for (const std::string& name : optim::optimizer_names())
        benchmark::RegisterBenchmark(
            ("optim_step/" + shape.name + "/" + tag + "/" + name).c_str(),
            [backend, shape, name](benchmark::State& st) { bm_step(st, backend, shape, name); })
            ->Unit(benchmark::kMillisecond)
            ->UseRealTime()
            ->Iterations(1);
      add("model_fwd_bwd/" + shape.name + "/" + tag,
          [backend, shape](benchmark::State& st) { bm_model(st, backend, shape); });
    }
  }
}

}  // namespace
}  // namespace curvkit::bench

int main(int argc, char** argv) {
  return curvkit::bench::run_main(argc, argv, curvkit::bench::register_all);
}
