// Muon (curvkit/optim/muon.hpp): per step two axpby for the momentum and Nesterov vector, one
// grouped newton_schulz_polar over every hidden weight, a fill and a copy_if_ok that turn failed
// (zero or non-finite) polar factors into zero updates, one axpby per distinct shape scale, and
// the AdamW step of the other tensors.
#include <algorithm>
#include <cmath>
#include <map>

#include "curvkit/core/memory.hpp"
#include "curvkit/elementwise.hpp"
#include "curvkit/optim/muon.hpp"
#include "tensors.hpp"

namespace curvkit::optim {
namespace {

template <class T>
class Muon final : public Optimizer<T> {
 public:
  explicit Muon(const MuonOptions& o) : o_(o) { this->lr_ = o.lr; }
  std::string_view name() const override { return "muon"; }

  Status init(const Context& ctx, std::span<const LayerView<T>> layers) override {
    CURVKIT_OPTIM_RETURN(split("muon init", layers));
    shapes_ = hidden_.params;
    aux_shapes_ = aux_.params;
    for (auto* s : {&m_, &u_, &o_raw_, &o_clean_}) CURVKIT_OPTIM_RETURN(s->allocate(ctx, shapes_));
    for (auto* s : {&am_, &av_, &ad_}) CURVKIT_OPTIM_RETURN(s->allocate(ctx, aux_shapes_));
    info_ = BackendArray<int>(ctx, std::vector<int>(std::max<std::size_t>(shapes_.size(), 1), 0));
    this->unwatch_all();
    this->watch("newton_schulz_polar of the hidden weights (failed: zero update)", info_.data(),
                shapes_.size());
    CURVKIT_OPTIM_RETURN(info_.status());
    const auto u = u_.cviews();
    workspace_ = BackendArray<char>(ctx, newton_schulz_workspace_size<T>(ctx, u));
    CURVKIT_OPTIM_RETURN(workspace_.status());
    // Learning-rate scale per hidden tensor: sqrt(max(1, rows / cols)), grouped by value.
    scales_.clear();
    for (std::size_t t = 0; t < shapes_.size(); ++t)
      scales_[std::sqrt(std::max(1.0, double(shapes_[t].rows) / double(shapes_[t].cols)))]
          .push_back(t);
    for (auto* s : {&m_, &am_, &av_}) CURVKIT_OPTIM_RETURN(fill<T>(ctx, 0.0, s->views));
    return Status::success();
  }

  Status step(const Context& ctx, std::span<const LayerView<T>> layers) override {
    CURVKIT_OPTIM_RETURN(split("muon step", layers));
    CURVKIT_OPTIM_RETURN(detail::same_shapes("muon step", hidden_.params, shapes_));
    CURVKIT_OPTIM_RETURN(detail::same_shapes("muon step", aux_.params, aux_shapes_));
    const double beta = o_.momentum, lr = this->lr_;
    if (!shapes_.empty()) {
      // M <- beta M + (1 - beta) g;  U = (1 - beta) g + beta M (Nesterov) or M.
      CURVKIT_OPTIM_RETURN(axpby<T>(ctx, 1 - beta, hidden_.grads, beta, m_.cviews(), m_.views));
      const auto& u = o_.nesterov ? u_ : m_;
      if (o_.nesterov)
        CURVKIT_OPTIM_RETURN(axpby<T>(ctx, 1 - beta, hidden_.grads, beta, m_.cviews(), u_.views));
      Context wctx = ctx;
      wctx.set_workspace(workspace_.data(), workspace_.size());
      NewtonSchulzOptions ns;
      ns.iterations = o_.ns_steps;
      ns.compute = o_.compute;
      PolarOptions po;
      po.schedule = o_.schedule;
      CURVKIT_OPTIM_RETURN(newton_schulz_polar<T>(wctx, u.cviews(), o_raw_.views,
                                                  NsReport<T>{info_.data()}, ns, po));
      // Failed factors (zero or non-finite U) become zero updates.
      CURVKIT_OPTIM_RETURN(fill<T>(ctx, 0.0, o_clean_.views));
      CURVKIT_OPTIM_RETURN(copy_if_ok<T>(ctx, o_raw_.cviews(), info_.data(), o_clean_.views));
      for (const auto& [scale, tensors] : scales_) {
        std::vector<MatrixBatch<const T>> o;
        std::vector<MatrixBatch<T>> w;
        for (std::size_t t : tensors) {
          o.push_back(o_clean_.views[t]);
          w.push_back(hidden_.params[t]);
        }
        std::vector<MatrixBatch<const T>> cw(w.begin(), w.end());
        CURVKIT_OPTIM_RETURN(axpby<T>(ctx, -lr * scale, o, 1 - lr * o_.weight_decay, cw, w));
      }
    }
    if (!aux_shapes_.empty()) {
      const AdamWOptions& a = o_.aux;
      const AdamStep st{a.beta1, a.beta2, a.epsilon, this->k_ + 1};
      CURVKIT_OPTIM_RETURN(adam_direction<T>(ctx, aux_.grads, am_.views, av_.views, ad_.views, st));
      CURVKIT_OPTIM_RETURN(axpby<T>(ctx, -a.lr, ad_.cviews(), 1 - a.lr * a.weight_decay,
                                    aux_.cparams(), aux_.params));
    }
    ++this->k_;
    return Status::success();
  }

 private:
  // Hidden weights (Muon) and everything else (AdamW), in layer order.
  Status split(const char* op, std::span<const LayerView<T>> layers) {
    detail::ParamGroups<T> all;
    CURVKIT_OPTIM_RETURN(detail::collect(op, layers, &all));
    hidden_.params.clear();
    hidden_.grads.clear();
    aux_.params.clear();
    aux_.grads.clear();
    std::size_t t = 0;
    for (const LayerView<T>& l : layers) {
      const bool muon = l.kind != LayerKind::vector && !l.output_layer;
      auto& w = muon ? hidden_ : aux_;
      w.params.push_back(all.params[t]);
      w.grads.push_back(all.grads[t]);
      ++t;
      if (l.b.data != nullptr) {
        aux_.params.push_back(all.params[t]);
        aux_.grads.push_back(all.grads[t]);
        ++t;
      }
    }
    return Status::success();
  }

  MuonOptions o_;
  detail::ParamGroups<T> hidden_, aux_;
  std::vector<MatrixBatch<T>> shapes_, aux_shapes_;
  detail::StateTensors<T> m_, u_, o_raw_, o_clean_, am_, av_, ad_;
  BackendArray<int> info_;
  BackendArray<char> workspace_;
  std::map<double, std::vector<std::size_t>> scales_;
};

}  // namespace

template <class T>
std::unique_ptr<Optimizer<T>> make_muon(const MuonOptions& o) {
  return std::make_unique<Muon<T>>(o);
}

template std::unique_ptr<Optimizer<float>> make_muon<float>(const MuonOptions&);
template std::unique_ptr<Optimizer<double>> make_muon<double>(const MuonOptions&);

}  // namespace curvkit::optim
