// Compiled when the Kokkos backend is not: every entry point answers not_compiled.
#include "elementwise_backends.hpp"
#include "khatri_rao_backends.hpp"
#include "kron_backends.hpp"
#include "newton_schulz_backends.hpp"
#include "runtime_backends.hpp"
#include "sherman_morrison_backends.hpp"
#include "spd_backends.hpp"

namespace curvkit::kokkos {
bool compiled() {
  return false;
}
bool initialize_if_needed() {
  return false;
}
void finalize() {}
void fence(const Context&) {}
}  // namespace curvkit::kokkos

CURVKIT_DEFINE_SPD_STUBS(kokkos)
CURVKIT_DEFINE_SM_STUBS(kokkos)
CURVKIT_DEFINE_KRON_STUBS(kokkos)
CURVKIT_DEFINE_KHATRI_RAO_STUBS(kokkos)
CURVKIT_DEFINE_NS_STUBS(kokkos)
CURVKIT_DEFINE_EW_STUBS(kokkos)
