// curvkit._ext: the Python extension (nanobind) over curvkit's C ABI (include/curvkit/c_api.h).
//
// It turns DLPack-capable arrays (NumPy, PyTorch, CuPy, JAX: anything nanobind's ndarray
// accepts) into C views without copying, checks what the C ABI cannot see (dtype, device,
// dimensions, strides) with a Python exception that names the argument, and maps C status
// codes to exceptions.  Everything else (allocating outputs, choosing the backend and stream,
// keyword defaults) is the pure-Python layer in python/curvkit/.
#include <nanobind/nanobind.h>
#include <nanobind/ndarray.h>
#include <nanobind/stl/optional.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/vector.h>

#include <cstring>
#include <optional>
#include <string>
#include <vector>

#include "curvkit/c_api.h"

namespace nb = nanobind;

namespace {

using Array = nb::ndarray<>;
using OptArray = std::optional<nb::ndarray<>>;

// A C context; the Python layer keeps one per (backend, stream).
struct Context {
  curvkit_context handle = nullptr;
  curvkit_backend backend = CURVKIT_BACKEND_REFERENCE;
  Context(int backend_, std::uintptr_t stream) : backend(static_cast<curvkit_backend>(backend_)) {
    if (curvkit_context_create(backend, reinterpret_cast<void*>(stream), &handle) != CURVKIT_OK)
      throw std::runtime_error(curvkit_last_error());
  }
  ~Context() { curvkit_context_destroy(handle); }
  Context(const Context&) = delete;
  Context& operator=(const Context&) = delete;
  bool on_gpu() const { return backend == CURVKIT_BACKEND_CUDA; }
};

// The argument checks of one call: op name for messages, the context's device, the call's
// dtype (set by the first array).
struct Call {
  const char* op;
  const Context& ctx;
  std::optional<curvkit_dtype> dtype{};

  [[noreturn]] void value_error(const std::string& what) const {
    throw nb::value_error((std::string(op) + ": " + what).c_str());
  }
  [[noreturn]] void type_error(const std::string& what) const {
    throw nb::type_error((std::string(op) + ": " + what).c_str());
  }

  void check_device(const Array& a, const std::string& name) const {
    const bool gpu = a.device_type() == nb::device::cuda::value;
    const bool cpu = a.device_type() == nb::device::cpu::value;
    if (ctx.on_gpu() && !gpu)
      value_error(name + " is not in CUDA device memory but the call runs on the cuda backend");
    if (!ctx.on_gpu() && !cpu)
      value_error(name + " is not in host memory but the call runs on a host backend");
  }

  curvkit_dtype element(const Array& a, const std::string& name) {
    curvkit_dtype d;
    if (a.dtype() == nb::dtype<float>())
      d = CURVKIT_FLOAT32;
    else if (a.dtype() == nb::dtype<double>())
      d = CURVKIT_FLOAT64;
    else
      type_error(name + " must have dtype float32 or float64");
    if (dtype && *dtype != d)
      type_error(name + " has dtype " + (d == CURVKIT_FLOAT32 ? "float32" : "float64") +
                 " but the call's first array has " +
                 (*dtype == CURVKIT_FLOAT32 ? "float32" : "float64"));
    dtype = d;
    return d;
  }

  // A matrix (rows, cols) or a batch (batch, rows, cols); rows of unit stride.
  curvkit_matrices matrices(const Array& a, const std::string& name) {
    check_device(a, name);
    const curvkit_dtype d = element(a, name);
    const std::size_t nd = a.ndim();
    if (nd != 2 && nd != 3)
      value_error(name + " must have 2 (rows, cols) or 3 (batch, rows, cols) dimensions, not " +
                  std::to_string(nd));
    const int64_t batch = nd == 3 ? static_cast<int64_t>(a.shape(0)) : 1;
    const int64_t rows = static_cast<int64_t>(a.shape(nd - 2));
    const int64_t cols = static_cast<int64_t>(a.shape(nd - 1));
    for (std::size_t k = 0; k < nd; ++k)
      if (a.stride(k) < 0) value_error(name + " has a negative stride");
    if (cols > 1 && a.stride(nd - 1) != 1)
      value_error(name + "'s last dimension must be contiguous (stride 1, not " +
                  std::to_string(a.stride(nd - 1)) + "); pass a C-contiguous copy");
    const int64_t ld = rows > 1 ? a.stride(nd - 2) : cols;
    const int64_t stride = batch > 1 ? a.stride(0) : rows * ld;
    return {a.data(), d, batch, rows, cols, ld, stride};
  }
  curvkit_matrices optional(const OptArray& a, const std::string& name) {
    if (!a) return curvkit_matrices{nullptr, dtype.value_or(CURVKIT_FLOAT32), 0, 0, 0, 0, 0};
    return matrices(*a, name);
  }
  std::vector<curvkit_matrices> group(const std::vector<Array>& v, const std::string& name) {
    if (v.empty()) value_error(name + " is an empty list");
    std::vector<curvkit_matrices> out;
    for (std::size_t i = 0; i < v.size(); ++i)
      out.push_back(matrices(v[i], v.size() == 1 ? name : name + "[" + std::to_string(i) + "]"));
    return out;
  }
  // One entry per mode; None leaves the mode alone.
  std::vector<curvkit_matrices> per_mode(const std::vector<OptArray>& v, const std::string& name) {
    std::vector<curvkit_matrices> out;
    for (std::size_t i = 0; i < v.size(); ++i)
      out.push_back(optional(v[i], name + "[" + std::to_string(i) + "]"));
    return out;
  }

  // A dense tensor, or a batch of them when `batched` (first dimension).
  curvkit_tensors tensors(const Array& a, const std::string& name, bool batched) {
    check_device(a, name);
    const curvkit_dtype d = element(a, name);
    const int order = static_cast<int>(a.ndim()) - (batched ? 1 : 0);
    if (order < 1 || order > 4)
      value_error(name + " must be a tensor of order 1 to 4 (" +
                  (batched ? std::string("after the batch dimension") : std::string("")) + ")");
    curvkit_tensors t{a.data(),     d, batched ? static_cast<int64_t>(a.shape(0)) : 1, order,
                      {0, 0, 0, 0}, 0};
    int64_t expect = 1;
    for (int k = order - 1; k >= 0; --k) {
      const std::size_t axis = static_cast<std::size_t>(k + (batched ? 1 : 0));
      t.dims[k] = static_cast<int64_t>(a.shape(axis));
      if (t.dims[k] > 1 && a.stride(axis) != expect)
        value_error(name + " must be dense within each tensor (C-contiguous)");
      expect *= t.dims[k];
    }
    t.stride = batched && t.batch > 1 ? a.stride(0) : expect;
    return t;
  }

  // Per-matrix outputs: int32 (info, counts) or the call's dtype (shifts, residuals).
  template <class T>
  T* out_ints(const Array& a, const std::string& name, std::size_t count) const {
    check_device(a, name);
    if (a.dtype() != nb::dtype<int32_t>())
      throw nb::type_error((std::string(op) + ": " + name + " must have dtype int32").c_str());
    check_count(a, name, count);
    return static_cast<T*>(a.data());
  }
  void* out_values(const OptArray& a, const std::string& name, std::size_t count) {
    if (!a) return nullptr;
    check_device(*a, name);
    element(*a, name);
    check_count(*a, name, count);
    return a->data();
  }
  void check_count(const Array& a, const std::string& name, std::size_t count) const {
    if (a.ndim() != 1 || a.shape(0) < count || (a.shape(0) > 1 && a.stride(0) != 1))
      value_error(name + " must be a contiguous 1-D array of at least " + std::to_string(count) +
                  " entries");
  }
};

std::size_t total(const std::vector<curvkit_matrices>& v) {
  std::size_t n = 0;
  for (const auto& m : v) n += static_cast<std::size_t>(m.batch);
  return n;
}

// Raises the Python exception for a failed C call.
void check(curvkit_status s) {
  if (s == CURVKIT_OK) return;
  const std::string msg = curvkit_last_error();
  switch (s) {
    case CURVKIT_INVALID_ARGUMENT:
      if (msg.find(".dtype") != std::string::npos) throw nb::type_error(msg.c_str());
      throw nb::value_error(msg.c_str());
    case CURVKIT_NOT_COMPILED:
    case CURVKIT_NOT_SUPPORTED:
      throw nb::builtin_exception(nb::exception_type::runtime_error, msg.c_str());
    case CURVKIT_OUT_OF_MEMORY:
      throw std::bad_alloc();
    default:
      throw std::runtime_error(msg);
  }
}

curvkit_spd_options spd_options(double shift, int policy, double shift_start, double growth,
                                int retries) {
  return {shift, static_cast<curvkit_nonspd_policy>(policy), shift_start, growth, retries};
}

curvkit_ns_options ns_options(int stop, int iterations, double tolerance, double epsilon,
                              int compute) {
  return {static_cast<curvkit_ns_stop>(stop), iterations, tolerance, epsilon,
          static_cast<curvkit_ns_compute>(compute)};
}

curvkit_khatri_rao_options kr_options(bool bias, double alpha, double beta, int fill, int path) {
  return {bias ? 1 : 0, alpha, beta, static_cast<curvkit_fill>(fill),
          static_cast<curvkit_gram_path>(path)};
}

// ---- optimizers ----

struct Optimizer {
  curvkit_optimizer handle = nullptr;
  curvkit_dtype dtype;
  Optimizer(const std::string& name, const std::string& preset, double lr, int dtype_)
      : dtype(static_cast<curvkit_dtype>(dtype_)) {
    check(curvkit_optimizer_create(name.c_str(), preset.c_str(), lr, dtype, &handle));
  }
  ~Optimizer() { curvkit_optimizer_destroy(handle); }
  Optimizer(const Optimizer&) = delete;
  Optimizer& operator=(const Optimizer&) = delete;
};

// A layer from a dict: kind, w, b, dw, db, c_in, kh, kw, output_layer, m, a, g, ...
curvkit_layer to_layer(Call& call, const nb::dict& d, std::size_t index) {
  curvkit_layer l = curvkit_layer_empty();
  const std::string p = "layers[" + std::to_string(index) + "]";
  const auto view = [&](const char* key, curvkit_matrices* out) {
    if (!d.contains(key) || d[key].is_none()) return;
    *out = call.matrices(nb::cast<Array>(d[key]), p + "['" + key + "']");
  };
  const auto integer = [&](const char* key, int64_t fallback) {
    return d.contains(key) ? nb::cast<int64_t>(d[key]) : fallback;
  };
  if (!d.contains("w")) call.value_error(p + " has no 'w'");
  l.kind = static_cast<curvkit_layer_kind>(integer("kind", 0));
  view("w", &l.w);
  view("b", &l.b);
  view("dw", &l.dw);
  view("db", &l.db);
  l.c_in = integer("c_in", 0);
  l.kh = integer("kh", 1);
  l.kw = integer("kw", 1);
  l.output_layer = d.contains("output_layer") && nb::cast<bool>(d["output_layer"]) ? 1 : 0;
  l.m = integer("m", 0);
  view("a", &l.a);
  view("g", &l.g);
  view("g_sampled", &l.g_sampled);
  view("dw_sampled", &l.dw_sampled);
  view("db_sampled", &l.db_sampled);
  view("z", &l.z);
  view("losses", &l.losses);
  view("q", &l.q);
  return l;
}

using LayerCall = curvkit_status (*)(curvkit_context, curvkit_optimizer, const curvkit_layer*,
                                     int64_t);
void layers_call(const char* op, LayerCall fn, Context& ctx, Optimizer& opt,
                 const std::vector<nb::dict>& layers) {
  Call call{op, ctx, opt.dtype};
  std::vector<curvkit_layer> ls;
  for (std::size_t i = 0; i < layers.size(); ++i) ls.push_back(to_layer(call, layers[i], i));
  if (ls.empty()) call.value_error("layers is an empty list");
  check(fn(ctx.handle, opt.handle, ls.data(), static_cast<int64_t>(ls.size())));
}

}  // namespace

NB_MODULE(_ext, m) {
  m.doc() = "curvkit's C ABI for DLPack arrays (use the functions of the curvkit package)";
  // Objects still alive at interpreter exit (an optimizer in a traceback) are not leaks of
  // this module's making.
  nb::set_leak_warnings(false);
  m.attr("c_api_version") = curvkit_c_api_version();
  m.def("version", [] { return std::string(curvkit_version()); });
  m.def("backend_available",
        [](int b) { return curvkit_backend_available(static_cast<curvkit_backend>(b)) != 0; });
  m.def("kokkos_host_memory",
        [] { return curvkit_backend_host_memory(CURVKIT_BACKEND_KOKKOS) != 0; });
  m.def("initialize", [] { check(curvkit_initialize()); });
  m.def("finalize", [] { curvkit_finalize(); });
  m.def("optimizer_names", [] {
    std::vector<std::string> names;
    for (int32_t i = 0; curvkit_optimizer_name(i) != nullptr; ++i)
      names.emplace_back(curvkit_optimizer_name(i));
    return names;
  });

  nb::class_<Context>(m, "Context")
      .def(nb::init<int, std::uintptr_t>(), nb::arg("backend"), nb::arg("stream") = 0)
      .def_prop_ro("backend", [](const Context& c) { return static_cast<int>(c.backend); })
      .def("synchronize", [](Context& c) { check(curvkit_synchronize(c.handle)); });

  // ---- SPD ----
  // potrf and potri: one group list factored (or inverted) in place.
  using SpdInPlace = curvkit_status (*)(curvkit_context, int64_t, const curvkit_matrices*, int32_t*,
                                        const curvkit_spd_options*, void*);
  const auto spd_in_place = [](const char* op, SpdInPlace fn) {
    return [=](Context& ctx, const std::vector<Array>& a, const Array& info, double shift,
               int policy, double start, double growth, int retries, const OptArray& used) {
      Call c{op, ctx};
      const auto av = c.group(a, "a");
      const auto o = spd_options(shift, policy, start, growth, retries);
      check(fn(ctx.handle, static_cast<int64_t>(av.size()), av.data(),
               c.out_ints<int32_t>(info, "info", total(av)), &o,
               c.out_values(used, "shift_used", total(av))));
    };
  };
  m.def("potrf", spd_in_place("potrf", curvkit_potrf));
  m.def("potrs", [](Context& ctx, const std::vector<Array>& l, const std::vector<Array>& b,
                    const Array& info) {
    Call c{"potrs", ctx};
    const auto lv = c.group(l, "l");
    const auto bv = c.group(b, "b");
    check(curvkit_potrs(ctx.handle, static_cast<int64_t>(lv.size()), lv.data(), bv.data(),
                        c.out_ints<int32_t>(info, "info", total(lv))));
  });
  m.def("posv", [](Context& ctx, const std::vector<Array>& a, const std::vector<Array>& b,
                   const Array& info, double shift, int policy, double start, double growth,
                   int retries, const OptArray& used) {
    Call c{"posv", ctx};
    const auto av = c.group(a, "a");
    const auto bv = c.group(b, "b");
    if (bv.size() != av.size()) c.value_error("a and b must have the same number of groups");
    const auto o = spd_options(shift, policy, start, growth, retries);
    check(curvkit_posv(ctx.handle, static_cast<int64_t>(av.size()), av.data(), bv.data(),
                       c.out_ints<int32_t>(info, "info", total(av)), &o,
                       c.out_values(used, "shift_used", total(av))));
  });
  m.def("potri", spd_in_place("potri", curvkit_potri));

  // ---- Sherman-Morrison / Woodbury / quasi-Newton ----
  m.def("rank1_update", [](Context& ctx, const Array& h, const Array& u, const Array& info,
                           double decay, double weight, bool mirror) {
    Call c{"rank1_update", ctx};
    const auto hv = c.matrices(h, "h");
    const auto uv = c.matrices(u, "u");
    const curvkit_rank1_options o{decay, weight, mirror ? 1 : 0};
    check(curvkit_rank1_update(ctx.handle, &hv, &uv, c.out_ints<int32_t>(info, "info", hv.batch),
                               &o));
  });
  m.def("woodbury_solve", [](Context& ctx, const Array& ut, const Array& b, const Array& info,
                             double lambda, double c_scale, int c_form, const OptArray& cm,
                             const OptArray& gram) {
    Call c{"woodbury_solve", ctx};
    const auto uv = c.matrices(ut, "ut");
    const auto bv = c.matrices(b, "b");
    const auto cv = c.optional(cm, "c");
    const auto gv = c.optional(gram, "gram");
    const curvkit_woodbury_options o{lambda, c_scale, static_cast<curvkit_woodbury_c>(c_form)};
    check(curvkit_woodbury_solve(ctx.handle, &uv, &bv, c.out_ints<int32_t>(info, "info", uv.batch),
                                 &o, &cv, &gv));
  });
  m.def("bfgs_update", [](Context& ctx, const Array& h, const Array& s, const Array& y,
                          const Array& info, double min_curvature, bool skip_rejected,
                          bool mirror) {
    Call c{"bfgs_update", ctx};
    const auto hv = c.matrices(h, "h");
    const auto sv = c.matrices(s, "s");
    const auto yv = c.matrices(y, "y");
    const curvkit_bfgs_options o{min_curvature, skip_rejected ? 1 : 0, mirror ? 1 : 0};
    check(curvkit_bfgs_update(ctx.handle, &hv, &sv, &yv,
                              c.out_ints<int32_t>(info, "info", hv.batch), &o, nullptr, nullptr));
  });
  m.def("bfgs_damping", [](Context& ctx, const OptArray& h, const Array& s, const Array& y,
                           const Array& info, int scheme, double mu1, double mu2, bool skip_test,
                           const Array& theta, const Array& skip) {
    Call c{"bfgs_damping", ctx};
    const auto sv = c.matrices(s, "s");  // first: the call's dtype
    const auto yv = c.matrices(y, "y");
    const auto hv = c.optional(h, "h");
    const curvkit_damping_options o{static_cast<curvkit_damping_scheme>(scheme), mu1, mu2,
                                    skip_test ? 1 : 0};
    const auto n = static_cast<std::size_t>(sv.batch);
    check(curvkit_bfgs_damping(ctx.handle, &hv, &sv, &yv, c.out_ints<int32_t>(info, "info", n), &o,
                               c.out_values(theta, "theta", 2 * n),
                               c.out_ints<int32_t>(skip, "skip", n)));
  });
  m.def("hessian_action_pair",
        [](Context& ctx, const Array& h, const Array& abar, const Array& x, const Array& s,
           const Array& y, const Array& info, double lambda, double scale) {
          Call c{"hessian_action_pair", ctx};
          const auto hv = c.matrices(h, "h");
          const auto av = c.matrices(abar, "abar");
          const auto xv = c.matrices(x, "x");
          const auto sv = c.matrices(s, "s");
          const auto yv = c.matrices(y, "y");
          const curvkit_hessian_action_options o{lambda, scale};
          check(curvkit_hessian_action_pair(ctx.handle, &hv, &av, &xv, &sv, &yv,
                                            c.out_ints<int32_t>(info, "info", hv.batch), &o));
        });
  const auto lbfgs = [](const char* op, auto fn) {
    return [op, fn](Context& ctx, const Array& s, const Array& y, const Array& x, const Array& info,
                    double gamma, bool skip_zero) {
      Call c{op, ctx};
      const auto sv = c.matrices(s, "s");
      const auto yv = c.matrices(y, "y");
      const auto xv = c.matrices(x, "x");
      const curvkit_lbfgs_options o{gamma, skip_zero ? 1 : 0};
      check(fn(ctx.handle, &sv, &yv, &xv, c.out_ints<int32_t>(info, "info", sv.batch), &o));
    };
  };
  m.def("lbfgs_apply", lbfgs("lbfgs_apply", [](auto... args) {
          return curvkit_lbfgs_apply(args..., nullptr, nullptr);
        }));
  m.def("lbfgs_two_loop", lbfgs("lbfgs_two_loop", curvkit_lbfgs_two_loop));

  // ---- products ----
  m.def("gemm",
        [](Context& ctx, bool trans_a, bool trans_b, double alpha, const std::vector<Array>& a,
           const std::vector<Array>& b, double beta, const std::vector<Array>& cc) {
          Call c{"gemm", ctx};
          const auto av = c.group(a, "a");
          const auto bv = c.group(b, "b");
          const auto cv = c.group(cc, "c");
          check(curvkit_gemm(ctx.handle, static_cast<int64_t>(av.size()),
                             trans_a ? CURVKIT_OP_TRANS : CURVKIT_OP_NONE,
                             trans_b ? CURVKIT_OP_TRANS : CURVKIT_OP_NONE, alpha, av.data(),
                             bv.data(), beta, cv.data()));
        });
  m.def("syrk", [](Context& ctx, bool trans_a, double alpha, const std::vector<Array>& a,
                   double beta, const std::vector<Array>& cc, bool full) {
    Call c{"syrk", ctx};
    const auto av = c.group(a, "a");
    const auto cv = c.group(cc, "c");
    check(curvkit_syrk(ctx.handle, static_cast<int64_t>(av.size()),
                       trans_a ? CURVKIT_OP_TRANS : CURVKIT_OP_NONE, alpha, av.data(), beta,
                       cv.data(), full ? CURVKIT_FILL_FULL : CURVKIT_FILL_LOWER));
  });

  // ---- Kronecker ----
  m.def("mode_product_chain", [](Context& ctx, const Array& x, const std::vector<OptArray>& u,
                                 const Array& y, bool batched, bool trans_u) {
    Call c{"mode_product_chain", ctx};
    const auto xv = c.tensors(x, "x", batched);
    const auto uv = c.per_mode(u, "u");
    const auto yv = c.tensors(y, "y", batched);
    if (static_cast<int>(uv.size()) != xv.order)
      c.value_error("u must have one entry (or None) per mode of x (" + std::to_string(xv.order) +
                    ")");
    check(curvkit_mode_product_chain(ctx.handle, &xv, uv.data(), &yv,
                                     trans_u ? CURVKIT_OP_TRANS : CURVKIT_OP_NONE));
  });
  m.def("kron_apply", [](Context& ctx, const std::vector<Array>& gf, const std::vector<Array>& af,
                         const std::vector<Array>& grad, const std::vector<Array>& out,
                         bool cholesky, double alpha) {
    Call c{"kron_apply", ctx};
    const auto dv = c.group(grad, "grad");
    const auto gv = c.group(gf, "g_factor");
    const auto av = c.group(af, "a_factor");
    const auto ov = c.group(out, "out");
    const curvkit_kron_apply_options o{cholesky ? CURVKIT_KRON_CHOLESKY : CURVKIT_KRON_INVERSE,
                                       alpha};
    check(curvkit_kron_apply(ctx.handle, static_cast<int64_t>(dv.size()), gv.data(), av.data(),
                             dv.data(), ov.data(), &o));
  });
  m.def("mode_gram", [](Context& ctx, const Array& x, const std::vector<OptArray>& grams,
                        bool batched, double beta, double scale, bool full) {
    Call c{"mode_gram", ctx};
    const auto xv = c.tensors(x, "x", batched);
    const auto gv = c.per_mode(grams, "grams");
    if (static_cast<int>(gv.size()) != xv.order)
      c.value_error("grams must have one entry (or None) per mode of x");
    const curvkit_mode_gram_options o{beta, scale, full ? CURVKIT_FILL_FULL : CURVKIT_FILL_LOWER};
    check(curvkit_mode_gram(ctx.handle, &xv, gv.data(), &o));
  });

  m.def("tnt_normalize", [](Context& ctx, const std::vector<Array>& grams, const Array& info) {
    Call c{"tnt_normalize", ctx};
    const auto gv = c.group(grams, "grams");
    check(curvkit_tnt_normalize(ctx.handle, static_cast<int64_t>(gv.size()), gv.data(),
                                c.out_ints<int32_t>(info, "info", gv[0].batch)));
  });
  m.def("kfac_pi_damping", [](Context& ctx, const std::vector<Array>& a,
                              const std::vector<Array>& g, double lambda, const Array& shift_a,
                              const Array& shift_g, const Array& info) {
    Call c{"kfac_pi_damping", ctx};
    const auto av = c.group(a, "a_factors");
    const auto gv = c.group(g, "g_factors");
    if (gv.size() != av.size())
      c.value_error("a_factors and g_factors must have the same number of groups");
    const std::size_t n = total(av);
    void* sa = c.out_values(shift_a, "shift_a", n);
    void* sg = c.out_values(shift_g, "shift_g", n);
    check(curvkit_kfac_pi_damping(ctx.handle, static_cast<int64_t>(av.size()), av.data(), gv.data(),
                                  lambda, sa, sg, c.out_ints<int32_t>(info, "info", n)));
  });

  // ---- Khatri-Rao ----
  m.def("khatri_rao_gram",
        [](Context& ctx, const std::vector<Array>& a, const std::vector<Array>& g,
           const std::vector<Array>& k, bool bias, double alpha, double beta, bool full, int path) {
          Call c{"khatri_rao_gram", ctx};
          const auto av = c.group(a, "a");
          const auto gv = c.group(g, "g");
          const auto kv = c.group(k, "k");
          const auto o = kr_options(bias, alpha, beta, full ? 1 : 0, path);
          check(curvkit_khatri_rao_gram(ctx.handle, static_cast<int64_t>(av.size()), av.data(),
                                        gv.data(), kv.data(), &o));
        });
  // jv (in: v, out: u) and jtu (in: u, out: v) share their shape.
  using KrProduct = curvkit_status (*)(curvkit_context, int64_t, const curvkit_matrices*,
                                       const curvkit_matrices*, const curvkit_matrices*,
                                       const curvkit_matrices*, const curvkit_khatri_rao_options*);
  const auto kr_product = [](const char* op, const char* in_name, const char* out_name,
                             KrProduct fn) {
    return [=](Context& ctx, const std::vector<Array>& a, const std::vector<Array>& g,
               const std::vector<Array>& in, const std::vector<Array>& out, bool bias, double alpha,
               double beta) {
      Call c{op, ctx};
      const auto av = c.group(a, "a");
      const auto gv = c.group(g, "g");
      const auto iv = c.group(in, in_name);
      const auto ov = c.group(out, out_name);
      const auto o = kr_options(bias, alpha, beta, 0, 0);
      check(fn(ctx.handle, static_cast<int64_t>(av.size()), av.data(), gv.data(), iv.data(),
               ov.data(), &o));
    };
  };
  m.def("khatri_rao_jv", kr_product("khatri_rao_jv", "v", "u", curvkit_khatri_rao_jv));
  m.def("khatri_rao_jtu", kr_product("khatri_rao_jtu", "u", "v", curvkit_khatri_rao_jtu));

  m.def("khatri_rao_layer_sums",
        [](Context& ctx, const std::vector<Array>& x, const Array& sums, bool bias) {
          Call c{"khatri_rao_layer_sums", ctx};
          const auto xv = c.group(x, "x");
          const auto sv = c.matrices(sums, "sums");
          check(curvkit_khatri_rao_layer_sums(ctx.handle, static_cast<int64_t>(xv.size()),
                                              xv.data(), &sv, bias ? 1 : 0));
        });
  m.def("coarse_gram", [](Context& ctx, const Array& sums_a, const Array& sums_g, const Array& s_a,
                          const Array& s_g, const Array& f, double beta) {
    Call c{"coarse_gram", ctx};
    const auto av = c.matrices(sums_a, "sums_a");
    const auto gv = c.matrices(sums_g, "sums_g");
    const auto sav = c.matrices(s_a, "s_a");
    const auto sgv = c.matrices(s_g, "s_g");
    const auto fv = c.matrices(f, "f");
    check(curvkit_coarse_gram(ctx.handle, &av, &gv, &sav, &sgv, &fv, beta));
  });

  // ---- Newton-Schulz: kind 0 inverse, 1 sqrt, 2 inverse root, 3 polar ----
  m.def("newton_schulz",
        [](Context& ctx, int kind, const std::vector<Array>& a, const std::vector<Array>& x,
           const std::vector<Array>& x2, int p, const Array& info, const OptArray& iterations,
           const OptArray& residual, int stop, int max_iterations, double tolerance, double epsilon,
           int compute, int schedule, double qa, double qb, double qc, int cubic_iterations) {
          Call c{"newton_schulz", ctx};
          const auto av = c.group(a, "a");
          const std::size_t n = total(av);
          const auto xv = x.empty() ? std::vector<curvkit_matrices>(av.size(), c.optional({}, ""))
                                    : c.group(x, "x");
          const auto x2v = x2.empty() ? std::vector<curvkit_matrices>(av.size(), c.optional({}, ""))
                                      : c.group(x2, "inv_sqrt");
          int32_t* it = nullptr;
          if (iterations) it = c.out_ints<int32_t>(*iterations, "iterations", n);
          void* res = c.out_values(residual, "residual", n);
          int32_t* inf = c.out_ints<int32_t>(info, "info", n);
          const auto o = ns_options(stop, max_iterations, tolerance, epsilon, compute);
          const int64_t groups = static_cast<int64_t>(av.size());
          curvkit_status s = CURVKIT_OK;
          if (kind == 0)
            s = curvkit_newton_schulz_inverse(ctx.handle, groups, av.data(), xv.data(), inf, it,
                                              res, &o);
          else if (kind == 1)
            s = curvkit_newton_schulz_sqrt(ctx.handle, groups, av.data(), xv.data(), x2v.data(),
                                           inf, it, res, &o);
          else if (kind == 2)
            s = curvkit_newton_schulz_inverse_root(ctx.handle, groups, av.data(), p, xv.data(), inf,
                                                   it, res, &o);
          else {
            const curvkit_polar_options po{static_cast<curvkit_polar_schedule>(schedule), qa, qb,
                                           qc, cubic_iterations};
            s = curvkit_newton_schulz_polar(ctx.handle, groups, av.data(), xv.data(), inf, it, res,
                                            &o, &po);
          }
          check(s);
        });

  // ---- optimizers ----
  nb::class_<Optimizer>(m, "Optimizer")
      .def(nb::init<const std::string&, const std::string&, double, int>())
      .def("init",
           [](Optimizer& o, Context& ctx, const std::vector<nb::dict>& layers) {
             layers_call("optimizer_init", curvkit_optimizer_init, ctx, o, layers);
           })
      .def("step",
           [](Optimizer& o, Context& ctx, const std::vector<nb::dict>& layers) {
             layers_call("optimizer_step", curvkit_optimizer_step, ctx, o, layers);
           })
      .def("finish_step",
           [](Optimizer& o, Context& ctx, const std::vector<nb::dict>& layers) {
             layers_call("optimizer_finish_step", curvkit_optimizer_finish_step, ctx, o, layers);
           })
      .def("needs",
           [](Optimizer& o) {
             curvkit_needs n;
             check(curvkit_optimizer_needs(o.handle, &n));
             nb::dict d;
             d["a"] = n.a != 0;
             d["g"] = n.g != 0;
             d["g_sampled"] = n.g_sampled != 0;
             d["grad_sampled"] = n.grad_sampled != 0;
             d["z"] = n.z != 0;
             d["losses"] = n.losses != 0;
             d["cotangents"] = n.cotangents;
             d["second_pass"] = static_cast<int>(n.second_pass);
             return d;
           })
      .def_prop_rw(
          "lr", [](Optimizer& o) { return curvkit_optimizer_learning_rate(o.handle); },
          [](Optimizer& o, double lr) { check(curvkit_optimizer_set_learning_rate(o.handle, lr)); })
      .def_prop_ro("iteration", [](Optimizer& o) { return curvkit_optimizer_iteration(o.handle); })
      .def("unhealthy", [](Optimizer& o, Context& ctx) {
        int64_t n = 0;
        check(curvkit_optimizer_unhealthy(ctx.handle, o.handle, &n));
        return n;
      });
}
