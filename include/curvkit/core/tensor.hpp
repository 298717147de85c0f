// Non-owning views of batches of small dense tensors (order 1 to 4), row-major: the last index
// varies fastest, as in C, PyTorch and the thesis's vec-bar (seeds-ren-thesis.md §5.1).
//
// Tensor b of a TensorBatch has dims d[0..order-1]; element (b, j_0, ..., j_{K-1}) lives at
//   data[b * stride + ((j_0 * d_1 + j_1) * d_2 + j_2) ...]
// Tensors are dense (no padding inside a tensor); stride >= d_0 * ... * d_{K-1} separates them.
//
// Mode k (0-based, the tensor dimension index; the thesis's mode k+1) splits a tensor into
// `outer(k)` slabs of `dims[k] x inner(k)` row-major matrices with
//   outer(k) = d_0 * ... * d_{k-1},   inner(k) = d_{k+1} * ... * d_{K-1}:
// slab l is the matrix whose row i holds the elements with j_k = i and leading indices l.  The
// mode-k unfolding mat_k(X) (d_k x prod_{j != k} d_j) is these slabs side by side, so mode
// products and mode Grams are batched matrix products over slabs, with no permutation.
#pragma once

#include <array>
#include <initializer_list>
#include <type_traits>

#include "curvkit/core/types.hpp"

namespace curvkit {

inline constexpr int kMaxTensorOrder = 4;

template <class T>
struct TensorBatch {
  T* data = nullptr;
  index_t batch = 0;
  int order = 0;  ///< 1..kMaxTensorOrder
  std::array<index_t, kMaxTensorOrder> dims{};  ///< dims[k] for k < order; the rest ignored
  index_t stride = 0;  ///< distance between consecutive tensors, in elements

  /// Elements of one tensor.
  CURVKIT_HD_INLINE index_t size() const {
    index_t s = 1;
    for (int k = 0; k < order; ++k) s *= dims[k];
    return s;
  }
  /// Product of the dimensions before mode k.
  CURVKIT_HD_INLINE index_t outer(int k) const {
    index_t s = 1;
    for (int j = 0; j < k; ++j) s *= dims[j];
    return s;
  }
  /// Product of the dimensions after mode k.
  CURVKIT_HD_INLINE index_t inner(int k) const {
    index_t s = 1;
    for (int j = k + 1; j < order; ++j) s *= dims[j];
    return s;
  }
  CURVKIT_HD_INLINE T* tensor(index_t b) const { return data + b * stride; }
  /// Number of elements a buffer must hold for this view.
  CURVKIT_HD_INLINE index_t extent() const {
    const index_t s = size();
    if (batch == 0 || s == 0) return 0;
    return (batch - 1) * stride + s;
  }
  template <class U = T, class = std::enable_if_t<!std::is_const_v<U>>>
  operator TensorBatch<const U>() const {
    return {data, batch, order, dims, stride};
  }
};

/// A contiguous batch of tensors with the given dims (1 to 4 of them).
template <class T>
TensorBatch<T> make_tensor_batch(T* data, index_t batch, std::initializer_list<index_t> dims) {
  TensorBatch<T> t;
  t.data = data;
  t.batch = batch;
  t.order = static_cast<int>(dims.size());
  int k = 0;
  for (index_t d : dims)
    if (k < kMaxTensorOrder) t.dims[k++] = d;
  t.stride = t.order <= kMaxTensorOrder ? t.size() : 0;
  return t;
}

}  // namespace curvkit
