// The trainer's networks: a chain of linear and convolution layers (each followed by an
// activation and optionally a 2 x 2 max pool) ending in a softmax cross-entropy or a sigmoid
// binary cross-entropy.  Every tensor lives in the Context's backend memory; the products are
// curvkit::gemm calls, the rest are the trainer kernels of ops.hpp.
//
// Per layer l with S positions per sample (S = 1 for linear layers) and a mini-batch of m:
//   a  (m S) x (d_in [+ 1])  its input, a trailing column of ones when it has a bias (for a
//                            convolution: the im2col patches, columns (c_in, ky, kx))
//   z = a W^T + b            (m S) x d_out pre-activations; the next input is act(z) (pooled)
//   g = d loss_i / d z       (m S) x d_out per-sample output gradients, i.e. m times the
//                            gradient of the mean loss: the backward pass is written in them
//   dW = (1/m) g^T a,  db = (1/m) 1^T g,  d(input) = g W
// which is exactly what curvkit's optimizer layer expects (docs/optimizer-spec.md §0.1), so
// the LayerViews handed to an optimizer are views of these buffers, not copies.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "curvkit/core/memory.hpp"
#include "curvkit/optim/optimizer.hpp"
#include "idx.hpp"
#include "ops.hpp"

namespace fmnist {

using curvkit::BackendArray;
using curvkit::Context;
using curvkit::index_t;

enum class LossKind : int {
  softmax_xent = 0,  ///< classifier: logits -> softmax -> cross-entropy with the label
  sigmoid_bce = 1,   ///< autoencoder: logits -> sigmoid -> binary cross-entropy with the input
};

/// One parametric layer and what follows it.
struct LayerSpec {
  bool conv = false;
  index_t d_in = 0, d_out = 0;  ///< linear: features in / out; conv: d_out = c_out (d_in derived)
  index_t height = 0, width = 0, c_in = 0, kernel = 1, pad = 0;  ///< conv geometry (stride 1)
  ops::Activation act = ops::Activation::relu;  ///< the last layer's must be identity
  bool pool = false;                            ///< 2 x 2 max pool after the activation
  bool bias = true;
};

struct ModelSpec {
  std::string name;
  index_t input_features = 784;  ///< per sample (NHWC for a convolution first layer)
  std::vector<LayerSpec> layers;
  LossKind loss = LossKind::softmax_xent;
  index_t default_batch = 128;
};

/// 784-256-128-10, ReLU, softmax cross-entropy.
ModelSpec mlp_spec();
/// conv 1->16 5x5 same, ReLU, pool; conv 16->32 5x5 same, ReLU, pool; FC 1568-128, ReLU; 128-10.
ModelSpec cnn_spec();
/// 784-1000-500-250-30-250-500-1000-784: ReLU hidden units, linear 30-unit code, sigmoid output
/// with binary cross-entropy against the input (docs/optimizer-spec.md §10.1).
ModelSpec autoencoder_spec();
/// "mlp", "cnn" or "autoencoder"; throws on another name.
ModelSpec model_spec(const std::string& name);

/// One split of the data set in the Context's memory (pixels as bytes) with a sample order.
struct DeviceSplit {
  index_t count = 0, features = 0;
  BackendArray<std::uint8_t> images, labels;
  BackendArray<std::int32_t> order;  ///< the order mini-batches are drawn in

  DeviceSplit(const Context& ctx, const Split& split);
  /// A fresh random order for `epoch`, a function of (seed, epoch) only.
  void shuffle(const Context& ctx, std::uint64_t seed, std::int64_t epoch);
};

/// Sums over the mini-batches since the last take_stats().
struct Stats {
  double loss_sum = 0, correct_sum = 0;
  std::int64_t samples = 0;
  double mean_loss() const { return samples > 0 ? loss_sum / double(samples) : 0.0; }
  double accuracy() const { return samples > 0 ? correct_sum / double(samples) : 0.0; }
};

template <class T>
class Network {
 public:
  /// Allocates every buffer for mini-batches of up to max_batch samples and initialises the
  /// weights (He normal before ReLU, Glorot uniform otherwise; zero biases) from `seed`.
  Network(const Context& ctx, ModelSpec spec, index_t max_batch, std::uint64_t seed);

  const ModelSpec& spec() const { return spec_; }
  index_t max_batch() const { return max_batch_; }
  std::size_t num_layers() const { return layers_.size(); }
  std::size_t parameter_count() const;

  /// The m samples order[offset .. offset + m) of `data` become the network's input.
  void load_batch(const DeviceSplit& data, index_t offset, index_t m);
  /// Host data as input (tests): x is m x input_features, labels m (ignored by the AE).
  void set_input(const std::vector<T>& x, const std::vector<std::int32_t>& labels, index_t m);

  /// z of every layer for the current input.
  void forward(index_t m);
  /// The per-sample losses of the last forward pass, added to the statistics unless
  /// `accumulate` is false (an optimizer's second pass); with `output_grad`, also the top layer's
  /// g for backward().
  void loss(index_t m, bool output_grad, bool accumulate = true);
  /// g, dW, db of every layer with the true labels (after loss(m, true)).
  void backward(index_t m);
  /// g_sampled of every layer with labels drawn from the model's predictive distribution
  /// (softmax: categorical; sigmoid: Bernoulli per output), and dW, db with those labels when
  /// `weight_grads`.  Each call draws fresh labels.
  void backward_sampled(index_t m, bool weight_grads);
  /// SMW-GN's cotangent backprops (docs/optimizer-spec-2.md §4.1): for each of the first n2 <= m
  /// samples i and each output r < R, the cotangent (C_i e_r)^T (H_i = C_i C_i^T, the loss
  /// Hessian in the logits of the last forward()) backpropagated through the network at the
  /// current weights into every layer's q, rows ((i R + r) S + t), no weight gradients.  The
  /// layers' z and max-pool choices are repeated R times per sample first.
  void backward_cotangents(index_t m, index_t n2);

  /// The layers as curvkit's optimizers see them, with the statistics `needs` asks for (the
  /// sampled-label ones hold what the last backward_sampled() wrote; z and the output layer's
  /// losses those of the last forward() and loss()).
  std::vector<curvkit::optim::LayerView<T>> layer_views(index_t m,
                                                        const curvkit::optim::Needs& needs);

  /// The statistics since the last call (waits for the Context), then zeroes them.
  Stats take_stats();
  /// The mean per-sample loss of the last loss() call, on the host (tests).
  double last_mean_loss(index_t m) const;

  // The tensors of layer l (tests and the gradient check read and write them).
  BackendArray<T>& weights(std::size_t l) { return layers_[l].w; }
  BackendArray<T>& bias(std::size_t l) { return layers_[l].b; }
  const BackendArray<T>& weight_grad(std::size_t l) const { return layers_[l].dw; }
  const BackendArray<T>& bias_grad(std::size_t l) const { return layers_[l].db; }
  /// The last layer's z after forward(): max_batch x outputs, the first m rows valid (tests).
  const BackendArray<T>& logits() const { return layers_.back().z; }

 private:
  struct Layer {
    LayerSpec spec;
    index_t positions = 1;    // S
    index_t d_in = 0;         // W's columns (c_in k k for a convolution)
    index_t a_cols = 0;       // d_in + bias
    index_t in_features = 0;  // per-sample input (linear: d_in; conv: height width c_in)
    BackendArray<T> x;        // conv: NHWC input, m x in_features
    BackendArray<T> a, z;
    BackendArray<T> y;  // pool: act(z) before pooling
    BackendArray<std::uint8_t> which;
    BackendArray<T> w, b, dw, db;
    BackendArray<T> g;
    BackendArray<T> d;                // g W: (m S) x d_in (l > 0)
    BackendArray<T> dx;               // conv: col2im(d) (l > 0)
    BackendArray<T> dy;               // pool: gradient of y
    BackendArray<T> g_s, dw_s, db_s;  // sampled-label pass, allocated on first use
    // Cotangent pass (n2 R pseudo-samples), allocated on first use: q is its g; z_c, which_c the
    // repeated z and pool choices; d_c, dx_c, dy_c its d, dx, dy.
    BackendArray<T> q, z_c, d_c, dx_c, dy_c;
    BackendArray<std::uint8_t> which_c;

    ops::ConvShape shape(index_t m) const {
      return {m, spec.height, spec.width, spec.c_in, spec.kernel, spec.pad};
    }
  };

  // Where layer l's input lives: the NHWC x of a convolution (im2col reads it), else a itself.
  T* input(std::size_t l) {
    return layers_[l].spec.conv ? layers_[l].x.data() : layers_[l].a.data();
  }
  index_t input_ld(std::size_t l) const {
    return layers_[l].spec.conv ? layers_[l].in_features : layers_[l].a_cols;
  }
  void output_gradient_sampled(index_t m);
  void backward_pass(index_t m, bool sampled, bool weight_grads);
  // Layer l's g (m samples) through its W (im2col's adjoint for a convolution), the previous
  // layer's pooling and activation into that layer's g_prev.
  struct PrevBuffers {
    const T* z;
    const std::uint8_t* which;
    T* dy;
    T* g;
  };
  void propagate(std::size_t l, index_t m, const T* g, T* d, T* dx, const PrevBuffers& prev);
  void allocate_sampled();
  void allocate_cotangents(index_t pseudo_samples);

  Context ctx_;
  ModelSpec spec_;
  index_t max_batch_ = 0;
  std::uint64_t seed_ = 0;
  std::uint64_t sample_stream_ = 0;
  index_t cotangent_capacity_ = 0;  // pseudo-samples the cotangent buffers hold
  index_t cotangent_rows_ = 0;      // n2 R of the last backward_cotangents() (layer_views' q)
  std::vector<Layer> layers_;
  BackendArray<std::int32_t> labels_;
  BackendArray<T> sample_loss_, sample_correct_;
  BackendArray<double> stats_;  // {sum of losses, sum of correct}
  std::int64_t stats_samples_ = 0;
};

/// One training step on the m samples order[offset .. offset + m) of `data`: forward, loss,
/// backward (and the sampled-label backward when the optimizer asks), the optimizer's step, and
/// the second pass with finish_step() when its needs() asked for one.  Returns the seconds of
/// the forward / backward part and of the optimizer part (which includes the second pass),
/// each timed between synchronisations.
template <class T>
std::pair<double, double> train_step(const Context& ctx, Network<T>& net,
                                     curvkit::optim::Optimizer<T>& opt, const DeviceSplit& data,
                                     index_t offset, index_t m);

extern template class Network<float>;
extern template class Network<double>;

}  // namespace fmnist
