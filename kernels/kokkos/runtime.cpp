// Kokkos runtime hooks: initialisation for curvkit::ScopeGuard, fences for synchronize().
#include <Kokkos_Core.hpp>

#include "compat.hpp"
#include "runtime_backends.hpp"

namespace curvkit::kokkos {

bool compiled() {
  return true;
}

bool initialize_if_needed() {
  if (Kokkos::is_initialized()) return false;
  Kokkos::initialize();
  return true;
}

void finalize() {
  Kokkos::finalize();
}

void fence(const Context& ctx) {
  exec_space(ctx).fence();
}

}  // namespace curvkit::kokkos
