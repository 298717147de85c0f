// Internal: runtime hooks of the optional backends (defined in kernels/<backend>/runtime.*
// when compiled, in src/stubs/ otherwise).
#pragma once

#include <cstddef>

#include "curvkit/core/context.hpp"
#include "curvkit/core/status.hpp"

namespace curvkit::kokkos {
bool compiled();
/// Initialises Kokkos if it is not initialised yet; returns true if it did.
bool initialize_if_needed();
void finalize();
/// True when the host can read the memory of Kokkos's default memory space (Serial, OpenMP).
bool host_accessible();
/// Fences the Context's execution-space instance.
void fence(const Context& ctx);
/// Memory in Kokkos's default memory space (curvkit/core/memory.hpp).
Status allocate(std::size_t bytes, void** p);
void deallocate(void* p);
Status copy(const Context& ctx, void* dst, const void* src, std::size_t bytes, bool to_host);
}  // namespace curvkit::kokkos

namespace curvkit::cuda {
bool compiled();
/// cudaStreamSynchronize on the Context's stream.
Status synchronize(const Context& ctx);
/// Device memory (curvkit/core/memory.hpp); copies on the Context's stream, then wait for it.
Status allocate(std::size_t bytes, void** p);
void deallocate(void* p);
Status copy(const Context& ctx, void* dst, const void* src, std::size_t bytes, bool to_host);
}  // namespace curvkit::cuda
