// Core: names, messages, backend availability, runtime guard.
#include <string>

#include "curvkit/core/context.hpp"
#include "curvkit/core/info.hpp"
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

ScopeGuard::ScopeGuard() : finalize_kokkos_(kokkos::initialize_if_needed()) {}

ScopeGuard::~ScopeGuard() {
  if (finalize_kokkos_) kokkos::finalize();
}

}  // namespace curvkit
