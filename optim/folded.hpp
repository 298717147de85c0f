// Internal to the optimizer layer: the folded layout W~ = [W | b] (d_out x d_A, d_A = d_in + 1
// with a bias) that K-FAC and TENGraD keep their momentum and direction in, and the checks of
// the statistics a and g both take from a LayerView.
//
// A folded tensor's W part is the view with ld = d_A and its bias column the d_out x 1 view at
// column d_in; the trainer's 1 x d_out b and db are seen as d_out x 1 columns of their row.  The
// elementwise family rejects outputs whose memory spans interleave, so the momentum update is
// two calls: the W parts (and the vector layers' tensors), then the bias columns.
#pragma once

#include <cmath>
#include <string>
#include <vector>

#include "tensors.hpp"

namespace curvkit::optim::detail {

/// A linear or convolutional layer kept in the folded layout.
struct FoldedLayer {
  std::size_t layer;  ///< index into the LayerViews
  LayerKind kind;
  index_t d_out, d_in;
  bool bias;
  index_t d_a() const { return d_in + (bias ? 1 : 0); }
};

/// The folded layers of `layers` (and the indices of the vector layers), after checking each
/// layer's kind and a convolution's c_in kh kw.
template <class T>
Status fold_layers(const char* op, std::span<const LayerView<T>> layers,
                   std::vector<FoldedLayer>* folded, std::vector<std::size_t>* vectors) {
  folded->clear();
  vectors->clear();
  for (std::size_t l = 0; l < layers.size(); ++l) {
    const LayerView<T>& x = layers[l];
    if (x.kind == LayerKind::vector) {
      vectors->push_back(l);
      continue;
    }
    if (x.kind != LayerKind::linear && x.kind != LayerKind::conv2d)
      return Status::invalid_argument(op, layer_name(l, "kind") + " is not a LayerKind value");
    if (x.kind == LayerKind::conv2d && x.c_in > 0 && x.c_in * x.kh * x.kw != x.w.cols)
      return Status::invalid_argument(
          op, layer_name(l, "w") + ".cols must be c_in kh kw for a conv2d layer");
    folded->push_back({l, x.kind, x.w.rows, x.w.cols, x.b.data != nullptr});
  }
  return Status::success();
}

/// A step's layers must be those init() folded: the same count, kinds and biases (the shapes
/// are checked by same_shapes).
template <class T>
Status same_layers(const char* op, std::span<const LayerView<T>> layers,
                   const std::vector<FoldedLayer>& folded,
                   const std::vector<std::size_t>& vectors) {
  if (layers.size() != folded.size() + vectors.size())
    return Status::invalid_argument(op, "the number of layers differs from init()'s");
  for (const FoldedLayer& k : folded) {
    if (layers[k.layer].kind != k.kind)
      return Status::invalid_argument(op, layer_name(k.layer, "kind") + " differs from init()'s");
    if ((layers[k.layer].b.data != nullptr) != k.bias)
      return Status::invalid_argument(
          op, layer_name(k.layer, "b") + " must be present iff it was at init()");
  }
  for (std::size_t v : vectors)
    if (layers[v].kind != LayerKind::vector)
      return Status::invalid_argument(op, layer_name(v, "kind") + " differs from init()'s");
  return Status::success();
}

/// The checks every folded-layer optimizer's step() starts with: init() was called, on ctx's
/// backend, and the layers are init()'s (their tensors are collected into `now`).
template <class T>
Status check_step_layers(const char* op, bool initialised, Backend init_backend, const Context& ctx,
                         std::span<const LayerView<T>> layers, ParamGroups<T>* now,
                         const std::vector<MatrixBatch<T>>& init_shapes,
                         const std::vector<FoldedLayer>& folded,
                         const std::vector<std::size_t>& vectors) {
  if (!initialised) return Status::invalid_argument(op, "init() was not called");
  if (ctx.backend() != init_backend)
    return Status::invalid_argument(op, "ctx names another backend than init() was given");
  CURVKIT_OPTIM_RETURN(collect(op, layers, now));
  CURVKIT_OPTIM_RETURN(same_shapes(op, now->params, init_shapes));
  return same_layers(op, layers, folded, vectors);
}

/// The mini-batch size m every folded layer's view gives (>= 1, the same for all), for methods
/// whose state is sized by it; 0 without folded layers.  `why` ends the message.
template <class T>
Status batch_size(const char* op, std::span<const LayerView<T>> layers,
                  const std::vector<FoldedLayer>& folded, index_t* m, const char* why = "") {
  *m = 0;
  for (const FoldedLayer& k : folded) {
    const index_t x = layers[k.layer].m;
    if (x < 1 || (*m > 0 && x != *m))
      return Status::invalid_argument(
          op, layer_name(k.layer, "m") +
                  " must be the mini-batch size (>= 1, the same for every layer)" + why);
    *m = x;
  }
  return Status::success();
}

/// Options shared by the damped methods: lr and weight decay finite, damping finite and > 0,
/// momentum in [0, 1).
inline Status check_damped_options(const char* op, double lr, double weight_decay, double damping,
                                   double momentum) {
  if (!std::isfinite(lr) || !std::isfinite(weight_decay))
    return Status::invalid_argument(op, "options.lr and options.weight_decay must be finite");
  if (!(damping > 0) || !std::isfinite(damping))
    return Status::invalid_argument(op, "options.damping must be finite and > 0");
  if (!(momentum >= 0 && momentum < 1))
    return Status::invalid_argument(op, "options.momentum must be in [0, 1)");
  return Status::success();
}

/// The shape of a folded tensor of `k` (dense, for StateTensors::allocate).
template <class T>
MatrixBatch<T> folded_shape(const FoldedLayer& k) {
  return {nullptr, 1, k.d_out, k.d_a(), k.d_a(), k.d_out * k.d_a()};
}

/// Checks the inputs of folded layer `k`: x.m >= 1, a one (m S) x d_A matrix (its trailing
/// column of ones is not checked: that would need a synchronisation).  `why` ends the messages
/// (when the statistics are needed).
template <class T>
Status check_inputs(const char* op, const FoldedLayer& k, const LayerView<T>& x,
                    const std::string& why) {
  const MatrixBatch<const T>& a = x.a;
  if (x.m < 1)
    return Status::invalid_argument(op, layer_name(k.layer, "m") + " must be >= 1" + why);
  if (a.data == nullptr || a.batch != 1 || a.cols != k.d_a() || a.ld < a.cols || a.rows < x.m ||
      a.rows % x.m != 0)
    return Status::invalid_argument(
        op, layer_name(k.layer, "a") + " must be one (m S) x " + std::to_string(k.d_a()) +
                " matrix (d_in" + (k.bias ? " + 1: the trailing column of ones" : "") + ")" + why);
  return Status::success();
}

/// check_inputs, and g (`g_name`) one a.rows x d_out matrix.
template <class T>
Status check_statistics(const char* op, const FoldedLayer& k, const LayerView<T>& x,
                        const MatrixBatch<const T>& g, const char* g_name, const std::string& why) {
  CURVKIT_OPTIM_RETURN(check_inputs(op, k, x, why));
  const MatrixBatch<const T>& a = x.a;
  if (g.data == nullptr || g.batch != 1 || g.rows != a.rows || g.cols != k.d_out || g.ld < g.cols)
    return Status::invalid_argument(
        op, layer_name(k.layer, g_name) + " must be one " + std::to_string(a.rows) + " x " +
                std::to_string(k.d_out) + " matrix (a.rows x d_out)" + why);
  return Status::success();
}

/// The views of the momentum update M~ <- G~ + mu M~ and of the parameter update from a
/// direction: per folded layer its W part and bias column, then the vector layers' tensors.
template <class T>
struct FoldedUpdates {
  std::vector<MatrixBatch<const T>> grad_w, grad_b, step;
  std::vector<MatrixBatch<T>> moment_w, moment_b, param;
};

/// `moments` holds one folded tensor per folded layer, then one tensor per vector layer;
/// `directions` one folded tensor per folded layer (a vector layer's step is its momentum).
template <class T>
FoldedUpdates<T> folded_updates(std::span<const LayerView<T>> layers,
                                const std::vector<FoldedLayer>& folded,
                                const std::vector<std::size_t>& vectors,
                                const std::vector<MatrixBatch<T>>& moments,
                                const std::vector<MatrixBatch<T>>& directions) {
  // A 1 x n row (contiguous) seen as an n x 1 column.
  auto column = [](const auto& row) {
    return std::remove_cvref_t<decltype(row)>{row.data, 1, row.cols, 1, 1, row.cols};
  };
  FoldedUpdates<T> u;
  for (std::size_t i = 0; i < folded.size(); ++i) {
    const FoldedLayer& k = folded[i];
    const LayerView<T>& x = layers[k.layer];
    const MatrixBatch<T>& m = moments[i];
    const MatrixBatch<T>& p = directions[i];
    const index_t ld = k.d_a();
    u.grad_w.push_back(x.dw);
    u.moment_w.push_back({m.data, 1, k.d_out, k.d_in, ld, m.stride});
    u.step.push_back(MatrixBatch<T>{p.data, 1, k.d_out, k.d_in, ld, p.stride});
    u.param.push_back(x.w);
    if (!k.bias) continue;
    u.grad_b.push_back(column(x.db));
    u.moment_b.push_back({m.data + k.d_in, 1, k.d_out, 1, ld, m.stride});
    u.step.push_back(MatrixBatch<T>{p.data + k.d_in, 1, k.d_out, 1, ld, p.stride});
    u.param.push_back(column(x.b));
  }
  for (std::size_t j = 0; j < vectors.size(); ++j) {
    const MatrixBatch<T>& m = moments[folded.size() + j];
    u.grad_w.push_back(layers[vectors[j]].dw);
    u.moment_w.push_back(m);
    u.step.push_back(m);
    u.param.push_back(layers[vectors[j]].w);
  }
  return u;
}

}  // namespace curvkit::optim::detail
