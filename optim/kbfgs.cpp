// K-BFGS in the optimizer layer (curvkit/optim/kbfgs.hpp; docs/optimizer-spec-2.md §2).
//
// State per folded layer l (L of them): H_A (d_A x d_A) and H_G (d_G x d_G), full symmetric
// (potri and bfgs_update write both triangles, so kron_apply uses them as given); the momentum
// M~ and direction P~ (d_G x d_A); the pair vectors abar, s_A, y_A (1 x d_A) and s_G, y_G and
// their damped copies (1 x d_G); per-layer shifts lambda_A and 1 / lambda_G on the device (one
// grouped add_diagonal each); a vector of ones for the column means.
//
// Launches: step 0 one grouped syrk, add_diagonal and potri for H_A; every step two axpby for the
// momentum, one grouped kron_apply and the update's axpby (two with vector layers); curvature
// steps per layer a gemm for abar, hessian_action_pair, bfgs_update for H_A and two gemm for the
// first half of the s_G, y_G EMAs; finish_step() per layer two gemm, two copies, bfgs_damping
// and bfgs_update for H_G.  The quasi-Newton ops take one matrix per call (no grouped form).
//
// K-BFGS(L) (history p > 0) replaces H_G by two windows of 2p rows per layer holding the pairs
// s~ and y~ (rows [start_, start_ + count_), oldest first, the same for every layer): the
// direction is one grouped gemm X = M~ H_A and, per layer, lbfgs_apply(X) from H_0 = I /
// lambda_G; finish_step() applies the same operator to a copy of y_G for the damping's H_G y
// (powell_lm_hy), then writes the new pair into the window's next row and damps it there.  When
// the window is full the newest p - 1 pairs move to its front (two grouped copies every p + 1
// curvature steps), so no step shifts the whole history.
#include "curvkit/optim/kbfgs.hpp"

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "curvkit/elementwise.hpp"
#include "curvkit/gemm.hpp"
#include "curvkit/kron.hpp"
#include "curvkit/quasi_newton.hpp"
#include "curvkit/spd.hpp"
#include "folded.hpp"

namespace curvkit::optim {
namespace {

using detail::FoldedLayer;
using detail::layer_name;

Status check_options(const KbfgsOptions& o) {
  const char* op = "kbfgs init";
  CURVKIT_OPTIM_RETURN(
      detail::check_damped_options(op, o.lr, o.weight_decay, o.damping, o.momentum));
  if (!(o.mu1 > 0 && o.mu1 < 1))
    return Status::invalid_argument(op, "options.mu1 must be in (0, 1)");
  if (o.t < 1) return Status::invalid_argument(op, "options.t must be >= 1");
  if (o.history < 0) return Status::invalid_argument(op, "options.history must be >= 0");
  return Status::success();
}

template <class T>
MatrixBatch<T> row(index_t n) {
  return {nullptr, 1, 1, n, n, n};
}

template <class T>
class Kbfgs final : public Optimizer<T> {
 public:
  explicit Kbfgs(const KbfgsOptions& o) : o_(o) { this->lr_ = o.lr; }
  std::string_view name() const override { return o_.history > 0 ? "kbfgs-l" : "kbfgs"; }

  Needs needs() const override {
    Needs n;
    if (o_.t >= 1 && this->k_ % o_.t == 0) {
      n.a = n.g = n.z = true;
      n.second_pass = SecondPass::forward_backward;
    }
    return n;
  }

  Status init(const Context& ctx, std::span<const LayerView<T>> layers) override {
    const char* op = "kbfgs init";
    initialised_ = pending_ = false;
    CURVKIT_OPTIM_RETURN(check_options(o_));
    CURVKIT_OPTIM_RETURN(detail::collect(op, layers, &now_));
    shapes_ = now_.params;
    CURVKIT_OPTIM_RETURN(detail::fold_layers(op, layers, &folded_, &vectors_));
    CURVKIT_OPTIM_RETURN(detail::batch_size(op, layers, folded_, &m_));
    const std::size_t nl = folded_.size();
    const index_t p = o_.history;
    std::vector<MatrixBatch<T>> ha, hg, moments, directions, rows_a, rows_g, windows;
    for (const FoldedLayer& k : folded_) {
      ha.push_back({nullptr, 1, k.d_a(), k.d_a(), k.d_a(), k.d_a() * k.d_a()});
      if (p == 0) hg.push_back({nullptr, 1, k.d_out, k.d_out, k.d_out, k.d_out * k.d_out});
      windows.push_back({nullptr, 1, 2 * p, k.d_out, k.d_out, 2 * p * k.d_out});
      moments.push_back(detail::folded_shape<T>(k));
      rows_a.push_back(row<T>(k.d_a()));
      rows_g.push_back(row<T>(k.d_out));
    }
    directions = moments;
    for (std::size_t v : vectors_) moments.push_back(layers[v].w);
    CURVKIT_OPTIM_RETURN(h_a_.allocate(ctx, ha));
    CURVKIT_OPTIM_RETURN(h_g_.allocate(ctx, hg));
    CURVKIT_OPTIM_RETURN(momentum_.allocate(ctx, moments));
    CURVKIT_OPTIM_RETURN(direction_.allocate(ctx, directions));
    for (auto* s : {&abar_, &s_a_, &y_a_}) CURVKIT_OPTIM_RETURN(s->allocate(ctx, rows_a));
    for (auto* s : {&s_g_, &y_g_, &s_d_, &y_d_}) CURVKIT_OPTIM_RETURN(s->allocate(ctx, rows_g));
    if (p > 0) {
      CURVKIT_OPTIM_RETURN(window_s_.allocate(ctx, windows));
      CURVKIT_OPTIM_RETURN(window_y_.allocate(ctx, windows));
      // s_d_ holds H_G y (lbfgs_apply's x: one column of d_G).
    }
    start_ = count_ = 0;
    // lambda_A = sqrt(S lambda) needs S: it is read from the first step's a.
    const std::vector<int> zeros(std::max<std::size_t>(4 * nl, 1), 0);
    info_ = BackendArray<int>(ctx, zeros);
    skipped_ = BackendArray<int>(ctx, zeros);
    CURVKIT_OPTIM_RETURN(info_.status());
    CURVKIT_OPTIM_RETURN(skipped_.status());
    this->unwatch_all();
    this->watch("potri of the first A factors (per layer)", info_.data(), nl);
    this->watch("hessian_action_pair and bfgs_update of H_A (per layer)", info_.data() + nl, nl);
    this->watch(p > 0 ? "lbfgs_apply of H_G y and bfgs_damping (per layer)"
                      : "bfgs_damping and bfgs_update of H_G (per layer)",
                info_.data() + 2 * nl, nl);
    if (p > 0) this->watch("lbfgs_apply of the direction (per layer)", info_.data() + 3 * nl, nl);
    this->watch("pairs skipped by bfgs_update (H_A per layer, then H_G)", skipped_.data(), 2 * nl);
    CURVKIT_OPTIM_RETURN(fill<T>(ctx, 0.0, momentum_.views));
    for (auto* s : {&s_g_, &y_g_}) CURVKIT_OPTIM_RETURN(fill<T>(ctx, 0.0, s->views));
    // kron_apply's scratch (the CUDA backend's intermediate for large layers).
    KronApplyOptions ko;
    ko.form = KronFactor::inverse;
    workspace_bytes_ = 0;
    if (nl > 0 && p == 0) workspace_bytes_ = kron_apply_workspace_size<T>(ctx, full_momentum(), ko);
    for (std::size_t i = 0; i < nl && p > 0; ++i)
      workspace_bytes_ =
          std::max(workspace_bytes_,
                   lbfgs_apply_workspace_size<T>(ctx, MatrixBatch<const T>(window_s_.views[i]),
                                                 MatrixBatch<const T>(direction_.views[i])));
    workspace_ = BackendArray<T>(ctx, (workspace_bytes_ + sizeof(T) - 1) / sizeof(T));
    CURVKIT_OPTIM_RETURN(workspace_.status());
    shifts_ = {};
    ones_ = {};
    positions_.assign(nl, 0);
    backend_ = ctx.backend();
    initialised_ = true;
    return Status::success();
  }

  Status step(const Context& ctx, std::span<const LayerView<T>> layers) override {
    const char* op = "kbfgs step";
    if (pending_)
      return Status::invalid_argument(
          op, "finish_step() was not called after the last curvature step's second pass");
    CURVKIT_OPTIM_RETURN(detail::check_step_layers(op, initialised_, backend_, ctx, layers, &now_,
                                                   shapes_, folded_, vectors_));
    const std::size_t nl = folded_.size();
    const bool curvature = this->k_ % o_.t == 0 && nl > 0;
    if (curvature) {
      CURVKIT_OPTIM_RETURN(check_pass(op, layers, true));
      CURVKIT_OPTIM_RETURN(ones_status(ctx));
    }
    const detail::FoldedUpdates<T> u =
        detail::folded_updates<T>(layers, folded_, vectors_, momentum_.views, direction_.views);

    if (this->k_ == 0 && nl > 0) CURVKIT_OPTIM_RETURN(first_factors(ctx, layers));
    // M~ <- G~ + beta M~;  P~ = H_G M~ H_A.
    CURVKIT_OPTIM_RETURN(
        axpby<T>(ctx, 1.0, u.grad_w, o_.momentum, detail::as_const(u.moment_w), u.moment_w));
    if (!u.grad_b.empty())
      CURVKIT_OPTIM_RETURN(
          axpby<T>(ctx, 1.0, u.grad_b, o_.momentum, detail::as_const(u.moment_b), u.moment_b));
    if (nl > 0) {
      if (o_.history == 0) {
        Context c = ctx;
        if (workspace_bytes_ > 0) c.set_workspace(workspace_.data(), workspace_bytes_);
        KronApplyOptions ko;
        ko.form = KronFactor::inverse;
        CURVKIT_OPTIM_RETURN(
            kron_apply<T>(c, h_g_.cviews(), h_a_.cviews(), full_momentum(), direction_.views, ko));
      } else {  // P~ = L-BFGS(M~ H_A)
        CURVKIT_OPTIM_RETURN(gemm<T>(ctx, Op::none, Op::none, T(1), full_momentum(), h_a_.cviews(),
                                     T(0), direction_.views));
        for (std::size_t i = 0; i < nl; ++i)
          CURVKIT_OPTIM_RETURN(lbfgs(ctx, i, direction_.views[i], info_.data() + 3 * nl + i));
      }
    }
    // W~ <- (1 - lr wd) W~ - lr P~;  vector layers: - (lr / lambda) their momentum.
    const double lr = this->lr_, decay = 1.0 - lr * o_.weight_decay;
    std::vector<MatrixBatch<const T>> dirs(u.step.begin(), u.step.end() - vectors_.size());
    std::vector<MatrixBatch<T>> params(u.param.begin(), u.param.end() - vectors_.size());
    CURVKIT_OPTIM_RETURN(axpby<T>(ctx, -lr, dirs, decay, detail::as_const(params), params));
    if (!vectors_.empty()) {
      std::vector<MatrixBatch<const T>> vd(u.step.end() - vectors_.size(), u.step.end());
      std::vector<MatrixBatch<T>> vp(u.param.end() - vectors_.size(), u.param.end());
      CURVKIT_OPTIM_RETURN(axpby<T>(ctx, -lr / o_.damping, vd, decay, detail::as_const(vp), vp));
    }
    if (curvature) {
      for (std::size_t i = 0; i < nl; ++i) CURVKIT_OPTIM_RETURN(activation_pair(ctx, layers, i));
      // s_G <- beta s_G - (1 - beta) zbar,  y_G <- beta y_G - (1 - beta) gbar.
      CURVKIT_OPTIM_RETURN(gradient_means(ctx, layers, -(1 - o_.momentum), o_.momentum));
      pending_ = true;
    }
    ++this->k_;
    return Status::success();
  }

  Status finish_step(const Context& ctx, std::span<const LayerView<T>> layers) override {
    const char* op = "kbfgs finish_step";
    if (!pending_)
      return Status::invalid_argument(
          op, "no curvature step is waiting for its second pass (needs().second_pass was none)");
    if (layers.size() != folded_.size() + vectors_.size())
      return Status::invalid_argument(op, "the layers differ from those init() was given");
    CURVKIT_OPTIM_RETURN(check_pass(op, layers, false));
    // s_G += (1 - beta) zbar+,  y_G += (1 - beta) gbar+;  damped copies;  H_G <- BFGS.
    CURVKIT_OPTIM_RETURN(gradient_means(ctx, layers, 1 - o_.momentum, 1.0));
    if (o_.history > 0) {
      CURVKIT_OPTIM_RETURN(append_pairs(ctx));
      pending_ = false;
      return Status::success();
    }
    const std::size_t nl = folded_.size();
    CURVKIT_OPTIM_RETURN(axpby<T>(ctx, 1.0, s_g_.cviews(), 0.0, {}, s_d_.views));
    CURVKIT_OPTIM_RETURN(axpby<T>(ctx, 1.0, y_g_.cviews(), 0.0, {}, y_d_.views));
    for (std::size_t i = 0; i < nl; ++i) {
      DampingOptions dp;
      dp.scheme = DampingScheme::powell_lm;
      dp.mu1 = o_.mu1;
      dp.mu2 = lambda_g(i);
      int* info = info_.data() + 2 * nl + i;
      CURVKIT_OPTIM_RETURN(bfgs_damping<T>(ctx, MatrixBatch<const T>(h_g_.views[i]), s_d_.views[i],
                                           y_d_.views[i], info, dp));
      BfgsOptions bo;
      bo.skip_rejected = true;
      CURVKIT_OPTIM_RETURN(bfgs_update<T>(ctx, h_g_.views[i], MatrixBatch<const T>(s_d_.views[i]),
                                          MatrixBatch<const T>(y_d_.views[i]), info, bo, nullptr,
                                          skipped_.data() + nl + i));
    }
    pending_ = false;
    return Status::success();
  }

 private:
  double lambda_g(std::size_t i) const { return std::sqrt(o_.damping / double(positions_[i])); }

  // Layer i's stored pairs, rows [start_, start_ + count_) of its windows.
  MatrixBatch<const T> pairs(const detail::StateTensors<T>& window, std::size_t i) const {
    MatrixBatch<const T> v = window.views[i];
    v.data += start_ * v.ld;
    v.rows = count_;
    return v;
  }

  // x <- H_G x for layer i (x: d_G x nrhs): the L-BFGS operator of the stored pairs.
  Status lbfgs(const Context& ctx, std::size_t i, MatrixBatch<T> x, int* info) const {
    LbfgsOptions lo;
    lo.gamma = 1 / lambda_g(i);
    lo.skip_zero_pairs = true;
    Context c = ctx;
    if (workspace_bytes_ > 0) c.set_workspace(workspace_.data(), workspace_bytes_);
    return lbfgs_apply<T>(c, pairs(window_s_, i), pairs(window_y_, i), x, info, lo);
  }

  // K-BFGS(L)'s finish_step after the s_G, y_G EMAs: H_G y_G by the current pairs, the new
  // pair's row (dropping the oldest when p are stored), then D_P D_LM on it in place.
  Status append_pairs(const Context& ctx) {
    const std::size_t nl = folded_.size();
    const index_t p = o_.history;
    CURVKIT_OPTIM_RETURN(axpby<T>(ctx, 1.0, y_g_.cviews(), 0.0, {}, s_d_.views));
    std::vector<MatrixBatch<T>> hy;  // s_d_'s rows as d_G x 1 columns: lbfgs_apply's x
    for (const MatrixBatch<T>& v : s_d_.views) hy.push_back({v.data, 1, v.cols, 1, 1, v.cols});
    for (std::size_t i = 0; i < nl; ++i)
      CURVKIT_OPTIM_RETURN(lbfgs(ctx, i, hy[i], info_.data() + 2 * nl + i));
    const index_t drop = count_ == p ? 1 : 0, kept = count_ - drop;
    start_ += drop;
    if (start_ + kept == 2 * p && kept > 0) {  // the window is full: kept pairs to its front
      for (auto* w : {&window_s_, &window_y_}) {
        std::vector<MatrixBatch<const T>> from;
        std::vector<MatrixBatch<T>> to;
        for (const MatrixBatch<T>& v : w->views) {
          from.push_back({v.data + start_ * v.ld, 1, kept, v.cols, v.ld, kept * v.ld});
          to.push_back({v.data, 1, kept, v.cols, v.ld, kept * v.ld});
        }
        CURVKIT_OPTIM_RETURN(axpby<T>(ctx, 1.0, from, 0.0, {}, to));
      }
    }
    if (start_ + kept == 2 * p) start_ = 0;
    std::vector<MatrixBatch<T>> s_new, y_new;
    for (std::size_t i = 0; i < nl; ++i) {
      const MatrixBatch<T>& v = window_s_.views[i];
      s_new.push_back({v.data + (start_ + kept) * v.ld, 1, 1, v.cols, v.ld, v.cols});
      y_new.push_back(
          {window_y_.views[i].data + (start_ + kept) * v.ld, 1, 1, v.cols, v.ld, v.cols});
    }
    CURVKIT_OPTIM_RETURN(axpby<T>(ctx, 1.0, s_g_.cviews(), 0.0, {}, s_new));
    CURVKIT_OPTIM_RETURN(axpby<T>(ctx, 1.0, y_g_.cviews(), 0.0, {}, y_new));
    count_ = kept + 1;
    for (std::size_t i = 0; i < nl; ++i) {
      DampingOptions dp;
      dp.scheme = DampingScheme::powell_lm_hy;
      dp.mu1 = o_.mu1;
      dp.mu2 = lambda_g(i);
      const MatrixBatch<const T> h_y{hy[i].data, 1, 1, hy[i].rows, hy[i].rows, hy[i].rows};
      CURVKIT_OPTIM_RETURN(
          bfgs_damping<T>(ctx, h_y, s_new[i], y_new[i], info_.data() + 2 * nl + i, dp));
    }
    return Status::success();
  }

  std::vector<MatrixBatch<const T>> full_momentum() const {
    return std::vector<MatrixBatch<const T>>(
        momentum_.views.begin(), momentum_.views.begin() + std::ptrdiff_t(folded_.size()));
  }

  // The statistics of a curvature step (first pass: a, g, z; second pass: g, z).
  Status check_pass(const char* op, std::span<const LayerView<T>> layers, bool first) {
    const std::string why = first ? " (needs() asks for it on curvature steps, k % t == 0)"
                                  : " (the second pass's, finish_step())";
    for (std::size_t i = 0; i < folded_.size(); ++i) {
      const FoldedLayer& k = folded_[i];
      const LayerView<T>& x = layers[k.layer];
      if (x.m != m_)
        return Status::invalid_argument(
            op, layer_name(k.layer, "m") + " must be init()'s m (" + std::to_string(m_) + ")");
      index_t rows = positions_[i] * m_;
      if (first) {
        CURVKIT_OPTIM_RETURN(detail::check_statistics(op, k, x, x.g, "g", why));
        if (positions_[i] == 0) positions_[i] = x.a.rows / m_;
        rows = positions_[i] * m_;
        if (x.a.rows != rows)
          return Status::invalid_argument(
              op, layer_name(k.layer, "a") + ".rows must stay m S = " + std::to_string(rows));
      } else if (x.g.data == nullptr || x.g.batch != 1 || x.g.rows != rows || x.g.cols != k.d_out ||
                 x.g.ld < x.g.cols) {
        return Status::invalid_argument(op, layer_name(k.layer, "g") + " must be one " +
                                                std::to_string(rows) + " x " +
                                                std::to_string(k.d_out) + " matrix" + why);
      }
      const MatrixBatch<const T>& z = x.z;
      if (z.data == nullptr || z.batch != 1 || z.rows != rows || z.cols != k.d_out || z.ld < z.cols)
        return Status::invalid_argument(op, layer_name(k.layer, "z") + " must be one " +
                                                std::to_string(rows) + " x " +
                                                std::to_string(k.d_out) + " matrix" + why);
    }
    return Status::success();
  }

  // Step 0: H_A = ((1/m) a^T a + lambda_A I)^{-1} per layer, H_G = I / lambda_G.
  Status first_factors(const Context& ctx, std::span<const LayerView<T>> layers) {
    const std::size_t nl = folded_.size();
    std::vector<T> shifts(2 * nl);
    for (std::size_t i = 0; i < nl; ++i) {
      const double s = double(positions_[i]);
      shifts[i] = T(std::sqrt(s * o_.damping));  // lambda_A
      shifts[nl + i] = T(1 / lambda_g(i));       // 1 / lambda_G
    }
    shifts_ = BackendArray<T>(ctx, shifts);
    CURVKIT_OPTIM_RETURN(shifts_.status());
    std::vector<MatrixBatch<const T>> a;
    for (const FoldedLayer& k : folded_) a.push_back(layers[k.layer].a);
    CURVKIT_OPTIM_RETURN(
        syrk<T>(ctx, Op::trans, T(1.0 / double(m_)), a, T(0), h_a_.views, Fill::full));
    CURVKIT_OPTIM_RETURN(add_diagonal<T>(ctx, 0.0, shifts_.data(), h_a_.views));
    SpdOptions so;
    so.policy = NonSpdPolicy::shift;
    CURVKIT_OPTIM_RETURN(potri<T>(ctx, GroupedBatch<T>(h_a_.views), info_.data(), so));
    if (o_.history > 0) return Status::success();  // H_G: the L-BFGS operator of no pairs
    CURVKIT_OPTIM_RETURN(fill<T>(ctx, 0.0, h_g_.views));
    return add_diagonal<T>(ctx, 0.0, shifts_.data() + nl, h_g_.views);
  }

  // The ones vector, filled once it has its length.
  Status ones_status(const Context& ctx) {
    index_t most = 0;
    for (index_t s : positions_) most = std::max(most, s * m_);
    if (ones_.size() >= std::size_t(most)) return Status::success();
    ones_ = BackendArray<T>(ctx, std::size_t(most));
    CURVKIT_OPTIM_RETURN(ones_.status());
    return fill<T>(ctx, 1.0, MatrixBatch<T>{ones_.data(), 1, 1, most, most, most});
  }

  // Layer i's activation pair: abar, s_A = H_A abar, y_A = (1/m) a^T a s_A + lambda_A s_A, BFGS.
  Status activation_pair(const Context& ctx, std::span<const LayerView<T>> layers, std::size_t i) {
    const std::size_t nl = folded_.size();
    const LayerView<T>& x = layers[folded_[i].layer];
    const index_t rows = x.a.rows;
    CURVKIT_OPTIM_RETURN(gemm<T>(ctx, Op::none, Op::none, T(1.0 / double(rows)), ones(rows), x.a,
                                 T(0), abar_.views[i]));
    HessianActionOptions ho;
    ho.lambda = std::sqrt(double(positions_[i]) * o_.damping);
    ho.scale = 1.0 / double(m_);  // A sums over positions, averages over samples
    int* info = info_.data() + nl + i;
    CURVKIT_OPTIM_RETURN(hessian_action_pair<T>(ctx, MatrixBatch<const T>(h_a_.views[i]),
                                                MatrixBatch<const T>(abar_.views[i]), x.a,
                                                s_a_.views[i], y_a_.views[i], info, ho));
    BfgsOptions bo;
    bo.skip_rejected = true;
    return bfgs_update<T>(ctx, h_a_.views[i], MatrixBatch<const T>(s_a_.views[i]),
                          MatrixBatch<const T>(y_a_.views[i]), info, bo, nullptr,
                          skipped_.data() + i);
  }

  // s_G <- beta s_G + c zbar,  y_G <- beta y_G + c gbar for every layer (one gemm each).
  Status gradient_means(const Context& ctx, std::span<const LayerView<T>> layers, double c,
                        double beta) {
    for (std::size_t i = 0; i < folded_.size(); ++i) {
      const LayerView<T>& x = layers[folded_[i].layer];
      const index_t rows = x.z.rows;
      const T scale = T(c / double(rows));
      CURVKIT_OPTIM_RETURN(
          gemm<T>(ctx, Op::none, Op::none, scale, ones(rows), x.z, T(beta), s_g_.views[i]));
      CURVKIT_OPTIM_RETURN(
          gemm<T>(ctx, Op::none, Op::none, scale, ones(rows), x.g, T(beta), y_g_.views[i]));
    }
    return Status::success();
  }

  MatrixBatch<const T> ones(index_t n) const { return {ones_.data(), 1, 1, n, n, n}; }

  KbfgsOptions o_;
  bool initialised_ = false, pending_ = false;
  Backend backend_ = Backend::reference;
  index_t m_ = 0;
  detail::ParamGroups<T> now_;
  std::vector<MatrixBatch<T>> shapes_;
  std::vector<FoldedLayer> folded_;
  std::vector<std::size_t> vectors_;
  std::vector<index_t> positions_;  // S per folded layer, from the first a
  detail::StateTensors<T> h_a_, h_g_, momentum_, direction_;
  detail::StateTensors<T> abar_, s_a_, y_a_, s_g_, y_g_, s_d_, y_d_;
  detail::StateTensors<T> window_s_, window_y_;  // K-BFGS(L): 2p rows of pairs per layer
  index_t start_ = 0, count_ = 0;                // the stored pairs' rows, the same per layer
  BackendArray<T> shifts_, ones_, workspace_;
  std::size_t workspace_bytes_ = 0;
  BackendArray<int> info_, skipped_;
};

}  // namespace

template <class T>
std::unique_ptr<Optimizer<T>> make_kbfgs(const KbfgsOptions& o) {
  return std::make_unique<Kbfgs<T>>(o);
}

template std::unique_ptr<Optimizer<float>> make_kbfgs<float>(const KbfgsOptions&);
template std::unique_ptr<Optimizer<double>> make_kbfgs<double>(const KbfgsOptions&);

}  // namespace curvkit::optim
