// Core: names, messages, backend availability, runtime guard.
#include <cstring>
#include <new>
#include <string>

#include "curvkit/core/context.hpp"
#include "curvkit/core/info.hpp"
#include "curvkit/core/memory.hpp"
#include "curvkit/core/status.hpp"
#include "curvkit/version.hpp"
#include "runtime_backends.hpp"

namespace curvkit {

const char* version() {
  return "0.1.0";
}

const char* to_string(Backend backend) {
  switch (backend) {
    case Backend::reference:
      return "reference";
    case Backend::kokkos:
      return "kokkos";
    case Backend::cuda:
      return "cuda";
  }
  return "unknown";
}

const char* to_string(StatusCode code) {
  switch (code) {
    case StatusCode::ok:
      return "ok";
    case StatusCode::invalid_argument:
      return "invalid_argument";
    case StatusCode::not_compiled:
      return "not_compiled";
    case StatusCode::not_supported:
      return "not_supported";
    case StatusCode::backend_error:
      return "backend_error";
    case StatusCode::workspace_too_small:
      return "workspace_too_small";
  }
  return "unknown";
}

std::string Status::to_string() const {
  if (ok()) return "ok";
  return std::string(curvkit::to_string(code_)) + ": " + message_;
}

std::string info::describe(int code) {
  if (code == success) return "ok";
  if (code > 0) return "leading minor " + std::to_string(code) + " is not positive definite";
  return "pivot " + std::to_string(-code) + " is NaN or Inf (non-finite input)";
}

bool backend_available(Backend backend) {
  switch (backend) {
    case Backend::reference:
      return true;
    case Backend::kokkos:
      return kokkos::compiled();
    case Backend::cuda:
      return cuda::compiled();
  }
  return false;
}

Status synchronize(const Context& ctx) {
  switch (ctx.backend()) {
    case Backend::reference:
      return Status::success();
    case Backend::kokkos:
      if (!kokkos::compiled()) return Status::not_compiled("synchronize", "kokkos");
      kokkos::fence(ctx);
      return Status::success();
    case Backend::cuda:
      return cuda::synchronize(ctx);
  }
  return Status::invalid_argument("synchronize", "ctx.backend() is not a Backend value");
}

Status allocate(const Context& ctx, std::size_t bytes, void** p) {
  *p = nullptr;
  switch (ctx.backend()) {
    case Backend::reference:
      if (bytes > 0) *p = ::operator new(bytes);
      return Status::success();
    case Backend::kokkos:
      return kokkos::allocate(bytes, p);
    case Backend::cuda:
      return cuda::allocate(bytes, p);
  }
  return Status::invalid_argument("allocate", "ctx.backend() is not a Backend value");
}

void deallocate(const Context& ctx, void* p) {
  if (p == nullptr) return;
  switch (ctx.backend()) {
    case Backend::reference:
      ::operator delete(p);
      return;
    case Backend::kokkos:
      kokkos::deallocate(p);
      return;
    case Backend::cuda:
      cuda::deallocate(p);
      return;
  }
}

namespace {
Status copy(const Context& ctx, void* dst, const void* src, std::size_t bytes, bool to_host) {
  if (bytes > 0 && (dst == nullptr || src == nullptr))
    return Status::invalid_argument(to_host ? "copy_to_host" : "copy_to_backend",
                                    "a pointer is null");
  switch (ctx.backend()) {
    case Backend::reference:
      if (bytes > 0) std::memcpy(dst, src, bytes);
      return Status::success();
    case Backend::kokkos:
      return kokkos::copy(ctx, dst, src, bytes, to_host);
    case Backend::cuda:
      return cuda::copy(ctx, dst, src, bytes, to_host);
  }
  return Status::invalid_argument("copy", "ctx.backend() is not a Backend value");
}
}  // namespace

Status copy_to_backend(const Context& ctx, void* dst, const void* host_src, std::size_t bytes) {
  return copy(ctx, dst, host_src, bytes, false);
}

Status copy_to_host(const Context& ctx, void* host_dst, const void* src, std::size_t bytes) {
  return copy(ctx, host_dst, src, bytes, true);
}

ScopeGuard::ScopeGuard() : finalize_kokkos_(kokkos::initialize_if_needed()) {}

ScopeGuard::~ScopeGuard() {
  if (finalize_kokkos_) kokkos::finalize();
}

}  // namespace curvkit
