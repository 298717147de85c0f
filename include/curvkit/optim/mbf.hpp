// MBF, mini-block Fisher (MBF Alg. 2 "as implemented for all experiments"; docs/optimizer-spec.md
// §6).  Blocks of the empirical Fisher:
//   convolution W   one kh kw x kh kw block per (output, input) channel pair: the kernel
//                   W[o, j, :, :] (c_out c_in blocks);
//   convolution b   1 x 1 blocks;
//   linear          one (d_in + 1) x (d_in + 1) block per layer averaged over the rows of the
//                   folded [W | b] (d_in x d_in without a bias), or, with
//                   `linear_blocks = per_neuron`, one such block per output row (d_out blocks);
//   vector          (batch norm) the Adam direction (elementwise.hpp adam_direction).
// With G the mean gradient (or the sampled-label one, `sampled_labels`: MBF-True):
//   M <- mu M + G                                         (linear layers: on [W | b])
//   S_b <- beta S_b + (1 - beta) g_b g_b^T                 when k % t1 == 0 (averaged linear:
//        S <- beta S + ((1 - beta) / d_out) [G|g_b]^T [G|g_b]; per-neuron: g_b is row b of [G|g_b])
//   P_b = (S_b + lambda I)^{-1}                            when k % t2 == 0 (lambda only here)
//   p_b = P_b M_b;  W <- (1 - lr wd) W - lr p.
// The first statistics update overwrites (beta 0).  P_b starts as I / lambda; an inverse that
// fails even with the shift policy keeps the previous P_b.
#pragma once

#include "curvkit/optim/optimizer.hpp"

namespace curvkit::optim {

/// How a linear layer's rows share blocks.  `averaged` is the paper's Algorithm 2 (one block per
/// layer, O(d_in^2) memory); `per_neuron` keeps d_out blocks (O(d_out d_in^2) memory: 9 GB for the
/// autoencoder in float, fine for small heads such as ResNet-32's 64 x 10).
enum class LinearBlocks { averaged, per_neuron };

struct MbfOptions {
  double lr = 1e-5;
  double damping = 3e-4;
  double momentum = 0.9;
  double stat_decay = 0.9;
  double weight_decay = 0;
  int t1 = 1;                   ///< statistics period
  int t2 = 20;                  ///< inverse period
  bool sampled_labels = false;  ///< MBF-True: statistics from dw_sampled / db_sampled
  LinearBlocks linear_blocks = LinearBlocks::averaged;
  double vector_lr = 0;  ///< learning rate of the vector (Adam) tensors; 0: lr
  AdamWOptions vector_adam{0, 0.9, 0.999, 1e-8, 0};  ///< its constants (lr unused)
  /// The convolution settings of the paper (ResNet-32 on CIFAR-10).
  static MbfOptions cnn() {
    MbfOptions o;
    o.lr = 1e-4;
    o.damping = 3e-3;
    o.weight_decay = 3;
    o.t1 = 10;
    o.t2 = 100;
    return o;
  }
};

template <class T>
std::unique_ptr<Optimizer<T>> make_mbf(const MbfOptions& options = {});

}  // namespace curvkit::optim
