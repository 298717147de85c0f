// TNT, tensor normal training (thesis Alg. 15, eq. 4.10; docs/optimizer-spec.md §5): per tensor
// variable of order K (the tensors of Shampoo: linear (d_out, d_in), convolution (c_out, c_in,
// kh kw), bias and vector (n)), with G the mean gradient and Gs the mean gradient with labels
// sampled from the model (the LayerView's dw_sampled / db_sampled; G itself when `empirical`),
//   M <- mu M + G                                                     every step
//   S_i <- beta S_i + (1 - beta) mat_i(Gs) mat_i(Gs)^T                  when k % t1 == 0
//   U_i = tnt_normalize(S_i)  (eq. 4.10),  V_i = (U_i + eps I)^{-1}     when k % t2 == 0
//   P = M x_1 V_1 ... x_K V_K;  W <- (1 - lr wd) W - lr P.
// The first statistics update overwrites (beta 0).  V_i = I until the first inverse; an
// inverse that fails (potri info != 0 even with the shift policy, or NaN statistics) keeps the
// previous V_i.
#pragma once

#include "curvkit/optim/optimizer.hpp"

namespace curvkit::optim {

struct TntOptions {
  double lr = 1e-4;
  double epsilon = 0.1;
  double momentum = 0.9;
  double stat_decay = 0.9;
  double weight_decay = 0;
  int t1 = 1;              ///< statistics period
  int t2 = 20;             ///< inverse period
  bool empirical = false;  ///< TNT-EF: statistics from the true-label gradient
  /// The convolution settings of the thesis (ResNet-32 on CIFAR-10).
  static TntOptions cnn() {
    TntOptions o;
    o.epsilon = 0.01;
    o.weight_decay = 10;
    o.t1 = 10;
    o.t2 = 100;
    return o;
  }
};

template <class T>
std::unique_ptr<Optimizer<T>> make_tnt(const TntOptions& options = {});

}  // namespace curvkit::optim
