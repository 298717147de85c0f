// Runtime hooks of the CUDA backend (src/runtime_backends.hpp); src/stubs/cuda_stubs.cpp
// replaces this file when the backend is not compiled.
#include <cuda_runtime.h>

#include "runtime_backends.hpp"

namespace curvkit::cuda {

bool compiled() {
  return true;
}

Status synchronize(const Context& ctx) {
  const cudaError_t e = cudaStreamSynchronize(static_cast<cudaStream_t>(ctx.cuda_stream()));
  if (e != cudaSuccess) return Status::backend_error("synchronize", cudaGetErrorString(e));
  return Status::success();
}

}  // namespace curvkit::cuda
