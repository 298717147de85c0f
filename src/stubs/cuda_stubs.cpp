// Compiled when the CUDA backend is not: every entry point answers not_compiled.
#include "runtime_backends.hpp"
#include "spd_backends.hpp"

namespace curvkit::cuda {

bool compiled() { return false; }
Status synchronize(const Context&) { return Status::not_compiled("synchronize", "cuda"); }

template <class T>
Status potrf(const Context&, GroupedBatch<T>, int*, const SpdOptions&, T*) {
  return Status::not_compiled("potrf", "cuda");
}
template <class T>
Status potrs(const Context&, GroupedBatch<const T>, GroupedBatch<T>, int*) {
  return Status::not_compiled("potrs", "cuda");
}
template <class T>
Status posv(const Context&, GroupedBatch<T>, GroupedBatch<T>, int*, const SpdOptions&, T*) {
  return Status::not_compiled("posv", "cuda");
}
template <class T>
Status potri(const Context&, GroupedBatch<T>, int*, const SpdOptions&, T*) {
  return Status::not_compiled("potri", "cuda");
}

}  // namespace curvkit::cuda

CURVKIT_INSTANTIATE_SPD_BACKEND(cuda, float)
CURVKIT_INSTANTIATE_SPD_BACKEND(cuda, double)
