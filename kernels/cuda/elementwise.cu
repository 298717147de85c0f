// CUDA backend of the elementwise family (elementwise.hpp).  Maps: one grid-stride kernel per
// group, one thread per element (add_diagonal: per diagonal element), the per-element math of
// curvkit/device/elementwise.hpp instantiated per kind; consecutive threads take consecutive
// columns, so loads and stores coalesce for contiguous rows (clip_by_quadratic: every thread sums
// the few shared q values itself).  sum_products (and sum_squares): one block per matrix,
// partial sums in double reduced by warp shuffles then across the block's warps.  Everything is
// launched on ctx.cuda_stream(); nothing synchronises.
#include <cuda_runtime.h>

#include <algorithm>

#include "checks.hpp"
#include "elementwise_backends.hpp"
#include "host_common.cuh"
#include "warp_reduce.cuh"

namespace curvkit::cuda {
namespace {

using device::MapKind;

constexpr int kThreads = 256;
constexpr index_t kMaxBlocks = 65536;  // grid-stride beyond this

index_t blocks_for(index_t work) {
  return std::max<index_t>(1, std::min<index_t>((work + kThreads - 1) / kThreads, kMaxBlocks));
}

template <MapKind K, class T>
__global__ void map_kernel(MapCall<T> args, MapGroup<T> g) {
  const index_t diag = g.rows < g.cols ? g.rows : g.cols;
  const index_t per = K == MapKind::add_diagonal ? diag : g.rows * g.cols;
  const index_t total = g.batch * per;
  for (index_t w = index_t(blockIdx.x) * blockDim.x + threadIdx.x; w < total;
       w += index_t(gridDim.x) * blockDim.x) {
    const index_t b = w / per, e = w % per;
    const index_t i = K == MapKind::add_diagonal ? e : e / g.cols;
    const index_t j = K == MapKind::add_diagonal ? e : e % g.cols;
    device::map_element<K, T>(args.k, args.per_matrix(g.first + b), g.slot[0].at(b, i, j),
                              g.slot[1].at(b, i, j), g.slot[2].at(b, i, j), g.slot[3].at(b, i, j));
  }
}

template <MapKind K, class T>
cudaError_t launch(const MapCall<T>& call, cudaStream_t st) {
  MapCall<T> args = call;  // by value to the kernel; its host span of groups is not used there
  args.groups = {};
  for (const MapGroup<T>& g : call.groups) {
    const index_t per = K == MapKind::add_diagonal ? std::min(g.rows, g.cols) : g.rows * g.cols;
    if (g.batch * per == 0) continue;
    map_kernel<K, T><<<unsigned(blocks_for(g.batch * per)), kThreads, 0, st>>>(args, g);
    if (const cudaError_t e = cudaGetLastError(); e != cudaSuccess) return e;
  }
  return cudaSuccess;
}

// One block per matrix (grid-stride over the batch): sum_ij x_ij y_ij in double.
template <class T>
__global__ void sum_products_kernel(MatrixBatch<const T> x, MatrixBatch<const T> y, T* out,
                                    bool accumulate) {
  __shared__ double warp_sums[kThreads / 32];
  for (index_t b = blockIdx.x; b < x.batch; b += gridDim.x) {
    double s = 0;
    const index_t n = x.rows * x.cols;
    for (index_t e = threadIdx.x; e < n; e += blockDim.x) {
      const index_t i = e / x.cols, j = e % x.cols;
      s += double(x(b, i, j)) * double(y(b, i, j));
    }
    s = warp_sum(s);
    if (threadIdx.x % 32 == 0) warp_sums[threadIdx.x / 32] = s;
    __syncthreads();
    if (threadIdx.x == 0) {
      double total = accumulate ? double(out[b]) : 0.0;
      for (int w = 0; w < kThreads / 32; ++w) total += warp_sums[w];
      out[b] = T(total);
    }
    __syncthreads();  // warp_sums is reused by the next matrix
  }
}

// Every pointer a map dereferences must be device memory.
template <class T>
Status check_pointers(const MapCall<T>& call) {
  for (const MapGroup<T>& g : call.groups) {
    if (g.batch == 0 || g.rows == 0 || g.cols == 0) continue;
    for (int q = 0; q < 4; ++q)
      if (g.slot[q].data != nullptr)
        CURVKIT_RETURN_IF_ERROR(check_device_pointer("elementwise", g.slot[q].data, "an operand"));
  }
  if (call.pm0 != nullptr)
    CURVKIT_RETURN_IF_ERROR(check_device_pointer("elementwise", call.pm0, "a per-matrix array"));
  if (call.pm1 != nullptr)
    CURVKIT_RETURN_IF_ERROR(check_device_pointer("elementwise", call.pm1, "a per-matrix array"));
  if (call.info != nullptr)
    CURVKIT_RETURN_IF_ERROR(check_device_pointer("elementwise", call.info, "info"));
  if (call.shared != nullptr)
    CURVKIT_RETURN_IF_ERROR(
        check_device_pointer("elementwise", call.shared, "q (clip) or scale (axpby_scaled)"));
  return Status::success();
}

}  // namespace

template <class T>
Status elementwise_map(const Context& ctx, const MapCall<T>& call) {
  CURVKIT_RETURN_IF_ERROR(check_pointers(call));
  const cudaStream_t st = stream_of(ctx);
  cudaError_t e = cudaSuccess;
  switch (call.kind) {
    case MapKind::axpby:
      e = launch<MapKind::axpby>(call, st);
      break;
    case MapKind::fill:
      e = launch<MapKind::fill>(call, st);
      break;
    case MapKind::add_diagonal:
      e = launch<MapKind::add_diagonal>(call, st);
      break;
    case MapKind::add_scalar:
      e = launch<MapKind::add_scalar>(call, st);
      break;
    case MapKind::square_ema:
      e = launch<MapKind::square_ema>(call, st);
      break;
    case MapKind::diag_precondition:
      e = launch<MapKind::diag_precondition>(call, st);
      break;
    case MapKind::adam:
      e = launch<MapKind::adam>(call, st);
      break;
    case MapKind::scale_by_ratio:
      e = launch<MapKind::scale_by_ratio>(call, st);
      break;
    case MapKind::copy_if_ok:
      e = launch<MapKind::copy_if_ok>(call, st);
      break;
    case MapKind::clip_by_quadratic:
      e = launch<MapKind::clip_by_quadratic>(call, st);
      break;
    case MapKind::axpby_scaled:
      e = launch<MapKind::axpby_scaled>(call, st);
      break;
  }
  return finish("elementwise", e);
}

template <class T>
Status sum_products(const Context& ctx, GroupedBatch<const T> x, GroupedBatch<const T> y, T* out,
                    bool accumulate) {
  if (total_batch(x) == 0) return Status::success();
  CURVKIT_RETURN_IF_ERROR(check_device_pointer("sum_products", out, "out"));
  const cudaStream_t st = stream_of(ctx);
  index_t flat = 0;
  for (std::size_t q = 0; q < x.size(); ++q) {
    const auto &g = x[q], &h = y[q];
    if (g.batch > 0) {
      if (g.rows * g.cols > 0) {
        CURVKIT_RETURN_IF_ERROR(check_device_pointer("sum_products", g.data, "x"));
        CURVKIT_RETURN_IF_ERROR(check_device_pointer("sum_products", h.data, "y"));
      }
      sum_products_kernel<T><<<unsigned(std::min<index_t>(g.batch, kMaxBlocks)), kThreads, 0, st>>>(
          g, h, out + flat, accumulate);
      if (const cudaError_t e = cudaGetLastError(); e != cudaSuccess)
        return finish("sum_products", e);
    }
    flat += g.batch;
  }
  return finish("sum_products", cudaSuccess);
}

template <class T>
__global__ void lm_damping_kernel(const T* f0, const T* f1, const T* gv, const T* vv, index_t count,
                                  LmDampingRule r, T* state, index_t copies) {
  device::lm_damping_update(r.lr, r.boost, r.drop, r.epsilon, r.floor, *f0, *f1, gv, vv, count,
                            state, copies);
}

template <class T>
Status lm_damping_update(const Context& ctx, const T* f0, const T* f1, const T* gv, const T* vv,
                         index_t count, const LmDampingRule& r, T* state, index_t copies) {
  const char* op = "lm_damping_update";
  for (const auto& [p, name] :
       {std::pair<const T*, const char*>{f0, "f0"}, {f1, "f1"}, {state, "state"}})
    CURVKIT_RETURN_IF_ERROR(check_device_pointer(op, p, name));
  if (count > 0) {
    CURVKIT_RETURN_IF_ERROR(check_device_pointer(op, gv, "gv"));
    CURVKIT_RETURN_IF_ERROR(check_device_pointer(op, vv, "vv"));
  }
  lm_damping_kernel<T><<<1, 1, 0, stream_of(ctx)>>>(f0, f1, gv, vv, count, r, state, copies);
  return finish(op, cudaGetLastError());
}

}  // namespace curvkit::cuda

CURVKIT_INSTANTIATE_EW_BACKEND(cuda)
