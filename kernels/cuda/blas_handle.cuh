// Internal: the cuBLAS handle every CUDA family source shares (one per device for the whole
// library), and cuBLAS errors as Status.
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <mutex>
#include <string>

#include "curvkit/core/status.hpp"

namespace curvkit::cuda {

inline Status blas_error(const char* op, cublasStatus_t e) {
  return Status::backend_error(
      op, "cublas status " + std::to_string(int(e)) + " (" + cublasGetStatusName(e) + ")");
}

inline constexpr int kMaxBlasDevices = 64;

struct BlasSlot {
  std::mutex mutex;
  cublasHandle_t handle = nullptr;
};

// One cuBLAS handle per device, created on first use and never destroyed (at exit the CUDA
// runtime may already be gone).  cublasSetStream changes the handle for every host thread, so a
// Blas holds the device's mutex from the stream switch until its last call is enqueued.  Host
// pointer mode, default math mode (FP32 stays FP32; a call's compute type may ask for TF32).
class Blas {
 public:
  Status open(const char* op, cudaStream_t st) {
    int dev = 0;
    if (const cudaError_t e = cudaGetDevice(&dev); e != cudaSuccess)
      return Status::backend_error(op, cudaGetErrorString(e));
    if (dev < 0 || dev >= kMaxBlasDevices)
      return Status::not_supported(op, "device " + std::to_string(dev) +
                                           " is beyond the cuda backend's cuBLAS handle table");
    static BlasSlot slots[kMaxBlasDevices];  // one table: open() is inline, so shared by all TUs
    BlasSlot& slot = slots[dev];
    lock_ = std::unique_lock<std::mutex>(slot.mutex);
    if (slot.handle == nullptr) {
      cublasHandle_t h = nullptr;
      cublasStatus_t e = cublasCreate(&h);
      if (e == CUBLAS_STATUS_SUCCESS) e = cublasSetPointerMode(h, CUBLAS_POINTER_MODE_HOST);
      if (e == CUBLAS_STATUS_SUCCESS) e = cublasSetMathMode(h, CUBLAS_DEFAULT_MATH);
      if (e != CUBLAS_STATUS_SUCCESS) {
        if (h != nullptr) (void)cublasDestroy(h);
        return blas_error(op, e);  // the next call tries again
      }
      slot.handle = h;
    }
    handle_ = slot.handle;
    if (const cublasStatus_t e = cublasSetStream(handle_, st); e != CUBLAS_STATUS_SUCCESS)
      return blas_error(op, e);
    return Status::success();
  }
  cublasHandle_t handle() const { return handle_; }

 private:
  std::unique_lock<std::mutex> lock_;
  cublasHandle_t handle_ = nullptr;
};

}  // namespace curvkit::cuda
