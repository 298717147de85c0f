// Public SPD entry points: validate every argument once, then dispatch to the backend the
// Context names.  Backends receive grouped batches only (a uniform batch is a group of one).
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "checks.hpp"
#include "curvkit/spd.hpp"
#include "spd_backends.hpp"

namespace curvkit {
namespace {

using detail::check_view;
using detail::overlaps;
using detail::view_name;

Status check_options(const char* op, const SpdOptions& o) {
  if (!std::isfinite(o.diagonal_shift))
    return Status::invalid_argument(op, "options.diagonal_shift must be finite");
  if (o.policy != NonSpdPolicy::report && o.policy != NonSpdPolicy::shift)
    return Status::invalid_argument(op, "options.policy is not a NonSpdPolicy value");
  if (o.policy == NonSpdPolicy::shift) {
    if (!std::isfinite(o.shift_start))
      return Status::invalid_argument(op, "options.shift_start must be finite");
    if (!(o.shift_growth > 1.0) || !std::isfinite(o.shift_growth))
      return Status::invalid_argument(op, "options.shift_growth must be finite and > 1");
    if (o.max_shift_retries < 1)
      return Status::invalid_argument(op, "options.max_shift_retries must be >= 1");
  }
  return Status::success();
}

// Square matrices (A or L) of every group.
template <class T>
Status check_square(const char* op, GroupedBatch<T> a, const char* name, bool grouped) {
  for (std::size_t g = 0; g < a.size(); ++g) {
    const std::string n = view_name(name, grouped, g);
    if (auto e = check_view(a[g], n); !e.empty()) return Status::invalid_argument(op, e);
    if (a[g].rows != a[g].cols)
      return Status::invalid_argument(op, n + " must be square (rows " + std::to_string(a[g].rows) +
                                              ", cols " + std::to_string(a[g].cols) + ")");
  }
  return Status::success();
}

// Right-hand sides of every group against their matrices.
template <class T, class U>
Status check_rhs(const char* op, GroupedBatch<T> a, GroupedBatch<U> b, bool grouped) {
  if (a.size() != b.size())
    return Status::invalid_argument(op, "a and b must have the same number of groups (" +
                                            std::to_string(a.size()) + " vs " +
                                            std::to_string(b.size()) + ")");
  for (std::size_t g = 0; g < b.size(); ++g) {
    const std::string n = view_name("b", grouped, g);
    if (auto e = check_view(b[g], n); !e.empty()) return Status::invalid_argument(op, e);
    if (b[g].batch != a[g].batch)
      return Status::invalid_argument(op, n + ".batch (" + std::to_string(b[g].batch) +
                                              ") must equal " + view_name("a", grouped, g) +
                                              ".batch (" + std::to_string(a[g].batch) + ")");
    if (b[g].rows != a[g].rows)
      return Status::invalid_argument(op, n + ".rows (" + std::to_string(b[g].rows) +
                                              ") must equal the matrix order (" +
                                              std::to_string(a[g].rows) + ")");
    for (std::size_t h = 0; h < a.size(); ++h)
      if (overlaps(a[h], b[g]))
        return Status::invalid_argument(op, n + " overlaps " + view_name("a", grouped, h) +
                                                " in memory (aliasing is not allowed)");
  }
  return Status::success();
}

// Matrices of different groups (outputs) must not overlap each other.
template <class T>
Status check_groups_disjoint(const char* op, GroupedBatch<T> a, const char* name) {
  for (std::size_t g = 0; g < a.size(); ++g)
    for (std::size_t h = g + 1; h < a.size(); ++h)
      if (overlaps(a[g], a[h]))
        return Status::invalid_argument(op, view_name(name, true, g) + " and " +
                                                view_name(name, true, h) + " overlap in memory");
  return Status::success();
}

template <class T>
Status check_info(const char* op, GroupedBatch<T> a, const int* info) {
  return detail::check_info(op, total_batch(a), info);
}

template <class T>
Status potrf_impl(const Context& ctx, GroupedBatch<T> a, int* info, const SpdOptions& o,
                  T* shift_used, bool grouped) {
  CURVKIT_RETURN_IF_ERROR(check_options("potrf", o));
  CURVKIT_RETURN_IF_ERROR(check_square("potrf", a, "a", grouped));
  CURVKIT_RETURN_IF_ERROR(check_groups_disjoint("potrf", a, "a"));
  CURVKIT_RETURN_IF_ERROR(check_info("potrf", a, info));
  CURVKIT_DISPATCH(potrf, ctx, a, info, o, shift_used)
}

template <class T>
Status potrs_impl(const Context& ctx, GroupedBatch<const T> l, GroupedBatch<T> b, int* info,
                  bool grouped) {
  CURVKIT_RETURN_IF_ERROR(check_square("potrs", l, "l", grouped));
  CURVKIT_RETURN_IF_ERROR(check_rhs("potrs", l, b, grouped));
  CURVKIT_RETURN_IF_ERROR(check_groups_disjoint("potrs", b, "b"));
  CURVKIT_RETURN_IF_ERROR(check_info("potrs", l, info));
  CURVKIT_DISPATCH(potrs, ctx, l, b, info)
}

template <class T>
Status posv_impl(const Context& ctx, GroupedBatch<T> a, GroupedBatch<T> b, int* info,
                 const SpdOptions& o, T* shift_used, bool grouped) {
  CURVKIT_RETURN_IF_ERROR(check_options("posv", o));
  CURVKIT_RETURN_IF_ERROR(check_square("posv", a, "a", grouped));
  CURVKIT_RETURN_IF_ERROR(check_rhs("posv", a, b, grouped));
  CURVKIT_RETURN_IF_ERROR(check_groups_disjoint("posv", a, "a"));
  CURVKIT_RETURN_IF_ERROR(check_groups_disjoint("posv", b, "b"));
  CURVKIT_RETURN_IF_ERROR(check_info("posv", a, info));
  CURVKIT_DISPATCH(posv, ctx, a, b, info, o, shift_used)
}

template <class T>
Status potri_impl(const Context& ctx, GroupedBatch<T> a, int* info, const SpdOptions& o,
                  T* shift_used, bool grouped) {
  CURVKIT_RETURN_IF_ERROR(check_options("potri", o));
  CURVKIT_RETURN_IF_ERROR(check_square("potri", a, "a", grouped));
  CURVKIT_RETURN_IF_ERROR(check_groups_disjoint("potri", a, "a"));
  CURVKIT_RETURN_IF_ERROR(check_info("potri", a, info));
  CURVKIT_DISPATCH(potri, ctx, a, info, o, shift_used)
}

template <class T>
GroupedBatch<T> one(const MatrixBatch<T>& v) {
  return GroupedBatch<T>(&v, 1);
}

}  // namespace

template <class T>
Status potrf(const Context& ctx, MatrixBatch<T> a, int* info, const SpdOptions& o, T* shift_used) {
  return potrf_impl<T>(ctx, one(a), info, o, shift_used, false);
}
template <class T>
Status potrf(const Context& ctx, GroupedBatch<T> a, int* info, const SpdOptions& o, T* shift_used) {
  return potrf_impl<T>(ctx, a, info, o, shift_used, true);
}
template <class T>
Status potrs(const Context& ctx, MatrixBatch<const T> l, MatrixBatch<T> b, int* info) {
  return potrs_impl<T>(ctx, one(l), one(b), info, false);
}
template <class T>
Status potrs(const Context& ctx, GroupedBatch<const T> l, GroupedBatch<T> b, int* info) {
  return potrs_impl<T>(ctx, l, b, info, true);
}
template <class T>
Status posv(const Context& ctx, MatrixBatch<T> a, MatrixBatch<T> b, int* info, const SpdOptions& o,
            T* shift_used) {
  return posv_impl<T>(ctx, one(a), one(b), info, o, shift_used, false);
}
template <class T>
Status posv(const Context& ctx, GroupedBatch<T> a, GroupedBatch<T> b, int* info,
            const SpdOptions& o, T* shift_used) {
  return posv_impl<T>(ctx, a, b, info, o, shift_used, true);
}
template <class T>
Status potri(const Context& ctx, MatrixBatch<T> a, int* info, const SpdOptions& o, T* shift_used) {
  return potri_impl<T>(ctx, one(a), info, o, shift_used, false);
}
template <class T>
Status potri(const Context& ctx, GroupedBatch<T> a, int* info, const SpdOptions& o, T* shift_used) {
  return potri_impl<T>(ctx, a, info, o, shift_used, true);
}

#define CURVKIT_INSTANTIATE_SPD_PUBLIC(T)                                                          \
  template Status potrf<T>(const Context&, MatrixBatch<T>, int*, const SpdOptions&, T*);           \
  template Status potrf<T>(const Context&, GroupedBatch<T>, int*, const SpdOptions&, T*);          \
  template Status potrs<T>(const Context&, MatrixBatch<const T>, MatrixBatch<T>, int*);            \
  template Status potrs<T>(const Context&, GroupedBatch<const T>, GroupedBatch<T>, int*);          \
  template Status posv<T>(const Context&, MatrixBatch<T>, MatrixBatch<T>, int*, const SpdOptions&, \
                          T*);                                                                     \
  template Status posv<T>(const Context&, GroupedBatch<T>, GroupedBatch<T>, int*,                  \
                          const SpdOptions&, T*);                                                  \
  template Status potri<T>(const Context&, MatrixBatch<T>, int*, const SpdOptions&, T*);           \
  template Status potri<T>(const Context&, GroupedBatch<T>, int*, const SpdOptions&, T*);

CURVKIT_INSTANTIATE_SPD_PUBLIC(float)
CURVKIT_INSTANTIATE_SPD_PUBLIC(double)

}  // namespace curvkit
