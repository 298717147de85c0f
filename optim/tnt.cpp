// TNT (curvkit/optim/tnt.hpp) on the Kronecker, SPD and elementwise families.  Per step: one
// grouped axpby for the momentum; on statistics steps a dense copy of the sampled-label
// gradients and one mode_gram per tensor; on inverse steps a grouped copy of the statistics,
// one tnt_normalize per tensor, ONE grouped potri (shift policy, eps on the diagonal) over every
// mode matrix and a grouped copy_if_ok; one mode_product_chain per tensor; one grouped axpby.
#include <algorithm>

#include "curvkit/core/memory.hpp"
#include "curvkit/elementwise.hpp"
#include "curvkit/kron.hpp"
#include "curvkit/optim/tnt.hpp"
#include "curvkit/spd.hpp"
#include "mode_tensors.hpp"

namespace curvkit::optim {
namespace {

template <class T>
class Tnt final : public Optimizer<T> {
 public:
  explicit Tnt(const TntOptions& o) : o_(o) { this->lr_ = o.lr; }
  std::string_view name() const override { return o_.empirical ? "tnt-ef" : "tnt"; }

  Needs needs() const override {
    Needs n;
    n.grad_sampled = !o_.empirical && this->k_ % o_.t1 == 0;
    return n;
  }

  Status init(const Context& ctx, std::span<const LayerView<T>> layers) override {
    const char* op = "tnt init";
    if (o_.t1 < 1 || o_.t2 < 1) return Status::invalid_argument(op, "t1 and t2 must be >= 1");
    CURVKIT_OPTIM_RETURN(detail::collect(op, layers, &now_));
    shapes_ = now_.params;
    CURVKIT_OPTIM_RETURN(mt_.build(op, layers, [](int) { return 0; }));
    for (auto* s : {&mom_, &grad_, &dir_}) CURVKIT_OPTIM_RETURN(s->allocate(ctx, shapes_));
    for (auto* s : {&stats_, &inv_, &fresh_})
      CURVKIT_OPTIM_RETURN(s->allocate(ctx, mt_.mode_shapes()));
    const std::size_t modes = mt_.mode_shapes().size();
    info_ = BackendArray<int>(ctx, std::vector<int>(std::max<std::size_t>(modes, 1), 0));
    norm_info_ =
        BackendArray<int>(ctx, std::vector<int>(std::max<std::size_t>(mt_.tensors(), 1), 0));
    this->unwatch_all();
    this->watch("tnt_normalize per tensor (1: a zero trace)", norm_info_.data(), mt_.tensors());
    this->watch("potri of the normalised statistics (failed inverses kept)", info_.data(), modes);
    CURVKIT_OPTIM_RETURN(info_.status());
    CURVKIT_OPTIM_RETURN(norm_info_.status());
    CURVKIT_OPTIM_RETURN(fill<T>(ctx, 0.0, inv_.views));
    CURVKIT_OPTIM_RETURN(add_diagonal<T>(ctx, 1.0, nullptr, inv_.views));
    CURVKIT_OPTIM_RETURN(fill<T>(ctx, 0.0, mom_.views));
    std::size_t bytes = 0;
    for (std::size_t t = 0; t < mt_.tensors(); ++t)
      bytes = std::max(bytes, mode_product_chain_workspace_size<T>(ctx, mt_.tensor(mom_, t),
                                                                   mt_.cmodes(inv_, t)));
    workspace_ = BackendArray<char>(ctx, bytes);
    return workspace_.status();
  }

  Status step(const Context& ctx, std::span<const LayerView<T>> layers) override {
    const char* op = "tnt step";
    CURVKIT_OPTIM_RETURN(detail::collect(op, layers, &now_));
    CURVKIT_OPTIM_RETURN(detail::same_shapes(op, now_.params, shapes_));
    const std::int64_t k = this->k_;
    CURVKIT_OPTIM_RETURN(axpby<T>(ctx, 1.0, now_.grads, o_.momentum, mom_.cviews(), mom_.views));
    if (k % o_.t1 == 0) {
      std::vector<MatrixBatch<const T>> gs;
      CURVKIT_OPTIM_RETURN(sampled(op, layers, &gs));
      CURVKIT_OPTIM_RETURN(axpby<T>(ctx, 1.0, gs, 0.0, {}, grad_.views));
      ModeGramOptions mg;
      mg.beta = k == 0 ? 0.0 : o_.stat_decay;
      for (std::size_t t = 0; t < mt_.tensors(); ++t)
        CURVKIT_OPTIM_RETURN(mode_gram<T>(ctx, mt_.tensor(grad_, t), mt_.modes(stats_, t), mg));
    }
    if (k % o_.t2 == 0) {
      // V_i = (tnt_normalize(S)_i + eps I)^{-1}, kept only where the inverse succeeded.
      CURVKIT_OPTIM_RETURN(axpby<T>(ctx, 1.0, stats_.cviews(), 0.0, {}, fresh_.views));
      for (std::size_t t = 0; t < mt_.tensors(); ++t)
        CURVKIT_OPTIM_RETURN(tnt_normalize<T>(ctx, mt_.modes(fresh_, t), norm_info_.data() + t));
      SpdOptions so;
      so.diagonal_shift = o_.epsilon;
      so.policy = NonSpdPolicy::shift;
      CURVKIT_OPTIM_RETURN(potri<T>(ctx, fresh_.views, info_.data(), so));
      CURVKIT_OPTIM_RETURN(copy_if_ok<T>(ctx, fresh_.cviews(), info_.data(), inv_.views));
    }
    Context wctx = ctx;
    wctx.set_workspace(workspace_.data(), workspace_.size());
    for (std::size_t t = 0; t < mt_.tensors(); ++t)
      CURVKIT_OPTIM_RETURN(mode_product_chain<T>(wctx, mt_.tensor(mom_, t), mt_.cmodes(inv_, t),
                                                 mt_.tensor(dir_, t)));
    const double lr = this->lr_;
    CURVKIT_OPTIM_RETURN(
        axpby<T>(ctx, -lr, dir_.cviews(), 1 - lr * o_.weight_decay, now_.cparams(), now_.params));
    ++this->k_;
    return Status::success();
  }

 private:
  // The statistics' gradients in parameter order: the sampled-label ones, or G (empirical).
  Status sampled(const char* op, std::span<const LayerView<T>> layers,
                 std::vector<MatrixBatch<const T>>* out) const {
    if (o_.empirical) {
      *out = now_.grads;
      return Status::success();
    }
    out->clear();
    auto same = [](const auto& x, const auto& y) { return x.rows == y.rows && x.cols == y.cols; };
    for (std::size_t l = 0; l < layers.size(); ++l) {
      const LayerView<T>& L = layers[l];
      if (L.dw_sampled.data == nullptr || !same(L.dw_sampled, L.w) || L.dw_sampled.batch != 1)
        return Status::invalid_argument(op, detail::layer_name(l, "dw_sampled") +
                                                " must have w's shape (needs().grad_sampled)");
      out->push_back(L.dw_sampled);
      if (L.b.data == nullptr) continue;
      if (L.db_sampled.data == nullptr || !same(L.db_sampled, L.b) || L.db_sampled.batch != 1)
        return Status::invalid_argument(op, detail::layer_name(l, "db_sampled") +
                                                " must have b's shape (needs().grad_sampled)");
      out->push_back(L.db_sampled);
    }
    return Status::success();
  }

  TntOptions o_;
  detail::ParamGroups<T> now_;
  std::vector<MatrixBatch<T>> shapes_;
  detail::ModeTensors<T> mt_;
  detail::StateTensors<T> mom_, grad_, dir_, stats_, inv_, fresh_;
  BackendArray<int> info_, norm_info_;
  BackendArray<char> workspace_;
};

}  // namespace

template <class T>
std::unique_ptr<Optimizer<T>> make_tnt(const TntOptions& o) {
  return std::make_unique<Tnt<T>>(o);
}

template std::unique_ptr<Optimizer<float>> make_tnt<float>(const TntOptions&);
template std::unique_ptr<Optimizer<double>> make_tnt<double>(const TntOptions&);

}  // namespace curvkit::optim
