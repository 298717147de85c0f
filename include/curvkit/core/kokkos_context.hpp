// Builds a Context for a caller's Kokkos execution-space instance.  Include only in code that
// is itself compiled against Kokkos.
#pragma once

#include <Kokkos_Core.hpp>

#include "curvkit/core/context.hpp"

namespace curvkit {

/// The instance must outlive every op launched with the returned Context.
inline Context make_kokkos_context(const Kokkos::DefaultExecutionSpace& instance) {
  return Context::kokkos(&instance);
}

}  // namespace curvkit
