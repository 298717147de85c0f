// SMW-NG: the exact damped empirical-Fisher natural gradient by the Sherman–Morrison–Woodbury
// identity, with Levenberg–Marquardt damping (Ren & Goldfarb, thesis chapter 5: eq. 5.3, 5.6,
// Algorithm 23, §5.2.3; docs/optimizer-spec-2.md §3).  Every linear or convolutional layer l is
// folded (W~_l = [W_l | b_l]); J (N2 x n) holds the per-sample gradients (true labels) of the
// first N2 samples of the mini-batch as rows, B = (1/N2) J^T J, g the mean gradient of all m
// samples, lambda a damping on the device:
//
//   K = J J^T = sum_l J_l J_l^T  (N2 x N2, khatri_rao_gram),   D = lambda I + K / N2 = L L^T
//   z = D^{-1} J g,   V~ = g - (1/N2) J^T z  = lambda (B + lambda I)^{-1} g
//   W~ <- (1 - lr wd) W~ - (lr / lambda) V~                    (the step -lr d, d = V~ / lambda)
//
// and, after the trainer's forward pass at the new weights (SecondPass::forward: the mean
// losses f0 before and f1 after), the LM rule (curvkit::lm_damping_update): rho = (f0 - f1) /
// pred with pred = lr g^T d - lr^2 d^T B d / 2 (d^T B d = g^T d - lambda |d|^2, exact);
// lambda_LM *= boost if rho < epsilon (or f1 is not finite), *= drop if rho > 1 - epsilon;
// lambda = lambda_LM + floor.  lambda never leaves the device: step() only launches.
//
// SMW-NG-BD (block_diagonal) solves each layer's block on its own: K_l, D_l = lambda I +
// K_l / N2, V~_l = g_l - (1/N2) J_l^T D_l^{-1} J_l g_l, i.e. G = blockdiag(B_l + lambda I).
//
// SMW-GN (gauss_newton; thesis eq. 5.2, §5.4.7) replaces the empirical Fisher by the
// Gauss–Newton matrix B = (1/N2) sum_i J_i^T H_i J_i, J_i the Jacobian of the network's R
// outputs, H_i = C_i C_i^T the loss Hessian in them: the rows of J become the N2 R pseudo-samples
// (i, r) with gradients J_i^T C_i e_r, built from a (sample i's rows) and the trainer's cotangent
// backprops q (LayerView::q, Needs::cotangents = N2).  K is (N2 R) x (N2 R); the factor C_i
// (softmax: diag(sqrt p) - p sqrt(p)^T, rank R - 1) keeps D = lambda I + K / N2 symmetric positive
// definite where the thesis's (5.6) needs H^{-1} and (5.7) an LU solve.  The optimizer repeats
// a's rows R times per sample into its own buffer (one grouped copy per step).
//
// The per-sample gradients need every layer's a (with its trailing column of ones when the layer
// has a bias) and g; vector layers (LayerKind::vector) have no per-sample view and are rejected
// by init().  The losses (1 x 1 x m) come on one layer's view (the output layer's).
#pragma once

#include <memory>

#include "curvkit/optim/optimizer.hpp"

namespace curvkit::optim {

struct SmwNgOptions {
  double lr = 0.1;          ///< alpha (thesis §5.8: the initial lr; lambda adapts)
  double damping = 1.0;     ///< lambda_LM at step 0
  double weight_decay = 0;  ///< gamma, decoupled (Algorithm 23 has none)
  /// N2 <= m; 0 selects m / 2 (the thesis's ratio), at least 1, and for SMW-GN at most
  /// gauss_newton_budget / R (R: the output layer's rows), so that the (N2 R)^2 system stays small
  index_t curvature_samples = 0;
  index_t gauss_newton_budget = 640;  ///< N2 R cap of that default (the CNN's 64 x 10)
  bool block_diagonal = false;        ///< SMW-NG-BD
  bool gauss_newton = false;          ///< SMW-GN (with block_diagonal: its per-layer blocks)
  double boost = 1.01;                ///< LM rule (Kiros, thesis §5.2.3)
  double drop = 0.99;
  double epsilon = 0.25;
  double floor = 1e-3;  ///< tau: lambda = lambda_LM + tau

  /// The thesis has no autoencoder or CNN setting: lr 0.1, N2 = m / 2, no weight decay.
  /// SMW-GN's N2 defaults to 64 for 10 classes and to 1 for the autoencoder's 784 outputs (the
  /// thesis: "choose a relatively small N2", §5.7.1; docs/optimizer-spec-2.md §4.2).
  static SmwNgOptions autoencoder() { return {}; }
  static SmwNgOptions cnn() { return {}; }
};

/// SMW-NG (see the top of this header).  init() checks the options (invalid_argument for lr <= 0
/// or not finite, a non-finite weight decay, damping < 0, curvature_samples < 0 or > m, a bad
/// LM rule), needs every layer's m (the mini-batch size, fixed) and rejects vector layers.
/// needs(): a, g and losses every step and SecondPass::forward (SMW-GN: a, q for N2 samples
/// and losses; N2 is known after init()); finish_step() reads the second pass's losses.
template <class T>
std::unique_ptr<Optimizer<T>> make_smw_ng(const SmwNgOptions& options = {});

}  // namespace curvkit::optim
