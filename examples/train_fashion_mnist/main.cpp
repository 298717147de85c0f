// train_fashion_mnist: trains an MLP, a small CNN or the deep autoencoder on Fashion-MNIST with
// one of curvkit's optimizers (docs/training.md).  The flags, the optimizer table and the
// training loop live here; the networks in network.cpp, the data reader in idx.cpp.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#if defined(__x86_64__) || defined(_M_X64)
#include <pmmintrin.h>  // _MM_SET_DENORMALS_ZERO_MODE
#include <xmmintrin.h>  // _MM_SET_FLUSH_ZERO_MODE
#endif

#include "curvkit/core/context.hpp"
#include "curvkit/optim/optimizer.hpp"
#include "curvkit/optim/registry.hpp"
#include "network.hpp"

namespace {

using curvkit::index_t;
using fmnist::ModelSpec;
using Optimizer = curvkit::optim::Optimizer<float>;

// ---- the optimizers ---------------------------------------------------------------------------
// By name from curvkit's registry (curvkit/optim/registry.hpp), which holds each optimizer's
// paper settings for two kinds of network: "cnn" (statistics every 10 steps, refreshes every
// 100, the CNN learning rates and weight decays) and "autoencoder" (every step / every 20).  The
// MLP uses the autoencoder settings, as docs/optimizer-spec.md §10.1 recommends.  An optimizer
// added to the registry is available here, and listed by --help, without a change.

bool is_autoencoder(const ModelSpec& m) {
  return m.loss == fmnist::LossKind::sigmoid_bce;
}

const char* preset_for(const ModelSpec& m) {
  return m.name == "cnn" ? "cnn" : "autoencoder";
}

std::string optimizer_list() {
  std::string names;
  for (const auto& n : curvkit::optim::optimizer_names()) names += (names.empty() ? "" : ", ") + n;
  return names;
}

/// The optimizer `name` with the model's preset; lr > 0 replaces the preset's learning rate.
std::unique_ptr<Optimizer> make_optimizer(const std::string& name, const ModelSpec& model,
                                          double lr) {
  auto opt = curvkit::optim::make_optimizer<float>(name, preset_for(model), lr > 0 ? lr : 0.0);
  if (!opt)
    throw std::invalid_argument("unknown optimizer '" + name + "' (" + optimizer_list() + ")");
  return opt;
}

// ---- flags --------------------------------------------------------------------------------------

struct Options {
  std::string model = "mlp";
  std::string optimizer = "adamw";
  double lr = 0;  // 0: the preset's learning rate
  int epochs = 10;
  long batch = 0;  // 0: the model's default
  long max_steps = 0;
  std::string backend =
      curvkit::backend_available(curvkit::Backend::kokkos) ? "kokkos" : "reference";
  std::uint64_t seed = 1;
  std::string data_dir = fmnist::kDefaultDataDir;
  std::string csv;
  double require_loss_below = -1;
  bool flush_denormals = true;
};

// Subnormal floats cost ~100 cycles per operation on x86 cores.  Training makes them: squared
// tiny gradients in Adam's second moment, momenta of weights whose gradient is exactly zero
// (Fashion-MNIST's blank border pixels) decaying geometrically.  Measured on the MLP: AdamW's
// optimizer step went from 0.43 ms (epoch 1) to 3.6 ms (epoch 5).  Flush-to-zero and
// denormals-are-zero (set before Kokkos starts threads, which inherit the mode) keep the host
// at full speed, as GPUs do by default for most kernels; --denormals keep turns it off.
void set_denormal_mode(bool flush) {
#if defined(__x86_64__) || defined(_M_X64)
  _MM_SET_FLUSH_ZERO_MODE(flush ? _MM_FLUSH_ZERO_ON : _MM_FLUSH_ZERO_OFF);
  _MM_SET_DENORMALS_ZERO_MODE(flush ? _MM_DENORMALS_ZERO_ON : _MM_DENORMALS_ZERO_OFF);
#else
  (void)flush;
#endif
}

void print_help() {
  std::printf(
      "usage: train_fashion_mnist [flags]\n"
      "  --model NAME         mlp (784-256-128-10), cnn (2 conv + 2 FC) or autoencoder\n"
      "                       (784-1000-500-250-30-250-500-1000-784, BCE)   [mlp]\n"
      "  --optimizer NAME     curvkit's optimizers, with the learning rates of their presets\n"
      "                       (mlp and autoencoder: \"autoencoder\"; cnn: \"cnn\")   [adamw]\n");
  for (const auto& name : curvkit::optim::optimizer_names()) {
    const auto ae = curvkit::optim::make_optimizer<float>(name, "autoencoder");
    const auto cnn = curvkit::optim::make_optimizer<float>(name, "cnn");
    std::printf("                         %-9s lr %g (mlp, autoencoder), %g (cnn)\n", name.c_str(),
                ae ? ae->learning_rate() : 0.0, cnn ? cnn->learning_rate() : 0.0);
  }
  std::printf(
      "  --lr X               learning rate [the preset's]\n"
      "  --epochs N           [10]\n"
      "  --batch N            mini-batch size [128; 1000 for the autoencoder]\n"
      "  --max-steps N        stop after N optimizer steps in all (0: no limit) [0]\n"
      "  --backend NAME       reference, kokkos or cuda [kokkos when compiled]\n"
      "  --seed N             weights, shuffling and sampled labels [1]\n"
      "  --data-dir DIR       the IDX files (.gz or raw) [%s]\n"
      "  --csv FILE           one row per epoch\n"
      "  --require-loss-below X  exit with status 3 unless the last epoch's train loss < X\n"
      "  --denormals MODE     flush (flush-to-zero on the host, for speed) or keep [flush]\n"
      "  --help\n",
      fmnist::kDefaultDataDir);
}

Options parse(int argc, char** argv) {
  Options o;
  std::map<std::string, std::function<void(const std::string&)>> flags = {
      {"--model", [&](const std::string& v) { o.model = v; }},
      {"--optimizer", [&](const std::string& v) { o.optimizer = v; }},
      {"--lr", [&](const std::string& v) { o.lr = std::stod(v); }},
      {"--epochs", [&](const std::string& v) { o.epochs = std::stoi(v); }},
      {"--batch", [&](const std::string& v) { o.batch = std::stol(v); }},
      {"--max-steps", [&](const std::string& v) { o.max_steps = std::stol(v); }},
      {"--backend", [&](const std::string& v) { o.backend = v; }},
      {"--seed", [&](const std::string& v) { o.seed = std::stoull(v); }},
      {"--data-dir", [&](const std::string& v) { o.data_dir = v; }},
      {"--csv", [&](const std::string& v) { o.csv = v; }},
      {"--require-loss-below", [&](const std::string& v) { o.require_loss_below = std::stod(v); }},
      {"--denormals",
       [&](const std::string& v) {
         if (v != "flush" && v != "keep")
           throw std::invalid_argument("--denormals takes flush or keep");
         o.flush_denormals = v == "flush";
       }},
  };
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i], value;
    if (arg == "--help" || arg == "-h") {
      print_help();
      std::exit(0);
    }
    if (const auto eq = arg.find('='); eq != std::string::npos) {
      value = arg.substr(eq + 1);
      arg = arg.substr(0, eq);
    } else if (i + 1 < argc) {
      value = argv[++i];
    } else {
      throw std::invalid_argument(arg + " needs a value (see --help)");
    }
    const auto f = flags.find(arg);
    if (f == flags.end()) throw std::invalid_argument("unknown flag " + arg + " (see --help)");
    try {
      f->second(value);
    } catch (const std::logic_error&) {  // std::stod & co.
      throw std::invalid_argument("bad value '" + value + "' for " + arg);
    }
  }
  if (o.epochs < 1) throw std::invalid_argument("--epochs must be >= 1");
  if (o.batch < 0 || o.max_steps < 0) throw std::invalid_argument("--batch / --max-steps < 0");
  return o;
}

curvkit::Context make_context(const std::string& backend) {
  if (backend == "reference") return curvkit::Context::reference();
  if (backend == "kokkos") return curvkit::Context::kokkos();
  if (backend == "cuda") return curvkit::Context::cuda();
  throw std::invalid_argument("unknown backend '" + backend + "' (reference, kokkos, cuda)");
}

void check(const curvkit::Status& st, const char* what) {
  if (!st.ok()) throw std::runtime_error(std::string(what) + ": " + st.to_string());
}

using Clock = std::chrono::steady_clock;
double seconds(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

// ---- training -----------------------------------------------------------------------------------

int run(const Options& o) {
  set_denormal_mode(o.flush_denormals);
  curvkit::ScopeGuard guard;  // Kokkos, if compiled
  const curvkit::Context ctx = make_context(o.backend);
  const ModelSpec spec = fmnist::model_spec(o.model);
  const long batch = o.batch > 0 ? o.batch : long(spec.default_batch);
  const bool classifier = !is_autoencoder(spec);

  const auto t_load = Clock::now();
  const fmnist::Split train = fmnist::read_split(o.data_dir, "train");
  const fmnist::Split test = fmnist::read_split(o.data_dir, "t10k");
  fmnist::DeviceSplit d_train(ctx, train), d_test(ctx, test);
  const double load_s = seconds(t_load, Clock::now());

  fmnist::Network<float> net(ctx, spec, batch, o.seed);
  std::unique_ptr<Optimizer> opt = make_optimizer(o.optimizer, spec, o.lr);
  check(opt->init(ctx, net.layer_views(batch, opt->needs())), "optimizer init");

  const long steps_per_epoch = long(d_train.count) / batch;  // the last partial batch is dropped
  if (steps_per_epoch < 1) throw std::invalid_argument("--batch is larger than the training set");
  std::printf(
      "model %s (%zu parameters), optimizer %s (preset %s, lr %g), backend %s, batch %ld, "
      "%ld steps per epoch, seed %llu\n",
      spec.name.c_str(), net.parameter_count(), std::string(opt->name()).c_str(), preset_for(spec),
      opt->learning_rate(), o.backend.c_str(), batch, steps_per_epoch, (unsigned long long)o.seed);
  std::printf("data: %lld train and %lld test images from %s (read in %.2f s)\n",
              (long long)d_train.count, (long long)d_test.count, o.data_dir.c_str(), load_s);

  std::ofstream csv;
  if (!o.csv.empty()) {
    csv.open(o.csv);
    if (!csv) throw std::runtime_error(o.csv + ": cannot open for writing");
    csv << "epoch,steps,train_loss,train_accuracy,test_loss,test_accuracy,epoch_seconds,"
           "eval_seconds,fwd_bwd_ms_per_step,optimizer_ms_per_step,wall_seconds\n";
  }

  const auto t_start = Clock::now();
  long total_steps = 0;
  double last_train_loss = NAN;
  for (int epoch = 1; epoch <= o.epochs; ++epoch) {
    d_train.shuffle(ctx, o.seed, epoch);
    const auto t_epoch = Clock::now();
    double fwd_bwd_s = 0, opt_s = 0;
    long steps = 0;
    for (long s = 0; s < steps_per_epoch; ++s) {
      if (o.max_steps > 0 && total_steps >= o.max_steps) break;
      const auto [fb, op] = fmnist::train_step(ctx, net, *opt, d_train, s * batch, batch);
      fwd_bwd_s += fb;
      opt_s += op;
      ++steps;
      ++total_steps;
    }
    const fmnist::Stats tr = net.take_stats();
    const double epoch_s = seconds(t_epoch, Clock::now());

    // Test set: every image, the last batch possibly smaller.
    const auto t_eval = Clock::now();
    for (index_t off = 0; off < d_test.count; off += batch) {
      const index_t m = std::min<index_t>(batch, d_test.count - off);
      net.load_batch(d_test, off, m);
      net.forward(m);
      net.loss(m, false);
    }
    const fmnist::Stats te = net.take_stats();
    const double eval_s = seconds(t_eval, Clock::now());
    const double wall_s = seconds(t_start, Clock::now());
    const double per = steps > 0 ? 1e3 / double(steps) : 0.0;
    last_train_loss = tr.mean_loss();

    if (classifier)
      std::printf("epoch %d  steps %ld  train loss %.4f acc %.2f%%  test loss %.4f acc %.2f%%  ",
                  epoch, steps, tr.mean_loss(), 100 * tr.accuracy(), te.mean_loss(),
                  100 * te.accuracy());
    else
      std::printf("epoch %d  steps %ld  train loss %.3f  test loss %.3f  ", epoch, steps,
                  tr.mean_loss(), te.mean_loss());
    std::printf("time %.2f s (+ eval %.2f s)  per step: fwd+bwd %.2f ms, optimizer %.2f ms\n",
                epoch_s, eval_s, fwd_bwd_s * per, opt_s * per);
    std::fflush(stdout);
    if (csv.is_open()) {
      csv << epoch << ',' << steps << ',' << tr.mean_loss() << ',';
      if (classifier) csv << tr.accuracy();
      csv << ',' << te.mean_loss() << ',';
      if (classifier) csv << te.accuracy();
      csv << ',' << epoch_s << ',' << eval_s << ',' << fwd_bwd_s * per << ',' << opt_s * per << ','
          << wall_s << '\n';
      csv.flush();
    }
    // The info codes of the optimizer's last factorisations / iterations (shifted or failed
    // factors, unconverged roots), once per epoch: reading them synchronises.
    curvkit::optim::Health health;
    check(opt->health(ctx, &health), "optimizer health");
    if (!health.clean())
      std::printf("optimizer health (nonzero info codes):\n%s", health.to_string().c_str());
    if (!std::isfinite(tr.mean_loss())) {
      std::fprintf(stderr, "training diverged (train loss %g); stopping\n", tr.mean_loss());
      return 2;
    }
    if (o.max_steps > 0 && total_steps >= o.max_steps) break;
  }

  if (o.require_loss_below > 0) {
    const bool ok = last_train_loss < o.require_loss_below;
    std::printf("%s: last epoch's train loss %.4f %s %g\n", ok ? "PASS" : "FAIL", last_train_loss,
                ok ? "<" : ">=", o.require_loss_below);
    if (!ok) return 3;
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(parse(argc, argv));
  } catch (const std::exception& e) {
    std::fprintf(stderr, "train_fashion_mnist: %s\n", e.what());
    return 1;
  }
}
