// Internal to the optimizer layer: the tensor variables of Shampoo and TNT.  Every parameter
// tensor (in ParamGroups order: each layer's w, then its b) is a tensor of order K with dims
//   linear (d_out, d_in);  conv2d (c_out, c_in, kh kw);  bias, vector (n)
// and one d_i x d_i matrix per mode.  The mode matrices are numbered in the order of a key per
// tensor (Shampoo: its root exponent 2K, so that each grouped root call covers one contiguous
// slice of them), then by tensor, then by mode.
#pragma once

#include <map>
#include <vector>

#include "curvkit/core/tensor.hpp"
#include "tensors.hpp"

namespace curvkit::optim::detail {

template <class T>
class ModeTensors {
 public:
  /// Reads the tensors' dims from the layers; `key(K)` orders the mode matrices.
  template <class Key>
  Status build(const char* op, std::span<const LayerView<T>> layers, Key key) {
    dims_.clear();
    for (std::size_t l = 0; l < layers.size(); ++l) {
      const LayerView<T>& L = layers[l];
      if (L.kind == LayerKind::conv2d) {
        if (L.c_in < 1 || L.kh < 1 || L.kw < 1 || L.c_in * L.kh * L.kw != L.w.cols)
          return Status::invalid_argument(op,
                                          layer_name(l, "c_in * kh * kw") + " must equal w.cols");
        dims_.push_back({L.w.rows, L.c_in, L.kh * L.kw});
      } else if (L.kind == LayerKind::vector) {
        dims_.push_back({L.w.rows * L.w.cols});
      } else {
        dims_.push_back({L.w.rows, L.w.cols});
      }
      if (L.b.data != nullptr) dims_.push_back({L.b.cols});
    }
    by_key_.clear();
    for (std::size_t t = 0; t < dims_.size(); ++t) by_key_[key(int(dims_[t].size()))].push_back(t);
    mode_of_.assign(dims_.size(), {});
    shapes_.clear();
    for (auto& [k, tensors] : by_key_)
      for (std::size_t t : tensors)
        for (index_t d : dims_[t]) {
          mode_of_[t].push_back(shapes_.size());
          shapes_.push_back({nullptr, 1, d, d, d, d * d});
        }
    return Status::success();
  }

  std::size_t tensors() const { return dims_.size(); }
  int order(std::size_t t) const { return int(dims_[t].size()); }
  /// Shapes of all mode matrices (for StateTensors::allocate).
  const std::vector<MatrixBatch<T>>& mode_shapes() const { return shapes_; }
  /// Keys and the tensors under each.
  const std::map<int, std::vector<std::size_t>>& by_key() const { return by_key_; }

  /// Tensor t of a state shaped like the parameters.
  TensorBatch<T> tensor(const StateTensors<T>& s, std::size_t t) const {
    TensorBatch<T> x;
    x.data = s.views[t].data;
    x.batch = 1;
    x.order = order(t);
    for (int i = 0; i < x.order; ++i) x.dims[i] = dims_[t][std::size_t(i)];
    x.stride = x.size();
    return x;
  }
  /// The mode matrices of tensor t in a mode-shaped state.
  std::vector<MatrixBatch<T>> modes(const StateTensors<T>& s, std::size_t t) const {
    std::vector<MatrixBatch<T>> m;
    for (std::size_t i : mode_of_[t]) m.push_back(s.views[i]);
    return m;
  }
  std::vector<MatrixBatch<const T>> cmodes(const StateTensors<T>& s, std::size_t t) const {
    const auto m = modes(s, t);
    return std::vector<MatrixBatch<const T>>(m.begin(), m.end());
  }
  /// The mode matrices of every tensor under `key`, in numbering order.
  std::vector<MatrixBatch<T>> modes_of_key(const StateTensors<T>& s, int key) const {
    std::vector<MatrixBatch<T>> m;
    for (std::size_t t : by_key_.at(key))
      for (std::size_t i : mode_of_[t]) m.push_back(s.views[i]);
    return m;
  }

 private:
  std::vector<std::vector<index_t>> dims_;
  std::vector<std::vector<std::size_t>> mode_of_;
  std::map<int, std::vector<std::size_t>> by_key_;
  std::vector<MatrixBatch<T>> shapes_;
};

}  // namespace curvkit::optim::detail
