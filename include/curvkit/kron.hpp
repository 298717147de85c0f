// Kronecker family: mode products, Kronecker-factored applies and mode Grams, the kernels of
// K-FAC, TNT and Shampoo (seeds-ren-thesis.md §4-6).  The batched GEMM/SYRK they are built on
// are in curvkit/gemm.hpp.  Tensors are row-major TensorBatch views (curvkit/core/tensor.hpp);
// modes are 0-based (mode k here is the thesis's mode k+1).
//
// mode_product        Y = X x_k op(U):  Y[.., i, ..] = sum_j op(U)[i, j] X[.., j, ..] (index k)
//                     For a matrix X: X x_0 U = U X and X x_1 U = X U^T.
//                     flops 2 d' prod_j d_j; bytes X + Y + U.
// mode_product_chain  Y = X x_0 U_0 x_1 U_1 ... x_{K-1} U_{K-1} (any subset of modes).  By the
//                     thesis's Proposition 1, vec(Y) = (U_0 (x) U_1 (x) ... (x) U_{K-1}) vec(X)
//                     (row-major vec), computed without the Kronecker matrix.  Mode products in
//                     different modes commute; the call picks the order with the fewest flops
//                     (a rectangular U that shrinks its mode goes first) and writes only the
//                     intermediates between the products (two in Context workspace; none for
//                     one mode, one for two).
// kron_apply          out = alpha G^{-1} grad A^{-1}, i.e. (A^{-1} (x) G^{-1}) vec(grad) with
//                     column-major vec: the K-FAC step for a layer with weight d_out x d_in,
//                     G d_out x d_out (output-gradient factor), A d_in x d_in (input factor).
//                     The factors are given either as explicit inverses (used as given, e.g.
//                     from spd potri) or as Cholesky factors L (from spd potrf, damping
//                     included), in which case two triangular solves replace each product.
//                     Grouped: a whole network's layers, each of its own shape, in one call.
//                     flops 2 d_out d_in (d_out + d_in) (both forms).
// mode_gram           S_k <- beta S_k + (1 - beta) scale mat_k(X) mat_k(X)^T for every mode k of
//                     every tensor (TNT's and Shampoo's statistics; beta = 0: S_k is not read).
//                     flops (d_k + 1) prod_j d_j per mode (half of a full product).
// tnt_normalize       TNT's trace normalisation (thesis eq. 4.10) of the K mode statistics of
//                     each tensor, in place:
//                       U_i <- S_i / (c0^{K-1} prod_{j != i} d_j),  c0 = (t / prod_j d_j)^{1/K},
//                     t = tr(S_i) (the same for every i in exact arithmetic; the mean of the K
//                     traces is used).  Afterwards tr(U_i)/d_i = c0 for every i and
//                     S_i = U_i prod_{j != i} tr(U_j).
// kfac_pi_damping     K-FAC's factored Tikhonov damping with the pi split (thesis Alg. 12;
//                     docs/optimizer-spec.md §3, §9.2): for the Kronecker factors A (d_A x d_A,
//                     K-FAC's Omega) and G (d_G x d_G, Gamma) of one layer and a damping lambda,
//                       t_A = tr(A) / d_A,  t_G = tr(G) / d_G,  pi = sqrt(t_A / t_G),
//                       shift_a = pi sqrt(lambda),  shift_g = sqrt(lambda) / pi,
//                     so that (A + shift_a I) (x) (G + shift_g I) = A (x) G
//                     + sqrt(lambda) (pi I (x) G + A (x) I / pi) + lambda I, with pi the ratio of
//                     the factors' mean eigenvalues.  Only the diagonals are read; the traces
//                     are summed and divided in double (long double in the reference) and each
//                     shift rounded to T once.  The shifts stay on the backend (no host sync),
//                     ready for elementwise.hpp's add_diagonal before spd potri / potrf.
//                     flops d_A + d_G (the two traces); bytes the two diagonals.
//
// Failures: kfac_pi_damping writes info[b] = 1 with pi = 1 (both shifts sqrt(lambda): damping
// alone defines the block) when t_A <= 0 or t_G <= 0 (a layer whose inputs or output gradients
// were always zero), and info[b] = -1 with NaN shifts when a trace is NaN/Inf; info 0 otherwise.
// tnt_normalize writes info[b] = 1 (matrices left unchanged) when t <= 0 (a variable
// whose gradient was always zero: its statistics are zero, damping alone defines its
// preconditioner) and info[b] = -1 with NaN outputs when a trace is NaN/Inf.  The other ops
// have no numerical failure modes: NaN/Inf in an input reaches the outputs it touches.
// Arguments are validated once on the host (Status::invalid_argument naming the argument).
#pragma once

#include <cstddef>
#include <span>

#include "curvkit/core/context.hpp"
#include "curvkit/core/status.hpp"
#include "curvkit/core/tensor.hpp"
#include "curvkit/core/view.hpp"
#include "curvkit/gemm.hpp"

namespace curvkit {

/// Y = X x_mode op(U) for each tensor.  op(u) is d' x x.dims[mode]; u.batch is x.batch or 1
/// (one matrix for all tensors).  y has x's dims with dims[mode] = d'.  y must not overlap x
/// or u.
template <class T>
Status mode_product(const Context& ctx, TensorBatch<const T> x, int mode, MatrixBatch<const T> u,
                    TensorBatch<T> y, Op op_u = Op::none);

/// Bytes of Context workspace mode_product_chain needs (0 on the reference backend).
template <class T>
std::size_t mode_product_chain_workspace_size(const Context& ctx, TensorBatch<const T> x,
                                              std::span<const MatrixBatch<const T>> u,
                                              Op op_u = Op::none);

/// Y = X x_0 op(U_0) x_1 op(U_1) ... for each tensor: u has x.order entries, u[k] for mode k
/// (u[k].data == nullptr leaves mode k alone); each u[k].batch is x.batch or 1.  y has x's
/// dims with dims[k] = op(u[k]).rows.  y must not overlap x, any u[k] or the workspace.
template <class T>
Status mode_product_chain(const Context& ctx, TensorBatch<const T> x,
                          std::span<const MatrixBatch<const T>> u, TensorBatch<T> y,
                          Op op_u = Op::none);

/// How kron_apply receives the Kronecker factors.
enum class KronFactor : int {
  inverse = 0,   ///< g_factor = G^{-1}, a_factor = A^{-1}, full matrices used as given
  cholesky = 1,  ///< g_factor = L_G, a_factor = L_A with G = L_G L_G^T (lower triangles read)
};

struct KronApplyOptions {
  KronFactor form = KronFactor::inverse;
  double alpha = 1.0;  ///< finite scale of the result
};

/// Bytes of Context workspace kron_apply needs for these groups (0 unless a backend needs one).
template <class T>
std::size_t kron_apply_workspace_size(const Context& ctx, GroupedBatch<const T> grad,
                                      const KronApplyOptions& options = {});

/// out = alpha G^{-1} grad A^{-1} per matrix: grad and out are batch x d_out x d_in, g_factor
/// batch x d_out x d_out, a_factor batch x d_in x d_in (factors may have batch 1: shared).
/// out must not overlap any input.
template <class T>
Status kron_apply(const Context& ctx, MatrixBatch<const T> g_factor, MatrixBatch<const T> a_factor,
                  MatrixBatch<const T> grad, MatrixBatch<T> out, const KronApplyOptions& options = {});

/// Grouped kron_apply: group l is one layer shape (usually batch 1), all in one call.
template <class T>
Status kron_apply(const Context& ctx, GroupedBatch<const T> g_factor,
                  GroupedBatch<const T> a_factor, GroupedBatch<const T> grad, GroupedBatch<T> out,
                  const KronApplyOptions& options = {});

struct ModeGramOptions {
  double beta = 0.0;   ///< EMA decay in [0, 1); 0 overwrites S (S is then not read)
  double scale = 1.0;  ///< finite multiplier of the Gram
  Fill fill = Fill::full;
};

/// S_k <- beta S_k + (1 - beta) scale mat_k(X) mat_k(X)^T for each tensor and each mode k with
/// grams[k].data != nullptr; grams has x.order entries, grams[k] is x.batch x d_k x d_k and
/// must not overlap x or another grams entry.
template <class T>
Status mode_gram(const Context& ctx, TensorBatch<const T> x, std::span<const MatrixBatch<T>> grams,
                 const ModeGramOptions& options = {});

/// TNT trace normalisation in place (see the top of this header): grams has K >= 1 entries,
/// grams[i] is batch x d_i x d_i, one batch entry per tensor variable; every element of each
/// matrix is scaled.  info has batch entries.
template <class T>
Status tnt_normalize(const Context& ctx, std::span<const MatrixBatch<T>> grams, int* info);

/// K-FAC's pi-split damping shifts (see the top of this header) for every pair of Kronecker
/// factors: group l pairs a_factors[l] with g_factors[l] (the same batch; square matrices of
/// any sizes), matrix b of group l pairs a_factors[l](b) with g_factors[l](b).  shift_a,
/// shift_g and info have one entry per pair, flat in group order (group 0's matrices first):
/// a network passes one group of batch 1 per layer and gets shift_a[l], shift_g[l] for layer l.
/// lambda must be finite and >= 0.  Only the diagonals of the factors are read; an empty
/// factor (d = 0) counts as a zero trace.  shift_a and shift_g must not overlap each other or
/// a factor.
template <class T>
Status kfac_pi_damping(const Context& ctx, GroupedBatch<const T> a_factors,
                       GroupedBatch<const T> g_factors, double lambda, T* shift_a, T* shift_g,
                       int* info);

}  // namespace curvkit
