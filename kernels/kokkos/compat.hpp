// The one place that knows which Kokkos version curvkit is compiled against (3.4 from
// Debian's Trilinos up to 4.x / 5.x).  Kernels use only what is declared here plus the API
// common to all of them: View-free raw pointers, RangePolicy, parallel_for, parallel_reduce
// (sum and Kokkos::Max), fence.
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

/// Sum over i in [0, count) of f(i) (a double) on `space`; blocks until the value is on the host.
template <class F>
struct SumCall {
  F f;
  KOKKOS_INLINE_FUNCTION void operator()(index_t i, double& s) const { s += f(i); }
};
template <class F>
double reduce_sum(const ExecSpace& space, const char* label, index_t count, const F& f) {
  double s = 0;
  if (count <= 0) return s;
  Kokkos::parallel_reduce(
      label, Kokkos::RangePolicy<ExecSpace, Kokkos::IndexType<index_t>>(space, 0, count),
      SumCall<F>{f}, s);
  return s;
}

/// Largest f(i) over i in [0, count) (0 for count 0), like reduce_sum.
template <class F>
struct MaxCall {
  F f;
  KOKKOS_INLINE_FUNCTION void operator()(index_t i, double& m) const {
    const double v = f(i);
    if (v > m) m = v;
  }
};
template <class F>
double reduce_max(const ExecSpace& space, const char* label, index_t count, const F& f) {
  double m = 0;
  if (count <= 0) return m;
  Kokkos::parallel_reduce(
      label, Kokkos::RangePolicy<ExecSpace, Kokkos::IndexType<index_t>>(space, 0, count),
      MaxCall<F>{f}, Kokkos::Max<double>(m));
  return m;
}

/// Calls f(i, scratch) for i in [0, count) on `space`, each call with its own `bytes` of
/// scratch memory (Kokkos team scratch, one single-thread team per index: Kokkos owns and
/// reuses that memory, so no workspace is needed from the caller).  Level 0 (fast, small on
/// GPUs) when it fits 32 KB, else level 1.
template <class F>
struct ScratchCall {
  using Member = typename Kokkos::TeamPolicy<ExecSpace>::member_type;
  F f;
  std::size_t bytes;
  int level;
  index_t offset;
  KOKKOS_INLINE_FUNCTION void operator()(const Member& m) const {
    f(offset + m.league_rank(), m.team_scratch(level).get_shmem(bytes));
  }
};

template <class F>
void for_each_with_scratch(const ExecSpace& space, const char* label, index_t count,
                           std::size_t bytes, const F& f) {
  const int level = bytes <= 32 * 1024 ? 0 : 1;
  constexpr index_t kMaxLeague = 1 << 30;  // league sizes are int
  for (index_t first = 0; first < count; first += kMaxLeague) {
    const int league = int(count - first < kMaxLeague ? count - first : kMaxLeague);
    Kokkos::TeamPolicy<ExecSpace> policy(space, league, 1);
    policy.set_scratch_size(level, Kokkos::PerTeam(bytes));
    Kokkos::parallel_for(label, policy, ScratchCall<F>{f, bytes, level, first});
  }
}

}  // namespace curvkit::kokkos
