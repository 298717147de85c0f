// Basic types and portability macros shared by every curvkit header.
#pragma once

#include <cstdint>

// Functions in include/curvkit/device/ are compiled for the host and, under nvcc (or a Kokkos
// CUDA build, which compiles through nvcc), for the device as well.
#if defined(__CUDACC__) || defined(__HIPCC__)
#define CURVKIT_HD __host__ __device__
#define CURVKIT_HD_INLINE __host__ __device__ __forceinline__
#else
#define CURVKIT_HD
#define CURVKIT_HD_INLINE inline
#endif

// Before a CURVKIT_HD template that is also instantiated with host-only arguments (an engine of
// host kernels): nvcc then neither warns nor emits the device side for those instantiations.
#if defined(__CUDACC__)
#define CURVKIT_HD_TEMPLATE_HOST_OK _Pragma("nv_exec_check_disable")
#else
#define CURVKIT_HD_TEMPLATE_HOST_OK
#endif

// SIMD and unroll hints for host loops (GCC/Clang; -fopenmp-simd, no OpenMP runtime).  Empty
// under nvcc and for other compilers.
#if defined(__GNUC__) && !defined(__CUDACC__) && !defined(__HIPCC__)
#define CURVKIT_PRAGMA(x) _Pragma(#x)
#define CURVKIT_SIMD CURVKIT_PRAGMA(omp simd)
#define CURVKIT_SIMD_REDUCTION(var) CURVKIT_PRAGMA(omp simd reduction(+ : var))
#define CURVKIT_SIMD_REDUCTION4(a, b, c, d) CURVKIT_PRAGMA(omp simd reduction(+ : a, b, c, d))
#define CURVKIT_HOST_UNROLL16 CURVKIT_PRAGMA(GCC unroll 16)
#else
#define CURVKIT_HOST_UNROLL16
#define CURVKIT_SIMD
#define CURVKIT_SIMD_REDUCTION(var)
#define CURVKIT_SIMD_REDUCTION4(a, b, c, d)
#endif

namespace curvkit {

/// Sizes, strides and batch counts: 64-bit so that batch * stride never overflows.
using index_t = std::int64_t;

/// Where a backend runs.  Every public op dispatches on the Context's backend.
enum class Backend : int {
  reference = 0,  ///< plain CPU loops, long-double accumulation: the test oracle
  kokkos = 1,     ///< Kokkos, on Kokkos::DefaultExecutionSpace (host or device memory)
  cuda = 2,       ///< native CUDA kernels on a cudaStream_t (device memory)
};

const char* to_string(Backend backend);

}  // namespace curvkit
