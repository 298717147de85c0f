// Compiled when the Kokkos backend is not: every entry point answers not_compiled.
#include "runtime_backends.hpp"
#include "spd_backends.hpp"

namespace curvkit::kokkos {

bool compiled() { return false; }
bool initialize_if_needed() { return false; }
void finalize() {}
void fence(const Context&) {}

template <class T>
Status potrf(const Context&, GroupedBatch<T>, int*, const SpdOptions&, T*) {
  return Status::not_compiled("potrf", "kokkos");
}
template <class T>
Status potrs(const Context&, GroupedBatch<const T>, GroupedBatch<T>, int*) {
  return Status::not_compiled("potrs", "kokkos");
}
template <class T>
Status posv(const Context&, GroupedBatch<T>, GroupedBatch<T>, int*, const SpdOptions&, T*) {
  return Status::not_compiled("posv", "kokkos");
}
template <class T>
Status potri(const Context&, GroupedBatch<T>, int*, const SpdOptions&, T*) {
  return Status::not_compiled("potri", "kokkos");
}

}  // namespace curvkit::kokkos

CURVKIT_INSTANTIATE_SPD_BACKEND(kokkos, float)
CURVKIT_INSTANTIATE_SPD_BACKEND(kokkos, double)
