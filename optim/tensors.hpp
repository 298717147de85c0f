// Internal to the optimizer layer: the layers' parameter tensors as grouped views (one group
// per tensor: every layer's w, then its b when present), their gradients, and state tensors of
// the same shapes in one allocation of the Context's backend memory.
#pragma once

#include <string>
#include <vector>

#include "curvkit/core/memory.hpp"
#include "curvkit/optim/optimizer.hpp"

#define CURVKIT_OPTIM_RETURN(expr)               \
  do {                                           \
    if (Status s_ = (expr); !s_.ok()) return s_; \
  } while (0)

namespace curvkit::optim::detail {

/// The parameter tensors of a step and their gradients, in matching groups.
template <class T>
std::vector<MatrixBatch<const T>> as_const(const std::vector<MatrixBatch<T>>& v) {
  return std::vector<MatrixBatch<const T>>(v.begin(), v.end());
}

template <class T>
struct ParamGroups {
  std::vector<MatrixBatch<T>> params;
  std::vector<MatrixBatch<const T>> grads;
  std::vector<MatrixBatch<const T>> cparams() const { return as_const(params); }
};

inline std::string layer_name(std::size_t l, const char* what) {
  return "layers[" + std::to_string(l) + "]." + what;
}

/// Collects (and checks) the tensors of `layers`: w is one matrix, dw has its shape; b, when
/// present, is 1 x 1 x d_out with db of its shape.
template <class T>
Status collect(const char* op, std::span<const LayerView<T>> layers, ParamGroups<T>* out) {
  out->params.clear();
  out->grads.clear();
  auto same = [](const auto& x, const auto& y) {
    return x.batch == y.batch && x.rows == y.rows && x.cols == y.cols;
  };
  for (std::size_t l = 0; l < layers.size(); ++l) {
    const LayerView<T>& L = layers[l];
    if (L.w.batch != 1 || L.w.data == nullptr || L.w.ld < L.w.cols)
      return Status::invalid_argument(op,
                                      layer_name(l, "w") + " must be one matrix with ld >= cols");
    if (!same(L.w, L.dw) || L.dw.data == nullptr || L.dw.ld < L.dw.cols)
      return Status::invalid_argument(op, layer_name(l, "dw") + " must have w's shape");
    out->params.push_back(L.w);
    out->grads.push_back(L.dw);
    if (L.b.data == nullptr) continue;
    if (L.kind == LayerKind::vector || L.b.batch != 1 || L.b.rows != 1 || L.b.cols != L.w.rows)
      return Status::invalid_argument(op, layer_name(l, "b") +
                                              " must be 1 x 1 x w.rows (and vector "
                                              "layers have none)");
    if (!same(L.b, L.db) || L.db.data == nullptr)
      return Status::invalid_argument(op, layer_name(l, "db") + " must have b's shape");
    out->params.push_back(L.b);
    out->grads.push_back(L.db);
  }
  return Status::success();
}

/// Tensors shaped like a list of views (dense: ld = cols), in one backend allocation.
template <class T>
struct StateTensors {
  BackendArray<T> storage;
  std::vector<MatrixBatch<T>> views;

  Status allocate(const Context& ctx, const std::vector<MatrixBatch<T>>& like) {
    std::size_t total = 0;
    for (const auto& v : like) total += std::size_t(v.batch * v.rows * v.cols);
    storage = BackendArray<T>(ctx, total);
    if (!storage.status().ok()) return storage.status();
    views.clear();
    std::size_t at = 0;
    for (const auto& v : like) {
      views.push_back({storage.data() + at, v.batch, v.rows, v.cols, v.cols, v.rows * v.cols});
      at += std::size_t(v.batch * v.rows * v.cols);
    }
    return Status::success();
  }
  std::vector<MatrixBatch<const T>> cviews() const { return as_const(views); }
};

/// The step's tensors must have the shapes init() saw.
template <class T>
Status same_shapes(const char* op, const std::vector<MatrixBatch<T>>& now,
                   const std::vector<MatrixBatch<T>>& at_init) {
  bool ok = now.size() == at_init.size();
  for (std::size_t t = 0; ok && t < now.size(); ++t)
    ok = now[t].rows == at_init[t].rows && now[t].cols == at_init[t].cols;
  if (!ok)
    return Status::invalid_argument(op, "the layers' shapes differ from those init() was given");
  return Status::success();
}

}  // namespace curvkit::optim::detail
