// Internal helpers shared by the Kokkos and CUDA SPD backends (not by the reference, which
// stays independent of what it checks).
#pragma once

#include <limits>

#include "curvkit/device/cholesky.hpp"
#include "curvkit/spd.hpp"

namespace curvkit::detail {

/// The per-group shift ladder for matrices of order n: resolves the default start
/// (16 n eps(T)) and maps the report policy to zero retries.
template <class T>
device::ShiftLadder<T> make_ladder(const SpdOptions& o, index_t n) {
  device::ShiftLadder<T> l;
  l.lambda = static_cast<T>(o.diagonal_shift);
  l.start = o.shift_start > 0
                ? static_cast<T>(o.shift_start)
                : T(16) * static_cast<T>(n > 0 ? n : 1) * std::numeric_limits<T>::epsilon();
  l.growth = static_cast<T>(o.shift_growth);
  l.retries = o.policy == NonSpdPolicy::shift ? o.max_shift_retries : 0;
  return l;
}

}  // namespace curvkit::detail
