// Host loops of the trainer kernels (ops.hpp), for the reference backend and for Kokkos builds
// whose memory the host can read (Serial, OpenMP, Threads); calls on a cuda Context go to the
// CUDA kernels of ops_cuda.cu.  The loops are single-threaded: the products, which dominate a
// step, run in curvkit::gemm.
#include <algorithm>
#include <array>
#include <stdexcept>
#include <string>
#include <type_traits>

#include "curvkit/core/context.hpp"
#include "ops.hpp"
#include "ops_cuda.hpp"

namespace fmnist::ops {

#if CURVKIT_HAVE_KOKKOS
bool kokkos_memory_host_accessible();  // kokkos_memory.cpp
#endif

namespace {

using curvkit::Backend;

#if !CURVKIT_HAVE_CUDA
[[noreturn]] void no_cuda() {
  throw std::runtime_error(
      "the cuda backend was not compiled into this build of curvkit (configure with "
      "-DCURVKIT_ENABLE_CUDA=ON on a machine with nvcc)");
}
#endif

// Kokkos may run kernels asynchronously (a gemm on an OpenMP instance): host loops wait for it.
void host_ready(const Context& ctx) {
  if (ctx.backend() != Backend::kokkos) return;
  if (auto st = curvkit::synchronize(ctx); !st.ok())
    throw std::runtime_error("trainer kernel: " + st.to_string());
}

}  // namespace

#if CURVKIT_HAVE_CUDA
#define FMNIST_ON_CUDA(ctx, call)         \
  if ((ctx).backend() == Backend::cuda) { \
    cuda::call;                           \
    return;                               \
  }
#else
#define FMNIST_ON_CUDA(ctx, call) \
  if ((ctx).backend() == Backend::cuda) no_cuda();
#endif

void check_backend(const Context& ctx) {
  if (!curvkit::backend_available(ctx.backend()))
    throw std::runtime_error(std::string("the ") + curvkit::to_string(ctx.backend()) +
                             " backend was not compiled into this build of curvkit");
#if CURVKIT_HAVE_KOKKOS
  if (ctx.backend() == Backend::kokkos && !kokkos_memory_host_accessible())
    throw std::runtime_error(
        "the kokkos backend of this build allocates in a device memory space, which the "
        "trainer's host kernels cannot read; use --backend cuda (the trainer's CUDA kernels) or "
        "a Kokkos build with a host execution space");
#endif
}

template <class T>
void gather_batch(const Context& ctx, const std::uint8_t* images, const std::uint8_t* labels,
                  index_t features, const std::int32_t* order, index_t offset, index_t m, T* dst,
                  index_t ld_dst, std::int32_t* labels_dst) {
  FMNIST_ON_CUDA(ctx, gather_batch<T>(ctx, images, labels, features, order, offset, m, dst, ld_dst,
                                      labels_dst));
  host_ready(ctx);
  for (index_t r = 0; r < m; ++r) {
    const index_t item = order[offset + r];
    const std::uint8_t* src = images + item * features;
    T* out = dst + r * ld_dst;
    for (index_t f = 0; f < features; ++f) out[f] = T(src[f]) * T(1.0 / 255.0);
    if (labels_dst != nullptr) labels_dst[r] = labels[item];
  }
}

namespace {

// The activation as a template argument, so that its switch is resolved outside the loops.
template <class F>
void with_activation(Activation act, F&& f) {
  switch (act) {
    case Activation::relu:
      return f(std::integral_constant<Activation, Activation::relu>{});
    case Activation::sigmoid:
      return f(std::integral_constant<Activation, Activation::sigmoid>{});
    default:
      return f(std::integral_constant<Activation, Activation::identity>{});
  }
}

}  // namespace

template <class T>
void bias_activate(const Context& ctx, index_t rows, index_t cols, index_t positions, T* z,
                   const T* bias, Activation act, T* y, index_t ld_y) {
  FMNIST_ON_CUDA(ctx, bias_activate<T>(ctx, rows, cols, positions, z, bias, act, y, ld_y));
  host_ready(ctx);
  with_activation(act, [&](auto a) {
    for (index_t r = 0; r < rows; ++r) {
      T* zr = z + r * cols;
      if (bias != nullptr)
        for (index_t c = 0; c < cols; ++c) zr[c] += bias[c];
      if (y == nullptr) continue;
      T* yr = y + (r / positions) * ld_y + (r % positions) * cols;
      for (index_t c = 0; c < cols; ++c) yr[c] = math::activate(a.value, zr[c]);
    }
  });
}

template <class T>
void activation_backward(const Context& ctx, index_t rows, index_t cols, index_t positions,
                         Activation act, const T* z, const T* dy, index_t ld_dy, T* dz) {
  FMNIST_ON_CUDA(ctx, activation_backward<T>(ctx, rows, cols, positions, act, z, dy, ld_dy, dz));
  host_ready(ctx);
  with_activation(act, [&](auto a) {
    for (index_t r = 0; r < rows; ++r) {
      const T* zr = z + r * cols;
      const T* dyr = dy + (r / positions) * ld_dy + (r % positions) * cols;
      T* dzr = dz + r * cols;
      for (index_t c = 0; c < cols; ++c)
        dzr[c] = dyr[c] * math::activate_derivative(a.value, zr[c]);
    }
  });
}

template <class T>
void im2col(const Context& ctx, const ConvShape& s, const T* x, index_t ld_x, T* a, index_t ld_a) {
  FMNIST_ON_CUDA(ctx, im2col<T>(ctx, s, x, ld_x, a, ld_a));
  host_ready(ctx);
  const index_t ho = s.out_height(), wo = s.out_width(), k = s.kernel, C = s.channels;
  for (index_t i = 0; i < s.m; ++i)
    for (index_t oy = 0; oy < ho; ++oy)
      for (index_t ox = 0; ox < wo; ++ox) {
        // Columns (c, ky, kx), the layout of W's columns (docs/optimizer-spec.md §0.1): the
        // writes run along the row; the reads stay inside a few cached input rows.
        T* out = a + (i * ho * wo + oy * wo + ox) * ld_a;
        for (index_t c = 0; c < C; ++c)
          for (index_t ky = 0; ky < k; ++ky, out += k) {
            const index_t iy = oy - s.pad + ky;
            if (iy < 0 || iy >= s.height) {
              std::fill(out, out + k, T(0));
              continue;
            }
            const T* src = x + i * ld_x + iy * s.width * C + c;
            for (index_t kx = 0; kx < k; ++kx) {
              const index_t ix = ox - s.pad + kx;
              out[kx] = ix >= 0 && ix < s.width ? src[ix * C] : T(0);
            }
          }
      }
}

template <class T>
void col2im(const Context& ctx, const ConvShape& s, const T* da, index_t ld_da, T* dx,
            index_t ld_dx) {
  FMNIST_ON_CUDA(ctx, col2im<T>(ctx, s, da, ld_da, dx, ld_dx));
  host_ready(ctx);
  const index_t ho = s.out_height(), wo = s.out_width(), k = s.kernel, C = s.channels;
  const index_t per_sample = s.height * s.width * C;
  // Scatter-add: da is read once, in order, and a sample's dx stays in cache.
  for (index_t i = 0; i < s.m; ++i) {
    T* dxi = dx + i * ld_dx;
    std::fill(dxi, dxi + per_sample, T(0));
    for (index_t oy = 0; oy < ho; ++oy)
      for (index_t ox = 0; ox < wo; ++ox) {
        const T* row = da + (i * ho * wo + oy * wo + ox) * ld_da;
        for (index_t ky = 0; ky < k; ++ky) {
          const index_t iy = oy - s.pad + ky;
          if (iy < 0 || iy >= s.height) continue;
          for (index_t kx = 0; kx < k; ++kx) {
            const index_t ix = ox - s.pad + kx;
            if (ix < 0 || ix >= s.width) continue;
            T* px = dxi + (iy * s.width + ix) * C;
            for (index_t c = 0; c < C; ++c) px[c] += row[(c * k + ky) * k + kx];
          }
        }
      }
  }
}

template <class T>
void maxpool2(const Context& ctx, index_t m, index_t height, index_t width, index_t channels,
              const T* x, index_t ld_x, T* y, index_t ld_y, std::uint8_t* which) {
  FMNIST_ON_CUDA(ctx, maxpool2<T>(ctx, m, height, width, channels, x, ld_x, y, ld_y, which));
  host_ready(ctx);
  const index_t ho = height / 2, wo = width / 2, C = channels;
  for (index_t i = 0; i < m; ++i)
    for (index_t oy = 0; oy < ho; ++oy)
      for (index_t ox = 0; ox < wo; ++ox)
        for (index_t c = 0; c < C; ++c) {
          const T* base = x + i * ld_x + ((2 * oy) * width + 2 * ox) * C + c;
          const std::array<T, 4> v = {base[0], base[C], base[width * C], base[width * C + C]};
          int best = 0;
          for (int w = 1; w < 4; ++w)
            if (v[w] > v[best]) best = w;
          y[i * ld_y + (oy * wo + ox) * C + c] = v[best];
          which[((i * ho + oy) * wo + ox) * C + c] = std::uint8_t(best);
        }
}

template <class T>
void maxpool2_backward(const Context& ctx, index_t m, index_t height, index_t width,
                       index_t channels, const T* dy, index_t ld_dy, const std::uint8_t* which,
                       T* dx, index_t ld_dx) {
  FMNIST_ON_CUDA(
      ctx, maxpool2_backward<T>(ctx, m, height, width, channels, dy, ld_dy, which, dx, ld_dx));
  host_ready(ctx);
  const index_t ho = height / 2, wo = width / 2, C = channels;
  for (index_t i = 0; i < m; ++i) {
    T* dxi = dx + i * ld_dx;
    std::fill(dxi, dxi + height * width * C, T(0));
    for (index_t oy = 0; oy < ho; ++oy)
      for (index_t ox = 0; ox < wo; ++ox)
        for (index_t c = 0; c < C; ++c) {
          const index_t o = (oy * wo + ox) * C + c;
          const int w = which[i * ho * wo * C + o];
          dxi[((2 * oy + w / 2) * width + 2 * ox + w % 2) * C + c] = dy[i * ld_dy + o];
        }
  }
}

template <class T>
void column_sums(const Context& ctx, index_t rows, index_t cols, const T* g, index_t ld_g,
                 double scale, T* out) {
  FMNIST_ON_CUDA(ctx, column_sums<T>(ctx, rows, cols, g, ld_g, scale, out));
  host_ready(ctx);
  constexpr index_t kBlock = 64;  // double accumulators for a block of columns, on the stack
  for (index_t c0 = 0; c0 < cols; c0 += kBlock) {
    const index_t nc = std::min(kBlock, cols - c0);
    std::array<double, kBlock> acc{};
    for (index_t r = 0; r < rows; ++r) {
      const T* gr = g + r * ld_g + c0;
      for (index_t c = 0; c < nc; ++c) acc[c] += double(gr[c]);
    }
    for (index_t c = 0; c < nc; ++c) out[c0 + c] = T(scale * acc[c]);
  }
}

template <class T>
void softmax_xent(const Context& ctx, index_t m, index_t classes, const T* z,
                  const std::int32_t* labels, T* grad, T* loss, T* correct) {
  FMNIST_ON_CUDA(ctx, softmax_xent<T>(ctx, m, classes, z, labels, grad, loss, correct));
  host_ready(ctx);
  for (index_t i = 0; i < m; ++i)
    math::softmax_xent_row(z + i * classes, int(classes), labels[i],
                           grad == nullptr ? nullptr : grad + i * classes, loss + i,
                           correct == nullptr ? nullptr : correct + i);
}

template <class T>
void softmax_sampled_grad(const Context& ctx, index_t m, index_t classes, const T* z,
                          std::uint64_t seed, std::uint64_t stream, T* grad) {
  FMNIST_ON_CUDA(ctx, softmax_sampled_grad<T>(ctx, m, classes, z, seed, stream, grad));
  host_ready(ctx);
  for (index_t i = 0; i < m; ++i)
    math::softmax_sampled_row(z + i * classes, int(classes),
                              math::uniform01(seed, stream, std::uint64_t(i)), grad + i * classes);
}

template <class T>
void sigmoid_bce(const Context& ctx, index_t m, index_t n, const T* z, const T* target,
                 index_t ld_t, T* grad, T* loss) {
  FMNIST_ON_CUDA(ctx, sigmoid_bce<T>(ctx, m, n, z, target, ld_t, grad, loss));
  host_ready(ctx);
  for (index_t i = 0; i < m; ++i) {
    const T* zi = z + i * n;
    const T* ti = target + i * ld_t;
    double sum = 0;
    for (index_t j = 0; j < n; ++j) sum += double(math::bce(zi[j], ti[j]));
    loss[i] = T(sum);
    if (grad != nullptr)
      for (index_t j = 0; j < n; ++j) grad[i * n + j] = math::bce_derivative(zi[j], ti[j]);
  }
}

template <class T>
void sigmoid_bce_sampled_grad(const Context& ctx, index_t m, index_t n, const T* z,
                              std::uint64_t seed, std::uint64_t stream, T* grad) {
  FMNIST_ON_CUDA(ctx, sigmoid_bce_sampled_grad<T>(ctx, m, n, z, seed, stream, grad));
  host_ready(ctx);
  for (index_t e = 0; e < m * n; ++e) {
    const T p = math::sigmoid(z[e]);
    const T y = math::uniform01(seed, stream, std::uint64_t(e)) < double(p) ? T(1) : T(0);
    grad[e] = p - y;
  }
}

template <class T>
void accumulate_sum(const Context& ctx, const T* x, index_t n, double* acc) {
  FMNIST_ON_CUDA(ctx, accumulate_sum<T>(ctx, x, n, acc));
  host_ready(ctx);
  double sum = 0;
  for (index_t e = 0; e < n; ++e) sum += double(x[e]);
  acc[0] += sum;
}

template <class T>
void softmax_hessian_sqrt(const Context& ctx, index_t n, index_t classes, const T* z, T* out) {
  FMNIST_ON_CUDA(ctx, softmax_hessian_sqrt<T>(ctx, n, classes, z, out));
  host_ready(ctx);
  for (index_t i = 0; i < n; ++i)
    for (index_t r = 0; r < classes; ++r)
      math::softmax_hessian_sqrt_row(z + i * classes, int(classes), int(r),
                                     out + (i * classes + r) * classes);
}

template <class T>
void sigmoid_hessian_sqrt(const Context& ctx, index_t n, index_t outputs, const T* z, T* out) {
  FMNIST_ON_CUDA(ctx, sigmoid_hessian_sqrt<T>(ctx, n, outputs, z, out));
  host_ready(ctx);
  for (index_t i = 0; i < n; ++i)
    for (index_t r = 0; r < outputs; ++r) {
      T* row = out + (i * outputs + r) * outputs;
      std::fill(row, row + outputs, T(0));
      const T s = math::sigmoid(z[i * outputs + r]);
      row[r] = std::sqrt(s * (T(1) - s));
    }
}

template <class T>
void repeat_blocks(const Context& ctx, index_t n, index_t copies, index_t count, const T* src,
                   T* dst) {
  FMNIST_ON_CUDA(ctx, repeat_blocks<T>(ctx, n, copies, count, src, dst));
  host_ready(ctx);
  for (index_t i = 0; i < n; ++i)
    for (index_t r = 0; r < copies; ++r)
      std::copy(src + i * count, src + (i + 1) * count, dst + (i * copies + r) * count);
}

FMNIST_INSTANTIATE_OPS(float)
FMNIST_INSTANTIATE_OPS(double)
FMNIST_INSTANTIATE_REPEAT_BYTES

}  // namespace fmnist::ops
