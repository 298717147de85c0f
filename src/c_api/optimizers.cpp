// C ABI, optimizer part: the optimizer layer (curvkit/optim) behind an opaque handle.  The
// handle holds an Optimizer<float> or Optimizer<double> made by the registry; each call
// converts the C layer descriptions to LayerViews of the handle's element type.
#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include "c_api_internal.hpp"
#include "curvkit/optim/registry.hpp"

struct curvkit_optimizer_s {
  curvkit_dtype dtype;
  std::unique_ptr<curvkit::optim::Optimizer<float>> f32;
  std::unique_ptr<curvkit::optim::Optimizer<double>> f64;
};

using namespace curvkit;
using capi::Args;
using capi::report;

namespace {

template <class T>
optim::Optimizer<T>& of(curvkit_optimizer_s* h);
template <>
optim::Optimizer<float>& of<float>(curvkit_optimizer_s* h) {
  return *h->f32;
}
template <>
optim::Optimizer<double>& of<double>(curvkit_optimizer_s* h) {
  return *h->f64;
}

template <class T>
std::vector<optim::LayerView<T>> layer_views(const Args<T>& x, const curvkit_layer* layers,
                                             int64_t count) {
  if (count < 1)
    throw capi::ArgumentError{std::string(x.op) + ": count (" + std::to_string(count) +
                              ") must be >= 1"};
  if (layers == nullptr) throw capi::ArgumentError{std::string(x.op) + ": layers is NULL"};
  std::vector<optim::LayerView<T>> out(static_cast<std::size_t>(count));
  for (int64_t i = 0; i < count; ++i) {
    const curvkit_layer& l = layers[i];
    const std::string p = "layers[" + std::to_string(i) + "].";
    const auto in = [&](const char* name, const curvkit_matrices& m) {
      return x.template optional<const T>((p + name).c_str(), &m);
    };
    optim::LayerView<T>& v = out[static_cast<std::size_t>(i)];
    if (l.kind < CURVKIT_LAYER_LINEAR || l.kind > CURVKIT_LAYER_VECTOR)
      throw capi::ArgumentError{std::string(x.op) + ": " + p + "kind (" +
                                std::to_string(static_cast<int>(l.kind)) +
                                ") is not a curvkit_layer_kind"};
    v.kind = static_cast<optim::LayerKind>(l.kind);
    v.w = x.one((p + "w").c_str(), &l.w);
    v.b = x.optional((p + "b").c_str(), &l.b);
    v.dw = in("dw", l.dw);
    v.db = in("db", l.db);
    v.c_in = l.c_in;
    v.kh = l.kh;
    v.kw = l.kw;
    v.output_layer = l.output_layer != 0;
    v.m = l.m;
    v.a = in("a", l.a);
    v.g = in("g", l.g);
    v.g_sampled = in("g_sampled", l.g_sampled);
    v.dw_sampled = in("dw_sampled", l.dw_sampled);
    v.db_sampled = in("db_sampled", l.db_sampled);
    v.z = in("z", l.z);
    v.losses = in("losses", l.losses);
    v.q = in("q", l.q);
  }
  return out;
}

// Runs `body(optimizer, layer views)` for a call on `layers` with the handle's dtype.
template <class Body>
curvkit_status with_layers(const char* op, curvkit_context ctx, curvkit_optimizer opt,
                           const curvkit_layer* layers, int64_t count, Body&& body) {
  if (opt == nullptr) return report(Status::invalid_argument(op, "opt is NULL"));
  return capi::run_typed(op, ctx, opt->dtype, [&]<class T>(const Args<T>& x) {
    const auto views = layer_views(x, layers, count);
    return body(of<T>(opt), x.context(), std::span<const optim::LayerView<T>>(views));
  });
}

}  // namespace

extern "C" {

curvkit_layer curvkit_layer_empty(void) {
  curvkit_layer l{};
  l.kind = CURVKIT_LAYER_LINEAR;
  l.kh = l.kw = 1;
  return l;
}

const char* curvkit_optimizer_name(int32_t i) {
  static const std::vector<std::string> names = optim::optimizer_names();
  if (i < 0 || static_cast<std::size_t>(i) >= names.size()) return nullptr;
  return names[static_cast<std::size_t>(i)].c_str();
}

curvkit_status curvkit_optimizer_create(const char* name, const char* preset, double lr,
                                        curvkit_dtype dtype, curvkit_optimizer* out) {
  const char* op = "optimizer_create";
  if (out == nullptr) return report(Status::invalid_argument(op, "out is NULL"));
  *out = nullptr;
  if (name == nullptr) return report(Status::invalid_argument(op, "name is NULL"));
  const std::string preset_name = preset ? preset : "autoencoder";
  try {
    auto h = std::make_unique<curvkit_optimizer_s>();
    h->dtype = dtype;
    bool made = false;
    if (dtype == CURVKIT_FLOAT32) {
      h->f32 = optim::make_optimizer<float>(name, preset_name, lr);
      made = h->f32 != nullptr;
    } else if (dtype == CURVKIT_FLOAT64) {
      h->f64 = optim::make_optimizer<double>(name, preset_name, lr);
      made = h->f64 != nullptr;
    } else {
      return report(Status::invalid_argument(
          op, "dtype " + std::to_string(static_cast<int>(dtype)) + " is not a curvkit_dtype"));
    }
    if (!made) {
      std::string known;
      for (const std::string& n : optim::optimizer_names())
        known += (known.empty() ? "" : ", ") + n;
      return report(Status::invalid_argument(
          op, "unknown name '" + std::string(name) + "' or preset '" + preset_name +
                  "' (names: " + known + "; presets: autoencoder, cnn)"));
    }
    *out = h.release();
    return CURVKIT_OK;
  } catch (const std::bad_alloc&) {
    return report(CURVKIT_OUT_OF_MEMORY, std::string(op) + ": out of memory");
  }
}

void curvkit_optimizer_destroy(curvkit_optimizer opt) {
  delete opt;
}

curvkit_status curvkit_optimizer_init(curvkit_context ctx, curvkit_optimizer opt,
                                      const curvkit_layer* layers, int64_t count) {
  return with_layers("optimizer_init", ctx, opt, layers, count,
                     [](auto& o, const Context& c, auto views) { return o.init(c, views); });
}

curvkit_status curvkit_optimizer_step(curvkit_context ctx, curvkit_optimizer opt,
                                      const curvkit_layer* layers, int64_t count) {
  return with_layers("optimizer_step", ctx, opt, layers, count,
                     [](auto& o, const Context& c, auto views) { return o.step(c, views); });
}

curvkit_status curvkit_optimizer_finish_step(curvkit_context ctx, curvkit_optimizer opt,
                                             const curvkit_layer* layers, int64_t count) {
  return with_layers("optimizer_finish_step", ctx, opt, layers, count,
                     [](auto& o, const Context& c, auto views) { return o.finish_step(c, views); });
}

curvkit_status curvkit_optimizer_needs(curvkit_optimizer opt, curvkit_needs* out) {
  if (opt == nullptr) return report(Status::invalid_argument("optimizer_needs", "opt is NULL"));
  if (out == nullptr) return report(Status::invalid_argument("optimizer_needs", "out is NULL"));
  const optim::Needs n = opt->f32 ? opt->f32->needs() : opt->f64->needs();
  *out = {n.a, n.g,      n.g_sampled,  n.grad_sampled,
          n.z, n.losses, n.cotangents, static_cast<curvkit_second_pass>(n.second_pass)};
  return CURVKIT_OK;
}

curvkit_status curvkit_optimizer_set_learning_rate(curvkit_optimizer opt, double lr) {
  const char* op = "optimizer_set_learning_rate";
  if (opt == nullptr) return report(Status::invalid_argument(op, "opt is NULL"));
  if (!(lr > 0) || !std::isfinite(lr))
    return report(Status::invalid_argument(op, "lr must be finite and > 0"));
  if (opt->f32) opt->f32->set_learning_rate(lr);
  if (opt->f64) opt->f64->set_learning_rate(lr);
  return CURVKIT_OK;
}

double curvkit_optimizer_learning_rate(curvkit_optimizer opt) {
  if (opt == nullptr) return 0;
  return opt->f32 ? opt->f32->learning_rate() : opt->f64->learning_rate();
}

int64_t curvkit_optimizer_iteration(curvkit_optimizer opt) {
  if (opt == nullptr) return 0;
  return opt->f32 ? opt->f32->iteration() : opt->f64->iteration();
}

curvkit_status curvkit_optimizer_unhealthy(curvkit_context ctx, curvkit_optimizer opt,
                                           int64_t* out) {
  const char* op = "optimizer_unhealthy";
  if (opt == nullptr) return report(Status::invalid_argument(op, "opt is NULL"));
  if (out == nullptr) return report(Status::invalid_argument(op, "out is NULL"));
  return capi::run_typed(op, ctx, opt->dtype, [&]<class T>(const Args<T>& x) {
    optim::Health health;
    const Status s = of<T>(opt).health(x.context(), &health);
    int64_t bad = 0;
    for (const auto& e : health.entries)
      for (const auto& [code, n] : e.codes) bad += static_cast<int64_t>(n);
    *out = bad;
    return s;
  });
}

}  // extern "C"
