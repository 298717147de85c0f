// The first-order baselines of the optimizer layer: SGD with heavy-ball momentum and AdamW
// (docs/optimizer-spec.md §1-2).  Each step is two grouped elementwise calls over every
// parameter tensor of the network, whatever its depth.
#include "curvkit/elementwise.hpp"
#include "tensors.hpp"

namespace curvkit::optim {
namespace {

template <class T>
class Sgd final : public Optimizer<T> {
 public:
  explicit Sgd(const SgdOptions& o) : o_(o) { this->lr_ = o.lr; }
  std::string_view name() const override { return "sgd"; }

  Status init(const Context& ctx, std::span<const LayerView<T>> layers) override {
    CURVKIT_OPTIM_RETURN(detail::collect("sgd init", layers, &now_));
    shapes_ = now_.params;
    CURVKIT_OPTIM_RETURN(momentum_.allocate(ctx, shapes_));
    return fill<T>(ctx, 0.0, momentum_.views);
  }

  Status step(const Context& ctx, std::span<const LayerView<T>> layers) override {
    CURVKIT_OPTIM_RETURN(detail::collect("sgd step", layers, &now_));
    CURVKIT_OPTIM_RETURN(detail::same_shapes("sgd step", now_.params, shapes_));
    const double lr = this->lr_;
    // m <- grad + mu m;  W <- (1 - lr wd) W - lr m.
    CURVKIT_OPTIM_RETURN(
        axpby<T>(ctx, 1.0, now_.grads, o_.momentum, momentum_.cviews(), momentum_.views));
    CURVKIT_OPTIM_RETURN(axpby<T>(ctx, -lr, momentum_.cviews(), 1.0 - lr * o_.weight_decay,
                                  now_.cparams(), now_.params));
    ++this->k_;
    return Status::success();
  }

 private:
  SgdOptions o_;
  detail::ParamGroups<T> now_;
  std::vector<MatrixBatch<T>> shapes_;
  detail::StateTensors<T> momentum_;
};

template <class T>
class AdamW final : public Optimizer<T> {
 public:
  explicit AdamW(const AdamWOptions& o) : o_(o) { this->lr_ = o.lr; }
  std::string_view name() const override { return "adamw"; }

  Status init(const Context& ctx, std::span<const LayerView<T>> layers) override {
    CURVKIT_OPTIM_RETURN(detail::collect("adamw init", layers, &now_));
    shapes_ = now_.params;
    for (auto* s : {&m_, &v_, &d_}) CURVKIT_OPTIM_RETURN(s->allocate(ctx, shapes_));
    CURVKIT_OPTIM_RETURN(fill<T>(ctx, 0.0, m_.views));
    return fill<T>(ctx, 0.0, v_.views);
  }

  Status step(const Context& ctx, std::span<const LayerView<T>> layers) override {
    CURVKIT_OPTIM_RETURN(detail::collect("adamw step", layers, &now_));
    CURVKIT_OPTIM_RETURN(detail::same_shapes("adamw step", now_.params, shapes_));
    const AdamStep st{o_.beta1, o_.beta2, o_.epsilon, this->k_ + 1};
    CURVKIT_OPTIM_RETURN(adam_direction<T>(ctx, now_.grads, m_.views, v_.views, d_.views, st));
    const double lr = this->lr_;
    CURVKIT_OPTIM_RETURN(
        axpby<T>(ctx, -lr, d_.cviews(), 1.0 - lr * o_.weight_decay, now_.cparams(), now_.params));
    ++this->k_;
    return Status::success();
  }

 private:
  AdamWOptions o_;
  detail::ParamGroups<T> now_;
  std::vector<MatrixBatch<T>> shapes_;
  detail::StateTensors<T> m_, v_, d_;
};

}  // namespace

template <class T>
std::unique_ptr<Optimizer<T>> make_sgd(const SgdOptions& o) {
  return std::make_unique<Sgd<T>>(o);
}
template <class T>
std::unique_ptr<Optimizer<T>> make_adamw(const AdamWOptions& o) {
  return std::make_unique<AdamW<T>>(o);
}

template std::unique_ptr<Optimizer<float>> make_sgd<float>(const SgdOptions&);
template std::unique_ptr<Optimizer<double>> make_sgd<double>(const SgdOptions&);
template std::unique_ptr<Optimizer<float>> make_adamw<float>(const AdamWOptions&);
template std::unique_ptr<Optimizer<double>> make_adamw<double>(const AdamWOptions&);

}  // namespace curvkit::optim
