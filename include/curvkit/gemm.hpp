// Batched matrix products: GEMM and SYRK on uniform and grouped batches.  Part of the Kronecker
// family (curvkit/kron.hpp builds mode products, Kronecker-factored applies and mode Grams on
// them) and used by every family and optimizer that needs a product.
//
// Math (per matrix b; op(X) is X or X^T; matrices row-major, see curvkit/core/view.hpp):
//   gemm  C = alpha op(A) op(B) + beta C        op(A) m x k, op(B) k x n, C m x n
//   syrk  C = alpha op(A) op(A)^T + beta C      op(A) n x k, C n x n symmetric: the lower
//                                               triangle is written (both with Fill::full)
// beta == 0 means C is not read (NaN or garbage in C does not propagate), as in BLAS.
// A or B with batch 1 is broadcast: the same matrix multiplies every C (a shared factor).
//
// Cost per matrix: gemm 2 m n k flops, reads (m k + k n) s, reads (beta != 0) and writes m n s;
// syrk n (n+1) k flops, reads n k s, reads/writes n (n+1)/2 s.
//
// Backends: reference (long-double accumulation), Kokkos (one work item per output block of
// one matrix; on the host a packed, register-tiled micro-kernel from curvkit/device/gemm.hpp),
// CUDA (own kernels for small matrices, cuBLAS for large ones).
// Arguments are validated once on the host (Status::invalid_argument naming the argument);
// C must not overlap A or B.
#pragma once

#include "curvkit/core/context.hpp"
#include "curvkit/core/status.hpp"
#include "curvkit/core/view.hpp"

namespace curvkit {

/// Whether an operand is used as stored or transposed.
enum class Op : int {
  none = 0,   ///< op(X) = X
  trans = 1,  ///< op(X) = X^T
};

/// Which part of a symmetric result an op writes.
enum class Fill : int {
  lower = 0,  ///< the lower triangle (i >= j); the strict upper triangle is not touched
  full = 1,   ///< both triangles (exactly symmetric)
};

/// C = alpha op(A) op(B) + beta C for each matrix of the batch.  a.batch and b.batch are
/// c.batch or 1 (broadcast).
template <class T>
Status gemm(const Context& ctx, Op op_a, Op op_b, T alpha, MatrixBatch<const T> a,
            MatrixBatch<const T> b, T beta, MatrixBatch<T> c);

/// Grouped GEMM: group g computes c[g] = alpha op(a[g]) op(b[g]) + beta c[g]; the groups may
/// have different shapes (a network's layers).  a, b and c have the same number of groups.
template <class T>
Status gemm(const Context& ctx, Op op_a, Op op_b, T alpha, GroupedBatch<const T> a,
            GroupedBatch<const T> b, T beta, GroupedBatch<T> c);

/// C = alpha op(A) op(A)^T + beta C (symmetric, see Fill) for each matrix; a.batch is c.batch
/// or 1.
template <class T>
Status syrk(const Context& ctx, Op op_a, T alpha, MatrixBatch<const T> a, T beta, MatrixBatch<T> c,
            Fill fill = Fill::lower);

/// Grouped SYRK.
template <class T>
Status syrk(const Context& ctx, Op op_a, T alpha, GroupedBatch<const T> a, T beta,
            GroupedBatch<T> c, Fill fill = Fill::lower);

}  // namespace curvkit
