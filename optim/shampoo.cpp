// Shampoo (curvkit/optim/shampoo.hpp) on the Kronecker, Newton–Schulz and elementwise families.
// Per step: one grouped axpby for the momentum; on statistics steps a dense copy of the
// gradients (mode_gram reads contiguous tensors) and one mode_gram per tensor; on root steps one
// grouped newton_schulz_inverse_root per exponent 2K and one grouped copy_if_ok; one
// mode_product_chain per tensor; the optional graft (sum_squares x 2, scale_by_norm_ratio); one
// grouped axpby for the update.  Mode matrices are ordered by exponent so that each root call's
// report is one contiguous slice of the info array.
#include <algorithm>

#include "curvkit/core/memory.hpp"
#include "curvkit/elementwise.hpp"
#include "curvkit/kron.hpp"
#include "curvkit/newton_schulz.hpp"
#include "curvkit/optim/shampoo.hpp"
#include "mode_tensors.hpp"

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
    CURVKIT_OPTIM_RETURN(mt_.build(op, layers, [](int order) { return 2 * order; }));
    for (auto* s : {&mom_, &grad_, &dir_}) CURVKIT_OPTIM_RETURN(s->allocate(ctx, shapes_));
    if (o_.graft == Graft::adagrad)
      for (auto* s : {&graft_q_, &graft_a_}) CURVKIT_OPTIM_RETURN(s->allocate(ctx, shapes_));
    for (auto* s : {&stats_, &roots_, &fresh_})
      CURVKIT_OPTIM_RETURN(s->allocate(ctx, mt_.mode_shapes()));
    const std::size_t modes = mt_.mode_shapes().size();
    info_ = BackendArray<int>(ctx, std::vector<int>(std::max<std::size_t>(modes, 1), 0));
    this->unwatch_all();
    this->watch("newton_schulz_inverse_root of the mode statistics (failed roots kept)",
                info_.data(), modes);
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
    for (const auto& [p, tensors] : mt_.by_key())
      bytes = std::max(bytes, newton_schulz_workspace_size<T>(
                                  ctx, detail::as_const(mt_.modes_of_key(stats_, p))));
    for (std::size_t t = 0; t < mt_.tensors(); ++t)
      bytes = std::max(bytes, mode_product_chain_workspace_size<T>(ctx, mt_.tensor(mom_, t),
                                                                   mt_.cmodes(roots_, t)));
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
      for (std::size_t t = 0; t < mt_.tensors(); ++t)
        CURVKIT_OPTIM_RETURN(mode_gram<T>(ctx, mt_.tensor(grad_, t), mt_.modes(stats_, t), mg));
    }
    if (k % o_.t2 == 0) CURVKIT_OPTIM_RETURN(refresh_roots(wctx));
    for (std::size_t t = 0; t < mt_.tensors(); ++t)
      CURVKIT_OPTIM_RETURN(mode_product_chain<T>(wctx, mt_.tensor(mom_, t), mt_.cmodes(roots_, t),
                                                 mt_.tensor(dir_, t)));
    if (o_.graft != Graft::none) CURVKIT_OPTIM_RETURN(graft(ctx));
    const double lr = this->lr_;
    CURVKIT_OPTIM_RETURN(
        axpby<T>(ctx, -lr, dir_.cviews(), 1 - lr * o_.weight_decay, now_.cparams(), now_.params));
    ++this->k_;
    return Status::success();
  }

 private:
  // R_i = (S_i + eps I)^{-1/p} into `fresh`, kept where the iteration succeeded.
  Status refresh_roots(const Context& wctx) {
    NewtonSchulzOptions ns;
    ns.stop = NsStop::residual;
    ns.iterations = o_.ns_max_iterations;
    ns.tolerance = o_.ns_tolerance;
    ns.epsilon = o_.epsilon;
    std::size_t at = 0;
    for (const auto& [p, tensors] : mt_.by_key()) {
      const auto s = detail::as_const(mt_.modes_of_key(stats_, p));
      const auto fresh = mt_.modes_of_key(fresh_, p);
      CURVKIT_OPTIM_RETURN(
          newton_schulz_inverse_root<T>(wctx, s, p, fresh, NsReport<T>{info_.data() + at}, ns));
      CURVKIT_OPTIM_RETURN(copy_if_ok<T>(wctx, detail::as_const(fresh), info_.data() + at,
                                         mt_.modes_of_key(roots_, p)));
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
  detail::ModeTensors<T> mt_;  // keyed by the root exponent 2K
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
