// Shampoo (thesis Alg. 16, the baseline of the TNT and MBF papers; docs/optimizer-spec.md §4):
// per tensor variable of order K (a linear W: (d_out, d_in); a convolution W: (c_out, c_in,
// kh kw); a bias or vector: (n)), with G the mean gradient,
//   M <- mu M + G                                                   every step
//   S_i <- beta S_i + (1 - beta) mat_i(G) mat_i(G)^T   (i < K)        when k % t1 == 0
//   R_i = (S_i + eps I)^{-1/(2K)} (coupled Newton, residual stop)     when k % t2 == 0
//   P = M x_1 R_1 x_2 ... x_K R_K;  optional grafting P <- P ||Q||_F / (||P||_F + 1e-16) with
//   Q = M (sgd) or M / (sqrt(A) + graft_eps), A <- A + G * G (adagrad);
//   W <- (1 - lr wd) W - lr P.
// The first statistics update overwrites (beta 0), so the first roots see the first gradient,
// not (1 - beta) of it.  R_i starts as I; a root whose iteration fails (newton_schulz info < 0
// or >= 2) keeps the previous R_i.
#pragma once

#include "curvkit/optim/optimizer.hpp"

namespace curvkit::optim {

enum class Graft : int { none = 0, sgd = 1, adagrad = 2 };

struct ShampooOptions {
  double lr = 3e-4;
  double epsilon = 3e-4;  ///< absolute damping of every S_i
  double momentum = 0.9;
  double stat_decay = 0.9;
  double weight_decay = 0;
  int t1 = 1;   ///< statistics period
  int t2 = 20;  ///< root period
  int ns_max_iterations = 100;
  double ns_tolerance = 1e-6;
  Graft graft = Graft::none;
  double graft_epsilon = 1e-10;
  /// The convolution settings of the papers (ResNet-32 on CIFAR-10).
  static ShampooOptions cnn() {
    ShampooOptions o;
    o.lr = 0.01;
    o.epsilon = 0.01;
    o.weight_decay = 0.1;
    o.t1 = 10;
    o.t2 = 100;
    return o;
  }
};

template <class T>
std::unique_ptr<Optimizer<T>> make_shampoo(const ShampooOptions& options = {});

}  // namespace curvkit::optim
