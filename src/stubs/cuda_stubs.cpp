// Compiled when the CUDA backend is not: every entry point answers not_compiled.
#include "runtime_backends.hpp"
#include "sherman_morrison_backends.hpp"
#include "spd_backends.hpp"

namespace curvkit::cuda {
bool compiled() {
  return false;
}
Status synchronize(const Context&) {
  return Status::not_compiled("synchronize", "cuda");
}
}  // namespace curvkit::cuda

CURVKIT_DEFINE_SPD_STUBS(cuda)
CURVKIT_DEFINE_SM_STUBS(cuda)
