// Internal: runtime hooks of the optional backends (defined in kernels/<backend>/runtime.*
// when compiled, in src/stubs/ otherwise).
#pragma once

#include "curvkit/core/context.hpp"
#include "curvkit/core/status.hpp"

namespace curvkit::kokkos {
bool compiled();
/// Initialises Kokkos if it is not initialised yet; returns true if it did.
bool initialize_if_needed();
void finalize();
/// Fences the Context's execution-space instance.
void fence(const Context& ctx);
}  // namespace curvkit::kokkos

namespace curvkit::cuda {
bool compiled();
/// cudaStreamSynchronize on the Context's stream.
Status synchronize(const Context& ctx);
}  // namespace curvkit::cuda
