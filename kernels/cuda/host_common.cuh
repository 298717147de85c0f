// Internal: host-side helpers every CUDA family source uses around its launches (stream,
// launch errors, shared-memory limits, device-pointer checks).
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <string>

#include "curvkit/core/context.hpp"
#include "curvkit/core/status.hpp"

namespace curvkit::cuda {

inline cudaStream_t stream_of(const Context& ctx) {
  return static_cast<cudaStream_t>(ctx.cuda_stream());
}

/// Status of a launch sequence: `e` from the calls made, else the last launch error.
inline Status finish(const char* op, cudaError_t e) {
  if (e == cudaSuccess) e = cudaGetLastError();
  return e == cudaSuccess ? Status::success() : Status::backend_error(op, cudaGetErrorString(e));
}

/// Shared memory a block may opt in to on the current device.
inline cudaError_t smem_limit(int* bytes) {
  int dev = 0;
  cudaError_t e = cudaGetDevice(&dev);
  if (e == cudaSuccess)
    e = cudaDeviceGetAttribute(bytes, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev);
  return e;
}

/// Opts `kernel` in to `bytes` of dynamic shared memory when that exceeds the default 48 KB.
template <class K>
cudaError_t allow_smem(K* kernel, std::size_t bytes) {
  if (bytes <= 48 * 1024) return cudaSuccess;
  return cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(bytes));
}

/// Every pointer the kernels dereference must be device (or managed) memory; `what` names it.
inline Status check_device_pointer(const char* op, const void* p, const std::string& what) {
  cudaPointerAttributes attr{};
  const cudaError_t e = cudaPointerGetAttributes(&attr, p);
  if (e != cudaSuccess) {
    (void)cudaGetLastError();  // the caller's argument, not a sticky error
    if (e != cudaErrorInvalidValue) return Status::backend_error(op, cudaGetErrorString(e));
  }
  if (e != cudaSuccess || (attr.type != cudaMemoryTypeDevice && attr.type != cudaMemoryTypeManaged))
    return Status::invalid_argument(op, what + " must be device memory for the cuda backend");
  return Status::success();
}

}  // namespace curvkit::cuda
