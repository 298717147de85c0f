// Internal: argument checks shared by the families' public entry points (src/<family>.cpp).
// Each returns an empty string / Status::success() when the argument is fine, else a message
// that names the argument.
#pragma once

#include <cstdint>
#include <string>

#include "curvkit/core/context.hpp"
#include "curvkit/core/status.hpp"
#include "curvkit/core/view.hpp"

namespace curvkit::detail {

// "a" for a uniform call, "a[3]" for group 3 of a grouped call.
inline std::string view_name(const char* name, bool grouped, std::size_t g) {
  return grouped ? std::string(name) + "[" + std::to_string(g) + "]" : std::string(name);
}

// Shape, leading dimension, stride and pointer of one view.
template <class T>
std::string check_view(const MatrixBatch<T>& v, const std::string& name) {
  auto s = [](index_t x) { return std::to_string(x); };
  if (v.batch < 0) return name + ".batch (" + s(v.batch) + ") must be >= 0";
  if (v.rows < 0) return name + ".rows (" + s(v.rows) + ") must be >= 0";
  if (v.cols < 0) return name + ".cols (" + s(v.cols) + ") must be >= 0";
  if (v.ld < v.cols || v.ld < 1)
    return name + ".ld (" + s(v.ld) + ") must be >= max(1, " + name + ".cols (" + s(v.cols) + "))";
  const index_t span = v.rows == 0 ? 0 : (v.rows - 1) * v.ld + v.cols;
  if (v.batch > 1 && v.stride < span)
    return name + ".stride (" + s(v.stride) + ") must be >= (rows-1)*ld + cols (" + s(span) +
           ") so that matrices do not overlap";
  if (v.data == nullptr && v.extent() > 0) return name + ".data is null but the view is not empty";
  return {};
}

// True when the memory spans of two views (MatrixBatch or TensorBatch) intersect.
template <class X, class Y>
bool overlaps(const X& x, const Y& y) {
  if (x.extent() == 0 || y.extent() == 0) return false;
  auto x0 = reinterpret_cast<std::uintptr_t>(x.data);
  auto x1 = reinterpret_cast<std::uintptr_t>(x.data + x.extent());
  auto y0 = reinterpret_cast<std::uintptr_t>(y.data);
  auto y1 = reinterpret_cast<std::uintptr_t>(y.data + y.extent());
  return x0 < y1 && y0 < x1;
}

// A valid view of exactly batch x rows x cols.
template <class T>
Status check_shape(const char* op, const MatrixBatch<T>& v, const std::string& name, index_t batch,
                   index_t rows, index_t cols) {
  if (auto e = check_view(v, name); !e.empty()) return Status::invalid_argument(op, e);
  auto s = [](index_t x) { return std::to_string(x); };
  if (v.batch != batch || v.rows != rows || v.cols != cols)
    return Status::invalid_argument(op, name + " is " + s(v.batch) + " x " + s(v.rows) + " x " +
                                            s(v.cols) + " but must be " + s(batch) + " x " +
                                            s(rows) + " x " + s(cols) + " (batch x rows x cols)");
  return Status::success();
}

// Output `out` must not share memory with `in`.
template <class X, class Y>
Status check_disjoint(const char* op, const X& out, const std::string& out_name, const Y& in,
                      const std::string& in_name) {
  if (overlaps(out, in))
    return Status::invalid_argument(
        op, out_name + " overlaps " + in_name + " in memory (aliasing is not allowed)");
  return Status::success();
}

inline Status check_info(const char* op, index_t batch, const int* info) {
  if (info == nullptr && batch > 0)
    return Status::invalid_argument(op, "info is null (it needs one int per matrix)");
  return Status::success();
}

inline Status check_workspace(const char* op, const Context& ctx, std::size_t needed) {
  if (needed == 0) return Status::success();
  const Workspace& w = ctx.workspace();
  if (w.data == nullptr || w.bytes < needed)
    return {StatusCode::workspace_too_small,
            std::string(op) + ": the Context's workspace has " + std::to_string(w.bytes) +
                " bytes but this call needs " + std::to_string(needed) + " (see " + op +
                "_workspace_size)"};
  return Status::success();
}

}  // namespace curvkit::detail

#define CURVKIT_RETURN_IF_ERROR(expr)            \
  do {                                           \
    if (Status s_ = (expr); !s_.ok()) return s_; \
  } while (0)

// Calls backend function `op` in the namespace the Context names.
#define CURVKIT_DISPATCH(op, ctx, ...)        \
  switch ((ctx).backend()) {                  \
    case Backend::reference:                  \
      return reference::op(ctx, __VA_ARGS__); \
    case Backend::kokkos:                     \
      return kokkos::op(ctx, __VA_ARGS__);    \
    case Backend::cuda:                       \
      return cuda::op(ctx, __VA_ARGS__);      \
  }                                           \
  return Status::invalid_argument(#op, "ctx.backend() is not a Backend value");
