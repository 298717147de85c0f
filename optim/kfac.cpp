// K-FAC in the optimizer layer (curvkit/optim/kfac.hpp; docs/optimizer-spec.md §3).
//
// State per K-FAC layer l (L of them), each in one backend allocation per kind:
//   factors    Omega_l (d_A x d_A) for every l, then Gamma_l (d_G x d_G): 2L matrices, lower
//              triangles (the EMA of syrk with Fill::lower; nothing reads the upper ones)
//   inverses   H_Omega_l, H_Gamma_l in the same order (potri's full inverses or potrf's factors)
//   momentum   M~_l = [M_W | m_b], d_out x d_A, then one momentum tensor per vector layer
//   direction  P~_l, d_out x d_A
//   shifts     shift_a[0..L), shift_g[0..L) (kfac_pi_damping), laid out like the factors so that
//              one add_diagonal over all 2L copies adds each its own shift
//   info       kfac_pi_damping's (L) and potri's / potrf's (2L)
//   coarse     (two_level) the layer sums sigma_a, sigma_g (m x L), S_A, S_G, F_c and L_c (L x L),
//              r / c (L), the coarse potrf's and potrs's info; (kl_clip) the L products <P~, M~>
// The bias column of M~ and P~ is reached through strided views (d_out x 1, ld = d_A), and the
// trainer's 1 x d_out b and db through d_out x 1 views of their contiguous row; no gather.
//
// Launches per step: statistics steps one grouped syrk per distinct scale (1/m for Omega,
// 1/(m S) for Gamma: one call for an MLP, 1 + the number of distinct S for a CNN); refresh steps
// kfac_pi_damping, one axpby copy, one add_diagonal and one potri / potrf over all 2L factors;
// every step two axpby for the momentum (W parts with the vector layers, then the bias columns:
// the elementwise family rejects outputs whose memory spans interleave, as a W part and the bias
// column of one buffer do), one grouped kron_apply and one axpby for the update.  Two-level adds
// two khatri_rao_layer_sums and a coarse_gram on statistics steps, a copy and a potrf on refresh
// steps, and a khatri_rao_layer_sums, a potrs and an add_scalar every step; the KL clip a
// grouped sum_products and a clip_by_quadratic.
#include "curvkit/optim/kfac.hpp"

#include <algorithm>
#include <cmath>
#include <string>
#include <utility>
#include <vector>

#include "curvkit/elementwise.hpp"
#include "curvkit/gemm.hpp"
#include "curvkit/khatri_rao.hpp"
#include "folded.hpp"

namespace curvkit::optim {
namespace {

using detail::FoldedLayer;
using detail::layer_name;

template <class T>
MatrixBatch<T> square(index_t n) {
  return {nullptr, 1, n, n, n, n * n};
}

Status check_options(const KfacOptions& o) {
  const char* op = "kfac init";
  auto finite = [](double x) { return std::isfinite(x); };
  if (!finite(o.lr) || !finite(o.weight_decay))
    return Status::invalid_argument(op, "options.lr and options.weight_decay must be finite");
  if (!(o.damping >= 0) || !finite(o.damping))
    return Status::invalid_argument(op, "options.damping must be finite and >= 0");
  if (!(o.momentum >= 0 && o.momentum < 1) || !(o.stat_decay >= 0 && o.stat_decay < 1))
    return Status::invalid_argument(op,
                                    "options.momentum and options.stat_decay must be in [0, 1)");
  if (o.t1 < 1 || o.t2 < 1)
    return Status::invalid_argument(op, "options.t1 and options.t2 must be >= 1");
  if (o.form != KronFactor::inverse && o.form != KronFactor::cholesky)
    return Status::invalid_argument(op, "options.form is not a KronFactor value");
  if (o.policy != NonSpdPolicy::report && o.policy != NonSpdPolicy::shift)
    return Status::invalid_argument(op, "options.policy is not a NonSpdPolicy value");
  if (!(o.kl_clip >= 0) || !finite(o.kl_clip))
    return Status::invalid_argument(op, "options.kl_clip must be finite and >= 0");
  return Status::success();
}

template <class T>
class Kfac final : public Optimizer<T> {
 public:
  explicit Kfac(const KfacOptions& o) : o_(o) { this->lr_ = o.lr; }
  std::string_view name() const override {
    if (o_.two_level) return o_.empirical ? "kfac-2l-ef" : "kfac-2l";
    return o_.empirical ? "kfac-ef" : "kfac";
  }

  Needs needs() const override {
    Needs n;
    if (o_.t1 >= 1 && this->k_ % o_.t1 == 0) {  // (t1 is checked by init)
      n.a = true;
      (o_.empirical ? n.g : n.g_sampled) = true;
    }
    return n;
  }

  Status init(const Context& ctx, std::span<const LayerView<T>> layers) override {
    initialised_ = false;
    CURVKIT_OPTIM_RETURN(check_options(o_));
    CURVKIT_OPTIM_RETURN(detail::collect("kfac init", layers, &now_));
    shapes_ = now_.params;
    CURVKIT_OPTIM_RETURN(detail::fold_layers("kfac init", layers, &kfac_, &vector_));
    const std::size_t nl = kfac_.size();
    std::vector<MatrixBatch<T>> factor_shapes(2 * nl), moment_shapes, direction_shapes;
    for (std::size_t i = 0; i < nl; ++i) {
      const FoldedLayer& k = kfac_[i];
      factor_shapes[i] = square<T>(k.d_a());
      factor_shapes[nl + i] = square<T>(k.d_out);
      moment_shapes.push_back(detail::folded_shape<T>(k));
    }
    direction_shapes = moment_shapes;
    for (std::size_t v : vector_) moment_shapes.push_back(layers[v].w);
    CURVKIT_OPTIM_RETURN(factors_.allocate(ctx, factor_shapes));
    CURVKIT_OPTIM_RETURN(inverses_.allocate(ctx, factor_shapes));
    CURVKIT_OPTIM_RETURN(momentum_.allocate(ctx, moment_shapes));
    CURVKIT_OPTIM_RETURN(direction_.allocate(ctx, direction_shapes));
    shifts_ = BackendArray<T>(ctx, 2 * nl);
    pi_info_ = BackendArray<int>(ctx, std::vector<int>(nl, 0));
    spd_info_ = BackendArray<int>(ctx, std::vector<int>(2 * nl, 0));
    for (const Status* s : {&shifts_.status(), &pi_info_.status(), &spd_info_.status()})
      CURVKIT_OPTIM_RETURN(*s);
    this->unwatch_all();
    this->watch("kfac_pi_damping (per layer; 1: a zero trace, pi = 1)", pi_info_.data(), nl);
    this->watch("potri / potrf of the damped factors (A factors, then G factors)", spd_info_.data(),
                2 * nl);
    // kron_apply's scratch (the CUDA backend's intermediate for large layers), owned here.
    const std::vector<MatrixBatch<const T>> m_full = full_momentum();
    KronApplyOptions ko;
    ko.form = o_.form;
    workspace_bytes_ = nl == 0 ? 0 : kron_apply_workspace_size<T>(ctx, m_full, ko);
    workspace_ = BackendArray<T>(ctx, (workspace_bytes_ + sizeof(T) - 1) / sizeof(T));
    CURVKIT_OPTIM_RETURN(workspace_.status());
    // Zeros everywhere: the momentum starts at 0, and the factors' upper triangles (never
    // written by syrk, copied along with the lower ones) are defined.
    CURVKIT_OPTIM_RETURN(fill<T>(ctx, 0.0, factors_.views));
    CURVKIT_OPTIM_RETURN(fill<T>(ctx, 0.0, inverses_.views));
    CURVKIT_OPTIM_RETURN(fill<T>(ctx, 0.0, momentum_.views));
    CURVKIT_OPTIM_RETURN(init_coarse(ctx, layers));
    products_ = BackendArray<T>(ctx, o_.kl_clip > 0 ? std::max<std::size_t>(nl, 1) : 0);
    CURVKIT_OPTIM_RETURN(products_.status());
    backend_ = ctx.backend();
    statistics_seen_ = false;
    initialised_ = true;
    return Status::success();
  }

  Status step(const Context& ctx, std::span<const LayerView<T>> layers) override {
    const char* op = "kfac step";
    CURVKIT_OPTIM_RETURN(detail::check_step_layers(op, initialised_, backend_, ctx, layers, &now_,
                                                   shapes_, kfac_, vector_));
    const std::size_t nl = kfac_.size();
    const bool statistics = this->k_ % o_.t1 == 0, refresh = this->k_ % o_.t2 == 0;

    // Everything is checked and every view built before the first launch: a refused step
    // changes nothing.
    std::vector<Bucket> buckets;
    std::vector<MatrixBatch<const T>> a_now, g_now;  // the statistics, per K-FAC layer
    if (statistics && nl > 0)
      CURVKIT_OPTIM_RETURN(statistics_calls(layers, &buckets, &a_now, &g_now));
    const detail::FoldedUpdates<T> u =
        detail::folded_updates<T>(layers, kfac_, vector_, momentum_.views, direction_.views);

    if (!buckets.empty()) {
      // Omega <- beta Omega + (1 - beta)/m a^T a, Gamma <- beta Gamma + (1 - beta)/(m S) g^T g;
      // the first time beta = 0 (the factors are the first batch's, not (1 - beta) of them).
      const double beta = statistics_seen_ ? o_.stat_decay : 0.0;
      for (const Bucket& b : buckets)
        CURVKIT_OPTIM_RETURN(
            syrk<T>(ctx, Op::trans, T((1.0 - beta) * b.scale), b.x, T(beta), b.c, Fill::lower));
      if (o_.two_level) CURVKIT_OPTIM_RETURN(coarse_statistics(ctx, a_now, g_now, beta));
      statistics_seen_ = true;
    }
    if (refresh && nl > 0) CURVKIT_OPTIM_RETURN(refresh_preconditioners(ctx));
    if (refresh && nl > 0 && o_.two_level) {
      // L_c L_c^T = F_c + lambda I (NaN statistics stay NaN, as the blocks' do).
      const MatrixBatch<T> f = coarse_.views[2], lc = coarse_.views[3];
      CURVKIT_OPTIM_RETURN(axpby<T>(ctx, 1.0, MatrixBatch<const T>(f), 0.0, {}, lc));
      SpdOptions so;
      so.diagonal_shift = o_.damping;
      so.policy = NonSpdPolicy::shift;
      CURVKIT_OPTIM_RETURN(potrf<T>(ctx, lc, coarse_info_.data(), so));
    }
    // M~ <- [dW | db] + mu M~ (W parts and vector layers, then the bias columns).
    CURVKIT_OPTIM_RETURN(axpby<T>(ctx, 1.0, u.grad_w, o_.momentum, cviews(u.moment_w), u.moment_w));
    if (!u.grad_b.empty())
      CURVKIT_OPTIM_RETURN(
          axpby<T>(ctx, 1.0, u.grad_b, o_.momentum, cviews(u.moment_b), u.moment_b));
    if (nl > 0) {
      // P~ = H_Gamma M~ H_Omega.
      Context c = ctx;
      if (workspace_bytes_ > 0) c.set_workspace(workspace_.data(), workspace_bytes_);
      const auto& h = inverses_.views;
      const std::vector<MatrixBatch<const T>> h_omega(h.begin(), h.begin() + std::ptrdiff_t(nl)),
          h_gamma(h.begin() + std::ptrdiff_t(nl), h.end());
      KronApplyOptions ko;
      ko.form = o_.form;
      CURVKIT_OPTIM_RETURN(
          kron_apply<T>(c, h_gamma, h_omega, full_momentum(), direction_.views, ko));
      if (o_.two_level) {
        // r_l = 1^T M~_l 1 (each M~_l one "sample" of d_out rows), c = (F_c + lambda I)^{-1} r,
        // P~_l += c_l.
        const index_t L = index_t(nl);
        CURVKIT_OPTIM_RETURN(
            khatri_rao_layer_sums<T>(ctx, full_momentum(), {coarse_r_.data(), 1, 1, L, L, L}));
        CURVKIT_OPTIM_RETURN(potrs<T>(ctx, MatrixBatch<const T>(coarse_.views[3]),
                                      MatrixBatch<T>{coarse_r_.data(), 1, L, 1, 1, L},
                                      coarse_info_.data() + 1));
        CURVKIT_OPTIM_RETURN(add_scalar<T>(ctx, 0.0, coarse_r_.data(), direction_.views));
      }
      if (o_.kl_clip > 0) {
        // nu = min(1, sqrt(kappa / (lr^2 |sum_l <P~_l, M~_l>|))) on every K-FAC layer's P~.
        CURVKIT_OPTIM_RETURN(
            sum_products<T>(ctx, direction_.cviews(), full_momentum(), products_.data()));
        CURVKIT_OPTIM_RETURN(clip_by_quadratic<T>(ctx, products_.data(), index_t(nl),
                                                  o_.kl_clip / (this->lr_ * this->lr_),
                                                  direction_.views));
      }
    }
    // W~ <- (1 - lr wd) W~ - lr P~ (vector layers: - lr m).
    const double lr = this->lr_;
    CURVKIT_OPTIM_RETURN(
        axpby<T>(ctx, -lr, u.step, 1.0 - lr * o_.weight_decay, cviews(u.param), u.param));
    ++this->k_;
    return Status::success();
  }

 private:
  // One grouped syrk: the factors whose statistic has the same scale.
  struct Bucket {
    double scale;
    std::vector<MatrixBatch<const T>> x;
    std::vector<MatrixBatch<T>> c;
  };
  static std::vector<MatrixBatch<const T>> cviews(const std::vector<MatrixBatch<T>>& v) {
    return std::vector<MatrixBatch<const T>>(v.begin(), v.end());
  }

  std::vector<MatrixBatch<const T>> full_momentum() const {
    return std::vector<MatrixBatch<const T>>(
        momentum_.views.begin(), momentum_.views.begin() + std::ptrdiff_t(kfac_.size()));
  }

  // Checks a and g (g_sampled) of every K-FAC layer, groups the 2L syrk calls by scale and lists
  // a and g per layer.
  Status statistics_calls(std::span<const LayerView<T>> layers, std::vector<Bucket>* out,
                          std::vector<MatrixBatch<const T>>* a_now,
                          std::vector<MatrixBatch<const T>>* g_now) const {
    const char* op = "kfac step";
    const char* g_name = o_.empirical ? "g" : "g_sampled";
    const std::size_t nl = kfac_.size();
    auto add = [out](double scale, MatrixBatch<const T> x, MatrixBatch<T> c) {
      for (Bucket& b : *out)
        if (b.scale == scale) {
          b.x.push_back(x);
          b.c.push_back(c);
          return;
        }
      out->push_back({scale, {x}, {c}});
    };
    for (std::size_t i = 0; i < nl; ++i) {
      const FoldedLayer& k = kfac_[i];
      const LayerView<T>& x = layers[k.layer];
      const MatrixBatch<const T>& a = x.a;
      const MatrixBatch<const T>& g = o_.empirical ? x.g : x.g_sampled;
      CURVKIT_OPTIM_RETURN(detail::check_statistics(
          op, k, x, g, g_name, " (needs() asks for it on statistics steps, k % t1 == 0)"));
      if (o_.two_level && x.m != coarse_m_)
        return Status::invalid_argument(op, layer_name(k.layer, "m") + " must be init()'s m (" +
                                                std::to_string(coarse_m_) +
                                                ": two-level K-FAC's layer sums are m x L)");
      a_now->push_back(a);
      g_now->push_back(g);
      // Omega: sum over positions, mean over samples; Gamma: mean over both (KFC, thesis (3.9)).
      add(1.0 / double(x.m), a, factors_.views[i]);
      add(1.0 / double(a.rows), g, factors_.views[nl + i]);
    }
    return Status::success();
  }

  // Two-level state (sized by init()'s m): sums_a, sums_g (m x L); S_A, S_G, F_c, L_c (L x L).
  Status init_coarse(const Context& ctx, std::span<const LayerView<T>> layers) {
    coarse_m_ = 0;
    if (!o_.two_level || kfac_.empty()) return Status::success();
    for (const FoldedLayer& k : kfac_) {
      const index_t m = layers[k.layer].m;
      if (m < 1 || (coarse_m_ > 0 && m != coarse_m_))
        return Status::invalid_argument(
            "kfac init", layer_name(k.layer, "m") +
                             " must be the mini-batch size (>= 1, the same for every layer): "
                             "two-level K-FAC's layer sums are sized by init()");
      coarse_m_ = m;
    }
    const index_t L = index_t(kfac_.size()), m = coarse_m_;
    const MatrixBatch<T> sums{nullptr, 1, m, L, L, m * L}, square{nullptr, 1, L, L, L, L * L};
    CURVKIT_OPTIM_RETURN(coarse_sums_.allocate(ctx, {sums, sums}));
    CURVKIT_OPTIM_RETURN(coarse_.allocate(ctx, {square, square, square, square}));
    coarse_r_ = BackendArray<T>(ctx, std::size_t(L));
    coarse_info_ = BackendArray<int>(ctx, std::vector<int>(2, 0));
    CURVKIT_OPTIM_RETURN(coarse_r_.status());
    CURVKIT_OPTIM_RETURN(coarse_info_.status());
    this->watch("two-level: potrf of F_c + lambda I, then potrs with it", coarse_info_.data(), 2);
    return fill<T>(ctx, 0.0, coarse_.views);  // L_c's upper triangle stays defined
  }

  // sigma_a, sigma_g of this batch and the coarse EMA: S_A, S_G, F_c = S_A o S_G.
  Status coarse_statistics(const Context& ctx, const std::vector<MatrixBatch<const T>>& a,
                           const std::vector<MatrixBatch<const T>>& g, double beta) {
    const std::vector<MatrixBatch<T>>& v = coarse_.views;
    CURVKIT_OPTIM_RETURN(khatri_rao_layer_sums<T>(ctx, a, coarse_sums_.views[0]));
    CURVKIT_OPTIM_RETURN(khatri_rao_layer_sums<T>(ctx, g, coarse_sums_.views[1]));
    CoarseGramOptions co;
    co.beta = beta;
    return coarse_gram<T>(ctx, coarse_sums_.views[0], coarse_sums_.views[1], v[0], v[1], v[2], co);
  }

  // H = (factor + shift I)^{-1} (or its Cholesky factor) for all 2L factors.
  Status refresh_preconditioners(const Context& ctx) {
    const std::size_t nl = kfac_.size();
    const std::vector<MatrixBatch<const T>> f = factors_.cviews();
    const GroupedBatch<const T> omega(f.data(), nl), gamma(f.data() + nl, nl);
    double constant = std::sqrt(o_.damping);
    const T* shift = nullptr;
    if (o_.pi_split) {
      // shift_a = pi sqrt(lambda) for Omega, shift_g = sqrt(lambda)/pi for Gamma, on the device.
      CURVKIT_OPTIM_RETURN(kfac_pi_damping<T>(ctx, omega, gamma, o_.damping, shifts_.data(),
                                              shifts_.data() + nl, pi_info_.data()));
      constant = 0;
      shift = shifts_.data();
    }
    CURVKIT_OPTIM_RETURN(axpby<T>(ctx, 1.0, f, 0.0, {}, inverses_.views));
    CURVKIT_OPTIM_RETURN(add_diagonal<T>(ctx, constant, shift, inverses_.views));
    SpdOptions so;
    so.policy = o_.policy;
    const GroupedBatch<T> h(inverses_.views);
    return o_.form == KronFactor::inverse ? potri<T>(ctx, h, spd_info_.data(), so)
                                          : potrf<T>(ctx, h, spd_info_.data(), so);
  }

  KfacOptions o_;
  bool initialised_ = false, statistics_seen_ = false;
  Backend backend_ = Backend::reference;
  detail::ParamGroups<T> now_;
  std::vector<MatrixBatch<T>> shapes_;
  std::vector<FoldedLayer> kfac_;
  std::vector<std::size_t> vector_;
  detail::StateTensors<T> factors_, inverses_, momentum_, direction_;
  BackendArray<T> shifts_;
  BackendArray<int> pi_info_, spd_info_;
  BackendArray<T> workspace_;
  std::size_t workspace_bytes_ = 0;
  index_t coarse_m_ = 0;
  detail::StateTensors<T> coarse_sums_, coarse_;  // two_level: sigma_a, sigma_g; S_A, S_G, F_c, L_c
  BackendArray<T> coarse_r_, products_;           // r, then c; the KL clip's <P~_l, M~_l>
  BackendArray<int> coarse_info_;
};

}  // namespace

template <class T>
std::unique_ptr<Optimizer<T>> make_kfac(const KfacOptions& o) {
  return std::make_unique<Kfac<T>>(o);
}

template std::unique_ptr<Optimizer<float>> make_kfac<float>(const KfacOptions&);
template std::unique_ptr<Optimizer<double>> make_kfac<double>(const KfacOptions&);

}  // namespace curvkit::optim
