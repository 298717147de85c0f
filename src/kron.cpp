// Public entry points of the Kronecker family (gemm.hpp and kron.hpp): validate every argument
// once, then dispatch to the backend the Context names.  mode_product_chain is planned here
// (order of the modes, intermediates in the Context workspace) on top of the backends'
// mode_product.
#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "checks.hpp"
#include "kron_backends.hpp"

namespace curvkit {
namespace {

using detail::check_disjoint;
using detail::check_info;
using detail::check_shape;
using detail::check_view;
using detail::check_workspace;
using detail::view_name;

std::string str(index_t x) {
  return std::to_string(x);
}

bool valid(Op op) {
  return op == Op::none || op == Op::trans;
}
bool valid(Fill fill) {
  return fill == Fill::lower || fill == Fill::full;
}

// Rows and cols of op(X).
template <class T>
index_t op_rows(const MatrixBatch<T>& x, Op op) {
  return op == Op::none ? x.rows : x.cols;
}
template <class T>
index_t op_cols(const MatrixBatch<T>& x, Op op) {
  return op == Op::none ? x.cols : x.rows;
}

// An input whose batch is `batch` or 1 (broadcast), with op(x) of the given shape.
template <class T>
Status check_operand(const char* op, const MatrixBatch<T>& x, const std::string& name, Op o,
                     index_t batch, index_t rows, index_t cols) {
  if (auto e = check_view(x, name); !e.empty()) return Status::invalid_argument(op, e);
  if (x.batch != batch && x.batch != 1)
    return Status::invalid_argument(op, name + ".batch (" + str(x.batch) + ") must be " +
                                            str(batch) + " or 1 (one matrix for all)");
  if (op_rows(x, o) != rows || op_cols(x, o) != cols)
    return Status::invalid_argument(
        op, std::string(o == Op::none ? "" : "the transpose of ") + name + " is " +
                str(op_rows(x, o)) + " x " + str(op_cols(x, o)) + " but must be " + str(rows) +
                " x " + str(cols));
  return Status::success();
}

template <class T>
Status check_tensor(const char* op, const TensorBatch<T>& x, const char* name) {
  const std::string n(name);
  if (x.order < 1 || x.order > kMaxTensorOrder)
    return Status::invalid_argument(op, n + ".order (" + std::to_string(x.order) +
                                            ") must be 1 to " + std::to_string(kMaxTensorOrder));
  if (x.batch < 0) return Status::invalid_argument(op, n + ".batch must be >= 0");
  for (int k = 0; k < x.order; ++k)
    if (x.dims[static_cast<std::size_t>(k)] < 0)
      return Status::invalid_argument(op, n + ".dims[" + std::to_string(k) + "] must be >= 0");
  if (x.batch > 1 && x.stride < x.size())
    return Status::invalid_argument(op, n + ".stride (" + str(x.stride) +
                                            ") must be >= the tensor size (" + str(x.size()) + ")");
  if (x.data == nullptr && x.extent() > 0)
    return Status::invalid_argument(op, n + ".data is null but the view is not empty");
  return Status::success();
}

// y's batch, order and dims: x's, with dims[k] = out_dims[k].
template <class T, class U>
Status check_result_tensor(const char* op, const TensorBatch<T>& y, const TensorBatch<U>& x,
                           const std::array<index_t, kMaxTensorOrder>& dims) {
  CURVKIT_RETURN_IF_ERROR(check_tensor(op, y, "y"));
  bool same = y.batch == x.batch && y.order == x.order;
  for (int k = 0; same && k < x.order; ++k) same = y.dims[static_cast<std::size_t>(k)] == dims[static_cast<std::size_t>(k)];
  if (!same) {
    std::string want = str(x.batch) + " x (";
    for (int k = 0; k < x.order; ++k) want += (k ? ", " : "") + str(dims[static_cast<std::size_t>(k)]);
    return Status::invalid_argument(op, "y must be batch x dims = " + want + ")");
  }
  return Status::success();
}

// ---- mode_product_chain's plan ----------------------------------------------------------------

struct ChainPlan {
  std::vector<int> order;      // modes in the order they are applied
  index_t intermediate = 0;    // elements of the largest intermediate tensor (one tensor)
  int buffers = 0;             // intermediates alive at once (0, 1 or 2)
};

// The order of the applied modes with the fewest flops: applying mode k to the current dims
// costs 2 d'_k prod(current dims).  Ties keep ascending mode order.
template <class T>
ChainPlan plan_chain(const TensorBatch<const T>& x, std::span<const MatrixBatch<const T>> u, Op op_u) {
  ChainPlan plan;
  std::vector<int> modes;
  for (int k = 0; k < x.order; ++k)
    if (u[static_cast<std::size_t>(k)].data != nullptr) modes.push_back(k);
  auto out_dim = [&](int k) { return op_rows(u[static_cast<std::size_t>(k)], op_u); };
  double best = std::numeric_limits<double>::infinity();
  std::vector<int> perm = modes;
  do {
    std::array<double, kMaxTensorOrder> dims{};
    for (int k = 0; k < x.order; ++k) dims[static_cast<std::size_t>(k)] = double(x.dims[static_cast<std::size_t>(k)]);
    double flops = 0;
    for (int k : perm) {
      double size = 1;
      for (int j = 0; j < x.order; ++j) size *= dims[static_cast<std::size_t>(j)];
      flops += 2.0 * double(out_dim(k)) * size;
      dims[static_cast<std::size_t>(k)] = double(out_dim(k));
    }
    if (flops < best) {
      best = flops;
      plan.order = perm;
    }
  } while (std::next_permutation(perm.begin(), perm.end()));
  std::array<index_t, kMaxTensorOrder> dims = x.dims;
  for (std::size_t s = 0; s + 1 < plan.order.size(); ++s) {
    dims[static_cast<std::size_t>(plan.order[s])] = out_dim(plan.order[s]);
    index_t size = 1;
    for (int j = 0; j < x.order; ++j) size *= dims[static_cast<std::size_t>(j)];
    plan.intermediate = std::max(plan.intermediate, size);
  }
  plan.buffers = plan.order.size() <= 1 ? 0 : (plan.order.size() == 2 ? 1 : 2);
  return plan;
}

constexpr std::size_t kAlign = 256;
std::size_t round_up(std::size_t bytes) {
  return (bytes + kAlign - 1) / kAlign * kAlign;
}

template <class T>
std::size_t chain_buffer_bytes(const TensorBatch<const T>& x, const ChainPlan& plan) {
  return round_up(sizeof(T) * static_cast<std::size_t>(x.batch * plan.intermediate));
}

template <class T>
Status check_chain(const char* op, TensorBatch<const T> x, std::span<const MatrixBatch<const T>> u,
                   Op op_u) {
  CURVKIT_RETURN_IF_ERROR(check_tensor(op, x, "x"));
  if (!valid(op_u)) return Status::invalid_argument(op, "op_u is not an Op value");
  if (u.size() != static_cast<std::size_t>(x.order))
    return Status::invalid_argument(op, "u has " + std::to_string(u.size()) +
                                            " entries but x.order is " + std::to_string(x.order));
  bool any = false;
  for (int k = 0; k < x.order; ++k) {
    const auto& uk = u[static_cast<std::size_t>(k)];
    if (uk.data == nullptr) continue;
    any = true;
    CURVKIT_RETURN_IF_ERROR(check_operand(op, uk, "u[" + std::to_string(k) + "]", op_u, x.batch,
                                          op_rows(uk, op_u), x.dims[static_cast<std::size_t>(k)]));
  }
  if (!any) return Status::invalid_argument(op, "u names no mode (every u[k].data is null)");
  return Status::success();
}

}  // namespace

// ---- GEMM / SYRK --------------------------------------------------------------------------------

template <class T>
Status gemm(const Context& ctx, Op op_a, Op op_b, T alpha, GroupedBatch<const T> a,
            GroupedBatch<const T> b, T beta, GroupedBatch<T> c) {
  const char* op = "gemm";
  if (!valid(op_a) || !valid(op_b)) return Status::invalid_argument(op, "op_a / op_b is not an Op value");
  if (a.size() != c.size() || b.size() != c.size())
    return Status::invalid_argument(op, "a, b and c must have the same number of groups (" +
                                            std::to_string(a.size()) + ", " +
                                            std::to_string(b.size()) + ", " +
                                            std::to_string(c.size()) + ")");
  const bool grouped = c.size() != 1;
  for (std::size_t g = 0; g < c.size(); ++g) {
    const std::string an = view_name("a", grouped, g), bn = view_name("b", grouped, g),
                      cn = view_name("c", grouped, g);
    if (auto e = check_view(c[g], cn); !e.empty()) return Status::invalid_argument(op, e);
    if (auto e = check_view(a[g], an); !e.empty()) return Status::invalid_argument(op, e);
    const index_t k = op_cols(a[g], op_a);
    CURVKIT_RETURN_IF_ERROR(check_operand(op, a[g], an, op_a, c[g].batch, c[g].rows, k));
    CURVKIT_RETURN_IF_ERROR(check_operand(op, b[g], bn, op_b, c[g].batch, k, c[g].cols));
    CURVKIT_RETURN_IF_ERROR(check_disjoint(op, c[g], cn, a[g], an));
    CURVKIT_RETURN_IF_ERROR(check_disjoint(op, c[g], cn, b[g], bn));
  }
  CURVKIT_DISPATCH(gemm<T>, ctx, op_a, op_b, alpha, a, b, beta, c)
}

template <class T>
Status gemm(const Context& ctx, Op op_a, Op op_b, T alpha, MatrixBatch<const T> a,
            MatrixBatch<const T> b, T beta, MatrixBatch<T> c) {
  return gemm<T>(ctx, op_a, op_b, alpha, GroupedBatch<const T>(&a, 1),
                 GroupedBatch<const T>(&b, 1), beta, GroupedBatch<T>(&c, 1));
}

template <class T>
Status syrk(const Context& ctx, Op op_a, T alpha, GroupedBatch<const T> a, T beta, GroupedBatch<T> c,
            Fill fill) {
  const char* op = "syrk";
  if (!valid(op_a)) return Status::invalid_argument(op, "op_a is not an Op value");
  if (!valid(fill)) return Status::invalid_argument(op, "fill is not a Fill value");
  if (a.size() != c.size())
    return Status::invalid_argument(op, "a and c must have the same number of groups");
  const bool grouped = c.size() != 1;
  for (std::size_t g = 0; g < c.size(); ++g) {
    const std::string an = view_name("a", grouped, g), cn = view_name("c", grouped, g);
    if (auto e = check_view(c[g], cn); !e.empty()) return Status::invalid_argument(op, e);
    if (c[g].rows != c[g].cols)
      return Status::invalid_argument(op, cn + " must be square (" + str(c[g].rows) + " x " +
                                              str(c[g].cols) + ")");
    if (auto e = check_view(a[g], an); !e.empty()) return Status::invalid_argument(op, e);
    CURVKIT_RETURN_IF_ERROR(
        check_operand(op, a[g], an, op_a, c[g].batch, c[g].rows, op_cols(a[g], op_a)));
    CURVKIT_RETURN_IF_ERROR(check_disjoint(op, c[g], cn, a[g], an));
  }
  CURVKIT_DISPATCH(syrk<T>, ctx, op_a, alpha, a, beta, c, fill)
}

template <class T>
Status syrk(const Context& ctx, Op op_a, T alpha, MatrixBatch<const T> a, T beta, MatrixBatch<T> c,
            Fill fill) {
  return syrk<T>(ctx, op_a, alpha, GroupedBatch<const T>(&a, 1), beta, GroupedBatch<T>(&c, 1),
                 fill);
}

// ---- mode products ----------------------------------------------------------------------------

template <class T>
Status mode_product(const Context& ctx, TensorBatch<const T> x, int mode, MatrixBatch<const T> u,
                    TensorBatch<T> y, Op op_u) {
  const char* op = "mode_product";
  CURVKIT_RETURN_IF_ERROR(check_tensor(op, x, "x"));
  if (!valid(op_u)) return Status::invalid_argument(op, "op_u is not an Op value");
  if (mode < 0 || mode >= x.order)
    return Status::invalid_argument(op, "mode (" + std::to_string(mode) + ") must be in [0, " +
                                            std::to_string(x.order) + ") (x.order)");
  const auto m = static_cast<std::size_t>(mode);
  if (auto e = check_view(u, "u"); !e.empty()) return Status::invalid_argument(op, e);
  CURVKIT_RETURN_IF_ERROR(check_operand(op, u, "u", op_u, x.batch, op_rows(u, op_u), x.dims[m]));
  std::array<index_t, kMaxTensorOrder> dims = x.dims;
  dims[m] = op_rows(u, op_u);
  CURVKIT_RETURN_IF_ERROR(check_result_tensor(op, y, x, dims));
  CURVKIT_RETURN_IF_ERROR(check_disjoint(op, y, "y", x, "x"));
  CURVKIT_RETURN_IF_ERROR(check_disjoint(op, y, "y", u, "u"));
  CURVKIT_DISPATCH(mode_product<T>, ctx, x, mode, u, y, op_u)
}

template <class T>
std::size_t mode_product_chain_workspace_size(const Context& ctx, TensorBatch<const T> x,
                                              std::span<const MatrixBatch<const T>> u, Op op_u) {
  if (ctx.backend() == Backend::reference) return 0;
  if (!check_chain("mode_product_chain", x, u, op_u).ok()) return 0;
  const ChainPlan plan = plan_chain(x, u, op_u);
  return static_cast<std::size_t>(plan.buffers) * chain_buffer_bytes(x, plan);
}

template <class T>
Status mode_product_chain(const Context& ctx, TensorBatch<const T> x,
                          std::span<const MatrixBatch<const T>> u, TensorBatch<T> y, Op op_u) {
  const char* op = "mode_product_chain";
  CURVKIT_RETURN_IF_ERROR(check_chain(op, x, u, op_u));
  std::array<index_t, kMaxTensorOrder> dims = x.dims;
  for (int k = 0; k < x.order; ++k)
    if (u[static_cast<std::size_t>(k)].data != nullptr)
      dims[static_cast<std::size_t>(k)] = op_rows(u[static_cast<std::size_t>(k)], op_u);
  CURVKIT_RETURN_IF_ERROR(check_result_tensor(op, y, x, dims));
  CURVKIT_RETURN_IF_ERROR(check_disjoint(op, y, "y", x, "x"));
  for (int k = 0; k < x.order; ++k)
    CURVKIT_RETURN_IF_ERROR(check_disjoint(op, y, "y", u[static_cast<std::size_t>(k)],
                                           "u[" + std::to_string(k) + "]"));
  if (ctx.backend() == Backend::reference)
    return reference::mode_product_chain<T>(ctx, x, u, y, op_u);

  const ChainPlan plan = plan_chain(x, u, op_u);
  const std::size_t buffer = chain_buffer_bytes(x, plan);
  CURVKIT_RETURN_IF_ERROR(check_workspace(op, ctx, plan.buffers * buffer));
  if (plan.buffers > 0) {  // y must not be one of the intermediates
    const Workspace& w = ctx.workspace();
    const MatrixBatch<const char> ws{static_cast<const char*>(w.data), 1, 1,
                                     static_cast<index_t>(plan.buffers * buffer),
                                     static_cast<index_t>(plan.buffers * buffer), 0};
    const MatrixBatch<const char> yb{reinterpret_cast<const char*>(y.data), 1, 1,
                                     static_cast<index_t>(sizeof(T)) * y.extent(),
                                     static_cast<index_t>(sizeof(T)) * y.extent(), 0};
    if (detail::overlaps(ws, yb))
      return Status::invalid_argument(op, "y overlaps the Context workspace");
  }
  // Step s reads the previous result and writes buffer s % 2, or y at the last step.
  TensorBatch<const T> cur = x;
  for (std::size_t s = 0; s < plan.order.size(); ++s) {
    const int k = plan.order[s];
    TensorBatch<T> next;
    if (s + 1 == plan.order.size()) {
      next = y;
    } else {
      next.data = reinterpret_cast<T*>(static_cast<char*>(ctx.workspace().data) + (s % 2) * buffer);
      next.batch = x.batch;
      next.order = x.order;
      next.dims = cur.dims;
      next.dims[static_cast<std::size_t>(k)] = op_rows(u[static_cast<std::size_t>(k)], op_u);
      next.stride = next.size();
    }
    Status st = Status::success();
    switch (ctx.backend()) {
      case Backend::kokkos:
        st = kokkos::mode_product<T>(ctx, cur, k, u[static_cast<std::size_t>(k)], next, op_u);
        break;
      case Backend::cuda:
        st = cuda::mode_product<T>(ctx, cur, k, u[static_cast<std::size_t>(k)], next, op_u);
        break;
      default:
        return Status::invalid_argument(op, "ctx.backend() is not a Backend value");
    }
    CURVKIT_RETURN_IF_ERROR(st);
    cur = next;
  }
  return Status::success();
}

// ---- kron_apply ---------------------------------------------------------------------------------

template <class T>
std::size_t kron_apply_workspace_size(const Context& ctx, GroupedBatch<const T> grad,
                                      const KronApplyOptions& o) {
  return ctx.backend() == Backend::cuda ? cuda::kron_apply_workspace_size<T>(ctx, grad, o) : 0;
}

template <class T>
Status kron_apply(const Context& ctx, GroupedBatch<const T> g_factor, GroupedBatch<const T> a_factor,
                  GroupedBatch<const T> grad, GroupedBatch<T> out, const KronApplyOptions& o) {
  const char* op = "kron_apply";
  if (o.form != KronFactor::inverse && o.form != KronFactor::cholesky)
    return Status::invalid_argument(op, "options.form is not a KronFactor value");
  if (!std::isfinite(o.alpha)) return Status::invalid_argument(op, "options.alpha must be finite");
  if (g_factor.size() != grad.size() || a_factor.size() != grad.size() ||
      out.size() != grad.size())
    return Status::invalid_argument(op, "g_factor, a_factor, grad and out must have the same "
                                        "number of groups");
  const bool grouped = grad.size() != 1;
  for (std::size_t l = 0; l < grad.size(); ++l) {
    const std::string xn = view_name("grad", grouped, l), on = view_name("out", grouped, l),
                      gn = view_name("g_factor", grouped, l), an = view_name("a_factor", grouped, l);
    if (auto e = check_view(grad[l], xn); !e.empty()) return Status::invalid_argument(op, e);
    const index_t batch = grad[l].batch, d_out = grad[l].rows, d_in = grad[l].cols;
    CURVKIT_RETURN_IF_ERROR(check_shape(op, out[l], on, batch, d_out, d_in));
    if (auto e = check_view(g_factor[l], gn); !e.empty()) return Status::invalid_argument(op, e);
    CURVKIT_RETURN_IF_ERROR(check_operand(op, g_factor[l], gn, Op::none, batch, d_out, d_out));
    if (auto e = check_view(a_factor[l], an); !e.empty()) return Status::invalid_argument(op, e);
    CURVKIT_RETURN_IF_ERROR(check_operand(op, a_factor[l], an, Op::none, batch, d_in, d_in));
    CURVKIT_RETURN_IF_ERROR(check_disjoint(op, out[l], on, grad[l], xn));
    CURVKIT_RETURN_IF_ERROR(check_disjoint(op, out[l], on, g_factor[l], gn));
    CURVKIT_RETURN_IF_ERROR(check_disjoint(op, out[l], on, a_factor[l], an));
  }
  CURVKIT_RETURN_IF_ERROR(check_workspace(op, ctx, kron_apply_workspace_size<T>(ctx, grad, o)));
  CURVKIT_DISPATCH(kron_apply<T>, ctx, g_factor, a_factor, grad, out, o)
}

template <class T>
Status kron_apply(const Context& ctx, MatrixBatch<const T> g_factor, MatrixBatch<const T> a_factor,
                  MatrixBatch<const T> grad, MatrixBatch<T> out, const KronApplyOptions& o) {
  return kron_apply<T>(ctx, GroupedBatch<const T>(&g_factor, 1), GroupedBatch<const T>(&a_factor, 1),
                       GroupedBatch<const T>(&grad, 1), GroupedBatch<T>(&out, 1), o);
}

// ---- mode Grams and TNT normalisation ---------------------------------------------------------

template <class T>
Status mode_gram(const Context& ctx, TensorBatch<const T> x, std::span<const MatrixBatch<T>> grams,
                 const ModeGramOptions& o) {
  const char* op = "mode_gram";
  CURVKIT_RETURN_IF_ERROR(check_tensor(op, x, "x"));
  if (!(o.beta >= 0 && o.beta < 1)) return Status::invalid_argument(op, "options.beta must be in [0, 1)");
  if (!std::isfinite(o.scale)) return Status::invalid_argument(op, "options.scale must be finite");
  if (!valid(o.fill)) return Status::invalid_argument(op, "options.fill is not a Fill value");
  if (grams.size() != static_cast<std::size_t>(x.order))
    return Status::invalid_argument(op, "grams has " + std::to_string(grams.size()) +
                                            " entries but x.order is " + std::to_string(x.order));
  for (int k = 0; k < x.order; ++k) {
    const auto& s = grams[static_cast<std::size_t>(k)];
    if (s.data == nullptr) continue;
    const std::string sn = "grams[" + std::to_string(k) + "]";
    const index_t d = x.dims[static_cast<std::size_t>(k)];
    CURVKIT_RETURN_IF_ERROR(check_shape(op, s, sn, x.batch, d, d));
    CURVKIT_RETURN_IF_ERROR(check_disjoint(op, s, sn, x, "x"));
    for (int j = 0; j < k; ++j)
      if (grams[static_cast<std::size_t>(j)].data != nullptr)
        CURVKIT_RETURN_IF_ERROR(check_disjoint(op, s, sn, grams[static_cast<std::size_t>(j)],
                                               "grams[" + std::to_string(j) + "]"));
  }
  CURVKIT_DISPATCH(mode_gram<T>, ctx, x, grams, o)
}

template <class T>
Status tnt_normalize(const Context& ctx, std::span<const MatrixBatch<T>> grams, int* info) {
  const char* op = "tnt_normalize";
  if (grams.empty()) return Status::invalid_argument(op, "grams is empty (one entry per mode)");
  if (grams.size() > static_cast<std::size_t>(kMaxTensorOrder))
    return Status::invalid_argument(op, "grams has more than " + std::to_string(kMaxTensorOrder) +
                                            " entries");
  const index_t batch = grams[0].batch;
  for (std::size_t i = 0; i < grams.size(); ++i) {
    const std::string sn = "grams[" + std::to_string(i) + "]";
    const auto& s = grams[i];
    CURVKIT_RETURN_IF_ERROR(check_shape(op, s, sn, batch, s.rows, s.rows));
    for (std::size_t j = 0; j < i; ++j)
      CURVKIT_RETURN_IF_ERROR(
          check_disjoint(op, s, sn, grams[j], "grams[" + std::to_string(j) + "]"));
  }
  CURVKIT_RETURN_IF_ERROR(check_info(op, batch, info));
  CURVKIT_DISPATCH(tnt_normalize<T>, ctx, grams, info)
}

template <class T>
Status kfac_pi_damping(const Context& ctx, GroupedBatch<const T> a_factors,
                       GroupedBatch<const T> g_factors, double lambda, T* shift_a, T* shift_g,
                       int* info) {
  const char* op = "kfac_pi_damping";
  if (!(lambda >= 0) || !std::isfinite(lambda))
    return Status::invalid_argument(op, "lambda must be finite and >= 0");
  if (a_factors.size() != g_factors.size())
    return Status::invalid_argument(op,
                                    "a_factors and g_factors must have the same number of groups");
  const bool grouped = a_factors.size() != 1;
  index_t pairs = 0;
  for (std::size_t l = 0; l < a_factors.size(); ++l) {
    const std::string an = view_name("a_factors", grouped, l),
                      gn = view_name("g_factors", grouped, l);
    const MatrixBatch<const T>&a = a_factors[l], &g = g_factors[l];
    CURVKIT_RETURN_IF_ERROR(check_shape(op, a, an, a.batch, a.rows, a.rows));
    CURVKIT_RETURN_IF_ERROR(check_shape(op, g, gn, a.batch, g.rows, g.rows));
    pairs += a.batch;
  }
  if (pairs > 0 && (shift_a == nullptr || shift_g == nullptr))
    return Status::invalid_argument(op,
                                    "shift_a and shift_g are null (they need one value per "
                                    "pair of factors)");
  CURVKIT_RETURN_IF_ERROR(check_info(op, pairs, info));
  const MatrixBatch<const T> sa{shift_a, 1, 1, pairs, pairs, pairs},
      sg{shift_g, 1, 1, pairs, pairs, pairs};
  CURVKIT_RETURN_IF_ERROR(check_disjoint(op, sa, "shift_a", sg, "shift_g"));
  for (std::size_t l = 0; l < a_factors.size(); ++l) {
    const std::string an = view_name("a_factors", grouped, l),
                      gn = view_name("g_factors", grouped, l);
    for (const auto* s : {&sa, &sg}) {
      const char* sn = s == &sa ? "shift_a" : "shift_g";
      CURVKIT_RETURN_IF_ERROR(check_disjoint(op, *s, sn, a_factors[l], an));
      CURVKIT_RETURN_IF_ERROR(check_disjoint(op, *s, sn, g_factors[l], gn));
    }
  }
  CURVKIT_DISPATCH(kfac_pi_damping<T>, ctx, a_factors, g_factors, lambda, shift_a, shift_g, info)
}

#define CURVKIT_INSTANTIATE_KRON_PUBLIC(T)                                                         \
  template Status gemm<T>(const Context&, Op, Op, T, MatrixBatch<const T>, MatrixBatch<const T>,   \
                          T, MatrixBatch<T>);                                                      \
  template Status gemm<T>(const Context&, Op, Op, T, GroupedBatch<const T>, GroupedBatch<const T>, \
                          T, GroupedBatch<T>);                                                     \
  template Status syrk<T>(const Context&, Op, T, MatrixBatch<const T>, T, MatrixBatch<T>, Fill);   \
  template Status syrk<T>(const Context&, Op, T, GroupedBatch<const T>, T, GroupedBatch<T>, Fill); \
  template Status mode_product<T>(const Context&, TensorBatch<const T>, int, MatrixBatch<const T>, \
                                  TensorBatch<T>, Op);                                             \
  template std::size_t mode_product_chain_workspace_size<T>(                                       \
      const Context&, TensorBatch<const T>, std::span<const MatrixBatch<const T>>, Op);            \
  template Status mode_product_chain<T>(const Context&, TensorBatch<const T>,                      \
                                        std::span<const MatrixBatch<const T>>, TensorBatch<T>,     \
                                        Op);                                                       \
  template std::size_t kron_apply_workspace_size<T>(const Context&, GroupedBatch<const T>,         \
                                                    const KronApplyOptions&);                      \
  template Status kron_apply<T>(const Context&, MatrixBatch<const T>, MatrixBatch<const T>,        \
                                MatrixBatch<const T>, MatrixBatch<T>, const KronApplyOptions&);    \
  template Status kron_apply<T>(const Context&, GroupedBatch<const T>, GroupedBatch<const T>,      \
                                GroupedBatch<const T>, GroupedBatch<T>, const KronApplyOptions&);  \
  template Status mode_gram<T>(const Context&, TensorBatch<const T>,                               \
                               std::span<const MatrixBatch<T>>, const ModeGramOptions&);           \
  template Status tnt_normalize<T>(const Context&, std::span<const MatrixBatch<T>>, int*);         \
  template Status kfac_pi_damping<T>(const Context&, GroupedBatch<const T>, GroupedBatch<const T>, \
                                     double, T*, T*, int*);

CURVKIT_INSTANTIATE_KRON_PUBLIC(float)
CURVKIT_INSTANTIATE_KRON_PUBLIC(double)

}  // namespace curvkit
