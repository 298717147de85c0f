// C ABI, library part: errors, versions, runtime initialisation, contexts and memory.
#include <memory>
#include <mutex>
#include <new>
#include <string>

#include "c_api_internal.hpp"
#include "curvkit/core/memory.hpp"
#include "curvkit/version.hpp"
#include "runtime_backends.hpp"

namespace curvkit::capi {
namespace {

thread_local std::string last_error;

// Kokkos initialised by this layer (curvkit_initialize or the first kokkos context), finalised
// by curvkit_finalize.
std::mutex runtime_mutex;
bool kokkos_initialized_here = false;

}  // namespace

curvkit_status report(const Status& status) {
  if (status.ok()) return CURVKIT_OK;
  last_error = status.to_string();
  return static_cast<curvkit_status>(status.code());
}

curvkit_status report(curvkit_status code, const std::string& message) {
  last_error = std::string(curvkit_status_name(code)) + ": " + message;
  return code;
}

Context with_workspace(curvkit_context_s* h, std::size_t bytes) {
  if (bytes > h->workspace_bytes) {
    // The old buffer may still be in use by launched work.
    Status s = synchronize(h->ctx);
    if (!s.ok()) throw ArgumentError{s.message(), StatusCode::backend_error};
    deallocate(h->ctx, h->workspace);
    h->workspace = nullptr;
    h->workspace_bytes = 0;
    void* p = nullptr;
    s = allocate(h->ctx, bytes, &p);
    if (!s.ok()) throw std::bad_alloc();
    h->workspace = p;
    h->workspace_bytes = bytes;
  }
  Context c = h->ctx;
  c.set_workspace(h->workspace, h->workspace_bytes);
  return c;
}

namespace {

bool initialize_runtimes() {
  std::lock_guard<std::mutex> lock(runtime_mutex);
  if (kokkos::compiled() && kokkos::initialize_if_needed()) kokkos_initialized_here = true;
  return true;
}

template <class F>
curvkit_status guarded(const char* op, F&& f) {
  try {
    return f();
  } catch (const std::bad_alloc&) {
    return report(CURVKIT_OUT_OF_MEMORY, std::string(op) + ": out of memory");
  } catch (const ArgumentError& e) {
    return report({e.code, e.message});
  } catch (const std::exception& e) {
    return report(CURVKIT_BACKEND_ERROR, std::string(op) + ": " + e.what());
  } catch (...) {
    return report(CURVKIT_BACKEND_ERROR, std::string(op) + ": unknown exception");
  }
}

curvkit_status null_context(const char* op) {
  return report(Status::invalid_argument(op, "ctx is NULL"));
}

}  // namespace
}  // namespace curvkit::capi

using namespace curvkit;
using capi::report;

extern "C" {

int curvkit_c_api_version(void) {
  return CURVKIT_C_API_VERSION;
}

const char* curvkit_version(void) {
  return curvkit::version();
}

int curvkit_backend_available(curvkit_backend backend) {
  switch (backend) {
    case CURVKIT_BACKEND_REFERENCE:
    case CURVKIT_BACKEND_KOKKOS:
    case CURVKIT_BACKEND_CUDA:
      return backend_available(static_cast<Backend>(backend)) ? 1 : 0;
  }
  return 0;
}

int curvkit_backend_host_memory(curvkit_backend backend) {
  if (backend == CURVKIT_BACKEND_REFERENCE) return 1;
  if (backend == CURVKIT_BACKEND_KOKKOS) return kokkos::compiled() && kokkos::host_accessible();
  return 0;
}

const char* curvkit_last_error(void) {
  return capi::last_error.c_str();
}

const char* curvkit_status_name(curvkit_status status) {
  if (status == CURVKIT_OUT_OF_MEMORY) return "out_of_memory";
  if (status < CURVKIT_OK || status > CURVKIT_OUT_OF_MEMORY) return "unknown";
  return to_string(static_cast<StatusCode>(status));
}

curvkit_status curvkit_initialize(void) {
  return capi::guarded("initialize", [] {
    capi::initialize_runtimes();
    return CURVKIT_OK;
  });
}

void curvkit_finalize(void) {
  std::lock_guard<std::mutex> lock(capi::runtime_mutex);
  if (capi::kokkos_initialized_here) kokkos::finalize();
  capi::kokkos_initialized_here = false;
}

curvkit_matrices curvkit_make_matrices(void* data, curvkit_dtype dtype, int64_t batch, int64_t rows,
                                       int64_t cols) {
  return {data, dtype, batch, rows, cols, cols, rows * cols};
}

curvkit_tensors curvkit_make_tensors(void* data, curvkit_dtype dtype, int64_t batch, int32_t order,
                                     const int64_t* dims) {
  curvkit_tensors t{data, dtype, batch, order, {0, 0, 0, 0}, 0};
  int64_t size = 1;
  for (int32_t k = 0; k < order && k < 4 && dims != nullptr; ++k) {
    t.dims[k] = dims[k];
    size *= dims[k];
  }
  t.stride = size;
  return t;
}

curvkit_status curvkit_context_create(curvkit_backend backend, void* stream, curvkit_context* out) {
  return capi::guarded("context_create", [&] {
    if (out == nullptr) return report(Status::invalid_argument("context_create", "out is NULL"));
    *out = nullptr;
    Context ctx;
    switch (backend) {
      case CURVKIT_BACKEND_REFERENCE:
        ctx = Context::reference();
        break;
      case CURVKIT_BACKEND_KOKKOS:
        if (!backend_available(Backend::kokkos))
          return report(Status::not_compiled("context_create", "kokkos"));
        capi::initialize_runtimes();
        ctx = Context::kokkos();
        break;
      case CURVKIT_BACKEND_CUDA:
        if (!backend_available(Backend::cuda))
          return report(Status::not_compiled("context_create", "cuda"));
        ctx = Context::cuda(stream);
        break;
      default:
        return report(Status::invalid_argument(
            "context_create",
            "backend " + std::to_string(static_cast<int>(backend)) + " is not a curvkit_backend"));
    }
    *out = new curvkit_context_s{ctx};
    return CURVKIT_OK;
  });
}

void curvkit_context_destroy(curvkit_context ctx) {
  if (ctx == nullptr) return;
  (void)synchronize(ctx->ctx);
  deallocate(ctx->ctx, ctx->workspace);
  delete ctx;
}

curvkit_status curvkit_synchronize(curvkit_context ctx) {
  if (ctx == nullptr) return capi::null_context("synchronize");
  return capi::guarded("synchronize", [&] { return report(synchronize(ctx->ctx)); });
}

curvkit_backend curvkit_context_backend(curvkit_context ctx) {
  return ctx == nullptr ? CURVKIT_BACKEND_REFERENCE
                        : static_cast<curvkit_backend>(ctx->ctx.backend());
}

curvkit_status curvkit_malloc(curvkit_context ctx, uint64_t bytes, void** out) {
  if (ctx == nullptr) return capi::null_context("malloc");
  if (out == nullptr) return report(Status::invalid_argument("malloc", "out is NULL"));
  return capi::guarded("malloc", [&] {
    const Status s = allocate(ctx->ctx, bytes, out);
    if (!s.ok()) return report(CURVKIT_OUT_OF_MEMORY, s.message());
    return CURVKIT_OK;
  });
}

void curvkit_free(curvkit_context ctx, void* p) {
  if (ctx != nullptr) deallocate(ctx->ctx, p);
}

curvkit_status curvkit_copy_to_backend(curvkit_context ctx, void* dst, const void* host_src,
                                       uint64_t bytes) {
  if (ctx == nullptr) return capi::null_context("copy_to_backend");
  return capi::guarded("copy_to_backend",
                       [&] { return report(copy_to_backend(ctx->ctx, dst, host_src, bytes)); });
}

curvkit_status curvkit_copy_to_host(curvkit_context ctx, void* host_dst, const void* src,
                                    uint64_t bytes) {
  if (ctx == nullptr) return capi::null_context("copy_to_host");
  return capi::guarded("copy_to_host",
                       [&] { return report(copy_to_host(ctx->ctx, host_dst, src, bytes)); });
}

}  // extern "C"
