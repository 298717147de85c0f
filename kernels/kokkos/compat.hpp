// The one place that knows which Kokkos version curvkit is compiled against (3.4 from
// Debian's Trilinos up to 4.x / 5.x).  Kernels use only what is declared here plus the API
// common to all of them: View-free raw pointers, RangePolicy, parallel_for, fence.
#pragma once

#include <Kokkos_Core.hpp>

#include "curvkit/core/context.hpp"

namespace curvkit::kokkos {

using ExecSpace = Kokkos::DefaultExecutionSpace;

/// True when kernels run on the host (Serial, OpenMP, Threads): per-thread stack buffers and
/// SIMD-across-matrices code paths are then the fast choice; on GPUs one thread per matrix.
inline constexpr bool kHostExecution =
    Kokkos::SpaceAccessibility<ExecSpace, Kokkos::HostSpace>::accessible;

/// The execution-space instance a Context names (the default instance if none).
inline ExecSpace exec_space(const Context& ctx) {
  if (ctx.kokkos_instance() != nullptr)
    return *static_cast<const ExecSpace*>(ctx.kokkos_instance());
  return ExecSpace();
}

/// parallel_for over [0, count) on `space`; a no-op for count 0.
template <class Functor>
void for_each_index(const ExecSpace& space, const char* label, index_t count, const Functor& f) {
  if (count <= 0) return;
  Kokkos::parallel_for(
      label, Kokkos::RangePolicy<ExecSpace, Kokkos::IndexType<index_t>>(space, 0, count), f);
}

}  // namespace curvkit::kokkos
