// Muon (Keller Jordan's reference implementation; docs/optimizer-spec.md §8): momentum
// orthogonalised by Newton–Schulz for the hidden 2-D weights (linear W, convolution W as
// c_out x (c_in kh kw)); AdamW for biases, vector parameters and the output layer.
//
//   M <- beta M + (1 - beta) dW                         (per Muon tensor)
//   U  = (1 - beta) dW + beta M   (nesterov; else U = M)
//   O  = NS5(U): newton_schulz_polar, the quintic (a, b, c) = (3.4445, -4.7750, 2.0315),
//        5 fixed steps from U / ||U||_F (singular values end in about [0.7, 1.2])
//   W <- (1 - lr wd) W - lr sqrt(max(1, d_out / d_in)) O
// A tensor whose U is zero or not finite (polar info 2 or -1) gets a zero update (O = 0), so
// W never becomes NaN; Muon's reference maps a zero U to zero through its 1e-7 in the norm.
#pragma once

#include "curvkit/newton_schulz.hpp"
#include "curvkit/optim/optimizer.hpp"

namespace curvkit::optim {

struct MuonOptions {
  double lr = 0.02;
  double momentum = 0.95;
  bool nesterov = true;
  double weight_decay = 0;
  int ns_steps = 5;
  PolarSchedule schedule = PolarSchedule::quintic;
  NsCompute compute = NsCompute::native;        ///< bf16 / tf32 on the cuda backend with float
  AdamWOptions aux{3e-4, 0.9, 0.95, 1e-10, 0};  ///< biases, vectors, the output layer
};

template <class T>
std::unique_ptr<Optimizer<T>> make_muon(const MuonOptions& options = {});

}  // namespace curvkit::optim
