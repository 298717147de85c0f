// SMW-NG and SMW-NG-BD in the optimizer layer (curvkit/optim/smw_ng.hpp; docs/optimizer-spec-2.md
// §3).
//
// State (one backend allocation per kind): the folded gradient G~_l and direction V~_l per
// layer; K (N2 x N2: one, or one per layer for BD) and z (N2 x 1, the same count); per layer
// <G~_l, V~_l> and |V~_l|^2; the mean losses f0, f1; the LM state (curvkit::lm_damping_update:
// lambda_LM, lambda, 1 / lambda, rho, pred, then lambda once per K for add_diagonal); a ones
// vector for the loss means; potrf's and potrs's info.
//
// Launches per step: two axpby gathering G~ (W parts, bias columns), one grouped khatri_rao_gram,
// add_diagonal (lambda from the state), potrf, one grouped khatri_rao_jv, potrs, one axpby copy
// G~ -> V~, one grouped khatri_rao_jtu, sum_products and sum_squares (per layer), a gemm for f0
// and axpby_scaled for the update; finish_step() a gemm for f1 and lm_damping_update.
#include "curvkit/optim/smw_ng.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "curvkit/elementwise.hpp"
#include "curvkit/gemm.hpp"
#include "curvkit/khatri_rao.hpp"
#include "curvkit/spd.hpp"
#include "folded.hpp"

namespace curvkit::optim {
namespace {

using detail::FoldedLayer;
using detail::layer_name;

LmDampingRule rule_of(const SmwNgOptions& o, double lr) {
  LmDampingRule r;
  r.lr = lr;
  r.boost = o.boost;
  r.drop = o.drop;
  r.epsilon = o.epsilon;
  r.floor = o.floor;
  return r;
}

Status check_options(const SmwNgOptions& o) {
  const char* op = "smw_ng init";
  if (!(o.lr > 0) || !std::isfinite(o.lr) || !std::isfinite(o.weight_decay))
    return Status::invalid_argument(op, "options.lr must be finite and > 0, weight_decay finite");
  if (!(o.damping >= 0) || !std::isfinite(o.damping))
    return Status::invalid_argument(op, "options.damping must be finite and >= 0");
  if (!(o.damping + o.floor > 0))
    return Status::invalid_argument(op, "options.damping + options.floor must be > 0");
  if (o.curvature_samples < 0 || o.gauss_newton_budget < 1)
    return Status::invalid_argument(
        op, "options.curvature_samples must be >= 0 and gauss_newton_budget >= 1");
  const LmDampingRule r = rule_of(o, o.lr);
  if (!(r.boost >= 1) || !std::isfinite(r.boost) || !(r.drop > 0 && r.drop <= 1) ||
      !(r.epsilon > 0 && r.epsilon < 0.5) || !(r.floor >= 0) || !std::isfinite(r.floor))
    return Status::invalid_argument(
        op, "options.boost >= 1, drop in (0, 1], epsilon in (0, 1/2) and floor >= 0 are needed");
  return Status::success();
}

template <class T>
class SmwNg final : public Optimizer<T> {
 public:
  explicit SmwNg(const SmwNgOptions& o) : o_(o) { this->lr_ = o.lr; }
  std::string_view name() const override {
    if (o_.gauss_newton) return o_.block_diagonal ? "smw-gn-bd" : "smw-gn";
    return o_.block_diagonal ? "smw-ng-bd" : "smw-ng";
  }

  Needs needs() const override {
    Needs n;
    n.a = n.losses = true;
    n.g = !o_.gauss_newton;
    if (o_.gauss_newton) n.cotangents = n2_;
    n.second_pass = SecondPass::forward;
    return n;
  }

  Status init(const Context& ctx, std::span<const LayerView<T>> layers) override {
    const char* op = "smw_ng init";
    initialised_ = pending_ = false;
    CURVKIT_OPTIM_RETURN(check_options(o_));
    CURVKIT_OPTIM_RETURN(detail::collect(op, layers, &now_));
    shapes_ = now_.params;
    CURVKIT_OPTIM_RETURN(detail::fold_layers(op, layers, &folded_, &vectors_));
    if (!vectors_.empty())
      return Status::invalid_argument(
          op, layer_name(vectors_[0], "kind") +
                  " is vector: SMW-NG needs per-sample gradients, which a vector layer's view "
                  "does not carry");
    CURVKIT_OPTIM_RETURN(detail::batch_size(op, layers, folded_, &m_));
    n2_ = o_.curvature_samples > 0 ? o_.curvature_samples : std::max<index_t>(m_ / 2, 1);
    if (o_.gauss_newton && o_.curvature_samples == 0 && !layers.empty()) {
      // R from the output layer (the last one when none is marked).
      const LayerView<T>* out = &layers.back();
      for (const LayerView<T>& x : layers)
        if (x.output_layer) out = &x;
      n2_ = std::clamp<index_t>(o_.gauss_newton_budget / std::max<index_t>(out->w.rows, 1), 1, n2_);
    }
    if (n2_ > m_ && !folded_.empty())
      return Status::invalid_argument(
          op, "options.curvature_samples must be <= m (" + std::to_string(m_) + ")");
    const std::size_t nl = folded_.size();
    const std::size_t blocks = o_.block_diagonal ? nl : std::min<std::size_t>(nl, 1);
    std::vector<MatrixBatch<T>> tensors;
    for (const FoldedLayer& k : folded_) tensors.push_back(detail::folded_shape<T>(k));
    CURVKIT_OPTIM_RETURN(gradient_.allocate(ctx, tensors));
    CURVKIT_OPTIM_RETURN(direction_.allocate(ctx, tensors));
    // K and z: N2 rows (SMW-NG), or N2 R once the first q tells R (SMW-GN).
    pseudo_ = 0;
    gram_ = {};
    z_ = {};
    a_rep_ = {};
    if (!o_.gauss_newton) CURVKIT_OPTIM_RETURN(allocate_solve(ctx, n2_));
    // products: <G~_l, V~_l> then |V~_l|^2 per layer, then f0, f1.
    products_ = BackendArray<T>(ctx, std::vector<T>(2 * nl + 2, T(0)));
    const double lambda = o_.damping + o_.floor;
    std::vector<T> state = {T(o_.damping), T(lambda), T(1 / lambda),
                            std::numeric_limits<T>::quiet_NaN(), T(0)};
    state.resize(5 + blocks, T(lambda));
    state_ = BackendArray<T>(ctx, state);
    ones_ = BackendArray<T>(ctx, std::vector<T>(std::size_t(std::max<index_t>(m_, 1)), T(1)));
    const std::vector<int> zeros(std::max<std::size_t>(2 * blocks, 1), 0);
    info_ = BackendArray<int>(ctx, zeros);
    for (const Status& s : {products_.status(), state_.status(), ones_.status(), info_.status()})
      CURVKIT_OPTIM_RETURN(s);
    this->unwatch_all();
    const char* what = o_.block_diagonal ? " (per layer)" : "";
    this->watch(std::string("potrf of lambda I + K / N2") + what, info_.data(), blocks);
    this->watch(std::string("potrs of z = D^{-1} J g") + what, info_.data() + blocks, blocks);
    workspace_ = {};
    workspace_bytes_ = 0;
    backend_ = ctx.backend();
    initialised_ = true;
    return Status::success();
  }

  Status step(const Context& ctx, std::span<const LayerView<T>> layers) override {
    const char* op = "smw_ng step";
    if (pending_)
      return Status::invalid_argument(
          op, "finish_step() was not called after the last step's second pass");
    CURVKIT_OPTIM_RETURN(detail::check_step_layers(op, initialised_, backend_, ctx, layers, &now_,
                                                   shapes_, folded_, vectors_));
    const std::size_t nl = folded_.size();
    // Everything is checked and every view built before the first launch.
    MatrixBatch<const T> losses;
    CURVKIT_OPTIM_RETURN(find_losses(op, layers, &losses));
    // The curvature's rows: the first N2 samples' a and g (SMW-NG), or a repeated R times per
    // sample and q (SMW-GN): N2 (R) pseudo-samples of S rows each.
    std::vector<MatrixBatch<const T>> a, g, a_first;
    index_t outputs = 0;
    for (const FoldedLayer& k : folded_) {
      const LayerView<T>& x = layers[k.layer];
      const std::string why = " (needs() asks for it every step)";
      CURVKIT_OPTIM_RETURN(o_.gauss_newton ? detail::check_inputs(op, k, x, why)
                                           : detail::check_statistics(op, k, x, x.g, "g", why));
      if (x.m != m_)
        return Status::invalid_argument(
            op, layer_name(k.layer, "m") + " must be init()'s m (" + std::to_string(m_) + ")");
      const index_t s = x.a.rows / m_, rows = s * n2_;  // the first N2 samples' S rows each
      a_first.push_back({x.a.data, 1, rows, x.a.cols, x.a.ld, rows * x.a.ld});
      if (!o_.gauss_newton) {
        g.push_back({x.g.data, 1, rows, x.g.cols, x.g.ld, rows * x.g.ld});
        continue;
      }
      const MatrixBatch<const T>& q = x.q;
      const index_t r = q.rows / std::max<index_t>(rows, 1);
      if (q.data == nullptr || q.batch != 1 || q.cols != k.d_out || q.ld < q.cols || r < 1 ||
          q.rows != r * rows || (outputs > 0 && r != outputs))
        return Status::invalid_argument(
            op, layer_name(k.layer, "q") + " must be one (N2 R S) x " + std::to_string(k.d_out) +
                    " matrix, N2 = " + std::to_string(n2_) + ", R the same for every layer" + why);
      outputs = r;
      g.push_back(q);
    }
    if (o_.gauss_newton && !folded_.empty()) {
      CURVKIT_OPTIM_RETURN(allocate_repeats(ctx, a_first, outputs));
      a = a_rep_.cviews();
    } else {
      a = a_first;
    }
    CURVKIT_OPTIM_RETURN(reserve_workspace(ctx, a, g));
    const detail::FoldedUpdates<T> u =
        detail::folded_updates<T>(layers, folded_, vectors_, gradient_.views, direction_.views);
    // G~ = [dW | db].
    CURVKIT_OPTIM_RETURN(axpby<T>(ctx, 1.0, u.grad_w, 0.0, {}, u.moment_w));
    if (!u.grad_b.empty()) CURVKIT_OPTIM_RETURN(axpby<T>(ctx, 1.0, u.grad_b, 0.0, {}, u.moment_b));
    T* products = products_.data();
    if (o_.gauss_newton && nl > 0) CURVKIT_OPTIM_RETURN(repeat_rows(ctx, a_first, outputs));
    if (nl > 0) {
      // D = lambda I + (1/N2) K, L L^T = D;  z = D^{-1} J G~;  V~ = G~ - (1/N2) J^T z.
      KhatriRaoOptions ko;
      ko.alpha = 1.0 / double(n2_);
      Context c = ctx;
      if (workspace_bytes_ > 0) c.set_workspace(workspace_.data(), workspace_bytes_);
      CURVKIT_OPTIM_RETURN(khatri_rao_gram<T>(c, a, g, gram_.views, ko));
      CURVKIT_OPTIM_RETURN(add_diagonal<T>(ctx, 0.0, state_.data() + 5, gram_.views));
      SpdOptions so;
      so.policy = NonSpdPolicy::shift;
      const std::size_t blocks = gram_.views.size();
      CURVKIT_OPTIM_RETURN(potrf<T>(ctx, GroupedBatch<T>(gram_.views), info_.data(), so));
      CURVKIT_OPTIM_RETURN(khatri_rao_jv<T>(ctx, a, g, gradient_.cviews(), z_.views));
      CURVKIT_OPTIM_RETURN(
          potrs<T>(ctx, gram_.cviews(), GroupedBatch<T>(z_.views), info_.data() + blocks));
      CURVKIT_OPTIM_RETURN(axpby<T>(ctx, 1.0, gradient_.cviews(), 0.0, {}, direction_.views));
      ko.alpha = -1.0 / double(n2_);
      ko.beta = 1.0;
      CURVKIT_OPTIM_RETURN(khatri_rao_jtu<T>(ctx, a, g, z_.cviews(), direction_.views, ko));
      // The LM rule's <G~, V~> and |V~|^2 per layer, and f0.
      CURVKIT_OPTIM_RETURN(sum_products<T>(ctx, gradient_.cviews(), direction_.cviews(), products));
      CURVKIT_OPTIM_RETURN(sum_squares<T>(ctx, direction_.cviews(), products + nl));
    }
    CURVKIT_OPTIM_RETURN(mean_loss(ctx, losses, products + 2 * nl));
    // W~ <- (1 - lr wd) W~ - lr (1 / lambda) V~.
    const double lr = this->lr_;
    CURVKIT_OPTIM_RETURN(axpby_scaled<T>(ctx, -lr, state_.data() + 2, u.step,
                                         1.0 - lr * o_.weight_decay, detail::as_const(u.param),
                                         u.param));
    pending_ = true;
    ++this->k_;
    return Status::success();
  }

  Status finish_step(const Context& ctx, std::span<const LayerView<T>> layers) override {
    const char* op = "smw_ng finish_step";
    if (!pending_) return Status::invalid_argument(op, "no step is waiting for its second pass");
    MatrixBatch<const T> losses;
    CURVKIT_OPTIM_RETURN(find_losses(op, layers, &losses));
    const std::size_t nl = folded_.size();
    T* products = products_.data();
    CURVKIT_OPTIM_RETURN(mean_loss(ctx, losses, products + 2 * nl + 1));
    // The rule with the rate this step used.
    CURVKIT_OPTIM_RETURN(lm_damping_update<T>(
        ctx, products + 2 * nl, products + 2 * nl + 1, products, products + nl, index_t(nl),
        rule_of(o_, this->lr_), state_.data(), index_t(gram_.views.size())));
    pending_ = false;
    return Status::success();
  }

 private:
  // K and z for `rows` (pseudo-)samples: one of each, or one per layer (block diagonal).
  Status allocate_solve(const Context& ctx, index_t rows) {
    const std::size_t nl = folded_.size();
    const std::size_t blocks = o_.block_diagonal ? nl : std::min<std::size_t>(nl, 1);
    const std::vector<MatrixBatch<T>> squares(blocks, {nullptr, 1, rows, rows, rows, rows * rows}),
        columns(blocks, {nullptr, 1, rows, 1, 1, rows});
    CURVKIT_OPTIM_RETURN(gram_.allocate(ctx, squares));
    CURVKIT_OPTIM_RETURN(z_.allocate(ctx, columns));
    pseudo_ = rows;
    return fill<T>(ctx, 0.0, gram_.views);  // potrf leaves the strict upper part
  }

  // SMW-GN's repeated a (N2 R S x d_A per layer) and K, z for N2 R pseudo-samples, on the first
  // step; R must stay the same.
  Status allocate_repeats(const Context& ctx, const std::vector<MatrixBatch<const T>>& a,
                          index_t outputs) {
    if (pseudo_ > 0) {
      if (pseudo_ != n2_ * outputs)
        return Status::invalid_argument("smw_ng step",
                                        "q's number of outputs R differs from the first step's");
      return Status::success();
    }
    std::vector<MatrixBatch<T>> shapes;
    for (const MatrixBatch<const T>& x : a)
      shapes.push_back({nullptr, 1, x.rows * outputs, x.cols, x.cols, x.rows * outputs * x.cols});
    CURVKIT_OPTIM_RETURN(a_rep_.allocate(ctx, shapes));
    return allocate_solve(ctx, n2_ * outputs);
  }

  // a_rep block (i, r) = a block i (S rows) for r < R: R grouped copies (one group per layer;
  // the R blocks of a sample interleave in memory, so they cannot share a call).
  Status repeat_rows(const Context& ctx, const std::vector<MatrixBatch<const T>>& a,
                     index_t outputs) const {
    for (index_t r = 0; r < outputs; ++r) {
      std::vector<MatrixBatch<const T>> from;
      std::vector<MatrixBatch<T>> to;
      for (std::size_t l = 0; l < a.size(); ++l) {
        const index_t s = a[l].rows / n2_, cols = a[l].cols;
        from.push_back({a[l].data, n2_, s, cols, a[l].ld, s * a[l].ld});
        to.push_back({a_rep_.views[l].data + r * s * cols, n2_, s, cols, cols, outputs * s * cols});
      }
      CURVKIT_OPTIM_RETURN(axpby<T>(ctx, 1.0, from, 0.0, {}, to));
    }
    return Status::success();
  }

  // The one 1 x 1 x m losses view among the layers.
  Status find_losses(const char* op, std::span<const LayerView<T>> layers,
                     MatrixBatch<const T>* out) const {
    for (const LayerView<T>& x : layers)
      if (x.losses.data != nullptr) {
        if (x.losses.batch != 1 || x.losses.rows != 1 || x.losses.cols != m_)
          return Status::invalid_argument(
              op, "losses must be one 1 x m row (m = " + std::to_string(m_) + ")");
        *out = x.losses;
        return Status::success();
      }
    return Status::invalid_argument(
        op, "no layer carries the per-sample losses (needs().losses: the output layer's view)");
  }

  // *f = (1/m) sum_i losses_i.
  Status mean_loss(const Context& ctx, const MatrixBatch<const T>& losses, T* f) const {
    const MatrixBatch<const T> ones{ones_.data(), 1, m_, 1, 1, m_};
    return gemm<T>(ctx, Op::none, Op::none, T(1.0 / double(m_)), losses, ones, T(0),
                   MatrixBatch<T>{f, 1, 1, 1, 1, 1});
  }

  // khatri_rao_gram's workspace (convolutions on its direct path).
  Status reserve_workspace(const Context& ctx, const std::vector<MatrixBatch<const T>>& a,
                           const std::vector<MatrixBatch<const T>>& g) {
    if (a.empty()) return Status::success();
    KhatriRaoOptions ko;
    ko.alpha = 1.0 / double(n2_);
    const std::size_t need =
        khatri_rao_gram_workspace_size<T>(ctx, a, g, GroupedBatch<T>(gram_.views), ko);
    if (need <= workspace_bytes_) return Status::success();
    workspace_ = BackendArray<T>(ctx, (need + sizeof(T) - 1) / sizeof(T));
    workspace_bytes_ = need;
    return workspace_.status();
  }

  SmwNgOptions o_;
  bool initialised_ = false, pending_ = false;
  Backend backend_ = Backend::reference;
  index_t m_ = 0, n2_ = 0;
  detail::ParamGroups<T> now_;
  std::vector<MatrixBatch<T>> shapes_;
  std::vector<FoldedLayer> folded_;
  std::vector<std::size_t> vectors_;
  detail::StateTensors<T> gradient_, direction_, gram_, z_, a_rep_;
  index_t pseudo_ = 0;  // K's order: N2, or N2 R for SMW-GN
  BackendArray<T> products_, state_, ones_, workspace_;
  std::size_t workspace_bytes_ = 0;
  BackendArray<int> info_;
};

}  // namespace

template <class T>
std::unique_ptr<Optimizer<T>> make_smw_ng(const SmwNgOptions& o) {
  return std::make_unique<SmwNg<T>>(o);
}

template std::unique_ptr<Optimizer<float>> make_smw_ng<float>(const SmwNgOptions&);
template std::unique_ptr<Optimizer<double>> make_smw_ng<double>(const SmwNgOptions&);

}  // namespace curvkit::optim
