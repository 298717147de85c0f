// MBAG, mini-block adaptive gradient (MBAG Alg. 1; docs/optimizer-spec.md §7): every parameter
// tensor is cut into groups pi of tau consecutive entries (row-major; a convolution's groups are
// its kh kw kernels), each with an explicit inverse H_pi = (lambda I + sum_j g_j g_j^T)^{-1}
// kept by Sherman–Morrison, and
//   H_pi <- H_pi - (H_pi g)(H_pi g)^T / (1 + g^T H_pi g)              every step (g: this
//                                                                    step's mean gradient)
//   R_pi = H_pi^{1/2} (coupled Newton–Schulz, ns_iterations steps)    when k % t_sqr == 0
//   v <- beta v + R_pi g_pi;   theta <- (1 - lr wd) theta - lr v.
// Remainder: when tau does not divide a tensor's size n, its last n mod tau entries form one
// smaller group (exact block-diagonal semantics; zero padding would change the root's
// normalisation).  MBAG-N (no_root) uses R = H.  A root whose iteration fails keeps the
// previous R; R starts as lambda^{-1/2} I.
#pragma once

#include "curvkit/newton_schulz.hpp"
#include "curvkit/optim/optimizer.hpp"

namespace curvkit::optim {

struct MbagOptions {
  double lr = 0.01;  ///< not stated by the paper (docs/algorithms.md)
  double damping = 0.1;
  double momentum = 0.9;
  double weight_decay = 0;
  index_t tau = 32;  ///< group size of linear weights, biases and vectors
  int t_sqr = 50;
  int ns_iterations = 7;
  NsStop ns_stop = NsStop::fixed;
  double ns_tolerance = 1e-6;  ///< with NsStop::residual
  bool no_root = false;        ///< MBAG-N
  /// The convolution settings of the paper.
  static MbagOptions cnn() {
    MbagOptions o;
    o.damping = 0.01;
    o.ns_iterations = 5;
    return o;
  }
};

template <class T>
std::unique_ptr<Optimizer<T>> make_mbag(const MbagOptions& options = {});

}  // namespace curvkit::optim
