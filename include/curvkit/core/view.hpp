// Non-owning views of batches of matrices.  curvkit never owns or allocates caller data.
//
// A MatrixBatch is `batch` matrices of `rows` x `cols`, row-major (C / PyTorch order),
// batch-outermost: element (b, i, j) lives at data[b * stride + i * ld + j].
//   ld     >= cols                     (padding between rows is allowed)
//   stride >= (rows - 1) * ld + cols   (when batch > 1; matrices may not overlap)
// Symmetric matrices are read from and written to their lower triangle (i >= j) unless an
// op documents otherwise.
#pragma once

#include <span>
#include <type_traits>

#include "curvkit/core/types.hpp"

namespace curvkit {

template <class T>
struct MatrixBatch {
  T* data = nullptr;
  index_t batch = 0;
  index_t rows = 0;
  index_t cols = 0;
  index_t ld = 0;      ///< distance between consecutive rows, in elements
  index_t stride = 0;  ///< distance between consecutive matrices, in elements

  CURVKIT_HD_INLINE T* matrix(index_t b) const { return data + b * stride; }
  CURVKIT_HD_INLINE T& operator()(index_t b, index_t i, index_t j) const {
    return data[b * stride + i * ld + j];
  }
  /// Number of elements a buffer must hold for this view ((batch-1)*stride + last matrix).
  CURVKIT_HD_INLINE index_t extent() const {
    if (batch == 0 || rows == 0 || cols == 0) return 0;
    return (batch - 1) * stride + (rows - 1) * ld + cols;
  }
  /// A view of the same memory with const elements (only for non-const T).
  template <class U = T, class = std::enable_if_t<!std::is_const_v<U>>>
  operator MatrixBatch<const U>() const {
    return {data, batch, rows, cols, ld, stride};
  }
};

/// A contiguous batch: ld = cols, stride = rows * cols.
template <class T>
MatrixBatch<T> make_batch(T* data, index_t batch, index_t rows, index_t cols) {
  return {data, batch, rows, cols, cols, rows * cols};
}

/// A batch with explicit leading dimension and stride.
template <class T>
MatrixBatch<T> make_batch(T* data, index_t batch, index_t rows, index_t cols, index_t ld,
                          index_t stride) {
  return {data, batch, rows, cols, ld, stride};
}

/// A grouped batch: several uniform batches of (possibly) different sizes processed by one
/// call, e.g. the Kronecker factors of every layer of a network.  Per-matrix outputs (info,
/// shifts) of a grouped call are one flat array in group order: group 0's matrices first.
template <class T>
using GroupedBatch = std::span<const MatrixBatch<T>>;

/// Total number of matrices in a grouped batch.
template <class T>
index_t total_batch(GroupedBatch<T> groups) {
  index_t total = 0;
  for (const auto& g : groups) total += g.batch;
  return total;
}

}  // namespace curvkit
