// K-BFGS: Kronecker-factored BFGS (Ren & Goldfarb; thesis chapter 3, Algorithm 9 with the
// D_P D_LM damping of Algorithm 8; docs/optimizer-spec-2.md §2).  Per linear or convolutional
// layer, with the bias folded in (W~ = [W | b], d_A = d_in + 1 with a bias, d_G = d_out), S
// positions per sample, lambda_A = sqrt(S lambda), lambda_G = sqrt(lambda / S) (thesis §3.4.3),
// and minibatch means abar = (1/(mS)) a^T 1, zbar = (1/(mS)) z^T 1, gbar = (1/(mS)) g^T 1 of the
// layer inputs a, pre-activations z and per-sample output gradients g (true labels):
//
//   step 0:             H_A = ((1/m) a^T a + lambda_A I)^{-1} of the first batch, H_G = I /
//   lambda_G every step:         M~ <- beta M~ + [dW | db];  P~ = H_G M~ H_A;  W~ <- (1 - lr wd) W~
//   - lr P~ k % t == 0, after the update (curvature step):
//     activation side   s_A = H_A abar,  y_A = (1/m) a^T (a s_A) + lambda_A s_A,
//                       H_A <- BFGS(H_A; s_A, y_A)       (the Hessian-action pair: y_A^T s_A > 0)
//     gradient side     s_G <- beta s_G + (1 - beta)(zbar+ - zbar),
//                       y_G <- beta y_G + (1 - beta)(gbar+ - gbar),
//                       (s~, y~) = D_P D_LM(s_G, y_G; H_G, mu1, mu2 = lambda_G),
//                       H_G <- BFGS(H_G; s~, y~)
//   where zbar+, gbar+ come from the trainer's second pass: forward and backward on the same
//   mini-batch at the updated weights (needs().second_pass = forward_backward), handed to
//   finish_step().  BFGS(H; s, y) = (I - rho s y^T) H (I - rho y s^T) + rho s s^T, rho = 1/s^T y.
//
// K-BFGS(L) (history = p > 0) keeps no H_G: it stores the last p damped pairs (s~, y~) of each
// layer and applies H_G as the L-BFGS operator from H_0 = I / lambda_G in the compact form
// (lbfgs_apply): P~ = L-BFGS(M~ H_A), and the damping's H_G y is the same operator applied to y
// (thesis §3.4.3).  A layer that did not move stores a zero pair, which the operator skips.
//
// Vector layers (LayerKind::vector) take the momentum direction with lr / lambda (thesis
// §3.4.3).  a must carry its trailing column of ones when the layer has a bias.  The mini-batch
// size m is fixed at init().  step() and finish_step() only launch.  A pair the BFGS update
// rejects (s^T y <= 0 to rounding, e.g. a layer that did not move) is skipped and counted
// (health()); NaN in the statistics reaches the update, as in K-FAC.
#pragma once

#include <memory>

#include "curvkit/optim/optimizer.hpp"

namespace curvkit::optim {

struct KbfgsOptions {
  double lr = 0.03;         ///< alpha
  double damping = 0.3;     ///< lambda (split into lambda_A, lambda_G per layer)
  double momentum = 0.9;    ///< beta: the momentum and the decay of s_G, y_G (no 1 - beta on M~)
  double weight_decay = 0;  ///< gamma, decoupled, on every tensor
  double mu1 = 0.2;         ///< Powell damping's threshold (thesis Algorithm 8)
  int t = 1;                ///< curvature period: H_A, H_G updated when k % t == 0
  int history = 0;          ///< 0: K-BFGS (H_G kept); p > 0: K-BFGS(L) with p pairs per layer

  /// The MNIST autoencoder settings (thesis Table 3.5, m = 1000): the defaults above.
  static KbfgsOptions autoencoder() { return {}; }
  /// ResNet-32 on CIFAR-10 (thesis Table 3.7, m = 128): lr 100, lambda 1000, wd 1e-5, t 20 (the
  /// effective rate lr / lambda is 0.1).
  static KbfgsOptions cnn() {
    KbfgsOptions o;
    o.lr = 100;
    o.damping = 1000;
    o.weight_decay = 1e-5;
    o.t = 20;
    return o;
  }
  /// K-BFGS(L) with p = 100 pairs (thesis §3.4.3): the autoencoder settings as K-BFGS's
  /// (Table 3.5); ResNet-32 (Table 3.7): lr 1000, lambda 1e4, wd 1e-6, t 20.
  static KbfgsOptions autoencoder_limited() {
    KbfgsOptions o;
    o.history = 100;
    return o;
  }
  static KbfgsOptions cnn_limited() {
    KbfgsOptions o = cnn();
    o.lr = 1000;
    o.damping = 1e4;
    o.weight_decay = 1e-6;
    o.history = 100;
    return o;
  }
};

/// K-BFGS (see the top of this header).  init() checks the options (invalid_argument for a
/// non-finite lr or weight decay, damping <= 0, momentum outside [0, 1), mu1 outside (0, 1),
/// t < 1, history < 0) and needs every non-vector layer's m (the mini-batch size).  needs() on
/// curvature steps: a, g, z and SecondPass::forward_backward; finish_step() then reads z and g of
/// the second pass.
template <class T>
std::unique_ptr<Optimizer<T>> make_kbfgs(const KbfgsOptions& options = {});

}  // namespace curvkit::optim
