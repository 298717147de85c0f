// Public entry points of the Khatri–Rao family (khatri_rao.hpp): validate every argument once,
// then dispatch to the backend the Context names.  The cost model that picks a convolution
// layer's Gram path lives here.
#include <cmath>
#include <string>

#include "checks.hpp"
#include "khatri_rao_backends.hpp"

namespace curvkit {
namespace {

using detail::check_disjoint;
using detail::check_shape;
using detail::check_view;
using detail::check_workspace;
using detail::view_name;

std::string str(index_t x) {
  return std::to_string(x);
}

Status check_options(const char* op, const KhatriRaoOptions& o) {
  if (!std::isfinite(o.alpha)) return Status::invalid_argument(op, "options.alpha must be finite");
  if (!std::isfinite(o.beta)) return Status::invalid_argument(op, "options.beta must be finite");
  if (o.fill != Fill::lower && o.fill != Fill::full)
    return Status::invalid_argument(op, "options.fill is not a Fill value");
  if (o.path != GramPath::automatic && o.path != GramPath::fused && o.path != GramPath::direct)
    return Status::invalid_argument(op, "options.path is not a GramPath value");
  return Status::success();
}

// Layer l's a and g: valid views with the same batch and rows, rows a multiple of m.
template <class T>
Status check_layer(const char* op, const MatrixBatch<const T>& a, const std::string& an,
                   const MatrixBatch<const T>& g, const std::string& gn, index_t batch, index_t m) {
  if (auto e = check_view(a, an); !e.empty()) return Status::invalid_argument(op, e);
  if (auto e = check_view(g, gn); !e.empty()) return Status::invalid_argument(op, e);
  if (a.batch != batch)
    return Status::invalid_argument(op, an + ".batch (" + str(a.batch) + ") must be " + str(batch));
  if (g.batch != batch || g.rows != a.rows)
    return Status::invalid_argument(op, gn + " must have " + an + "'s batch and rows (" +
                                            str(a.batch) + " x " + str(a.rows) + ")");
  if (m == 0 ? a.rows != 0 : a.rows % m != 0)
    return Status::invalid_argument(
        op, an + ".rows (" + str(a.rows) +
                ") must be m x S, a multiple of the number of samples m (" + str(m) + ")");
  return Status::success();
}

// Groups of a, g and a per-layer-or-summed output: the same number of layers in a and g, and
// `out` with one group per layer or one group.
template <class T, class U>
Status check_groups(const char* op, GroupedBatch<const T> a, GroupedBatch<const T> g,
                    std::span<const MatrixBatch<U>> out, const char* out_name) {
  if (a.empty()) return Status::invalid_argument(op, "a has no groups (one per layer)");
  if (g.size() != a.size())
    return Status::invalid_argument(op, "a and g must have the same number of groups (" +
                                            std::to_string(a.size()) + ", " +
                                            std::to_string(g.size()) + ")");
  if (out.size() != a.size() && out.size() != 1)
    return Status::invalid_argument(op, std::string(out_name) + " must have one group per layer (" +
                                            std::to_string(a.size()) + ") or one group (" +
                                            std::to_string(out.size()) + " given)");
  return Status::success();
}

// An output must not overlap any layer's inputs.
template <class T, class U>
Status check_apart(const char* op, const MatrixBatch<U>& out, const std::string& out_name,
                   GroupedBatch<const T> a, GroupedBatch<const T> g) {
  const bool grouped = a.size() != 1;
  for (std::size_t l = 0; l < a.size(); ++l) {
    CURVKIT_RETURN_IF_ERROR(check_disjoint(op, out, out_name, a[l], view_name("a", grouped, l)));
    CURVKIT_RETURN_IF_ERROR(check_disjoint(op, out, out_name, g[l], view_name("g", grouped, l)));
  }
  return Status::success();
}

template <class T>
Status check_gram(const char* op, GroupedBatch<const T> a, GroupedBatch<const T> g,
                  GroupedBatch<T> k, const KhatriRaoOptions& o) {
  CURVKIT_RETURN_IF_ERROR(check_options(op, o));
  CURVKIT_RETURN_IF_ERROR(check_groups(op, a, g, k, "k"));
  const bool grouped = a.size() != 1, summed = k.size() == 1 && a.size() > 1;
  for (std::size_t l = 0; l < a.size(); ++l) {
    const std::size_t kl = summed ? 0 : l;
    const std::string kn = view_name("k", k.size() != 1, kl);
    if (auto e = check_view(k[kl], kn); !e.empty()) return Status::invalid_argument(op, e);
    if (k[kl].rows != k[kl].cols)
      return Status::invalid_argument(
          op, kn + " must be square (m x m), not " + str(k[kl].rows) + " x " + str(k[kl].cols));
    CURVKIT_RETURN_IF_ERROR(check_layer(op, a[l], view_name("a", grouped, l), g[l],
                                        view_name("g", grouped, l), k[kl].batch, k[kl].rows));
  }
  for (std::size_t j = 0; j < k.size(); ++j) {
    const std::string kn = view_name("k", k.size() != 1, j);
    CURVKIT_RETURN_IF_ERROR(check_apart(op, k[j], kn, a, g));
    for (std::size_t i = 0; i < j; ++i)
      CURVKIT_RETURN_IF_ERROR(check_disjoint(op, k[j], kn, k[i], view_name("k", true, i)));
  }
  return Status::success();
}

// Shared checks of jv and jtu: u per layer or one group, v one per layer and weight-shaped;
// returns the output's name in `out_is_u` order.
template <class T, class UV, class VV>
Status check_jacobian(const char* op, GroupedBatch<const T> a, GroupedBatch<const T> g,
                      std::span<const MatrixBatch<UV>> u, std::span<const MatrixBatch<VV>> v,
                      const KhatriRaoOptions& o) {
  CURVKIT_RETURN_IF_ERROR(check_options(op, o));
  CURVKIT_RETURN_IF_ERROR(check_groups(op, a, g, u, "u"));
  if (v.size() != a.size())
    return Status::invalid_argument(
        op, "v must have one group per layer (" + std::to_string(a.size()) + ")");
  const bool grouped = a.size() != 1;
  for (std::size_t l = 0; l < a.size(); ++l) {
    const std::size_t ul = u.size() == 1 ? 0 : l;
    const std::string un = view_name("u", u.size() != 1, ul), vn = view_name("v", grouped, l);
    const index_t batch = u[ul].batch, m = u[ul].rows;  // u sets the batch and m
    CURVKIT_RETURN_IF_ERROR(check_shape(op, u[ul], un, batch, m, 1));
    CURVKIT_RETURN_IF_ERROR(check_layer(op, a[l], view_name("a", grouped, l), g[l],
                                        view_name("g", grouped, l), batch, m));
    CURVKIT_RETURN_IF_ERROR(
        check_shape(op, v[l], vn, batch, g[l].cols, a[l].cols + (o.bias ? 1 : 0)));
  }
  return Status::success();
}

}  // namespace

GramPath khatri_rao_gram_path(index_t m, index_t positions, index_t d_in, index_t d_out,
                              bool bias) {
  if (positions <= 1 || d_out == 0 || d_in + (bias ? 1 : 0) == 0) return GramPath::fused;
  const double mm = double(m), s = double(positions), di = double(d_in + (bias ? 1 : 0)),
               dout = double(d_out);
  const double fused = mm * (mm + 1) * s * s * (di + dout);
  // Per-sample gradients are written once and read once by the SYRK (4-byte elements at
  // least); at ~10 flops per byte of memory traffic on current CPUs and GPUs.
  constexpr double kFlopsPerByte = 10;
  const double direct =
      2 * mm * s * di * dout + mm * (mm + 1) * di * dout + kFlopsPerByte * 2 * 4 * mm * di * dout;
  return fused <= direct ? GramPath::fused : GramPath::direct;
}

template <class T>
std::size_t khatri_rao_gram_workspace_size(const Context& ctx, GroupedBatch<const T> a,
                                           GroupedBatch<const T> g, GroupedBatch<T> k,
                                           const KhatriRaoOptions& o) {
  if (ctx.backend() == Backend::reference) return 0;
  if (!check_gram("khatri_rao_gram", a, g, k, o).ok()) return 0;
  return sizeof(T) * static_cast<std::size_t>(detail::direct_gram_workspace_elements(a, g, k, o));
}

template <class T>
Status khatri_rao_gram(const Context& ctx, GroupedBatch<const T> a, GroupedBatch<const T> g,
                       GroupedBatch<T> k, const KhatriRaoOptions& o) {
  const char* op = "khatri_rao_gram";
  CURVKIT_RETURN_IF_ERROR(check_gram(op, a, g, k, o));
  CURVKIT_RETURN_IF_ERROR(
      check_workspace(op, ctx, khatri_rao_gram_workspace_size<T>(ctx, a, g, k, o)));
  CURVKIT_DISPATCH(khatri_rao_gram<T>, ctx, a, g, k, o)
}

template <class T>
Status khatri_rao_gram(const Context& ctx, MatrixBatch<const T> a, MatrixBatch<const T> g,
                       MatrixBatch<T> k, const KhatriRaoOptions& o) {
  return khatri_rao_gram<T>(ctx, GroupedBatch<const T>(&a, 1), GroupedBatch<const T>(&g, 1),
                            GroupedBatch<T>(&k, 1), o);
}

template <class T>
Status khatri_rao_jv(const Context& ctx, GroupedBatch<const T> a, GroupedBatch<const T> g,
                     GroupedBatch<const T> v, GroupedBatch<T> u, const KhatriRaoOptions& o) {
  const char* op = "khatri_rao_jv";
  CURVKIT_RETURN_IF_ERROR(check_jacobian(op, a, g, u, v, o));
  for (std::size_t j = 0; j < u.size(); ++j) {
    const std::string un = view_name("u", u.size() != 1, j);
    CURVKIT_RETURN_IF_ERROR(check_apart(op, u[j], un, a, g));
    for (std::size_t l = 0; l < v.size(); ++l)
      CURVKIT_RETURN_IF_ERROR(check_disjoint(op, u[j], un, v[l], view_name("v", v.size() != 1, l)));
    for (std::size_t i = 0; i < j; ++i)
      CURVKIT_RETURN_IF_ERROR(check_disjoint(op, u[j], un, u[i], view_name("u", true, i)));
  }
  CURVKIT_DISPATCH(khatri_rao_jv<T>, ctx, a, g, v, u, o)
}

template <class T>
Status khatri_rao_jv(const Context& ctx, MatrixBatch<const T> a, MatrixBatch<const T> g,
                     MatrixBatch<const T> v, MatrixBatch<T> u, const KhatriRaoOptions& o) {
  return khatri_rao_jv<T>(ctx, GroupedBatch<const T>(&a, 1), GroupedBatch<const T>(&g, 1),
                          GroupedBatch<const T>(&v, 1), GroupedBatch<T>(&u, 1), o);
}

template <class T>
Status khatri_rao_jtu(const Context& ctx, GroupedBatch<const T> a, GroupedBatch<const T> g,
                      GroupedBatch<const T> u, GroupedBatch<T> v, const KhatriRaoOptions& o) {
  const char* op = "khatri_rao_jtu";
  CURVKIT_RETURN_IF_ERROR(check_jacobian(op, a, g, u, v, o));
  for (std::size_t l = 0; l < v.size(); ++l) {
    const std::string vn = view_name("v", v.size() != 1, l);
    CURVKIT_RETURN_IF_ERROR(check_apart(op, v[l], vn, a, g));
    for (std::size_t j = 0; j < u.size(); ++j)
      CURVKIT_RETURN_IF_ERROR(check_disjoint(op, v[l], vn, u[j], view_name("u", u.size() != 1, j)));
    for (std::size_t i = 0; i < l; ++i)
      CURVKIT_RETURN_IF_ERROR(check_disjoint(op, v[l], vn, v[i], view_name("v", true, i)));
  }
  CURVKIT_DISPATCH(khatri_rao_jtu<T>, ctx, a, g, u, v, o)
}

template <class T>
Status khatri_rao_jtu(const Context& ctx, MatrixBatch<const T> a, MatrixBatch<const T> g,
                      MatrixBatch<const T> u, MatrixBatch<T> v, const KhatriRaoOptions& o) {
  return khatri_rao_jtu<T>(ctx, GroupedBatch<const T>(&a, 1), GroupedBatch<const T>(&g, 1),
                           GroupedBatch<const T>(&u, 1), GroupedBatch<T>(&v, 1), o);
}

template <class T>
Status khatri_rao_layer_sums(const Context& ctx, GroupedBatch<const T> x, MatrixBatch<T> sums,
                             bool bias) {
  const char* op = "khatri_rao_layer_sums";
  if (auto e = check_view(sums, "sums"); !e.empty()) return Status::invalid_argument(op, e);
  if (sums.cols != static_cast<index_t>(x.size()))
    return Status::invalid_argument(op, "sums.cols (" + str(sums.cols) +
                                            ") must be the number of layers (" +
                                            std::to_string(x.size()) + ")");
  for (std::size_t l = 0; l < x.size(); ++l) {
    const std::string xn = view_name("x", true, l);
    CURVKIT_RETURN_IF_ERROR(check_layer(op, x[l], xn, x[l], xn, sums.batch, sums.rows));
    CURVKIT_RETURN_IF_ERROR(check_disjoint(op, sums, "sums", x[l], xn));
  }
  CURVKIT_DISPATCH(khatri_rao_layer_sums<T>, ctx, x, sums, bias)
}

template <class T>
Status coarse_gram(const Context& ctx, MatrixBatch<const T> sums_a, MatrixBatch<const T> sums_g,
                   MatrixBatch<T> s_a, MatrixBatch<T> s_g, MatrixBatch<T> f,
                   const CoarseGramOptions& o) {
  const char* op = "coarse_gram";
  if (!(o.beta >= 0 && o.beta < 1))
    return Status::invalid_argument(op, "options.beta must be in [0, 1)");
  if (auto e = check_view(sums_a, "sums_a"); !e.empty()) return Status::invalid_argument(op, e);
  const index_t batch = sums_a.batch, m = sums_a.rows, layers = sums_a.cols;
  CURVKIT_RETURN_IF_ERROR(check_shape(op, sums_g, "sums_g", batch, m, layers));
  CURVKIT_RETURN_IF_ERROR(check_shape(op, s_a, "s_a", batch, layers, layers));
  CURVKIT_RETURN_IF_ERROR(check_shape(op, s_g, "s_g", batch, layers, layers));
  CURVKIT_RETURN_IF_ERROR(check_shape(op, f, "f", batch, layers, layers));
  for (const auto& [out, name] : {std::pair{s_a, "s_a"}, {s_g, "s_g"}, {f, "f"}}) {
    CURVKIT_RETURN_IF_ERROR(check_disjoint(op, out, name, sums_a, "sums_a"));
    CURVKIT_RETURN_IF_ERROR(check_disjoint(op, out, name, sums_g, "sums_g"));
  }
  CURVKIT_RETURN_IF_ERROR(check_disjoint(op, s_a, "s_a", s_g, "s_g"));
  CURVKIT_RETURN_IF_ERROR(check_disjoint(op, f, "f", s_a, "s_a"));
  CURVKIT_RETURN_IF_ERROR(check_disjoint(op, f, "f", s_g, "s_g"));
  CURVKIT_DISPATCH(coarse_gram<T>, ctx, sums_a, sums_g, s_a, s_g, f, o)
}

#define CURVKIT_INSTANTIATE_KHATRI_RAO_PUBLIC(T)                                                   \
  template std::size_t khatri_rao_gram_workspace_size<T>(const Context&, GroupedBatch<const T>,    \
                                                         GroupedBatch<const T>, GroupedBatch<T>,   \
                                                         const KhatriRaoOptions&);                 \
  template Status khatri_rao_gram<T>(const Context&, MatrixBatch<const T>, MatrixBatch<const T>,   \
                                     MatrixBatch<T>, const KhatriRaoOptions&);                     \
  template Status khatri_rao_gram<T>(const Context&, GroupedBatch<const T>, GroupedBatch<const T>, \
                                     GroupedBatch<T>, const KhatriRaoOptions&);                    \
  template Status khatri_rao_jv<T>(const Context&, MatrixBatch<const T>, MatrixBatch<const T>,     \
                                   MatrixBatch<const T>, MatrixBatch<T>, const KhatriRaoOptions&); \
  template Status khatri_rao_jv<T>(const Context&, GroupedBatch<const T>, GroupedBatch<const T>,   \
                                   GroupedBatch<const T>, GroupedBatch<T>,                         \
                                   const KhatriRaoOptions&);                                       \
  template Status khatri_rao_jtu<T>(const Context&, MatrixBatch<const T>, MatrixBatch<const T>,    \
                                    MatrixBatch<const T>, MatrixBatch<T>,                          \
                                    const KhatriRaoOptions&);                                      \
  template Status khatri_rao_jtu<T>(const Context&, GroupedBatch<const T>, GroupedBatch<const T>,  \
                                    GroupedBatch<const T>, GroupedBatch<T>,                        \
                                    const KhatriRaoOptions&);                                      \
  template Status khatri_rao_layer_sums<T>(const Context&, GroupedBatch<const T>, MatrixBatch<T>,  \
                                           bool);                                                  \
  template Status coarse_gram<T>(const Context&, MatrixBatch<const T>, MatrixBatch<const T>,       \
                                 MatrixBatch<T>, MatrixBatch<T>, MatrixBatch<T>,                   \
                                 const CoarseGramOptions&);

CURVKIT_INSTANTIATE_KHATRI_RAO_PUBLIC(float)
CURVKIT_INSTANTIATE_KHATRI_RAO_PUBLIC(double)

}  // namespace curvkit
