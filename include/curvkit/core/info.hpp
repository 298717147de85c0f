// Per-matrix numerical outcome codes ("info"), written by the backend into caller memory
// without a host synchronisation.  One int per matrix.
#pragma once

#include <string>

#include "curvkit/core/types.hpp"

namespace curvkit::info {

/// The matrix was processed successfully.
inline constexpr int success = 0;

// Conventions, as in LAPACK for the positive codes:
//   info == 0           success
//   info == k  (k > 0)  the leading minor of order k is not positive definite: pivot k
//                       (1-based) was <= 0 (or, for potrs, the factor's diagonal entry k is <= 0)
//   info == -k (k > 0)  pivot k was NaN or +-Inf: the input holds a non-finite value that
//                       reached that pivot (every non-finite entry of the lower triangle does)
// Whenever info != 0 every output of that matrix is set to NaN, so a caller that ignores
// info cannot mistake a failure for a plausible result.

CURVKIT_HD_INLINE constexpr int not_positive(index_t pivot0) {
  return static_cast<int>(pivot0 + 1);
}
CURVKIT_HD_INLINE constexpr int non_finite(index_t pivot0) {
  return -static_cast<int>(pivot0 + 1);
}
CURVKIT_HD_INLINE constexpr bool is_not_positive(int code) {
  return code > 0;
}
CURVKIT_HD_INLINE constexpr bool is_non_finite(int code) {
  return code < 0;
}

/// "ok", "leading minor 3 is not positive definite", "pivot 2 is NaN or Inf".
std::string describe(int code);

}  // namespace curvkit::info
