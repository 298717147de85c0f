// Compiled when the CUDA backend is not: every entry point answers not_compiled.
#include "elementwise_backends.hpp"
#include "khatri_rao_backends.hpp"
#include "kron_backends.hpp"
#include "newton_schulz_backends.hpp"
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
Status allocate(std::size_t, void** p) {
  *p = nullptr;
  return Status::not_compiled("allocate", "cuda");
}
void deallocate(void*) {}
Status copy(const Context&, void*, const void*, std::size_t, bool) {
  return Status::not_compiled("copy", "cuda");
}
}  // namespace curvkit::cuda

CURVKIT_DEFINE_SPD_STUBS(cuda)
CURVKIT_DEFINE_SM_STUBS(cuda)
CURVKIT_DEFINE_KRON_STUBS(cuda)
CURVKIT_DEFINE_KHATRI_RAO_STUBS(cuda)
CURVKIT_DEFINE_NS_STUBS(cuda)
CURVKIT_DEFINE_EW_STUBS(cuda)

namespace curvkit::cuda {
template <class T>
std::size_t woodbury_solve_workspace_size(const Context&, MatrixBatch<const T>,
                                          MatrixBatch<const T>) {
  return 0;
}
template std::size_t woodbury_solve_workspace_size<float>(const Context&, MatrixBatch<const float>,
                                                          MatrixBatch<const float>);
template std::size_t woodbury_solve_workspace_size<double>(const Context&,
                                                           MatrixBatch<const double>,
                                                           MatrixBatch<const double>);
}  // namespace curvkit::cuda

namespace curvkit::cuda {
template <class T>
std::size_t kron_apply_workspace_size(const Context&, GroupedBatch<const T>,
                                      const KronApplyOptions&) {
  return 0;
}
template std::size_t kron_apply_workspace_size<float>(const Context&, GroupedBatch<const float>,
                                                      const KronApplyOptions&);
template std::size_t kron_apply_workspace_size<double>(const Context&, GroupedBatch<const double>,
                                                       const KronApplyOptions&);
}  // namespace curvkit::cuda
