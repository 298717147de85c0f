// Shampoo (curvkit/optim/shampoo.hpp) on the Kronecker, Newton–Schulz and elementwise families.
// Per step: one grouped axpby for the momentum; on statistics steps a dense copy of the
// gradients (mode_gram reads contiguous tensors) and one mode_gram per tensor; on root steps one
// grouped newton_schulz_inverse_root per exponent 2K and one grouped copy_if_ok; one
// mode_product_chain per tensor; the optional graft (sum_squares x 2, scale_by_norm_ratio); one
// grouped axpby for the update.  Mode matrices are ordered by exponent so that each root call's
// report is one contiguous slice of the info array.
#include <algorithm>
#include <map>

#include "curvkit/core/memory.hpp"
#include "curvkit/elementwise.hpp"
#include "curvkit/kron.hpp"
#include "curvkit/newton_schulz.hpp"
#include "curvkit/optim/shampoo.hpp"
#include "tensors.hpp"

namespace curvkit::optim {
namespace {

template <class T>
class Shampoo final : public Optimizer<T> {
 public:
  explicit Shampoo(const ShampooOptions& o) : o_(o) { this->lr_ = o.lr; }
  std::string_view name() const override { return "shampoo"; }

  Status init(const Context& ctx, std::span<const LayerView<T>> layers) override {
    const char* op = "shampoo init";
    if (o_.t1 < 1 || o_.t2 < 1) return Status::invalid_argument(op, "t1 and t2 must be >= 1");
    CURVKIT_OPTIM_RETURN(detail::collect(op, layers, &now_));
    shapes_ = now_.params;
    CURVKIT_OPTIM_RETURN(tensor_dims(op, layers));
    for (auto* s : {&mom_, &grad_, &dir_}) CURVKIT_OPTIM_RETURN(s->allocate(ctx, shapes_));
    if (o_.graft == Graft::adagrad)
      for (auto* s : {&graft_q_, &graft_a_}) CURVKIT_OPTIM_RETURN(s->allocate(ctx, shapes_));
    // Mode matrices, ordered by exponent 2K (the root calls' groups).
    std::vector<MatrixBatch<T>> modes;
    mode_of_.assign(dims_.size(), {});
    by_exponent_.clear();
    for (std::size_t t = 0; t < dims_.size(); ++t)
      by_exponent_[2 * int(dims_[t].size())].push_back(t);
    for (auto& [p, tensors] : by_exponent_)
      for (std::size_t t : tensors)
        for (index_t d : dims_[t]) {
          mode_of_[t].push_back(modes.size());
          modes.push_back({nullptr, 1, d, d, d, d * d});
        }
    for (auto* s : {&stats_, &roots_, &fresh_}) CURVKIT_OPTIM_RETURN(s->allocate(ctx, modes));
    info_ = BackendArray<int>(ctx, std::max<std::size_t>(modes.size(), 1));
    norms_ = BackendArray<T>(ctx, 2 * std::max<std::size_t>(shapes_.size(), 1));
    CURVKIT_OPTIM_RETURN(info_.status());
    CURVKIT_OPTIM_RETURN(norms_.status());
    // R_i = I until the first root; M = 0, A = 0.
    CURVKIT_OPTIM_RETURN(fill<T>(ctx, 0.0, roots_.views));
    CURVKIT_OPTIM_RETURN(add_diagonal<T>(ctx, 1.0, nullptr, roots_.views));
    CURVKIT_OPTIM_RETURN(fill<T>(ctx, 0.0, mom_.views));
    CURVKIT_OPTIM_RETURN(fill<T>(ctx, 0.0, graft_a_.views));  // no groups without adagrad
    // One workspace for the roots and the chains.
    std::size_t bytes = 0;
    for (auto& [p, tensors] : by_exponent_) {
      const auto groups = root_groups(p, stats_);
      bytes = std::max(bytes,
                       newton_schulz_workspace_size<T>(
                           ctx, std::vector<MatrixBatch<const T>>(groups.begin(), groups.end())));
    }
    for (std::size_t t = 0; t < dims_.size(); ++t)
      bytes = std::max(bytes,
                       mode_product_chain_workspace_size<T>(ctx, tensor(mom_, t), root_views(t)));
    workspace_ = BackendArray<char>(ctx, bytes);
    return workspace_.status();
  }

  Status step(const Context& ctx, std::span<const LayerView<T>> layers) override {
    const char* op = "shampoo step";
    CURVKIT_OPTIM_RETURN(detail::collect(op, layers, &now_));
    CURVKIT_OPTIM_RETURN(detail::same_shapes(op, now_.params, shapes_));
    Context wctx = ctx;
    wctx.set_workspace(workspace_.data(), workspace_.size());
    const std::int64_t k = this->k_;
    CURVKIT_OPTIM_RETURN(axpby<T>(ctx, 1.0, now_.grads, o_.momentum, mom_.cviews(), mom_.views));
    if (k % o_.t1 == 0) {
      // S_i <- beta S_i + (1 - beta) mat_i(G) mat_i(G)^T; the first update overwrites.
      CURVKIT_OPTIM_RETURN(axpby<T>(ctx, 1.0, now_.grads, 0.0, {}, grad_.views));
      ModeGramOptions mg;
      mg.beta = k == 0 ? 0.0 : o_.stat_decay;
      for (std::size_t t = 0; t < dims_.size(); ++t) {
        std::vector<MatrixBatch<T>> s;
        for (std::size_t i : mode_of_[t]) s.push_back(stats_.views[i]);
        CURVKIT_OPTIM_RETURN(mode_gram<T>(ctx, tensor(grad_, t), s, mg));
      }
    }
    if (k % o_.t2 == 0) CURVKIT_OPTIM_RETURN(refresh_roots(wctx));
    for (std::size_t t = 0; t < dims_.size(); ++t)
      CURVKIT_OPTIM_RETURN(
          mode_product_chain<T>(wctx, tensor(mom_, t), root_views(t), tensor(dir_, t)));
    if (o_.graft != Graft::none) CURVKIT_OPTIM_RETURN(graft(ctx));
    const double lr = this->lr_;
    CURVKIT_OPTIM_RETURN(
        axpby<T>(ctx, -lr, dir_.cviews(), 1 - lr * o_.weight_decay, now_.cparams(), now_.params));
    ++this->k_;
    return Status::success();
  }

 private:
  // Tensor orders and dims: linear (rows, cols); conv2d (c_out, c_in, kh kw); bias, vector (n).
  Status tensor_dims(const char* op, std::span<const LayerView<T>> layers) {
    dims_.clear();
    for (std::size_t l = 0; l < layers.size(); ++l) {
      const LayerView<T>& L = layers[l];
      if (L.kind == LayerKind::conv2d) {
        if (L.c_in < 1 || L.kh < 1 || L.kw < 1 || L.c_in * L.kh * L.kw != L.w.cols)
          return Status::invalid_argument(
              op, detail::layer_name(l, "c_in * kh * kw") + " must equal w.cols");
        dims_.push_back({L.w.rows, L.c_in, L.kh * L.kw});
      } else if (L.kind == LayerKind::vector) {
        dims_.push_back({L.w.rows * L.w.cols});
      } else {
        dims_.push_back({L.w.rows, L.w.cols});
      }
      if (L.b.data != nullptr) dims_.push_back({L.b.cols});
    }
    return Status::success();
  }

  TensorBatch<T> tensor(const detail::StateTensors<T>& s, std::size_t t) const {
    TensorBatch<T> x;
    x.data = s.views[t].data;
    x.batch = 1;
    x.order = int(dims_[t].size());
    for (int i = 0; i < x.order; ++i) x.dims[i] = dims_[t][std::size_t(i)];
    x.stride = x.size();
    return x;
  }

  std::vector<MatrixBatch<const T>> root_views(std::size_t t) const {
    std::vector<MatrixBatch<const T>> r;
    for (std::size_t i : mode_of_[t]) r.push_back(roots_.views[i]);
    return r;
  }

  // The mode matrices of exponent p, in order (one group each).
  std::vector<MatrixBatch<T>> root_groups(int p, const detail::StateTensors<T>& s) const {
    std::vector<MatrixBatch<T>> g;
    for (std::size_t t : by_exponent_.at(p))
      for (std::size_t i : mode_of_[t]) g.push_back(s.views[i]);
    return g;
  }

  // R_i = (S_i + eps I)^{-1/p} into `fresh`, kept where the iteration succeeded.
  Status refresh_roots(const Context& wctx) {
    NewtonSchulzOptions ns;
    ns.stop = NsStop::residual;
    ns.iterations = o_.ns_max_iterations;
    ns.tolerance = o_.ns_tolerance;
    ns.epsilon = o_.epsilon;
    std::size_t at = 0;
    for (auto& [p, tensors] : by_exponent_) {
      const auto s = root_groups(p, stats_);
      const std::vector<MatrixBatch<const T>> cs(s.begin(), s.end());
      const auto fresh = root_groups(p, fresh_);
      const std::vector<MatrixBatch<const T>> cfresh(fresh.begin(), fresh.end());
      CURVKIT_OPTIM_RETURN(
          newton_schulz_inverse_root<T>(wctx, cs, p, fresh, NsReport<T>{info_.data() + at}, ns));
      CURVKIT_OPTIM_RETURN(copy_if_ok<T>(wctx, cfresh, info_.data() + at, root_groups(p, roots_)));
      at += s.size();
    }
    return Status::success();
  }

  // P <- P ||Q||_F / (||P||_F + 1e-16), Q = M (sgd) or M / (sqrt(A) + eps) with A += G * G.
  Status graft(const Context& ctx) {
    const std::size_t n = shapes_.size();
    T* num = norms_.data();
    T* den = norms_.data() + n;
    if (o_.graft == Graft::adagrad) {
      CURVKIT_OPTIM_RETURN(square_ema<T>(ctx, 1.0, 1.0, now_.grads, graft_a_.views));
      CURVKIT_OPTIM_RETURN(diag_precondition<T>(ctx, mom_.cviews(), graft_a_.cviews(),
                                                o_.graft_epsilon, DiagPower::half, graft_q_.views));
      CURVKIT_OPTIM_RETURN(sum_squares<T>(ctx, graft_q_.cviews(), num));
    } else {
      CURVKIT_OPTIM_RETURN(sum_squares<T>(ctx, mom_.cviews(), num));
    }
    CURVKIT_OPTIM_RETURN(sum_squares<T>(ctx, dir_.cviews(), den));
    return scale_by_norm_ratio<T>(ctx, num, den, 1e-16, dir_.views);
  }

  ShampooOptions o_;
  detail::ParamGroups<T> now_;
  std::vector<MatrixBatch<T>> shapes_;
  std::vector<std::vector<index_t>> dims_;               // per tensor
  std::vector<std::vector<std::size_t>> mode_of_;        // per tensor: its mode matrices
  std::map<int, std::vector<std::size_t>> by_exponent_;  // 2K -> tensors
  detail::StateTensors<T> mom_, grad_, dir_, graft_q_, graft_a_, stats_, roots_, fresh_;
  BackendArray<int> info_;
  BackendArray<T> norms_;
  BackendArray<char> workspace_;
};

}  // namespace

template <class T>
std::unique_ptr<Optimizer<T>> make_shampoo(const ShampooOptions& o) {
  return std::make_unique<Shampoo<T>>(o);
}

template std::unique_ptr<Optimizer<float>> make_shampoo<float>(const ShampooOptions&);
template std::unique_ptr<Optimizer<double>> make_shampoo<double>(const ShampooOptions&);

}  // namespace curvkit::optim
