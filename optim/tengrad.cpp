// TENGraD in the optimizer layer (curvkit/optim/tengrad.hpp; docs/optimizer-spec-2.md §5).
//
// State per folded layer l (L of them), one backend allocation per kind:
//   momentum   M~_l (d_out x d_A), then one tensor per vector layer
//   direction  V~_l (d_out x d_A)
//   kept       Â_l ((m S_l) x d_A) and Ĝ_l ((m S_l) x d_out): the last good refresh's batch
//   factor     L_l (m x m, lower) of K_l + lambda I, and fresh_l, the refresh's work copy
//   u          z_l (m x 1): J_l vec(M~_l), then (K_l + lambda I)^{-1} of it
//   info       potrf's and potrs's, one per layer each (watched)
//   workspace  khatri_rao_gram's, for convolutions that take its direct path (sized by the first
//              a and g seen, grown if a later refresh needs more)
// Launches per step: refresh steps one grouped khatri_rao_gram (one K per layer), one grouped
// potrf (shift policy) and three grouped copy_if_ok (the factor, a, g_s: a failed refresh keeps
// the previous preconditioner whole); every step two axpby for the momentum (W parts with the
// vector layers, then the bias columns), one grouped khatri_rao_jv, one grouped potrs, one axpby
// copy M~ -> V~, one grouped khatri_rao_jtu (V~ -= (1/m) J^T z) and one axpby for the update.
#include "curvkit/optim/tengrad.hpp"

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "curvkit/elementwise.hpp"
#include "curvkit/khatri_rao.hpp"
#include "curvkit/spd.hpp"
#include "folded.hpp"

namespace curvkit::optim {
namespace {

using detail::FoldedLayer;
using detail::layer_name;

Status check_options(const TengradOptions& o) {
  const char* op = "tengrad init";
  CURVKIT_OPTIM_RETURN(
      detail::check_damped_options(op, o.lr, o.weight_decay, o.damping, o.momentum));
  if (o.t2 < 1) return Status::invalid_argument(op, "options.t2 must be >= 1");
  return Status::success();
}

template <class T>
class Tengrad final : public Optimizer<T> {
 public:
  explicit Tengrad(const TengradOptions& o) : o_(o) { this->lr_ = o.lr; }
  std::string_view name() const override { return "tengrad"; }

  Needs needs() const override {
    Needs n;
    if (o_.t2 >= 1 && this->k_ % o_.t2 == 0) {
      n.a = true;
      (o_.empirical ? n.g : n.g_sampled) = true;
    }
    return n;
  }

  Status init(const Context& ctx, std::span<const LayerView<T>> layers) override {
    const char* op = "tengrad init";
    initialised_ = false;
    CURVKIT_OPTIM_RETURN(check_options(o_));
    CURVKIT_OPTIM_RETURN(detail::collect(op, layers, &now_));
    shapes_ = now_.params;
    CURVKIT_OPTIM_RETURN(detail::fold_layers(op, layers, &folded_, &vectors_));
    CURVKIT_OPTIM_RETURN(
        detail::batch_size(op, layers, folded_, &m_, ": the m x m state is sized by init()"));
    std::vector<MatrixBatch<T>> moments, directions, squares, columns;
    for (const FoldedLayer& k : folded_) {
      moments.push_back(detail::folded_shape<T>(k));
      squares.push_back({nullptr, 1, m_, m_, m_, m_ * m_});
      columns.push_back({nullptr, 1, m_, 1, 1, m_});
    }
    directions = moments;
    for (std::size_t v : vectors_) moments.push_back(layers[v].w);
    CURVKIT_OPTIM_RETURN(momentum_.allocate(ctx, moments));
    CURVKIT_OPTIM_RETURN(direction_.allocate(ctx, directions));
    CURVKIT_OPTIM_RETURN(factor_.allocate(ctx, squares));
    CURVKIT_OPTIM_RETURN(fresh_.allocate(ctx, squares));
    CURVKIT_OPTIM_RETURN(z_.allocate(ctx, columns));
    const std::vector<int> zeros(std::max<std::size_t>(folded_.size(), 1), 0);
    info_ = BackendArray<int>(ctx, zeros);
    solve_info_ = BackendArray<int>(ctx, zeros);
    CURVKIT_OPTIM_RETURN(info_.status());
    CURVKIT_OPTIM_RETURN(solve_info_.status());
    this->unwatch_all();
    this->watch("potrf of K + lambda I (per layer; a failed refresh keeps the previous one)",
                info_.data(), folded_.size());
    this->watch("potrs with the kept factor (per layer)", solve_info_.data(), folded_.size());
    // The kept batch is sized by the first a and g: now, when the trainer gave them to init().
    kept_a_ = {};
    kept_g_ = {};
    std::vector<MatrixBatch<const T>> a0, g0;
    for (const FoldedLayer& k : folded_) {
      const LayerView<T>& x = layers[k.layer];
      const MatrixBatch<const T>& g = o_.empirical ? x.g : x.g_sampled;
      if (!detail::check_statistics(op, k, x, g, "g", "").ok()) break;
      a0.push_back(x.a);
      g0.push_back(g);
    }
    workspace_ = {};
    workspace_bytes_ = 0;
    if (!folded_.empty() && a0.size() == folded_.size()) {
      CURVKIT_OPTIM_RETURN(allocate_kept(ctx, a0, g0));
      CURVKIT_OPTIM_RETURN(reserve_workspace(ctx, a0, g0));
    }
    CURVKIT_OPTIM_RETURN(fill<T>(ctx, 0.0, fresh_.views));  // potrf leaves the upper part
    CURVKIT_OPTIM_RETURN(fill<T>(ctx, 0.0, momentum_.views));
    // Until the first good refresh: J = 0 and L = sqrt(lambda) I, so the step is M~ / lambda.
    CURVKIT_OPTIM_RETURN(fill<T>(ctx, 0.0, factor_.views));
    CURVKIT_OPTIM_RETURN(add_diagonal<T>(ctx, std::sqrt(o_.damping), nullptr, factor_.views));
    backend_ = ctx.backend();
    initialised_ = true;
    return Status::success();
  }

  Status step(const Context& ctx, std::span<const LayerView<T>> layers) override {
    const char* op = "tengrad step";
    CURVKIT_OPTIM_RETURN(detail::check_step_layers(op, initialised_, backend_, ctx, layers, &now_,
                                                   shapes_, folded_, vectors_));
    const bool refresh = this->k_ % o_.t2 == 0;
    const std::size_t nl = folded_.size();
    // Everything is checked and every view built before the first launch.
    std::vector<MatrixBatch<const T>> a_now, g_now;
    if (refresh && nl > 0) {
      const char* g_name = o_.empirical ? "g" : "g_sampled";
      for (const FoldedLayer& k : folded_) {
        const LayerView<T>& x = layers[k.layer];
        const MatrixBatch<const T>& g = o_.empirical ? x.g : x.g_sampled;
        CURVKIT_OPTIM_RETURN(detail::check_statistics(
            op, k, x, g, g_name, " (needs() asks for it on refresh steps, k % t2 == 0)"));
        if (x.m != m_)
          return Status::invalid_argument(
              op, layer_name(k.layer, "m") + " must be init()'s m (" + std::to_string(m_) + ")");
        a_now.push_back(x.a);
        g_now.push_back(g);
      }
      CURVKIT_OPTIM_RETURN(allocate_kept(ctx, a_now, g_now));
      CURVKIT_OPTIM_RETURN(reserve_workspace(ctx, a_now, g_now));
    }
    const detail::FoldedUpdates<T> u =
        detail::folded_updates<T>(layers, folded_, vectors_, momentum_.views, direction_.views);

    if (refresh && nl > 0) {
      // K = (1/m) J J^T from this batch, L L^T = K + lambda I; kept only where potrf succeeded.
      KhatriRaoOptions ko;
      ko.alpha = 1.0 / double(m_);
      Context c = ctx;
      if (workspace_bytes_ > 0) c.set_workspace(workspace_.data(), workspace_bytes_);
      CURVKIT_OPTIM_RETURN(khatri_rao_gram<T>(c, a_now, g_now, fresh_.views, ko));
      SpdOptions so;
      so.diagonal_shift = o_.damping;
      so.policy = NonSpdPolicy::shift;
      CURVKIT_OPTIM_RETURN(potrf<T>(ctx, GroupedBatch<T>(fresh_.views), info_.data(), so));
      CURVKIT_OPTIM_RETURN(copy_if_ok<T>(ctx, fresh_.cviews(), info_.data(), factor_.views));
      CURVKIT_OPTIM_RETURN(copy_if_ok<T>(ctx, a_now, info_.data(), kept_a_.views));
      CURVKIT_OPTIM_RETURN(copy_if_ok<T>(ctx, g_now, info_.data(), kept_g_.views));
    }
    // M~ <- G~ + mu M~.
    CURVKIT_OPTIM_RETURN(
        axpby<T>(ctx, 1.0, u.grad_w, o_.momentum, detail::as_const(u.moment_w), u.moment_w));
    if (!u.grad_b.empty())
      CURVKIT_OPTIM_RETURN(
          axpby<T>(ctx, 1.0, u.grad_b, o_.momentum, detail::as_const(u.moment_b), u.moment_b));
    if (nl > 0) {
      // z = (K + lambda I)^{-1} J vec(M~);  V~ = M~ - (1/m) J^T z.
      const std::vector<MatrixBatch<const T>> m_full(momentum_.views.begin(),
                                                     momentum_.views.begin() + std::ptrdiff_t(nl));
      const auto ka = kept_a_.cviews(), kg = kept_g_.cviews();
      CURVKIT_OPTIM_RETURN(khatri_rao_jv<T>(ctx, ka, kg, m_full, z_.views));
      CURVKIT_OPTIM_RETURN(
          potrs<T>(ctx, factor_.cviews(), GroupedBatch<T>(z_.views), solve_info_.data()));
      CURVKIT_OPTIM_RETURN(axpby<T>(ctx, 1.0, m_full, 0.0, {}, direction_.views));
      KhatriRaoOptions ko;
      ko.alpha = -1.0 / double(m_);
      ko.beta = 1.0;
      CURVKIT_OPTIM_RETURN(khatri_rao_jtu<T>(ctx, ka, kg, z_.cviews(), direction_.views, ko));
    }
    // W~ <- (1 - lr wd) W~ - (lr / lambda) V~ (vector layers: their momentum).
    const double lr = this->lr_;
    CURVKIT_OPTIM_RETURN(axpby<T>(ctx, -lr / o_.damping, u.step, 1.0 - lr * o_.weight_decay,
                                  detail::as_const(u.param), u.param));
    ++this->k_;
    return Status::success();
  }

 private:
  // Â and Ĝ take the shapes of the first a and g seen (S is known then); zero-filled so that a
  // first refresh that fails leaves J = 0, consistent with the initial factor.
  Status allocate_kept(const Context& ctx, const std::vector<MatrixBatch<const T>>& a,
                       const std::vector<MatrixBatch<const T>>& g) {
    auto shape = [](const MatrixBatch<const T>& x) {
      return MatrixBatch<T>{nullptr, 1, x.rows, x.cols, x.cols, x.rows * x.cols};
    };
    std::vector<MatrixBatch<T>> as, gs;
    for (std::size_t i = 0; i < a.size(); ++i) {
      as.push_back(shape(a[i]));
      gs.push_back(shape(g[i]));
    }
    if (!kept_a_.views.empty()) {
      for (std::size_t i = 0; i < a.size(); ++i)
        if (kept_a_.views[i].rows != a[i].rows)
          return Status::invalid_argument(
              "tengrad step",
              layer_name(folded_[i].layer, "a") + ".rows (m S) differs from the first refresh's");
      return Status::success();
    }
    CURVKIT_OPTIM_RETURN(kept_a_.allocate(ctx, as));
    CURVKIT_OPTIM_RETURN(kept_g_.allocate(ctx, gs));
    CURVKIT_OPTIM_RETURN(fill<T>(ctx, 0.0, kept_a_.views));
    return fill<T>(ctx, 0.0, kept_g_.views);
  }

  // khatri_rao_gram's workspace for these a and g (convolutions on its direct path).
  Status reserve_workspace(const Context& ctx, const std::vector<MatrixBatch<const T>>& a,
                           const std::vector<MatrixBatch<const T>>& g) {
    const std::size_t need =
        khatri_rao_gram_workspace_size<T>(ctx, a, g, GroupedBatch<T>(fresh_.views));
    if (need <= workspace_bytes_) return Status::success();
    workspace_ = BackendArray<T>(ctx, (need + sizeof(T) - 1) / sizeof(T));
    workspace_bytes_ = need;
    return workspace_.status();
  }

  TengradOptions o_;
  bool initialised_ = false;
  Backend backend_ = Backend::reference;
  index_t m_ = 0;
  detail::ParamGroups<T> now_;
  std::vector<MatrixBatch<T>> shapes_;
  std::vector<FoldedLayer> folded_;
  std::vector<std::size_t> vectors_;
  detail::StateTensors<T> momentum_, direction_, factor_, fresh_, z_, kept_a_, kept_g_;
  BackendArray<int> info_, solve_info_;
  BackendArray<T> workspace_;
  std::size_t workspace_bytes_ = 0;
};

}  // namespace

template <class T>
std::unique_ptr<Optimizer<T>> make_tengrad(const TengradOptions& o) {
  return std::make_unique<Tengrad<T>>(o);
}

template std::unique_ptr<Optimizer<float>> make_tengrad<float>(const TengradOptions&);
template std::unique_ptr<Optimizer<double>> make_tengrad<double>(const TengradOptions&);

}  // namespace curvkit::optim
