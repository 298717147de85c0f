// The CUDA versions of the trainer kernels (ops.hpp documents each one), defined in ops_cuda.cu
// and compiled only when curvkit has its CUDA backend.  ops_host.cpp forwards every call on a
// cuda Context here; the kernels run on ctx.cuda_stream() and do not synchronise.
#pragma once

#include "ops.hpp"

namespace fmnist::ops::cuda {

template <class T>
void gather_batch(const Context& ctx, const std::uint8_t* images, const std::uint8_t* labels,
                  index_t features, const std::int32_t* order, index_t offset, index_t m, T* dst,
                  index_t ld_dst, std::int32_t* labels_dst);
template <class T>
void bias_activate(const Context& ctx, index_t rows, index_t cols, index_t positions, T* z,
                   const T* bias, Activation act, T* y, index_t ld_y);
template <class T>
void activation_backward(const Context& ctx, index_t rows, index_t cols, index_t positions,
                         Activation act, const T* z, const T* dy, index_t ld_dy, T* dz);
template <class T>
void im2col(const Context& ctx, const ConvShape& s, const T* x, index_t ld_x, T* a, index_t ld_a);
template <class T>
void col2im(const Context& ctx, const ConvShape& s, const T* da, index_t ld_da, T* dx,
            index_t ld_dx);
template <class T>
void maxpool2(const Context& ctx, index_t m, index_t height, index_t width, index_t channels,
              const T* x, index_t ld_x, T* y, index_t ld_y, std::uint8_t* which);
template <class T>
void maxpool2_backward(const Context& ctx, index_t m, index_t height, index_t width,
                       index_t channels, const T* dy, index_t ld_dy, const std::uint8_t* which,
                       T* dx, index_t ld_dx);
template <class T>
void column_sums(const Context& ctx, index_t rows, index_t cols, const T* g, index_t ld_g,
                 double scale, T* out);
template <class T>
void softmax_xent(const Context& ctx, index_t m, index_t classes, const T* z,
                  const std::int32_t* labels, T* grad, T* loss, T* correct);
template <class T>
void softmax_sampled_grad(const Context& ctx, index_t m, index_t classes, const T* z,
                          std::uint64_t seed, std::uint64_t stream, T* grad);
template <class T>
void sigmoid_bce(const Context& ctx, index_t m, index_t n, const T* z, const T* target,
                 index_t ld_t, T* grad, T* loss);
template <class T>
void sigmoid_bce_sampled_grad(const Context& ctx, index_t m, index_t n, const T* z,
                              std::uint64_t seed, std::uint64_t stream, T* grad);
template <class T>
void accumulate_sum(const Context& ctx, const T* x, index_t n, double* acc);
template <class T>
void softmax_hessian_sqrt(const Context& ctx, index_t n, index_t classes, const T* z, T* out);
template <class T>
void sigmoid_hessian_sqrt(const Context& ctx, index_t n, index_t outputs, const T* z, T* out);
template <class T>
void repeat_blocks(const Context& ctx, index_t n, index_t copies, index_t count, const T* src,
                   T* dst);

}  // namespace fmnist::ops::cuda
