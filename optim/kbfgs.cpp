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
  std::string_view name() const override { return "kbfgs"; }

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
    m_ = 0;
    for (const FoldedLayer& k : folded_) {
      const index_t m = layers[k.layer].m;
      if (m < 1 || (m_ > 0 && m != m_))
        return Status::invalid_argument(
            op, layer_name(k.layer, "m") +
                    " must be the mini-batch size (>= 1, the same for every layer)");
      m_ = m;
    }
    const std::size_t nl = folded_.size();
    std::vector<MatrixBatch<T>> ha, hg, moments, directions, rows_a, rows_g;
    for (const FoldedLayer& k : folded_) {
      ha.push_back({nullptr, 1, k.d_a(), k.d_a(), k.d_a(), k.d_a() * k.d_a()});
      hg.push_back({nullptr, 1, k.d_out, k.d_out, k.d_out, k.d_out * k.d_out});
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
    // lambda_A = sqrt(S lambda) needs S: it is read from the first step's a.
    const std::vector<int> zeros(std::max<std::size_t>(4 * nl, 1), 0);
    info_ = BackendArray<int>(ctx, zeros);
    skipped_ = BackendArray<int>(ctx, zeros);
    CURVKIT_OPTIM_RETURN(info_.status());
    CURVKIT_OPTIM_RETURN(skipped_.status());
    this->unwatch_all();
    this->watch("potri of the first A factors (per layer)", info_.data(), nl);
    this->watch("hessian_action_pair and bfgs_update of H_A (per layer)", info_.data() + nl, nl);
    this->watch("bfgs_damping and bfgs_update of H_G (per layer)", info_.data() + 2 * nl, nl);
    this->watch("pairs skipped by bfgs_update (H_A per layer, then H_G)", skipped_.data(), 2 * nl);
    CURVKIT_OPTIM_RETURN(fill<T>(ctx, 0.0, momentum_.views));
    for (auto* s : {&s_g_, &y_g_}) CURVKIT_OPTIM_RETURN(fill<T>(ctx, 0.0, s->views));
    // kron_apply's scratch (the CUDA backend's intermediate for large layers).
    KronApplyOptions ko;
    ko.form = KronFactor::inverse;
    workspace_bytes_ = nl == 0 ? 0 : kron_apply_workspace_size<T>(ctx, full_momentum(), ko);
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
      Context c = ctx;
      if (workspace_bytes_ > 0) c.set_workspace(workspace_.data(), workspace_bytes_);
      KronApplyOptions ko;
      ko.form = KronFactor::inverse;
      CURVKIT_OPTIM_RETURN(
          kron_apply<T>(c, h_g_.cviews(), h_a_.cviews(), full_momentum(), direction_.views, ko));
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
    const std::size_t nl = folded_.size();
    CURVKIT_OPTIM_RETURN(axpby<T>(ctx, 1.0, s_g_.cviews(), 0.0, {}, s_d_.views));
    CURVKIT_OPTIM_RETURN(axpby<T>(ctx, 1.0, y_g_.cviews(), 0.0, {}, y_d_.views));
    for (std::size_t i = 0; i < nl; ++i) {
      DampingOptions dp;
      dp.scheme = DampingScheme::powell_lm;
      dp.mu1 = o_.mu1;
      dp.mu2 = std::sqrt(o_.damping / double(positions_[i]));
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
      shifts[i] = T(std::sqrt(s * o_.damping));           // lambda_A
      shifts[nl + i] = T(1 / std::sqrt(o_.damping / s));  // 1 / lambda_G
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
