// Public entry points of the Newton–Schulz family (newton_schulz.hpp): validate every argument
// once, then dispatch to the backend the Context names.
#include <cmath>
#include <string>
#include <vector>

#include "checks.hpp"
#include "newton_schulz_backends.hpp"

namespace curvkit {
namespace {

using detail::check_disjoint;
using detail::check_info;
using detail::check_shape;
using detail::check_view;
using detail::check_workspace;
using detail::view_name;

template <class T>
Status check_options(const char* op, const Context& ctx, const NewtonSchulzOptions& o) {
  if (o.stop != NsStop::fixed && o.stop != NsStop::residual)
    return Status::invalid_argument(op, "options.stop is not an NsStop value");
  if (o.iterations < 1)
    return Status::invalid_argument(
        op, "options.iterations (" + std::to_string(o.iterations) + ") must be >= 1");
  if (!(o.tolerance > 0) || !std::isfinite(o.tolerance))
    return Status::invalid_argument(op, "options.tolerance must be finite and > 0");
  if (!(o.epsilon >= 0) || !std::isfinite(o.epsilon))
    return Status::invalid_argument(op, "options.epsilon must be finite and >= 0");
  if (o.compute != NsCompute::native && o.compute != NsCompute::tf32 &&
      o.compute != NsCompute::bf16)
    return Status::invalid_argument(op, "options.compute is not an NsCompute value");
  if (o.compute != NsCompute::native && (ctx.backend() != Backend::cuda || sizeof(T) != 4))
    return {StatusCode::not_supported,
            std::string(op) + ": options.compute tf32 / bf16 needs float on the cuda backend"};
  return Status::success();
}

// Inputs and one output list of the same shapes (square when `square`); outputs apart from
// every input and from each other.
template <class T>
Status check_pairs(const char* op, GroupedBatch<const T> a, GroupedBatch<T> out,
                   const char* out_name, bool square) {
  if (a.empty()) return Status::invalid_argument(op, "a has no groups");
  if (out.size() != a.size())
    return Status::invalid_argument(op, std::string(out_name) +
                                            " must have a's number of groups (" +
                                            std::to_string(a.size()) + ")");
  const bool grouped = a.size() != 1;
  for (std::size_t g = 0; g < a.size(); ++g) {
    const std::string an = view_name("a", grouped, g), on = view_name(out_name, grouped, g);
    if (auto e = check_view(a[g], an); !e.empty()) return Status::invalid_argument(op, e);
    if (square && a[g].rows != a[g].cols)
      return Status::invalid_argument(op, an + " must be square (" + std::to_string(a[g].rows) +
                                              " x " + std::to_string(a[g].cols) + ")");
    CURVKIT_RETURN_IF_ERROR(check_shape(op, out[g], on, a[g].batch, a[g].rows, a[g].cols));
    for (std::size_t h = 0; h < a.size(); ++h)
      CURVKIT_RETURN_IF_ERROR(check_disjoint(op, out[g], on, a[h], view_name("a", grouped, h)));
    for (std::size_t h = 0; h < g; ++h)
      CURVKIT_RETURN_IF_ERROR(check_disjoint(op, out[g], on, out[h], view_name(out_name, true, h)));
  }
  return Status::success();
}

template <class T>
Status check_report(const char* op, const Context& ctx, GroupedBatch<const T> a,
                    const NsReport<T>& r) {
  CURVKIT_RETURN_IF_ERROR(check_info(op, total_batch(a), r.info));
  return check_workspace(op, ctx, newton_schulz_workspace_size<T>(ctx, a));
}

}  // namespace

template <class T>
std::size_t newton_schulz_workspace_size(const Context& ctx, GroupedBatch<const T> a) {
  switch (ctx.backend()) {
    case Backend::kokkos:
      return kokkos::newton_schulz_workspace_size<T>(ctx, a);
    case Backend::cuda:
      return cuda::newton_schulz_workspace_size<T>(ctx, a);
    default:
      return 0;
  }
}

template <class T>
Status newton_schulz_inverse(const Context& ctx, GroupedBatch<const T> a, GroupedBatch<T> x,
                             NsReport<T> r, const NewtonSchulzOptions& o) {
  const char* op = "newton_schulz_inverse";
  CURVKIT_RETURN_IF_ERROR(check_options<T>(op, ctx, o));
  CURVKIT_RETURN_IF_ERROR(check_pairs(op, a, x, "x", true));
  CURVKIT_RETURN_IF_ERROR(check_report(op, ctx, a, r));
  CURVKIT_DISPATCH(newton_schulz_inverse<T>, ctx, a, x, r, o)
}

template <class T>
Status newton_schulz_sqrt(const Context& ctx, GroupedBatch<const T> a, GroupedBatch<T> sqrt,
                          GroupedBatch<T> inv_sqrt, NsReport<T> r, const NewtonSchulzOptions& o) {
  const char* op = "newton_schulz_sqrt";
  CURVKIT_RETURN_IF_ERROR(check_options<T>(op, ctx, o));
  const bool has_sqrt = !sqrt.empty() && sqrt[0].data != nullptr;
  const bool has_inv = !inv_sqrt.empty() && inv_sqrt[0].data != nullptr;
  if (!has_sqrt && !has_inv)
    return Status::invalid_argument(op, "sqrt and inv_sqrt are both empty (ask for at least one)");
  if (has_sqrt) CURVKIT_RETURN_IF_ERROR(check_pairs(op, a, sqrt, "sqrt", true));
  if (has_inv) CURVKIT_RETURN_IF_ERROR(check_pairs(op, a, inv_sqrt, "inv_sqrt", true));
  if (has_sqrt && has_inv)
    for (std::size_t g = 0; g < a.size(); ++g)
      for (std::size_t h = 0; h < a.size(); ++h)
        CURVKIT_RETURN_IF_ERROR(check_disjoint(op, sqrt[g], view_name("sqrt", a.size() != 1, g),
                                               inv_sqrt[h],
                                               view_name("inv_sqrt", a.size() != 1, h)));
  CURVKIT_RETURN_IF_ERROR(check_report(op, ctx, a, r));
  // Backends see an empty output as a list of views with data == nullptr.
  std::vector<MatrixBatch<T>> none(a.size());
  CURVKIT_DISPATCH(newton_schulz_sqrt<T>, ctx, a, has_sqrt ? sqrt : GroupedBatch<T>(none),
                   has_inv ? inv_sqrt : GroupedBatch<T>(none), r, o)
}

template <class T>
Status newton_schulz_inverse_root(const Context& ctx, GroupedBatch<const T> a, int p,
                                  GroupedBatch<T> x, NsReport<T> r, const NewtonSchulzOptions& o) {
  const char* op = "newton_schulz_inverse_root";
  CURVKIT_RETURN_IF_ERROR(check_options<T>(op, ctx, o));
  if (p < 1) return Status::invalid_argument(op, "p (" + std::to_string(p) + ") must be >= 1");
  CURVKIT_RETURN_IF_ERROR(check_pairs(op, a, x, "x", true));
  CURVKIT_RETURN_IF_ERROR(check_report(op, ctx, a, r));
  CURVKIT_DISPATCH(newton_schulz_inverse_root<T>, ctx, a, p, x, r, o)
}

template <class T>
Status newton_schulz_polar(const Context& ctx, GroupedBatch<const T> a, GroupedBatch<T> u,
                           NsReport<T> r, const NewtonSchulzOptions& o, const PolarOptions& po) {
  const char* op = "newton_schulz_polar";
  CURVKIT_RETURN_IF_ERROR(check_options<T>(op, ctx, o));
  if (o.epsilon != 0)
    return Status::invalid_argument(op,
                                    "options.epsilon must be 0 (no damping for a polar factor)");
  if (po.schedule != PolarSchedule::cubic && po.schedule != PolarSchedule::quintic &&
      po.schedule != PolarSchedule::convergent)
    return Status::invalid_argument(op, "polar.schedule is not a PolarSchedule value");
  if (!std::isfinite(po.a) || !std::isfinite(po.b) || !std::isfinite(po.c))
    return Status::invalid_argument(op, "polar.a, polar.b and polar.c must be finite");
  if (po.cubic_iterations < 0)
    return Status::invalid_argument(op, "polar.cubic_iterations must be >= 0");
  CURVKIT_RETURN_IF_ERROR(check_pairs(op, a, u, "u", false));
  CURVKIT_RETURN_IF_ERROR(check_report(op, ctx, a, r));
  CURVKIT_DISPATCH(newton_schulz_polar<T>, ctx, a, u, r, o, po)
}

// Uniform calls: a group of one.
template <class T>
Status newton_schulz_inverse(const Context& ctx, MatrixBatch<const T> a, MatrixBatch<T> x,
                             NsReport<T> r, const NewtonSchulzOptions& o) {
  return newton_schulz_inverse<T>(ctx, GroupedBatch<const T>(&a, 1), GroupedBatch<T>(&x, 1), r, o);
}
template <class T>
Status newton_schulz_sqrt(const Context& ctx, MatrixBatch<const T> a, MatrixBatch<T> sqrt,
                          MatrixBatch<T> inv_sqrt, NsReport<T> r, const NewtonSchulzOptions& o) {
  return newton_schulz_sqrt<T>(ctx, GroupedBatch<const T>(&a, 1), GroupedBatch<T>(&sqrt, 1),
                               GroupedBatch<T>(&inv_sqrt, 1), r, o);
}
template <class T>
Status newton_schulz_inverse_root(const Context& ctx, MatrixBatch<const T> a, int p,
                                  MatrixBatch<T> x, NsReport<T> r, const NewtonSchulzOptions& o) {
  return newton_schulz_inverse_root<T>(ctx, GroupedBatch<const T>(&a, 1), p, GroupedBatch<T>(&x, 1),
                                       r, o);
}
template <class T>
Status newton_schulz_polar(const Context& ctx, MatrixBatch<const T> a, MatrixBatch<T> u,
                           NsReport<T> r, const NewtonSchulzOptions& o, const PolarOptions& po) {
  return newton_schulz_polar<T>(ctx, GroupedBatch<const T>(&a, 1), GroupedBatch<T>(&u, 1), r, o,
                                po);
}

#define CURVKIT_INSTANTIATE_NS_PUBLIC(T)                                                           \
  template std::size_t newton_schulz_workspace_size<T>(const Context&, GroupedBatch<const T>);     \
  template Status newton_schulz_inverse<T>(const Context&, MatrixBatch<const T>, MatrixBatch<T>,   \
                                           NsReport<T>, const NewtonSchulzOptions&);               \
  template Status newton_schulz_inverse<T>(const Context&, GroupedBatch<const T>, GroupedBatch<T>, \
                                           NsReport<T>, const NewtonSchulzOptions&);               \
  template Status newton_schulz_sqrt<T>(const Context&, MatrixBatch<const T>, MatrixBatch<T>,      \
                                        MatrixBatch<T>, NsReport<T>, const NewtonSchulzOptions&);  \
  template Status newton_schulz_sqrt<T>(const Context&, GroupedBatch<const T>, GroupedBatch<T>,    \
                                        GroupedBatch<T>, NsReport<T>, const NewtonSchulzOptions&); \
  template Status newton_schulz_inverse_root<T>(const Context&, MatrixBatch<const T>, int,         \
                                                MatrixBatch<T>, NsReport<T>,                       \
                                                const NewtonSchulzOptions&);                       \
  template Status newton_schulz_inverse_root<T>(const Context&, GroupedBatch<const T>, int,        \
                                                GroupedBatch<T>, NsReport<T>,                      \
                                                const NewtonSchulzOptions&);                       \
  template Status newton_schulz_polar<T>(const Context&, MatrixBatch<const T>, MatrixBatch<T>,     \
                                         NsReport<T>, const NewtonSchulzOptions&,                  \
                                         const PolarOptions&);                                     \
  template Status newton_schulz_polar<T>(const Context&, GroupedBatch<const T>, GroupedBatch<T>,   \
                                         NsReport<T>, const NewtonSchulzOptions&,                  \
                                         const PolarOptions&);

CURVKIT_INSTANTIATE_NS_PUBLIC(float)
CURVKIT_INSTANTIATE_NS_PUBLIC(double)

}  // namespace curvkit
