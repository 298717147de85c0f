// Whether the host may touch memory that curvkit's kokkos backend allocates (Kokkos's default
// memory space): true for Serial / OpenMP / Threads builds, false for CUDA / HIP builds, where
// the trainer's host kernels would read device pointers.  Compiled only with Kokkos.
#include <Kokkos_Core.hpp>

namespace fmnist::ops {

bool kokkos_memory_host_accessible() {
  return Kokkos::SpaceAccessibility<Kokkos::HostSpace,
                                    Kokkos::DefaultExecutionSpace::memory_space>::accessible;
}

}  // namespace fmnist::ops
