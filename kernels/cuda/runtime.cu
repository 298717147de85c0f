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

Status allocate(std::size_t bytes, void** p) {
  *p = nullptr;
  if (bytes == 0) return Status::success();
  const cudaError_t e = cudaMalloc(p, bytes);
  if (e != cudaSuccess) return Status::backend_error("allocate", cudaGetErrorString(e));
  return Status::success();
}

void deallocate(void* p) {
  if (p != nullptr) (void)cudaFree(p);
}

Status copy(const Context& ctx, void* dst, const void* src, std::size_t bytes, bool to_host) {
  if (bytes == 0) return Status::success();
  const auto st = static_cast<cudaStream_t>(ctx.cuda_stream());
  cudaError_t e = cudaMemcpyAsync(dst, src, bytes,
                                  to_host ? cudaMemcpyDeviceToHost : cudaMemcpyHostToDevice, st);
  if (e == cudaSuccess) e = cudaStreamSynchronize(st);
  if (e != cudaSuccess) return Status::backend_error("copy", cudaGetErrorString(e));
  return Status::success();
}

}  // namespace curvkit::cuda
