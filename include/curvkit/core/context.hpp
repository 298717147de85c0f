// Context: which backend runs an op, on which stream / execution-space instance, with which
// scratch memory.  Cheap to copy; it owns nothing.
#pragma once

#include <cstddef>

#include "curvkit/core/status.hpp"
#include "curvkit/core/types.hpp"

namespace curvkit {

/// Caller-owned scratch memory handed to ops that need it.  The library never allocates in a
/// hot path: an op that needs scratch has a *_workspace_size() query, and the caller passes a
/// buffer at least that large through the Context (device memory for the cuda backend, the
/// Kokkos default memory space for kokkos, host memory for reference).
struct Workspace {
  void* data = nullptr;
  std::size_t bytes = 0;
};

class Context {
 public:
  Context() = default;
  explicit Context(Backend backend) : backend_(backend) {}

  /// Reference backend (plain CPU loops; the oracle).
  static Context reference() { return Context(Backend::reference); }
  /// Kokkos backend on an instance of Kokkos::DefaultExecutionSpace.  `instance` points to a
  /// caller-owned execution-space object (see curvkit/core/kokkos_context.hpp); nullptr means
  /// the default instance.  Kokkos must be initialised (curvkit::ScopeGuard does it).
  static Context kokkos(const void* instance = nullptr) {
    Context c(Backend::kokkos);
    c.kokkos_instance_ = instance;
    return c;
  }
  /// CUDA backend on `stream` (a cudaStream_t; nullptr is the legacy default stream).
  static Context cuda(void* stream = nullptr) {
    Context c(Backend::cuda);
    c.cuda_stream_ = stream;
    return c;
  }

  Backend backend() const { return backend_; }
  void* cuda_stream() const { return cuda_stream_; }
  const void* kokkos_instance() const { return kokkos_instance_; }

  const Workspace& workspace() const { return workspace_; }
  Context& set_workspace(void* data, std::size_t bytes) {
    workspace_ = {data, bytes};
    return *this;
  }

 private:
  Backend backend_ = Backend::reference;
  void* cuda_stream_ = nullptr;
  const void* kokkos_instance_ = nullptr;
  Workspace workspace_{};
};

/// True when the backend was compiled into this build.
bool backend_available(Backend backend);

/// Waits until every op launched with `ctx` has finished (CUDA stream synchronize, Kokkos
/// instance fence; nothing for reference).  Ops never synchronise on their own: on device
/// backends their outputs (info included) are ready only after this or an equivalent fence.
Status synchronize(const Context& ctx);

/// Initialises the runtimes the compiled backends need (Kokkos, if it is not initialised yet)
/// and finalises what it initialised when destroyed.  Programs that manage Kokkos themselves
/// do not need it.
class ScopeGuard {
 public:
  ScopeGuard();
  ~ScopeGuard();
  ScopeGuard(const ScopeGuard&) = delete;
  ScopeGuard& operator=(const ScopeGuard&) = delete;

 private:
  bool finalize_kokkos_ = false;
};

}  // namespace curvkit
