// Internal: warp-level reductions every CUDA family source uses.
#pragma once

namespace curvkit::cuda {

inline constexpr unsigned kFull = 0xffffffffu;  // all 32 lanes of a warp

// Butterfly sum: every lane ends with the same bits (each level adds the same two terms).
template <class T>
__device__ __forceinline__ T warp_sum(T v) {
#pragma unroll
  for (int o = 16; o > 0; o /= 2) v += __shfl_xor_sync(kFull, v, o);
  return v;
}

}  // namespace curvkit::cuda
