// K-FAC with factored Tikhonov damping and the pi split (thesis Alg. 12, the baseline of its
// Ch3/Ch4; docs/optimizer-spec.md §3).  Per linear or convolutional layer, with the bias folded
// in (W~ = [W | b], d_A = d_in + 1 with a bias, d_in without; d_G = d_out):
//
//   k % t1 == 0:  Omega <- beta Omega + (1 - beta) (1/m) a^T a          (sum over positions,
//                 Gamma <- beta Gamma + (1 - beta) (1/(m S)) g_s^T g_s   mean over samples)
//                 with beta = stat_decay, and beta = 0 at the first statistics step;
//   k % t2 == 0:  pi = sqrt((tr Omega / d_A) / (tr Gamma / d_G)),
//                 H_Omega = (Omega + pi sqrt(lambda) I)^{-1},
//                 H_Gamma = (Gamma + sqrt(lambda)/pi I)^{-1}
//                 (explicit inverses, or the Cholesky factors of the damped factors);
//   every step:   M~ <- mu M~ + [dW | db];   P~ = H_Gamma M~ H_Omega;
//                 W~ <- (1 - lr wd) W~ - lr P~.
//
// Two-level K-FAC (`two_level`, Tselepidis et al., docs/optimizer-spec-2.md §6) adds a coarse
// correction with one variable per K-FAC layer: from per-sample layer sums sigma_a(i, l) =
// sum_t 1^T a_{l,i,t} (the ones column included) and sigma_g(i, l) = sum_t 1^T g_{s,l,i,t},
//   k % t1 == 0:  S_A <- beta S_A + (1 - beta) (1/m) sigma_a^T sigma_a, S_G likewise,
//                 F_c = S_A o S_G  (L x L; for linear layers the entry sums of K-FAC's blocks);
//   k % t2 == 0:  L_c L_c^T = F_c + lambda I;
//   every step:   r_l = 1^T M~_l 1,  c = (F_c + lambda I)^{-1} r,  P~_l <- P~_l + c_l 1 1^T.
// KL clipping (`kl_clip` = kappa > 0, with or without the coarse term) scales the K-FAC layers'
// P~ by nu = min(1, sqrt(kappa / (lr^2 |sum_l <P~_l, M~_l>|))) before the update.
//
// Vector layers (LayerKind::vector, batch-norm parameters) take the momentum-SGD direction with
// the same lr and weight decay.  g_s is LayerView::g_sampled (labels sampled from the model), or
// LayerView::g with `empirical` (KFAC-EF).  a must carry the trailing column of ones when the
// layer has a bias (it is not checked: that would need a synchronisation).  Every op is
// launched on the Context (elementwise, gemm, kron, spd families); step() never synchronises.
// Failures stay on the backend: kfac_pi_damping's info (1: a zero trace, pi = 1) and potri's /
// potrf's info (with NonSpdPolicy::shift a factor that is not SPD after damping is retried with
// a larger shift instead of turning NaN).
#pragma once

#include <memory>

#include "curvkit/kron.hpp"
#include "curvkit/optim/optimizer.hpp"
#include "curvkit/spd.hpp"

namespace curvkit::optim {

struct KfacOptions {
  double lr = 0.03;       ///< alpha
  double damping = 1.0;   ///< lambda (factored: pi sqrt(lambda) on Omega, sqrt(lambda)/pi on Gamma)
  double momentum = 0.9;  ///< mu, heavy ball (no 1 - mu)
  double stat_decay = 0.9;  ///< beta of the factors' EMA
  double weight_decay = 0;  ///< gamma, decoupled, on every tensor (biases included)
  int t1 = 1;               ///< statistics period: Omega, Gamma refreshed when k % t1 == 0
  int t2 = 20;              ///< inverse period: H_Omega, H_Gamma refreshed when k % t2 == 0
  bool pi_split = true;     ///< false: both shifts sqrt(lambda) (the thesis's Ch2 Alg. 7)
  bool empirical = false;   ///< use g (true labels) instead of g_sampled (KFAC-EF)
  bool two_level = false;   ///< add the coarse correction (two-level K-FAC)
  double kl_clip = 0;       ///< kappa of the KL clip; 0: no clipping
  KronFactor form = KronFactor::inverse;      ///< inverses (potri) or Cholesky factors (potrf)
  NonSpdPolicy policy = NonSpdPolicy::shift;  ///< for the damped factors' factorisation

  /// The MNIST autoencoder settings (m = 1000): the defaults above.
  static KfacOptions autoencoder() { return {}; }
  /// ResNet32 / CIFAR-10 (m = 128): lr 0.01, lambda 0.1, weight decay 0.1, t1 10, t2 100.
  static KfacOptions cnn() {
    KfacOptions o;
    o.lr = 0.01;
    o.damping = 0.1;
    o.weight_decay = 0.1;
    o.t1 = 10;
    o.t2 = 100;
    return o;
  }
};

/// K-FAC (see the top of this header).  init() checks the options (invalid_argument for a
/// non-finite lr or weight decay, a negative or non-finite damping, momentum or stat_decay
/// outside [0, 1), t1 or t2 < 1, a negative or non-finite kl_clip; two_level without every
/// K-FAC layer's m, the mini-batch size, at init).  needs() asks for a and g_sampled (g when
/// empirical) on statistics steps.
template <class T>
std::unique_ptr<Optimizer<T>> make_kfac(const KfacOptions& options = {});

}  // namespace curvkit::optim
