// Khatri–Rao family: Grams of per-sample gradients and Jacobian products, computed from a
// layer's inputs and output gradients without forming the per-sample gradients
// (seeds-2lkfac-tengrad.md Part II, seeds-ren-thesis.md §7.4, seeds-mbf-mbag.md).
//
// Layout.  For m samples a layer sees S positions per sample (S = 1 for a linear layer; the
// output pixels of a convolution): a is (m S) x d_in (patches for a convolution, im2col rows),
// g is (m S) x d_out, row i S + t is sample i at position t.  S is not passed: it is a.rows / m,
// with m the size of the result.  The per-sample gradient of sample i is the d_out x d_in
// matrix P_i = sum_t g_{i,t} a_{i,t}^T (the weight's shape, as in kron_apply); with bias
// augmentation every a_{i,t} gets a trailing 1, so P_i is d_out x (d_in + 1) and its last column
// is the bias gradient sum_t g_{i,t}.  J is the m x d_out (d_in + bias) matrix with rows vec P_i.
//
// khatri_rao_gram     K = alpha J J^T + beta K (m x m, symmetric):
//                       K_ij = sum_{t,t'} (a_{i,t}^T a_{j,t'} + bias) (g_{i,t}^T g_{j,t'})
//                     For S = 1 this is (A A^T) o (G G^T), the Hadamard product of two Grams
//                     (TENGraD's C1 o C2, SMW-NG's kernel), computed fused: each output tile
//                     gets both products in scratch and is written once.  Grouped: one K per
//                     layer, or one K summed over the layers (SMW-NG's sum_l; the linear
//                     layers' terms are summed inside each tile).
//                     Linear: flops m (m+1) (d_in + d_out) (lower half), bytes m (d_in + d_out)
//                     s read, m^2 s written.
//                     Convolution, two ways, chosen per layer by a cost model (GramPath):
//                       fused   per pair (i, j): the S x S blocks of A_i A_j^T and G_i G_j^T in
//                               tiles, multiplied and summed, never stored: m (m+1) S^2
//                               (d_in + d_out) flops, no workspace.  Wins for small S.
//                       direct  the per-sample gradients for a slice of output channels at a
//                               time (a batched GEMM, in workspace) and their Gram (SYRK):
//                               2 m S d_in d_out + m (m+1) d_in d_out flops, workspace
//                               m x min(d_out, chunk) x (d_in + 1) elements.  Wins for large S.
//                     Neither materialises the m x m x S x S tensors of TENGraD's eq. 10.
// khatri_rao_jv       u = alpha J vec(V) + beta u, u_i = sum_t g_{i,t}^T V a_{i,t} (+ g_{i,t}^T
//                     v_bias): V weight-shaped, d_out x (d_in + bias).  flops 2 m S d_in d_out.
// khatri_rao_jtu      V = alpha J^T u + beta V, i.e. alpha sum_i u_i P_i + beta V
//                     = alpha G^T diag(u (x) 1_S) A + beta V.  flops 2 m S d_in d_out.
//                     With beta != 0 these two express TENGraD's and SMW-NG's update
//                     (1/lambda)(grad - (1/m) J^T z) in one call.
// khatri_rao_layer_sums  sums(i, l) = sum_t (1^T a_{l,i,t} + bias): the per-sample sum of each
//                     layer's (augmented) input, or of its output gradient, an m x L matrix
//                     (two-level K-FAC's sigma^a, sigma^g).
// coarse_gram         two-level K-FAC's coarse Fisher F_c = S_A o S_G (L x L) from per-sample
//                     layer sums:  S_A <- beta S_A + (1-beta) (1/m) sums_a^T sums_a, the same
//                     for S_G, then F_c = S_A o S_G (all three full symmetric).  Sum of the
//                     entries of each Kronecker block A_ij (x) G_ij, seeds-2lkfac-tengrad.md
//                     §I.5 (exact for linear layers; for convolutions the sums are over the
//                     positions as well, a modelling choice, see docs/algorithms.md).
//
// No numerical failure modes: NaN/Inf in an input reaches the outputs it touches.  beta == 0
// means the output is not read (NaN there does not propagate).  Arguments are validated once
// on the host (Status::invalid_argument naming the argument); outputs must not overlap inputs.
#pragma once

#include <cstddef>

#include "curvkit/core/context.hpp"
#include "curvkit/core/status.hpp"
#include "curvkit/core/view.hpp"
#include "curvkit/gemm.hpp"

namespace curvkit {

/// How khatri_rao_gram computes a layer with S > 1 positions per sample.
enum class GramPath : int {
  automatic = 0,  ///< the cheaper of the two by the cost model (khatri_rao_gram_path)
  fused = 1,      ///< tiled products of the S x S blocks, summed on the fly
  direct = 2,     ///< per-sample gradients in slices (workspace), then their Gram
};

struct KhatriRaoOptions {
  bool bias = false;        ///< augment every input row with a trailing 1 (a bias parameter)
  double alpha = 1.0;       ///< finite scale of the product (1/m for the empirical Fisher)
  double beta = 0.0;        ///< finite; the output is alpha (product) + beta (output), 0: not read
  Fill fill = Fill::lower;  ///< khatri_rao_gram: which part of K is written
  GramPath path = GramPath::automatic;  ///< khatri_rao_gram: layers with S > 1
};

/// The path khatri_rao_gram takes for one layer of m samples with S positions (S = 1 and empty
/// per-sample gradients are always `fused`): the cheaper of m (m+1) S^2 (d_in + d_out) flops
/// (fused) and 2 m S d_in d_out + m (m+1) d_in d_out flops plus 10 flops per byte of per-sample
/// gradients written and read again (direct).
GramPath khatri_rao_gram_path(index_t m, index_t positions, index_t d_in, index_t d_out,
                              bool bias = false);

/// Bytes of Context workspace khatri_rao_gram needs (0 unless a layer takes the direct path).
template <class T>
std::size_t khatri_rao_gram_workspace_size(const Context& ctx, GroupedBatch<const T> a,
                                           GroupedBatch<const T> g, GroupedBatch<T> k,
                                           const KhatriRaoOptions& options = {});

/// K = alpha J J^T + beta K per matrix: a is batch x (m S) x d_in, g batch x (m S) x d_out,
/// k batch x m x m.
template <class T>
Status khatri_rao_gram(const Context& ctx, MatrixBatch<const T> a, MatrixBatch<const T> g,
                       MatrixBatch<T> k, const KhatriRaoOptions& options = {});

/// Grouped over layers: a[l], g[l] of layer l (each its own d_in, d_out and S).  k has one
/// group per layer (K_l = alpha J_l J_l^T + beta K_l) or one group (K = alpha sum_l J_l J_l^T
/// + beta K; every layer then has k's batch and m).
template <class T>
Status khatri_rao_gram(const Context& ctx, GroupedBatch<const T> a, GroupedBatch<const T> g,
                       GroupedBatch<T> k, const KhatriRaoOptions& options = {});

/// u = alpha J vec(V) + beta u per matrix: v is batch x d_out x (d_in + bias), u batch x m x 1.
template <class T>
Status khatri_rao_jv(const Context& ctx, MatrixBatch<const T> a, MatrixBatch<const T> g,
                     MatrixBatch<const T> v, MatrixBatch<T> u,
                     const KhatriRaoOptions& options = {});

/// Grouped: u has one group per layer (u_l = alpha J_l v_l + beta u_l) or one group (u = alpha
/// sum_l J_l v_l + beta u, the whole network's J times its gradient).
template <class T>
Status khatri_rao_jv(const Context& ctx, GroupedBatch<const T> a, GroupedBatch<const T> g,
                     GroupedBatch<const T> v, GroupedBatch<T> u,
                     const KhatriRaoOptions& options = {});

/// V = alpha J^T u + beta V per matrix: u is batch x m x 1, v batch x d_out x (d_in + bias).
template <class T>
Status khatri_rao_jtu(const Context& ctx, MatrixBatch<const T> a, MatrixBatch<const T> g,
                      MatrixBatch<const T> u, MatrixBatch<T> v,
                      const KhatriRaoOptions& options = {});

/// Grouped: v has one group per layer; u has one group per layer or one group shared by all
/// layers (SMW-NG's J^T z).
template <class T>
Status khatri_rao_jtu(const Context& ctx, GroupedBatch<const T> a, GroupedBatch<const T> g,
                      GroupedBatch<const T> u, GroupedBatch<T> v,
                      const KhatriRaoOptions& options = {});

/// sums(b, i, l) = sum over sample i's rows of x[l] (and, with bias, + S_l): x[l] is batch x
/// (m S_l) x d_l, sums batch x m x L.
template <class T>
Status khatri_rao_layer_sums(const Context& ctx, GroupedBatch<const T> x, MatrixBatch<T> sums,
                             bool bias = false);

struct CoarseGramOptions {
  double beta = 0.0;  ///< EMA decay of S_A and S_G in [0, 1); 0: they are not read
};

/// Two-level K-FAC's coarse matrix (see the top of this header): sums_a and sums_g are
/// batch x m x L; s_a, s_g and f are batch x L x L and are written in full.
template <class T>
Status coarse_gram(const Context& ctx, MatrixBatch<const T> sums_a, MatrixBatch<const T> sums_g,
                   MatrixBatch<T> s_a, MatrixBatch<T> s_g, MatrixBatch<T> f,
                   const CoarseGramOptions& options = {});

}  // namespace curvkit
