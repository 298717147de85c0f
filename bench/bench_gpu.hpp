// GPU helpers of the benchmarks (CUDA builds): one stream with cuBLAS and cuSOLVER handles on it,
// and the timing loop of a GPU case (warm-up, restore and L2 flush outside the timed region,
// event timing).  Include after bench_common.hpp; link CUDA::cublas and CUDA::cusolver.
#pragma once

#if CURVKIT_HAVE_CUDA
#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <cusolverDn.h>

#include <functional>
#include <string>
#include <vector>

#include "bench_common.hpp"

namespace curvkit::bench {

// One stream (the timer's) with cuBLAS and cuSOLVER handles on it.  The ok() overloads record
// the first failure, which the case reports when it skips itself.
class Gpu {
 public:
  Gpu() {
    ready_ = timer_.ok() && cublasCreate(&blas_) == CUBLAS_STATUS_SUCCESS &&
             cublasSetStream(blas_, timer_.stream()) == CUBLAS_STATUS_SUCCESS &&
             cusolverDnCreate(&solver_) == CUSOLVER_STATUS_SUCCESS &&
             cusolverDnSetStream(solver_, timer_.stream()) == CUSOLVER_STATUS_SUCCESS;
    if (!ready_) fail("setup", "stream / cuBLAS / cuSOLVER handle creation failed");
  }
  ~Gpu() {
    if (solver_) cusolverDnDestroy(solver_);
    if (blas_) cublasDestroy(blas_);
  }
  Gpu(const Gpu&) = delete;
  Gpu& operator=(const Gpu&) = delete;

  bool ready() const { return ready_; }
  cudaStream_t stream() const { return timer_.stream(); }
  cublasHandle_t blas() const { return blas_; }
  cusolverDnHandle_t solver() const { return solver_; }
  const char* error() const { return error_.c_str(); }

  bool fail(const char* what, const std::string& why) {
    if (error_.empty()) error_ = std::string(what) + ": " + why;
    return false;
  }
  bool ok(cudaError_t e, const char* what) {
    return e == cudaSuccess || fail(what, cudaGetErrorString(e));
  }
  bool ok(cublasStatus_t e, const char* what) {
    return e == CUBLAS_STATUS_SUCCESS || fail(what, "cuBLAS status " + std::to_string(int(e)));
  }
  bool ok(cusolverStatus_t e, const char* what) {
    return e == CUSOLVER_STATUS_SUCCESS || fail(what, "cuSOLVER status " + std::to_string(int(e)));
  }
  bool ok(const Status& s, const char* what) { return s.ok() || fail(what, s.to_string()); }
  /// `all_ok` (the buffers' ok()), recording an allocation failure.
  bool allocated(bool all_ok) { return all_ok || fail("cudaMalloc", "out of device memory"); }

  /// GPU seconds of the work f() enqueues on the stream (f returns false on failure); < 0 on
  /// failure.
  template <class F>
  double time(F&& f) {
    timer_.start();
    const bool good = f();
    const double s = timer_.stop();
    if (s < 0) fail("timing", cudaGetErrorString(cudaGetLastError()));
    return good && s >= 0 ? s : -1.0;
  }

  /// Host -> device and device -> host copies in stream order (a plain cudaMemcpy from pageable
  /// memory may return before the data has landed, and the stream does not wait for the legacy
  /// one); download() waits for the data.
  /// Every byte of dev set to `byte` in stream order (0xff: an info never written reads -1).
  template <class T>
  bool fill_bytes(DeviceBuffer<T>& dev, int byte) {
    return ok(cudaMemsetAsync(dev.data(), byte, dev.bytes(), stream()), "memset");
  }
  /// dst <- src, device to device, in stream order (restoring a case's inputs).
  template <class T>
  void copy(T* dst, const T* src, std::size_t count) {
    cudaMemcpyAsync(dst, src, count * sizeof(T), cudaMemcpyDeviceToDevice, stream());
  }
  template <class T>
  bool upload(T* dev, const T* host, std::size_t count) {
    return ok(cudaMemcpyAsync(dev, host, count * sizeof(T), cudaMemcpyHostToDevice, stream()),
              "upload");
  }
  template <class T>
  bool download(T* host, const T* dev, std::size_t count) {
    return ok(cudaMemcpyAsync(host, dev, count * sizeof(T), cudaMemcpyDeviceToHost, stream()),
              "download") &&
           ok(cudaStreamSynchronize(stream()), "download");
  }

 private:
  CudaTimer timer_;
  cublasHandle_t blas_ = nullptr;
  cusolverDnHandle_t solver_ = nullptr;
  bool ready_ = false;
  std::string error_;
};

/// dev <- host (dev sized like host), false with the failure recorded.
template <class T>
bool to_device(Gpu& gpu, DeviceBuffer<T>& dev, const HostBuffer<T>& host) {
  return gpu.allocated(dev.ok()) && gpu.upload(dev.data(), host.data(), host.size());
}

/// dev <- the pointers base + i * stride, i < count (the cuBLAS / cuSOLVER batched calls'
/// argument), false with the failure recorded.
template <class T>
bool pointer_array(Gpu& gpu, DeviceBuffer<T*>& dev, T* base, index_t stride, index_t count) {
  std::vector<T*> p(count);
  for (index_t i = 0; i < count; ++i) p[i] = base + i * stride;
  return gpu.allocated(dev.ok()) && gpu.upload(dev.data(), p.data(), p.size());
}

/// `ready` (a case's set-up succeeded); otherwise the case is skipped with the recorded failure.
inline bool set_up(benchmark::State& st, const Gpu& gpu, bool ready) {
  if (!ready) st.SkipWithError(gpu.error());
  return ready;
}

// The timing loop of a GPU case: one untimed warm-up call (cuBLAS / cuSOLVER heuristics, first
// launches), then per iteration prepare() (restores what the tool overwrites) and an L2 flush
// outside the timed region, and call(), which returns the GPU seconds it measured (< 0 on
// failure).  False, with the case skipped, on failure.
inline bool device_loop(benchmark::State& st, Gpu& gpu, const std::function<void()>& prepare,
                        const std::function<double()>& call) {
  prepare();
  if (call() < 0) {
    st.SkipWithError(gpu.error());
    return false;
  }
  for (auto _ : st) {
    prepare();
    const double s = gpu.ok(flush_device_l2(gpu.stream()), "L2 flush") ? call() : -1.0;
    if (s < 0) {
      st.SkipWithError(gpu.error());
      return false;
    }
    st.SetIterationTime(s);
  }
  return true;
}

}  // namespace curvkit::bench
#endif  // CURVKIT_HAVE_CUDA
