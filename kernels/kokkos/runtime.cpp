// Kokkos runtime hooks: initialisation for curvkit::ScopeGuard, fences for synchronize(),
// memory for curvkit/core/memory.hpp.
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

bool host_accessible() {
  return Kokkos::SpaceAccessibility<Kokkos::HostSpace, ExecSpace::memory_space>::accessible;
}

void fence(const Context& ctx) {
  exec_space(ctx).fence();
}

using MemSpace = ExecSpace::memory_space;
template <class Space>
using Bytes = Kokkos::View<char*, Space, Kokkos::MemoryTraits<Kokkos::Unmanaged>>;

Status allocate(std::size_t bytes, void** p) {
  *p = bytes == 0 ? nullptr : Kokkos::kokkos_malloc<MemSpace>("curvkit::allocate", bytes);
  return Status::success();  // Kokkos throws (or aborts) when it cannot allocate
}

void deallocate(void* p) {
  if (p != nullptr) Kokkos::kokkos_free<MemSpace>(p);
}

Status copy(const Context& ctx, void* dst, const void* src, std::size_t bytes, bool to_host) {
  if (bytes == 0) return Status::success();
  const auto from = const_cast<char*>(static_cast<const char*>(src));
  const auto to = static_cast<char*>(dst);
  exec_space(ctx).fence();  // the data an op wrote before the copy
  if (to_host)
    Kokkos::deep_copy(Bytes<Kokkos::HostSpace>(to, bytes), Bytes<MemSpace>(from, bytes));
  else
    Kokkos::deep_copy(Bytes<MemSpace>(to, bytes), Bytes<Kokkos::HostSpace>(from, bytes));
  return Status::success();
}

}  // namespace curvkit::kokkos
