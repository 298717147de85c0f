// MBAG (curvkit/optim/mbag.hpp) on the Sherman–Morrison, Newton–Schulz, GEMM and elementwise
// families.  Every tensor's groups are two uniform batches (full tau-groups, and the remainder
// group when there is one); per step: a dense copy of the gradients (the groups are views of
// it), one rank1_update per batch, on root steps one grouped newton_schulz_sqrt and one grouped
// copy_if_ok, one grouped GEMM q = g R (R symmetric), two grouped axpby.
#include <algorithm>
#include <cmath>

#include "curvkit/core/memory.hpp"
#include "curvkit/elementwise.hpp"
#include "curvkit/gemm.hpp"
#include "curvkit/optim/mbag.hpp"
#include "curvkit/sherman_morrison.hpp"
#include "tensors.hpp"

namespace curvkit::optim {
namespace {

template <class T>
class Mbag final : public Optimizer<T> {
 public:
  explicit Mbag(const MbagOptions& o) : o_(o) { this->lr_ = o.lr; }
  std::string_view name() const override { return o_.no_root ? "mbag-n" : "mbag"; }

  Status init(const Context& ctx, std::span<const LayerView<T>> layers) override {
    const char* op = "mbag init";
    if (o_.tau < 1 || o_.t_sqr < 1 || o_.ns_iterations < 1 || !(o_.damping > 0))
      return Status::invalid_argument(op, "tau, t_sqr, ns_iterations must be >= 1, damping > 0");
    CURVKIT_OPTIM_RETURN(detail::collect(op, layers, &now_));
    shapes_ = now_.params;
    // Group size per tensor: kh kw for convolution weights, tau otherwise.
    batches_.clear();
    std::vector<MatrixBatch<T>> blocks;
    std::size_t t = 0;
    for (const LayerView<T>& l : layers) {
      add_tensor(t++, l.kind == LayerKind::conv2d ? l.kh * l.kw : o_.tau, &blocks);
      if (l.b.data != nullptr) add_tensor(t++, o_.tau, &blocks);
    }
    for (auto* s : {&grad_, &q_, &v_}) CURVKIT_OPTIM_RETURN(s->allocate(ctx, shapes_));
    for (auto* s : {&h_, &r_, &fresh_}) CURVKIT_OPTIM_RETURN(s->allocate(ctx, blocks));
    std::size_t matrices = 0;
    for (const auto& b : blocks) matrices += std::size_t(b.batch);
    sm_info_ = BackendArray<int>(ctx, std::vector<int>(std::max<std::size_t>(matrices, 1), 0));
    ns_info_ = BackendArray<int>(ctx, std::vector<int>(std::max<std::size_t>(matrices, 1), 0));
    this->unwatch_all();
    this->watch("rank1_update of the group inverses", sm_info_.data(), matrices);
    this->watch("newton_schulz_sqrt of the group inverses (failed roots kept)", ns_info_.data(),
                matrices);
    CURVKIT_OPTIM_RETURN(sm_info_.status());
    CURVKIT_OPTIM_RETURN(ns_info_.status());
    // H = I / lambda, R = I / sqrt(lambda), v = 0.
    CURVKIT_OPTIM_RETURN(fill<T>(ctx, 0.0, h_.views));
    CURVKIT_OPTIM_RETURN(add_diagonal<T>(ctx, 1 / o_.damping, nullptr, h_.views));
    CURVKIT_OPTIM_RETURN(fill<T>(ctx, 0.0, r_.views));
    CURVKIT_OPTIM_RETURN(add_diagonal<T>(ctx, 1 / std::sqrt(o_.damping), nullptr, r_.views));
    CURVKIT_OPTIM_RETURN(fill<T>(ctx, 0.0, v_.views));
    workspace_ = BackendArray<char>(ctx, newton_schulz_workspace_size<T>(ctx, h_.cviews()));
    return workspace_.status();
  }

  Status step(const Context& ctx, std::span<const LayerView<T>> layers) override {
    const char* op = "mbag step";
    CURVKIT_OPTIM_RETURN(detail::collect(op, layers, &now_));
    CURVKIT_OPTIM_RETURN(detail::same_shapes(op, now_.params, shapes_));
    CURVKIT_OPTIM_RETURN(axpby<T>(ctx, 1.0, now_.grads, 0.0, {}, grad_.views));
    // H_pi <- (H_pi^{-1} + g_pi g_pi^T)^{-1}, one call per uniform batch of groups.
    std::vector<MatrixBatch<const T>> g;
    std::vector<MatrixBatch<T>> q;
    std::size_t info_at = 0;
    for (std::size_t b = 0; b < batches_.size(); ++b) {
      const Batch& bt = batches_[b];
      const MatrixBatch<T> gv{
          grad_.views[bt.tensor].data + bt.offset, bt.count, 1, bt.size, bt.size, bt.size};
      CURVKIT_OPTIM_RETURN(
          rank1_update<T>(ctx, h_.views[b], gv, sm_info_.data() + info_at, Rank1Options::update()));
      g.push_back(gv);
      q.push_back({q_.views[bt.tensor].data + bt.offset, bt.count, 1, bt.size, bt.size, bt.size});
      info_at += std::size_t(bt.count);
    }
    const detail::StateTensors<T>* root = &r_;
    if (o_.no_root) {
      root = &h_;
    } else if (this->k_ % o_.t_sqr == 0 && !batches_.empty()) {
      Context wctx = ctx;
      wctx.set_workspace(workspace_.data(), workspace_.size());
      NewtonSchulzOptions ns;
      ns.stop = o_.ns_stop;
      ns.iterations = o_.ns_iterations;
      ns.tolerance = o_.ns_tolerance;
      CURVKIT_OPTIM_RETURN(newton_schulz_sqrt<T>(wctx, h_.cviews(), fresh_.views, {},
                                                 NsReport<T>{ns_info_.data()}, ns));
      CURVKIT_OPTIM_RETURN(copy_if_ok<T>(ctx, fresh_.cviews(), ns_info_.data(), r_.views));
    }
    // q_pi = g_pi^T R_pi (= (R_pi g_pi)^T, R symmetric); v <- q + beta v; theta update.
    if (!batches_.empty())
      CURVKIT_OPTIM_RETURN(gemm<T>(ctx, Op::none, Op::none, T(1), g, root->cviews(), T(0), q));
    CURVKIT_OPTIM_RETURN(axpby<T>(ctx, 1.0, q_.cviews(), o_.momentum, v_.cviews(), v_.views));
    const double lr = this->lr_;
    CURVKIT_OPTIM_RETURN(
        axpby<T>(ctx, -lr, v_.cviews(), 1 - lr * o_.weight_decay, now_.cparams(), now_.params));
    ++this->k_;
    return Status::success();
  }

 private:
  // A uniform batch of `count` groups of `size` entries of tensor `tensor`, from `offset`.
  struct Batch {
    std::size_t tensor;
    index_t offset, count, size;
  };

  void add_tensor(std::size_t t, index_t tau, std::vector<MatrixBatch<T>>* blocks) {
    const index_t n = shapes_[t].rows * shapes_[t].cols, full = n / tau, rest = n % tau;
    if (full > 0) {
      batches_.push_back({t, 0, full, tau});
      blocks->push_back({nullptr, full, tau, tau, tau, tau * tau});
    }
    if (rest > 0) {
      batches_.push_back({t, full * tau, 1, rest});
      blocks->push_back({nullptr, 1, rest, rest, rest, rest * rest});
    }
  }

  MbagOptions o_;
  detail::ParamGroups<T> now_;
  std::vector<MatrixBatch<T>> shapes_;
  std::vector<Batch> batches_;  // one per h_ / r_ view
  detail::StateTensors<T> grad_, q_, v_, h_, r_, fresh_;
  BackendArray<int> sm_info_, ns_info_;
  BackendArray<char> workspace_;
};

}  // namespace

template <class T>
std::unique_ptr<Optimizer<T>> make_mbag(const MbagOptions& o) {
  return std::make_unique<Mbag<T>>(o);
}

template std::unique_ptr<Optimizer<float>> make_mbag<float>(const MbagOptions&);
template std::unique_ptr<Optimizer<double>> make_mbag<double>(const MbagOptions&);

}  // namespace curvkit::optim
