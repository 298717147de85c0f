// The optimizer layer's one interface (DESIGN §8; docs/optimizer-spec.md): an optimizer holds
// per-layer state in the Context's backend memory and its options (the paper's defaults), and
// its step() launches only public curvkit ops (elementwise, gemm, spd, kron, khatri_rao,
// newton_schulz families); it never synchronises.  A trainer describes each layer once per step
// with a LayerView of its own tensors and supplies the statistics needs() asks for.
//
// Conventions (docs/optimizer-spec.md §0):
//   - tensors are row-major views in the Context's backend memory; W is d_out x d_in (a
//     convolution's c_out x (c_in kh kw), columns ordered (c_in, ky, kx) like im2col patches),
//     the bias a 1 x d_out row, a vector parameter (batch norm) a 1 x n row in `w`;
//   - dw, db are mean mini-batch gradients (1/m) sum_i d loss_i / d theta;
//   - a (m S x d_in, plus a trailing column of ones when the layer has a bias) and g (m S x d_out,
//     the per-sample loss gradients, i.e. m times those of the mean loss) are the layer inputs
//     and output gradients, S positions per sample (1 for linear layers);
//   - the step counter k starts at 0; statistics are refreshed when k % T1 == 0 and
//     preconditioners when k % T2 == 0, so a preconditioner exists from the first step;
//   - weight decay is decoupled: W <- (1 - lr wd) W - lr direction;
//   - a few methods (K-BFGS, SMW-NG / GN) need the network evaluated again on the same
//     mini-batch at the updated weights: needs().second_pass says which pass, the trainer runs it
//     after step() and hands its results to finish_step() (docs/optimizer-spec-2.md §1).
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "curvkit/core/context.hpp"
#include "curvkit/core/memory.hpp"
#include "curvkit/core/status.hpp"
#include "curvkit/core/view.hpp"

namespace curvkit::optim {

enum class LayerKind : int {
  linear = 0,  ///< w: d_out x d_in
  conv2d = 1,  ///< w: c_out x (c_in kh kw)
  vector = 2,  ///< w: 1 x n (batch-norm scales and shifts); no bias, no statistics
};

/// The trainer's pass on the same mini-batch after step(), at the updated weights.
enum class SecondPass : int {
  none = 0,
  forward = 1,           ///< forward and the per-sample losses (SMW-NG, SMW-GN)
  forward_backward = 2,  ///< forward, and backward with the true labels (K-BFGS)
};

/// One layer as the trainer sees it at one step (views into the trainer's memory).
template <class T>
struct LayerView {
  LayerKind kind = LayerKind::linear;
  MatrixBatch<T> w;                  ///< 1 matrix: the weights, updated in place
  MatrixBatch<T> b;                  ///< 1 x 1 x d_out bias, or empty (data == nullptr)
  MatrixBatch<const T> dw, db;       ///< mean mini-batch gradients, the shapes of w and b
  index_t c_in = 0, kh = 1, kw = 1;  ///< conv2d geometry (c_out = w.rows)
  bool output_layer = false;         ///< the network's last layer (Muon leaves it to AdamW)
  // Statistics, filled only when needs() asks for them (else empty views):
  index_t m = 0;                                ///< samples in the mini-batch; S = a.rows / m
  MatrixBatch<const T> a;                       ///< (m S) x (d_in [+ 1]) layer inputs
  MatrixBatch<const T> g;                       ///< (m S) x d_out per-sample output gradients
  MatrixBatch<const T> g_sampled;               ///< the same with labels sampled from the model
  MatrixBatch<const T> dw_sampled, db_sampled;  ///< mean gradients with sampled labels
  MatrixBatch<const T> z;       ///< (m S) x d_out pre-activations z = a [W | b]^T of the pass
  MatrixBatch<const T> losses;  ///< 1 x 1 x m per-sample losses; on the output layer only
  /// Gauss–Newton cotangent backprops (Needs::cotangents = n2): the loss Hessian in the network's
  /// R outputs factored as H_i = C_i C_i^T, each column c_{i,r} = C_i e_r of the first n2
  /// samples backpropagated to this layer's outputs: (n2 R S) x d_out, rows ordered (i, r, t).
  MatrixBatch<const T> q;
};

/// What the next step needs from the trainer beyond w, b, dw, db.
struct Needs {
  bool a = false;                             ///< layer inputs
  bool g = false;                             ///< per-sample output gradients (true labels)
  bool g_sampled = false;                     ///< per-sample output gradients with sampled labels
  bool grad_sampled = false;                  ///< mean gradients with sampled labels
  bool z = false;                             ///< pre-activations
  bool losses = false;                        ///< per-sample losses (the output layer's view)
  index_t cotangents = 0;                     ///< n2 > 0: q for the first n2 samples (SMW-GN)
  SecondPass second_pass = SecondPass::none;  ///< after step(): the pass, then finish_step()
};

/// The per-matrix info codes of an optimizer's last statistics and refresh ops, read back by
/// Optimizer::health(): one entry per op, with the count of each nonzero code (their meaning is
/// the op's: curvkit/newton_schulz.hpp, spd.hpp, sherman_morrison.hpp, kron.hpp).
struct Health {
  struct Entry {
    std::string what;  ///< the op and what its matrices are
    std::size_t matrices = 0;
    std::map<int, std::size_t> codes;  ///< nonzero code -> number of matrices
  };
  std::vector<Entry> entries;

  /// Every code was 0.
  bool clean() const {
    for (const Entry& e : entries)
      if (!e.codes.empty()) return false;
    return true;
  }
  std::string to_string() const {
    std::string s;
    for (const Entry& e : entries) {
      s += e.what + ": " + std::to_string(e.matrices) + " matrices";
      for (const auto& [code, n] : e.codes)
        s += ", " + std::to_string(n) + " with info " + std::to_string(code);
      s += "\n";
    }
    return s;
  }
};

template <class T>
class Optimizer {
 public:
  virtual ~Optimizer() = default;
  virtual std::string_view name() const = 0;
  /// Fixes the layer shapes and allocates the state (once, before the first step).
  virtual Status init(const Context& ctx, std::span<const LayerView<T>> layers) = 0;
  /// The statistics the next step needs.
  virtual Needs needs() const { return {}; }
  /// One step: statistics, refreshes and the update of every layer's w and b; then k += 1.
  /// Launches only (no synchronisation); a non-ok Status names the op that refused.
  virtual Status step(const Context& ctx, std::span<const LayerView<T>> layers) = 0;

  /// Completes the step after the trainer's second pass (when needs().second_pass of that step
  /// was not none): the views then hold what the pass computed (z and g for forward_backward,
  /// the output layer's losses for forward).  Launches only.
  virtual Status finish_step(const Context& ctx, std::span<const LayerView<T>> layers) {
    (void)ctx;
    (void)layers;
    return Status::success();
  }
  /// What finish_step() reads, given the step's needs (z and g, or losses).
  static Needs second_pass_needs(const Needs& step_needs) {
    Needs n;
    n.z = n.g = step_needs.second_pass == SecondPass::forward_backward;
    n.losses = step_needs.second_pass == SecondPass::forward;
    return n;
  }

  /// Waits for the Context's work and reads the info codes of the last statistics and refresh
  /// ops (never called by step(): a trainer asks when it wants to know, e.g. once per epoch).
  Status health(const Context& ctx, Health* out) const {
    out->entries.clear();
    for (const Watched& w : watched_) {
      std::vector<int> h(w.count);
      if (w.count > 0) {
        const Status s = copy_to_host(ctx, h.data(), w.info, w.count * sizeof(int));
        if (!s.ok()) return s;
      }
      Health::Entry e{w.what, w.count, {}};
      for (int c : h)
        if (c != 0) ++e.codes[c];
      out->entries.push_back(std::move(e));
    }
    return Status::success();
  }

  std::int64_t iteration() const { return k_; }
  double learning_rate() const { return lr_; }
  void set_learning_rate(double lr) { lr_ = lr; }  ///< schedules live in the trainer

 protected:
  /// Registers an info array (in the Context's memory, zero before the first op writes it) for
  /// health(); init() calls it once per array.
  void watch(std::string what, const int* info, std::size_t count) {
    watched_.push_back({std::move(what), info, count});
  }
  void unwatch_all() { watched_.clear(); }

  std::int64_t k_ = 0;
  double lr_ = 0;

 private:
  struct Watched {
    std::string what;
    const int* info;
    std::size_t count;
  };
  std::vector<Watched> watched_;
};

/// SGD with heavy-ball momentum: m <- mu m + grad, W <- (1 - lr wd) W - lr m.
struct SgdOptions {
  double lr = 3e-3;
  double momentum = 0.9;
  double weight_decay = 0;
};

/// AdamW: Adam's direction (elementwise.hpp adam_direction), decoupled weight decay.
struct AdamWOptions {
  double lr = 1e-4;
  double beta1 = 0.9;
  double beta2 = 0.999;
  double epsilon = 1e-4;
  double weight_decay = 0;
};

template <class T>
std::unique_ptr<Optimizer<T>> make_sgd(const SgdOptions& options = {});
template <class T>
std::unique_ptr<Optimizer<T>> make_adamw(const AdamWOptions& options = {});

}  // namespace curvkit::optim
