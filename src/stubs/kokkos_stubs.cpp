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
bool host_accessible() {
  return false;
}
void fence(const Context&) {}
Status allocate(std::size_t, void** p) {
  *p = nullptr;
  return Status::not_compiled("allocate", "kokkos");
}
void deallocate(void*) {}
Status copy(const Context&, void*, const void*, std::size_t, bool) {
  return Status::not_compiled("copy", "kokkos");
}
}  // namespace curvkit::kokkos

CURVKIT_DEFINE_SPD_STUBS(kokkos)
CURVKIT_DEFINE_SM_STUBS(kokkos)
CURVKIT_DEFINE_KRON_STUBS(kokkos)
CURVKIT_DEFINE_KHATRI_RAO_STUBS(kokkos)
CURVKIT_DEFINE_NS_STUBS(kokkos)
CURVKIT_DEFINE_EW_STUBS(kokkos)
