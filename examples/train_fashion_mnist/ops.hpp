// The trainer's own kernels: everything a forward / backward pass needs besides the products
// (which are curvkit::gemm calls).  Each op runs where the Context's memory is: host loops for
// the reference backend and a Kokkos build whose memory the host can read (ops_host.cpp), CUDA
// kernels on the Context's stream for the cuda backend (ops_cuda.cu, compiled only when curvkit
// has its CUDA backend).  Like curvkit's ops, they launch and do not synchronise; unlike them
// they throw std::runtime_error on a failure (the examples may use exceptions).
//
// Layouts.  A "sample matrix" is m rows (one per sample) of f features with a row pitch ld.
// Activations of convolutions are NHWC per sample (position-major, channel-minor): this is what
// the product Z = A W^T of an im2col matrix A ((m S) x (c_in k k)) gives, so no transposes are
// needed between layers.  A row of Z is (sample i, position t) with t = y * W + x.
#pragma once

#include <cstdint>

#include "curvkit/core/context.hpp"
#include "ops_math.hpp"

namespace fmnist::ops {

using curvkit::Context;
using curvkit::index_t;

/// Throws when host kernels cannot run on the Context's memory (a Kokkos build whose default
/// memory space is on a device).  Called once when a network is built.
void check_backend(const Context& ctx);

/// The mini-batch: dst row r = images[order[offset + r]] / 255 (features bytes each),
/// labels_dst[r] = labels[order[offset + r]] (labels_dst may be null).
template <class T>
void gather_batch(const Context& ctx, const std::uint8_t* images, const std::uint8_t* labels,
                  index_t features, const std::int32_t* order, index_t offset, index_t m, T* dst,
                  index_t ld_dst, std::int32_t* labels_dst);

/// z (rows x cols, contiguous, rows = m S) += bias (per column); then y = act(z) written to
/// sample i = r / S at y[i ld_y + (r % S) cols + c] (the next layer's input layout).
template <class T>
void bias_activate(const Context& ctx, index_t rows, index_t cols, index_t positions, T* z,
                   const T* bias, Activation act, T* y, index_t ld_y);

/// dz = dy * act'(z); z and dz rows x cols contiguous, dy laid out like bias_activate's y.
template <class T>
void activation_backward(const Context& ctx, index_t rows, index_t cols, index_t positions,
                         Activation act, const T* z, const T* dy, index_t ld_dy, T* dz);

/// Convolution geometry: m samples of height x width x channels (NHWC, row pitch ld_x), a
/// kernel x kernel window, zero padding `pad`, stride 1.
struct ConvShape {
  index_t m = 0, height = 0, width = 0, channels = 0, kernel = 1, pad = 0;
  CURVKIT_HD_INLINE index_t out_height() const { return height + 2 * pad - kernel + 1; }
  CURVKIT_HD_INLINE index_t out_width() const { return width + 2 * pad - kernel + 1; }
  CURVKIT_HD_INLINE index_t positions() const { return out_height() * out_width(); }
  CURVKIT_HD_INLINE index_t patch() const { return channels * kernel * kernel; }
};

/// a row (i, t) = the patch of sample i at output position t, columns (c, ky, kx); columns
/// >= patch() (the bias column of ones) are not written.
template <class T>
void im2col(const Context& ctx, const ConvShape& s, const T* x, index_t ld_x, T* a, index_t ld_a);

/// The adjoint of im2col: dx (NHWC, row pitch ld_dx) = the sum of the patch gradients da
/// ((m S) x patch(), row pitch ld_da) over every patch each input element is in.
template <class T>
void col2im(const Context& ctx, const ConvShape& s, const T* da, index_t ld_da, T* dx,
            index_t ld_dx);

/// 2 x 2 max pooling, stride 2 (odd trailing rows / columns dropped), NHWC.  `which` (m x
/// out elements) records the arg-max in its window (0..3) for the backward pass.
template <class T>
void maxpool2(const Context& ctx, index_t m, index_t height, index_t width, index_t channels,
              const T* x, index_t ld_x, T* y, index_t ld_y, std::uint8_t* which);

/// dx = dy routed to the arg-max of each window, 0 elsewhere.
template <class T>
void maxpool2_backward(const Context& ctx, index_t m, index_t height, index_t width,
                       index_t channels, const T* dy, index_t ld_dy, const std::uint8_t* which,
                       T* dx, index_t ld_dx);

/// out[c] = scale * sum_r g[r ld_g + c] (the bias gradient), accumulated in double.
template <class T>
void column_sums(const Context& ctx, index_t rows, index_t cols, const T* g, index_t ld_g,
                 double scale, T* out);

/// Softmax cross-entropy per row of z (m x classes, contiguous): loss[i], correct[i] (1 when
/// the arg-max is the label) and grad = p - e_label (grad may be null).
template <class T>
void softmax_xent(const Context& ctx, index_t m, index_t classes, const T* z,
                  const std::int32_t* labels, T* grad, T* loss, T* correct);

/// grad = p - e_y with y drawn from each row's softmax (uniforms from (seed, stream)).
template <class T>
void softmax_sampled_grad(const Context& ctx, index_t m, index_t classes, const T* z,
                          std::uint64_t seed, std::uint64_t stream, T* grad);

/// Binary cross-entropy of sigmoid(z) (m x n, contiguous) against targets (row pitch ld_t):
/// loss[i] = sum over the n outputs, grad = sigmoid(z) - target (grad may be null).
template <class T>
void sigmoid_bce(const Context& ctx, index_t m, index_t n, const T* z, const T* target,
                 index_t ld_t, T* grad, T* loss);

/// grad = sigmoid(z) - y with y ~ Bernoulli(sigmoid(z)) per output.
template <class T>
void sigmoid_bce_sampled_grad(const Context& ctx, index_t m, index_t n, const T* z,
                              std::uint64_t seed, std::uint64_t stream, T* grad);

/// acc[0] += sum of x[0..n) (acc: one double in the Context's memory).
template <class T>
void accumulate_sum(const Context& ctx, const T* x, index_t n, double* acc);

/// The symmetric factor C_i of the loss Hessian in the logits (H_i = C_i C_i^T) for samples
/// i < n of z (n x R, contiguous): out ((n R) x R) row (i R + r) = (C_i e_r)^T, the cotangent
/// that SMW-GN backpropagates for pseudo-sample (i, r).  Softmax cross-entropy:
/// C_i = diag(sqrt p) - p sqrt(p)^T with p = softmax(z_i).
template <class T>
void softmax_hessian_sqrt(const Context& ctx, index_t n, index_t classes, const T* z, T* out);

/// As softmax_hessian_sqrt for the sigmoid binary cross-entropy: C_i = diag(sqrt(s (1 - s)))
/// with s = sigmoid(z_i) (the Hessian is diagonal).
template <class T>
void sigmoid_hessian_sqrt(const Context& ctx, index_t n, index_t outputs, const T* z, T* out);

/// dst block (i copies + r) = src block i for i < n and r < copies, blocks of `count`
/// contiguous elements: a sample's tensor repeated for each of its pseudo-samples.
template <class T>
void repeat_blocks(const Context& ctx, index_t n, index_t copies, index_t count, const T* src,
                   T* dst);

}  // namespace fmnist::ops

// Explicit instantiations of every op for scalar T, in the namespace where it is expanded
// (fmnist::ops in ops_host.cpp, fmnist::ops::cuda in ops_cuda.cu).
// repeat_blocks also copies bytes (the max-pool arg-max indices).
#define FMNIST_INSTANTIATE_REPEAT_BYTES                                                \
  template void repeat_blocks<std::uint8_t>(const Context&, index_t, index_t, index_t, \
                                            const std::uint8_t*, std::uint8_t*);
#define FMNIST_INSTANTIATE_OPS(T)                                                                  \
  template void gather_batch<T>(const Context&, const std::uint8_t*, const std::uint8_t*, index_t, \
                                const std::int32_t*, index_t, index_t, T*, index_t,                \
                                std::int32_t*);                                                    \
  template void bias_activate<T>(const Context&, index_t, index_t, index_t, T*, const T*,          \
                                 Activation, T*, index_t);                                         \
  template void activation_backward<T>(const Context&, index_t, index_t, index_t, Activation,      \
                                       const T*, const T*, index_t, T*);                           \
  template void im2col<T>(const Context&, const ConvShape&, const T*, index_t, T*, index_t);       \
  template void col2im<T>(const Context&, const ConvShape&, const T*, index_t, T*, index_t);       \
  template void maxpool2<T>(const Context&, index_t, index_t, index_t, index_t, const T*, index_t, \
                            T*, index_t, std::uint8_t*);                                           \
  template void maxpool2_backward<T>(const Context&, index_t, index_t, index_t, index_t, const T*, \
                                     index_t, const std::uint8_t*, T*, index_t);                   \
  template void column_sums<T>(const Context&, index_t, index_t, const T*, index_t, double, T*);   \
  template void softmax_xent<T>(const Context&, index_t, index_t, const T*, const std::int32_t*,   \
                                T*, T*, T*);                                                       \
  template void softmax_sampled_grad<T>(const Context&, index_t, index_t, const T*, std::uint64_t, \
                                        std::uint64_t, T*);                                        \
  template void sigmoid_bce<T>(const Context&, index_t, index_t, const T*, const T*, index_t, T*,  \
                               T*);                                                                \
  template void sigmoid_bce_sampled_grad<T>(const Context&, index_t, index_t, const T*,            \
                                            std::uint64_t, std::uint64_t, T*);                     \
  template void accumulate_sum<T>(const Context&, const T*, index_t, double*);                     \
  template void softmax_hessian_sqrt<T>(const Context&, index_t, index_t, const T*, T*);           \
  template void sigmoid_hessian_sqrt<T>(const Context&, index_t, index_t, const T*, T*);           \
  template void repeat_blocks<T>(const Context&, index_t, index_t, index_t, const T*, T*);
