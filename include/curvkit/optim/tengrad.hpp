// TENGraD: the exact per-layer damped Fisher step by the Woodbury identity (TENGraD eq. 2-7 and
// §3.2; docs/optimizer-spec-2.md §5).  Per linear or convolutional layer, with the bias folded in
// (W~ = [W | b], d_A = d_in + 1 with a bias, d_in without; d_G = d_out), J the m x d_G d_A matrix
// of the per-sample gradients P_i = sum_t g_{i,t} a_{i,t}^T (curvkit/khatri_rao.hpp) built from
// the layer inputs a and the sampled-label output gradients g_s, and F = (1/m) J^T J:
//
//   k % t2 == 0 (refresh):  K = (1/m) J J^T  (m x m, khatri_rao_gram),  L L^T = K + lambda I;
//                           a and g_s of this batch are kept (Â, Ĝ) with L;
//   every step:             M~ <- mu M~ + [dW | db]
//                           z = (K + lambda I)^{-1} J vec(M~)            (J from Â, Ĝ)
//                           V~ = M~ - (1/m) J^T z   = lambda (F + lambda I)^{-1} vec(M~)
//                           W~ <- (1 - lr wd) W~ - (lr / lambda) V~.
//
// So the step applies (F_{k0} + lambda I)^{-1}, F_{k0} the Fisher of the last refresh's batch, to
// the momentum: between refreshes the preconditioner is frozen as a whole (the batch's a, g_s and
// the factor), the only reading of the paper's "inverse every T iterations" under which it stays
// the inverse of one SPD matrix.  A refresh whose factorisation fails even with
// NonSpdPolicy::shift keeps the previous preconditioner (info watched by health()); before the
// first success the preconditioner is (0 + lambda I)^{-1}.
//
// Vector layers (LayerKind::vector) take the momentum direction with lr / lambda, the Woodbury
// step's scale.  The mini-batch size m of the refresh steps must be the m init() saw (the m x m
// state is sized then).  g_s is LayerView::g_sampled, or LayerView::g with `empirical`.  a must
// carry its trailing column of ones when the layer has a bias.  step() only launches.
#pragma once

#include <memory>

#include "curvkit/optim/optimizer.hpp"

namespace curvkit::optim {

struct TengradOptions {
  double lr = 0.003;        ///< alpha (the paper's eta); the step is (alpha / lambda) V~
  double damping = 0.1;     ///< lambda (the paper's alpha)
  double momentum = 0.9;    ///< mu, heavy ball on the gradient (no 1 - mu), App. A.4
  double weight_decay = 0;  ///< gamma, decoupled, on every tensor
  int t2 = 20;              ///< refresh period of K, its factor and the kept batch
  bool empirical = false;   ///< g (true labels) instead of g_sampled

  /// No paper setting for an autoencoder: the Fashion-MNIST values with the layer-I
  /// autoencoder refresh period (20).
  static TengradOptions autoencoder() { return {}; }
  /// 3C1F on Fashion-MNIST (TENGraD Table 3, App. A.4): lr 0.003, lambda 0.1, wd 0.001, t2 100.
  static TengradOptions cnn() {
    TengradOptions o;
    o.weight_decay = 0.001;
    o.t2 = 100;
    return o;
  }
};

/// TENGraD (see the top of this header).  init() needs every non-vector layer's m (> 0, the
/// mini-batch size) and checks the options (invalid_argument for a non-finite lr or weight
/// decay, damping <= 0, momentum outside [0, 1), t2 < 1).  needs() asks for a and g_sampled (g
/// when empirical) on refresh steps.
template <class T>
std::unique_ptr<Optimizer<T>> make_tengrad(const TengradOptions& options = {});

}  // namespace curvkit::optim
