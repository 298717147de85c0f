// CUDA kernels of the trainer (ops.hpp, ops_cuda.hpp).  Maps are grid-stride loops with one
// thread per output element, consecutive threads on consecutive columns so that row-major loads
// and stores coalesce; the adjoints (col2im, max-pool backward) gather into each input element
// instead of scattering, so no atomics are needed and results do not depend on thread order.
// Reductions: one thread per row for the 10-class softmax, one block per row for the BCE sums
// and a (32 x 8)-thread block per 32 columns for the bias gradients, all accumulated in double.
// The per-element math is shared with the host loops (ops_math.hpp).
#include <cuda_runtime.h>

#include <algorithm>
#include <stdexcept>
#include <string>

#include "ops_cuda.hpp"

namespace fmnist::ops::cuda {
namespace {

constexpr int kThreads = 256;
constexpr index_t kMaxBlocks = 65535;

cudaStream_t stream_of(const Context& ctx) {
  return static_cast<cudaStream_t>(ctx.cuda_stream());
}

unsigned blocks_for(index_t work) {
  return unsigned(
      std::max<index_t>(1, std::min<index_t>((work + kThreads - 1) / kThreads, kMaxBlocks)));
}

void check_launch(const char* what) {
  const cudaError_t err = cudaGetLastError();
  if (err != cudaSuccess)
    throw std::runtime_error(std::string("trainer CUDA kernel ") + what + ": " +
                             cudaGetErrorString(err));
}

#define FMNIST_GRID_STRIDE(e, total)                                            \
  for (index_t e = index_t(blockIdx.x) * blockDim.x + threadIdx.x; e < (total); \
       e += index_t(gridDim.x) * blockDim.x)

template <class T>
__global__ void gather_kernel(const std::uint8_t* images, const std::uint8_t* labels,
                              index_t features, const std::int32_t* order, index_t offset,
                              index_t m, T* dst, index_t ld_dst, std::int32_t* labels_dst) {
  FMNIST_GRID_STRIDE(e, m * features) {
    const index_t r = e / features, f = e % features;
    const index_t item = order[offset + r];
    dst[r * ld_dst + f] = T(images[item * features + f]) * T(1.0 / 255.0);
    if (f == 0 && labels_dst != nullptr) labels_dst[r] = labels[item];
  }
}

template <class T>
__global__ void bias_activate_kernel(index_t rows, index_t cols, index_t positions, T* z,
                                     const T* bias, Activation act, T* y, index_t ld_y) {
  FMNIST_GRID_STRIDE(e, rows * cols) {
    const index_t r = e / cols, c = e % cols;
    const T v = z[e] + (bias != nullptr ? bias[c] : T(0));
    z[e] = v;
    if (y != nullptr)
      y[(r / positions) * ld_y + (r % positions) * cols + c] = math::activate(act, v);
  }
}

template <class T>
__global__ void activation_backward_kernel(index_t rows, index_t cols, index_t positions,
                                           Activation act, const T* z, const T* dy, index_t ld_dy,
                                           T* dz) {
  FMNIST_GRID_STRIDE(e, rows * cols) {
    const index_t r = e / cols, c = e % cols;
    dz[e] = dy[(r / positions) * ld_dy + (r % positions) * cols + c] *
            math::activate_derivative(act, z[e]);
  }
}

template <class T>
__global__ void im2col_kernel(ConvShape s, const T* x, index_t ld_x, T* a, index_t ld_a) {
  const index_t wo = s.out_width(), S = s.positions(), P = s.patch(), k = s.kernel;
  FMNIST_GRID_STRIDE(e, s.m * S * P) {
    const index_t row = e / P, col = e % P;
    const index_t i = row / S, t = row % S, oy = t / wo, ox = t % wo;
    const index_t c = col / (k * k), ky = (col / k) % k, kx = col % k;
    const index_t iy = oy - s.pad + ky, ix = ox - s.pad + kx;
    const bool inside = iy >= 0 && iy < s.height && ix >= 0 && ix < s.width;
    a[row * ld_a + col] = inside ? x[i * ld_x + (iy * s.width + ix) * s.channels + c] : T(0);
  }
}

template <class T>
__global__ void col2im_kernel(ConvShape s, const T* da, index_t ld_da, T* dx, index_t ld_dx) {
  const index_t ho = s.out_height(), wo = s.out_width(), k = s.kernel, C = s.channels;
  const index_t per_sample = s.height * s.width * C;
  FMNIST_GRID_STRIDE(e, s.m * per_sample) {
    const index_t i = e / per_sample, rest = e % per_sample;
    const index_t c = rest % C, pos = rest / C, iy = pos / s.width, ix = pos % s.width;
    T sum = T(0);
    for (index_t ky = 0; ky < k; ++ky) {
      const index_t oy = iy + s.pad - ky;
      if (oy < 0 || oy >= ho) continue;
      for (index_t kx = 0; kx < k; ++kx) {
        const index_t ox = ix + s.pad - kx;
        if (ox < 0 || ox >= wo) continue;
        sum += da[(i * ho * wo + oy * wo + ox) * ld_da + (c * k + ky) * k + kx];
      }
    }
    dx[i * ld_dx + rest] = sum;
  }
}

template <class T>
__global__ void maxpool2_kernel(index_t m, index_t height, index_t width, index_t C, const T* x,
                                index_t ld_x, T* y, index_t ld_y, std::uint8_t* which) {
  const index_t ho = height / 2, wo = width / 2, per_sample = ho * wo * C;
  FMNIST_GRID_STRIDE(e, m * per_sample) {
    const index_t i = e / per_sample, o = e % per_sample;
    const index_t c = o % C, pos = o / C, oy = pos / wo, ox = pos % wo;
    const T* base = x + i * ld_x + ((2 * oy) * width + 2 * ox) * C + c;
    const T v[4] = {base[0], base[C], base[width * C], base[width * C + C]};
    int best = 0;
    for (int w = 1; w < 4; ++w)
      if (v[w] > v[best]) best = w;
    y[i * ld_y + o] = v[best];
    which[e] = std::uint8_t(best);
  }
}

template <class T>
__global__ void maxpool2_backward_kernel(index_t m, index_t height, index_t width, index_t C,
                                         const T* dy, index_t ld_dy, const std::uint8_t* which,
                                         T* dx, index_t ld_dx) {
  const index_t ho = height / 2, wo = width / 2, per_sample = height * width * C;
  FMNIST_GRID_STRIDE(e, m * per_sample) {
    const index_t i = e / per_sample, rest = e % per_sample;
    const index_t c = rest % C, pos = rest / C, iy = pos / width, ix = pos % width;
    const index_t oy = iy / 2, ox = ix / 2;
    T v = T(0);
    if (oy < ho && ox < wo) {
      const index_t o = (oy * wo + ox) * C + c;
      if (which[i * ho * wo * C + o] == (iy % 2) * 2 + ix % 2) v = dy[i * ld_dy + o];
    }
    dx[i * ld_dx + rest] = v;
  }
}

// Block (32, 8): 32 columns per block, 8 threads down the rows of each, partial sums in double.
template <class T>
__global__ void column_sums_kernel(index_t rows, index_t cols, const T* g, index_t ld_g,
                                   double scale, T* out) {
  __shared__ double part[8][32];
  const index_t c = index_t(blockIdx.x) * 32 + threadIdx.x;
  double acc = 0;
  if (c < cols)
    for (index_t r = threadIdx.y; r < rows; r += 8) acc += double(g[r * ld_g + c]);
  part[threadIdx.y][threadIdx.x] = acc;
  __syncthreads();
  if (threadIdx.y == 0 && c < cols) {
    double sum = 0;
    for (int y = 0; y < 8; ++y) sum += part[y][threadIdx.x];
    out[c] = T(scale * sum);
  }
}

template <class T>
__global__ void softmax_xent_kernel(index_t m, index_t classes, const T* z,
                                    const std::int32_t* labels, T* grad, T* loss, T* correct) {
  FMNIST_GRID_STRIDE(i, m) {
    math::softmax_xent_row(z + i * classes, int(classes), labels[i],
                           grad == nullptr ? nullptr : grad + i * classes, loss + i,
                           correct == nullptr ? nullptr : correct + i);
  }
}

template <class T>
__global__ void softmax_sampled_kernel(index_t m, index_t classes, const T* z, std::uint64_t seed,
                                       std::uint64_t stream, T* grad) {
  FMNIST_GRID_STRIDE(i, m) {
    math::softmax_sampled_row(z + i * classes, int(classes),
                              math::uniform01(seed, stream, std::uint64_t(i)), grad + i * classes);
  }
}

// Block-wide sum of one double per thread (blockDim.x == kThreads); the result in thread 0.
__device__ double block_sum(double v) {
  __shared__ double part[kThreads];
  part[threadIdx.x] = v;
  __syncthreads();
  for (int half = kThreads / 2; half > 0; half /= 2) {
    if (int(threadIdx.x) < half) part[threadIdx.x] += part[threadIdx.x + half];
    __syncthreads();
  }
  return part[0];
}

// One block per sample.
template <class T>
__global__ void sigmoid_bce_kernel(index_t n, const T* z, const T* target, index_t ld_t, T* grad,
                                   T* loss) {
  const index_t i = blockIdx.x;
  const T* zi = z + i * n;
  const T* ti = target + i * ld_t;
  double sum = 0;
  for (index_t j = threadIdx.x; j < n; j += blockDim.x) {
    sum += double(math::bce(zi[j], ti[j]));
    if (grad != nullptr) grad[i * n + j] = math::bce_derivative(zi[j], ti[j]);
  }
  sum = block_sum(sum);
  if (threadIdx.x == 0) loss[i] = T(sum);
}

template <class T>
__global__ void bce_sampled_kernel(index_t total, const T* z, std::uint64_t seed,
                                   std::uint64_t stream, T* grad) {
  FMNIST_GRID_STRIDE(e, total) {
    const T p = math::sigmoid(z[e]);
    const T y = math::uniform01(seed, stream, std::uint64_t(e)) < double(p) ? T(1) : T(0);
    grad[e] = p - y;
  }
}

// One block: the host adds one number per call, so no atomics are needed.
template <class T>
__global__ void accumulate_sum_kernel(const T* x, index_t n, double* acc) {
  double sum = 0;
  for (index_t e = threadIdx.x; e < n; e += blockDim.x) sum += double(x[e]);
  sum = block_sum(sum);
  if (threadIdx.x == 0) acc[0] += sum;
}

template <class T>
__global__ void softmax_hessian_sqrt_kernel(index_t n, index_t classes, const T* z, T* out) {
  FMNIST_GRID_STRIDE(row, n * classes) {  // one thread per row (i, r): R is small (10)
    const index_t i = row / classes, r = row % classes;
    math::softmax_hessian_sqrt_row(z + i * classes, int(classes), int(r), out + row * classes);
  }
}

template <class T>
__global__ void sigmoid_hessian_sqrt_kernel(index_t n, index_t outputs, const T* z, T* out) {
  FMNIST_GRID_STRIDE(e, n * outputs * outputs) {
    const index_t row = e / outputs, c = e % outputs;
    const index_t i = row / outputs, r = row % outputs;
    T v = T(0);
    if (c == r) {
      const T s = math::sigmoid(z[i * outputs + r]);
      v = std::sqrt(s * (T(1) - s));
    }
    out[e] = v;
  }
}

template <class T>
__global__ void repeat_blocks_kernel(index_t n, index_t copies, index_t count, const T* src,
                                     T* dst) {
  FMNIST_GRID_STRIDE(e, n * copies * count) {
    const index_t block = e / count, f = e % count;
    dst[e] = src[(block / copies) * count + f];
  }
}

}  // namespace

template <class T>
void gather_batch(const Context& ctx, const std::uint8_t* images, const std::uint8_t* labels,
                  index_t features, const std::int32_t* order, index_t offset, index_t m, T* dst,
                  index_t ld_dst, std::int32_t* labels_dst) {
  gather_kernel<T><<<blocks_for(m * features), kThreads, 0, stream_of(ctx)>>>(
      images, labels, features, order, offset, m, dst, ld_dst, labels_dst);
  check_launch("gather_batch");
}

template <class T>
void bias_activate(const Context& ctx, index_t rows, index_t cols, index_t positions, T* z,
                   const T* bias, Activation act, T* y, index_t ld_y) {
  bias_activate_kernel<T><<<blocks_for(rows * cols), kThreads, 0, stream_of(ctx)>>>(
      rows, cols, positions, z, bias, act, y, ld_y);
  check_launch("bias_activate");
}

template <class T>
void activation_backward(const Context& ctx, index_t rows, index_t cols, index_t positions,
                         Activation act, const T* z, const T* dy, index_t ld_dy, T* dz) {
  activation_backward_kernel<T><<<blocks_for(rows * cols), kThreads, 0, stream_of(ctx)>>>(
      rows, cols, positions, act, z, dy, ld_dy, dz);
  check_launch("activation_backward");
}

template <class T>
void im2col(const Context& ctx, const ConvShape& s, const T* x, index_t ld_x, T* a, index_t ld_a) {
  im2col_kernel<T><<<blocks_for(s.m * s.positions() * s.patch()), kThreads, 0, stream_of(ctx)>>>(
      s, x, ld_x, a, ld_a);
  check_launch("im2col");
}

template <class T>
void col2im(const Context& ctx, const ConvShape& s, const T* da, index_t ld_da, T* dx,
            index_t ld_dx) {
  const index_t total = s.m * s.height * s.width * s.channels;
  col2im_kernel<T><<<blocks_for(total), kThreads, 0, stream_of(ctx)>>>(s, da, ld_da, dx, ld_dx);
  check_launch("col2im");
}

template <class T>
void maxpool2(const Context& ctx, index_t m, index_t height, index_t width, index_t channels,
              const T* x, index_t ld_x, T* y, index_t ld_y, std::uint8_t* which) {
  const index_t total = m * (height / 2) * (width / 2) * channels;
  maxpool2_kernel<T><<<blocks_for(total), kThreads, 0, stream_of(ctx)>>>(m, height, width, channels,
                                                                         x, ld_x, y, ld_y, which);
  check_launch("maxpool2");
}

template <class T>
void maxpool2_backward(const Context& ctx, index_t m, index_t height, index_t width,
                       index_t channels, const T* dy, index_t ld_dy, const std::uint8_t* which,
                       T* dx, index_t ld_dx) {
  const index_t total = m * height * width * channels;
  maxpool2_backward_kernel<T><<<blocks_for(total), kThreads, 0, stream_of(ctx)>>>(
      m, height, width, channels, dy, ld_dy, which, dx, ld_dx);
  check_launch("maxpool2_backward");
}

template <class T>
void column_sums(const Context& ctx, index_t rows, index_t cols, const T* g, index_t ld_g,
                 double scale, T* out) {
  if (cols == 0) return;
  column_sums_kernel<T><<<unsigned((cols + 31) / 32), dim3(32, 8), 0, stream_of(ctx)>>>(
      rows, cols, g, ld_g, scale, out);
  check_launch("column_sums");
}

template <class T>
void softmax_xent(const Context& ctx, index_t m, index_t classes, const T* z,
                  const std::int32_t* labels, T* grad, T* loss, T* correct) {
  softmax_xent_kernel<T>
      <<<blocks_for(m), kThreads, 0, stream_of(ctx)>>>(m, classes, z, labels, grad, loss, correct);
  check_launch("softmax_xent");
}

template <class T>
void softmax_sampled_grad(const Context& ctx, index_t m, index_t classes, const T* z,
                          std::uint64_t seed, std::uint64_t stream, T* grad) {
  softmax_sampled_kernel<T>
      <<<blocks_for(m), kThreads, 0, stream_of(ctx)>>>(m, classes, z, seed, stream, grad);
  check_launch("softmax_sampled_grad");
}

template <class T>
void sigmoid_bce(const Context& ctx, index_t m, index_t n, const T* z, const T* target,
                 index_t ld_t, T* grad, T* loss) {
  if (m == 0) return;
  sigmoid_bce_kernel<T>
      <<<unsigned(m), kThreads, 0, stream_of(ctx)>>>(n, z, target, ld_t, grad, loss);
  check_launch("sigmoid_bce");
}

template <class T>
void sigmoid_bce_sampled_grad(const Context& ctx, index_t m, index_t n, const T* z,
                              std::uint64_t seed, std::uint64_t stream, T* grad) {
  bce_sampled_kernel<T>
      <<<blocks_for(m * n), kThreads, 0, stream_of(ctx)>>>(m * n, z, seed, stream, grad);
  check_launch("sigmoid_bce_sampled_grad");
}

template <class T>
void accumulate_sum(const Context& ctx, const T* x, index_t n, double* acc) {
  accumulate_sum_kernel<T><<<1, kThreads, 0, stream_of(ctx)>>>(x, n, acc);
  check_launch("accumulate_sum");
}

template <class T>
void softmax_hessian_sqrt(const Context& ctx, index_t n, index_t classes, const T* z, T* out) {
  softmax_hessian_sqrt_kernel<T>
      <<<blocks_for(n * classes), kThreads, 0, stream_of(ctx)>>>(n, classes, z, out);
  check_launch("softmax_hessian_sqrt");
}

template <class T>
void sigmoid_hessian_sqrt(const Context& ctx, index_t n, index_t outputs, const T* z, T* out) {
  sigmoid_hessian_sqrt_kernel<T>
      <<<blocks_for(n * outputs * outputs), kThreads, 0, stream_of(ctx)>>>(n, outputs, z, out);
  check_launch("sigmoid_hessian_sqrt");
}

template <class T>
void repeat_blocks(const Context& ctx, index_t n, index_t copies, index_t count, const T* src,
                   T* dst) {
  repeat_blocks_kernel<T>
      <<<blocks_for(n * copies * count), kThreads, 0, stream_of(ctx)>>>(n, copies, count, src, dst);
  check_launch("repeat_blocks");
}

FMNIST_INSTANTIATE_OPS(float)
FMNIST_INSTANTIATE_OPS(double)
FMNIST_INSTANTIATE_REPEAT_BYTES

}  // namespace fmnist::ops::cuda
