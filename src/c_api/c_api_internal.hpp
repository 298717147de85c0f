// The C ABI's plumbing (include/curvkit/c_api.h): the context handle, the thread's last error,
// the conversion of C views to the C++ views, and run(), which turns one C call into one C++
// op: it checks the handle, dispatches on the dtype and catches everything, so that no
// exception leaves the library.
#pragma once
#include <cstddef>
#include <new>
#include <span>
#include <string>
#include <vector>

#include "curvkit/c_api.h"
#include "curvkit/core/context.hpp"
#include "curvkit/core/status.hpp"
#include "curvkit/core/tensor.hpp"
#include "curvkit/core/view.hpp"

struct curvkit_context_s {
  curvkit::Context ctx;
  void* workspace = nullptr;  // in ctx's backend memory, grown on demand
  std::size_t workspace_bytes = 0;
};

namespace curvkit::capi {

/// Thrown inside the C layer only (caught by run()) for an argument the C++ ops cannot see
/// (a NULL view pointer, a dtype that differs from the call's), or with backend_error when the
/// context's workspace could not be replaced.
struct ArgumentError {
  std::string message;
  StatusCode code = StatusCode::invalid_argument;
};

/// Records `status` as the thread's last error (when not ok) and returns its C code.
curvkit_status report(const Status& status);
/// Records "<code name>: message" as the thread's last error and returns `code`.
curvkit_status report(curvkit_status code, const std::string& message);

/// Makes ctx's workspace at least `bytes` large (waits for ctx's work before freeing a smaller
/// one) and returns the Context carrying it.
Context with_workspace(curvkit_context_s* ctx, std::size_t bytes);

inline const char* dtype_name(curvkit_dtype d) {
  return d == CURVKIT_FLOAT32 ? "float32" : d == CURVKIT_FLOAT64 ? "float64" : "unknown";
}

/// The views of one call, converted to element type T (U below is T or const T).
template <class T>
struct Args {
  const char* op;
  curvkit_dtype dtype;
  curvkit_context_s* handle;

  const Context& context() const { return handle->ctx; }
  Context context(std::size_t workspace_bytes) const {
    return with_workspace(handle, workspace_bytes);
  }

  void check_dtype(const std::string& name, curvkit_dtype d) const {
    if (d != dtype)
      throw ArgumentError{std::string(op) + ": " + name + ".dtype is " + dtype_name(d) +
                          " but the call's first view is " + dtype_name(dtype)};
  }

  /// A required view (NULL is invalid_argument naming `name`).
  template <class U = T>
  MatrixBatch<U> one(const char* name, const curvkit_matrices* m) const {
    if (m == nullptr) throw ArgumentError{std::string(op) + ": " + name + " is NULL"};
    return view<U>(name, *m);
  }
  /// An optional view: NULL, or data == NULL, is the empty view.
  template <class U = T>
  MatrixBatch<U> optional(const char* name, const curvkit_matrices* m) const {
    if (m == nullptr || m->data == nullptr) return {};
    return view<U>(name, *m);
  }
  /// `count` views (a grouped batch, or one per mode).
  template <class U = T>
  std::vector<MatrixBatch<U>> many(const char* name, std::int64_t count, const curvkit_matrices* m,
                                   bool allow_absent = false) const {
    if (count < 1)
      throw ArgumentError{std::string(op) + ": the count of " + name + " (" +
                          std::to_string(count) + ") must be >= 1"};
    if (m == nullptr) throw ArgumentError{std::string(op) + ": " + name + " is NULL"};
    std::vector<MatrixBatch<U>> out(static_cast<std::size_t>(count));
    for (std::int64_t i = 0; i < count; ++i) {
      if (allow_absent && m[i].data == nullptr) continue;
      out[i] = view<U>(std::string(name) + "[" + std::to_string(i) + "]", m[i]);
    }
    return out;
  }
  template <class U = T>
  TensorBatch<U> tensor(const char* name, const curvkit_tensors* t) const {
    if (t == nullptr) throw ArgumentError{std::string(op) + ": " + name + " is NULL"};
    check_dtype(name, t->dtype);
    if (t->order < 1 || t->order > kMaxTensorOrder)
      throw ArgumentError{std::string(op) + ": " + name + ".order (" + std::to_string(t->order) +
                          ") must be in 1..4"};
    TensorBatch<U> out{static_cast<U*>(t->data), t->batch, t->order, {}, t->stride};
    for (int k = 0; k < t->order; ++k) out.dims[k] = t->dims[k];
    return out;
  }

 private:
  template <class U>
  MatrixBatch<U> view(const std::string& name, const curvkit_matrices& m) const {
    check_dtype(name, m.dtype);
    return {static_cast<U*>(m.data), m.batch, m.rows, m.cols, m.ld, m.stride};
  }
};

template <class Body>
curvkit_status run_typed(const char* op, curvkit_context ctx, curvkit_dtype dtype, Body&& body) {
  try {
    if (ctx == nullptr) return report(Status::invalid_argument(op, "ctx is NULL"));
    switch (dtype) {
      case CURVKIT_FLOAT32:
        return report(body(Args<float>{op, dtype, ctx}));
      case CURVKIT_FLOAT64:
        return report(body(Args<double>{op, dtype, ctx}));
    }
    return report(Status::invalid_argument(
        op, "dtype " + std::to_string(static_cast<int>(dtype)) + " is not a curvkit_dtype"));
  } catch (const ArgumentError& e) {
    return report({e.code, e.message});
  } catch (const std::bad_alloc&) {
    return report(CURVKIT_OUT_OF_MEMORY, std::string(op) + ": out of memory");
  } catch (const std::exception& e) {
    return report({StatusCode::backend_error, std::string(op) + ": " + e.what()});
  } catch (...) {
    return report({StatusCode::backend_error, std::string(op) + ": unknown exception"});
  }
}

/// Runs `body(Args<T>)` with T the dtype of `first` (the call's first view).
template <class View, class Body>
curvkit_status run(const char* op, curvkit_context ctx, const char* first_name, const View* first,
                   Body&& body) {
  if (first == nullptr)
    return report(Status::invalid_argument(op, std::string(first_name) + " is NULL"));
  return run_typed(op, ctx, first->dtype, static_cast<Body&&>(body));
}

}  // namespace curvkit::capi
