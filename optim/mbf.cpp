// MBF (curvkit/optim/mbf.hpp) on the GEMM/SYRK, SPD and elementwise families.  The blocks of all
// layers go through grouped calls: per step one axpby for the momentum; on statistics steps a
// copy of the statistics' gradients into block layout (a linear layer's [G | g_b], scaled by
// 1/sqrt(d_out) when averaged) and one grouped SYRK with alpha 1 - beta for the convolution
// kernels, the averaged linear blocks and the per-neuron ones (each row a 1 x (d_in + 1)
// matrix), one square_ema for convolution biases; on inverse steps a copy, one grouped potri
// (shift policy, lambda on the diagonal) and a copy_if_ok; one grouped GEMM for the block
// directions, one diag_precondition, one Adam direction for vectors, one axpby for the update.
//
// Linear layers keep their state in the folded layout [W | b] (d_out x (d_in + 1)); their W
// part is the view with ld = d_in + 1, their bias column a batch of d_out 1 x 1 views with
// stride d_in + 1, which pairs with the bias b seen as a batch of d_out 1 x 1 matrices.
#include <algorithm>
#include <cmath>

#include "curvkit/core/memory.hpp"
#include "curvkit/elementwise.hpp"
#include "curvkit/gemm.hpp"
#include "curvkit/optim/mbf.hpp"
#include "curvkit/spd.hpp"
#include "tensors.hpp"

namespace curvkit::optim {
namespace {

template <class T>
MatrixBatch<T> scalars(T* p, index_t count, index_t stride) {  // count 1 x 1 matrices
  return {p, count, 1, 1, 1, stride};
}

template <class T>
MatrixBatch<const T> cscalars(const T* p, index_t count, index_t stride) {
  return {p, count, 1, 1, 1, stride};
}

template <class T>
class Mbf final : public Optimizer<T> {
 public:
  explicit Mbf(const MbfOptions& o) : o_(o) { this->lr_ = o.lr; }
  std::string_view name() const override { return o_.sampled_labels ? "mbf-true" : "mbf"; }

  Needs needs() const override {
    Needs n;
    n.grad_sampled = o_.sampled_labels && this->k_ % o_.t1 == 0;
    return n;
  }

  Status init(const Context& ctx, std::span<const LayerView<T>> layers) override {
    const char* op = "mbf init";
    if (o_.t1 < 1 || o_.t2 < 1 || !(o_.damping > 0))
      return Status::invalid_argument(op, "t1 and t2 must be >= 1 and damping > 0");
    detail::ParamGroups<T> all;
    CURVKIT_OPTIM_RETURN(detail::collect(op, layers, &all));
    layers_.clear();
    std::vector<MatrixBatch<T>> state, blocks, biases, vectors;
    for (std::size_t l = 0; l < layers.size(); ++l) {
      const LayerView<T>& L = layers[l];
      Layer y;
      y.kind = L.kind;
      y.rows = L.w.rows;
      y.cols = L.w.cols;
      y.bias = L.b.data != nullptr;
      if (L.kind == LayerKind::vector) {
        y.vector = vectors.size();
        vectors.push_back({nullptr, 1, L.w.rows, L.w.cols, L.w.cols, L.w.rows * L.w.cols});
      } else if (L.kind == LayerKind::conv2d) {
        const index_t k2 = L.kh * L.kw;
        if (L.c_in < 1 || k2 < 1 || L.c_in * k2 != L.w.cols)
          return Status::invalid_argument(
              op, detail::layer_name(l, "c_in * kh * kw") + " must equal w.cols");
        y.block = k2;
        y.count = L.w.rows * L.c_in;
        y.state = state.size();
        state.push_back({nullptr, 1, L.w.rows, L.w.cols, L.w.cols, L.w.rows * L.w.cols});
        y.blocks = blocks.size();
        blocks.push_back({nullptr, y.count, k2, k2, k2, k2 * k2});
        if (y.bias) {
          y.biases = biases.size();
          biases.push_back({nullptr, 1, 1, L.w.rows, L.w.rows, L.w.rows});
        }
      } else {
        y.block = L.w.cols + (y.bias ? 1 : 0);
        y.count = o_.linear_blocks == LinearBlocks::per_neuron ? L.w.rows : 1;
        y.state = state.size();
        state.push_back({nullptr, 1, L.w.rows, y.block, y.block, L.w.rows * y.block});
        y.blocks = blocks.size();
        blocks.push_back({nullptr, y.count, y.block, y.block, y.block, y.block * y.block});
      }
      layers_.push_back(y);
    }
    for (auto* s : {&mom_, &stat_grad_, &dir_}) CURVKIT_OPTIM_RETURN(s->allocate(ctx, state));
    for (auto* s : {&fisher_, &inv_, &fresh_}) CURVKIT_OPTIM_RETURN(s->allocate(ctx, blocks));
    for (auto* s : {&bmom_, &bsq_, &bfrozen_, &bdir_})
      CURVKIT_OPTIM_RETURN(s->allocate(ctx, biases));
    for (auto* s : {&am_, &av_, &ad_}) CURVKIT_OPTIM_RETURN(s->allocate(ctx, vectors));
    std::size_t matrices = 0;
    for (const auto& b : blocks) matrices += std::size_t(b.batch);
    info_ = BackendArray<int>(ctx, std::vector<int>(std::max<std::size_t>(matrices, 1), 0));
    this->unwatch_all();
    this->watch("potri of the blocks (failed inverses kept)", info_.data(), matrices);
    CURVKIT_OPTIM_RETURN(info_.status());
    for (auto* s : {&mom_, &bmom_, &am_, &av_, &bsq_, &bfrozen_})
      CURVKIT_OPTIM_RETURN(fill<T>(ctx, 0.0, s->views));
    CURVKIT_OPTIM_RETURN(fill<T>(ctx, 0.0, inv_.views));
    return add_diagonal<T>(ctx, 1 / o_.damping, nullptr, inv_.views);
  }

  Status step(const Context& ctx, std::span<const LayerView<T>> layers) override {
    const char* op = "mbf step";
    if (layers.size() != layers_.size())
      return Status::invalid_argument(op, "the layers differ from those init() was given");
    detail::ParamGroups<T> all;
    CURVKIT_OPTIM_RETURN(detail::collect(op, layers, &all));
    const std::int64_t k = this->k_;
    const bool stats = k % o_.t1 == 0, invert = k % o_.t2 == 0, first = k == 0;
    // Grouped operand lists, built per step from the layers' views.
    Lists g;
    for (std::size_t l = 0; l < layers.size(); ++l) {
      const LayerView<T>& L = layers[l];
      const Layer& y = layers_[l];
      if (L.w.rows != y.rows || L.w.cols != y.cols || (L.b.data != nullptr) != y.bias)
        return Status::invalid_argument(
            op, detail::layer_name(l, "w") + " differs from the shape init() was given");
      CURVKIT_OPTIM_RETURN(add_layer(op, l, L, y, stats, &g));
    }
    const double mu = o_.momentum, beta = first ? 0.0 : o_.stat_decay;
    // Two calls: a linear layer's W part and bias column interleave in memory, and the outputs
    // of one call must lie apart.
    CURVKIT_OPTIM_RETURN(axpby<T>(ctx, 1.0, g.mom_grad, mu, g.mom_c, g.mom));
    CURVKIT_OPTIM_RETURN(axpby<T>(ctx, 1.0, g.col_grad, mu, g.col_c, g.col));
    if (stats) {
      CURVKIT_OPTIM_RETURN(axpby<T>(ctx, 1.0, g.copy_src, 0.0, {}, g.copy_dst));
      for (std::size_t c = 0; c < g.scale_src.size(); ++c)  // linear: [G | g_b] / sqrt(d_out)
        CURVKIT_OPTIM_RETURN(
            axpby<T>(ctx, g.scale[c], g.scale_src[c], 0.0, MatrixBatch<const T>{}, g.scale_dst[c]));
      if (!g.syrk_a.empty())
        CURVKIT_OPTIM_RETURN(
            syrk<T>(ctx, Op::trans, T(1 - beta), g.syrk_a, T(beta), fisher_.views, Fill::full));
      if (!bsq_.views.empty())
        CURVKIT_OPTIM_RETURN(square_ema<T>(ctx, beta, 1 - beta, g.bias_stat, bsq_.views));
    }
    if (invert) {
      if (!fisher_.views.empty()) {
        SpdOptions so;
        so.diagonal_shift = o_.damping;
        so.policy = NonSpdPolicy::shift;
        CURVKIT_OPTIM_RETURN(axpby<T>(ctx, 1.0, fisher_.cviews(), 0.0, {}, fresh_.views));
        CURVKIT_OPTIM_RETURN(potri<T>(ctx, fresh_.views, info_.data(), so));
        CURVKIT_OPTIM_RETURN(copy_if_ok<T>(ctx, fresh_.cviews(), info_.data(), inv_.views));
      }
      CURVKIT_OPTIM_RETURN(axpby<T>(ctx, 1.0, bsq_.cviews(), 0.0, {}, bfrozen_.views));
    }
    if (!g.dir_m.empty())
      CURVKIT_OPTIM_RETURN(
          gemm<T>(ctx, Op::none, Op::none, T(1), g.dir_m, inv_.cviews(), T(0), g.dir_out));
    CURVKIT_OPTIM_RETURN(diag_precondition<T>(ctx, bmom_.cviews(), bfrozen_.cviews(), o_.damping,
                                              DiagPower::one, bdir_.views));
    if (!g.vec_grad.empty()) {
      const AdamWOptions& a = o_.vector_adam;
      const AdamStep st{a.beta1, a.beta2, a.epsilon, k + 1};
      CURVKIT_OPTIM_RETURN(adam_direction<T>(ctx, g.vec_grad, am_.views, av_.views, ad_.views, st));
    }
    const double lr = this->lr_;
    CURVKIT_OPTIM_RETURN(
        axpby<T>(ctx, -lr, g.upd_dir, 1 - lr * o_.weight_decay, g.upd_param_c, g.upd_param));
    if (!g.vec_param.empty()) {
      const double vlr = o_.vector_lr > 0 ? o_.vector_lr : lr;
      CURVKIT_OPTIM_RETURN(axpby<T>(ctx, -vlr, ad_.cviews(), 1 - vlr * o_.weight_decay,
                                    detail::as_const(g.vec_param), g.vec_param));
    }
    ++this->k_;
    return Status::success();
  }

 private:
  struct Layer {
    LayerKind kind;
    index_t rows = 0, cols = 0;
    bool bias = false;
    index_t block = 0, count = 0;                               // block order and number of blocks
    std::size_t state = 0, blocks = 0, biases = 0, vector = 0;  // indices into the states
  };

  struct Lists {
    std::vector<MatrixBatch<const T>> mom_grad, mom_c, col_grad, col_c, copy_src, scale_src, syrk_a,
        bias_stat, dir_m, upd_dir, upd_param_c, vec_grad;
    std::vector<MatrixBatch<T>> mom, col, copy_dst, scale_dst, dir_out, upd_param, vec_param;
    std::vector<double> scale;
  };

  // The layer's operands of every grouped call of this step.
  Status add_layer(const char* op, std::size_t l, const LayerView<T>& L, const Layer& y, bool stats,
                   Lists* g) {
    MatrixBatch<const T> sw = L.dw, sb = L.db;  // the statistics' gradients
    if (stats && o_.sampled_labels) {
      sw = L.dw_sampled;
      sb = L.db_sampled;
      if (sw.data == nullptr || sw.rows != L.w.rows || sw.cols != L.w.cols ||
          (y.bias && (sb.data == nullptr || sb.cols != L.b.cols)))
        return Status::invalid_argument(op, detail::layer_name(l, "dw_sampled / db_sampled") +
                                                " must have the shapes of w / b (needs())");
    }
    if (y.kind == LayerKind::vector) {
      g->vec_grad.push_back(L.dw);
      g->vec_param.push_back(L.w);
      return Status::success();
    }
    const MatrixBatch<T> m = mom_.views[y.state], d = dir_.views[y.state],
                         sg = stat_grad_.views[y.state];
    if (y.kind == LayerKind::conv2d) {
      g->mom_grad.push_back(L.dw);
      g->mom_c.push_back(m);
      g->mom.push_back(m);
      if (stats) {
        g->copy_src.push_back(sw);
        g->copy_dst.push_back(sg);
      }
      // Blocks: the kernels of W as count rows of kh kw.
      g->syrk_a.push_back({sg.data, y.count, 1, y.block, y.block, y.block});
      g->dir_m.push_back({m.data, y.count, 1, y.block, y.block, y.block});
      g->dir_out.push_back({d.data, y.count, 1, y.block, y.block, y.block});
      g->upd_dir.push_back(d);
      g->upd_param.push_back(L.w);
      g->upd_param_c.push_back(L.w);
      if (y.bias) {
        const MatrixBatch<T> bm = bmom_.views[y.biases];
        g->mom_grad.push_back(L.db);
        g->mom_c.push_back(bm);
        g->mom.push_back(bm);
        g->bias_stat.push_back(sb);
        g->upd_dir.push_back(bdir_.views[y.biases]);
        g->upd_param.push_back(L.b);
        g->upd_param_c.push_back(L.b);
      }
      return Status::success();
    }
    // Linear: the folded layout [W | b], ld = block.
    const index_t ld = y.block, r = y.rows, c = y.cols;
    const MatrixBatch<T> mw{m.data, 1, r, c, ld, r * ld}, dw{d.data, 1, r, c, ld, r * ld},
        gw{sg.data, 1, r, c, ld, r * ld};
    g->mom_grad.push_back(L.dw);
    g->mom_c.push_back(mw);
    g->mom.push_back(mw);
    const bool averaged = o_.linear_blocks == LinearBlocks::averaged;
    const double inv_sqrt_rows = averaged ? 1 / std::sqrt(double(r)) : 1.0;
    if (stats) {
      g->scale_src.push_back(sw);
      g->scale_dst.push_back(gw);
      g->scale.push_back(inv_sqrt_rows);
    }
    g->upd_dir.push_back(dw);
    g->upd_param.push_back(L.w);
    g->upd_param_c.push_back(L.w);
    if (y.bias) {
      const MatrixBatch<T> mb = scalars(m.data + c, r, ld);
      g->col_grad.push_back(cscalars(L.db.data, r, 1));
      g->col_c.push_back(mb);
      g->col.push_back(mb);
      if (stats) {
        g->scale_src.push_back(cscalars(sb.data, r, 1));
        g->scale_dst.push_back(scalars(sg.data + c, r, ld));
        g->scale.push_back(inv_sqrt_rows);
      }
      g->upd_dir.push_back(cscalars(d.data + c, r, ld));
      g->upd_param.push_back(scalars(L.b.data, r, 1));
      g->upd_param_c.push_back(cscalars(L.b.data, r, 1));
    }
    if (averaged) {
      g->syrk_a.push_back({sg.data, 1, r, ld, ld, r * ld});  // Op::trans: [G|g_b]^T [G|g_b] / r
      g->dir_m.push_back({m.data, 1, r, ld, ld, r * ld});
      g->dir_out.push_back({d.data, 1, r, ld, ld, r * ld});
    } else {  // per neuron: row i of [G|g_b] is a 1 x ld matrix, its block the row's outer product
      g->syrk_a.push_back({sg.data, r, 1, ld, ld, ld});
      g->dir_m.push_back({m.data, r, 1, ld, ld, ld});
      g->dir_out.push_back({d.data, r, 1, ld, ld, ld});
    }
    return Status::success();
  }

  MbfOptions o_;
  std::vector<Layer> layers_;
  detail::StateTensors<T> mom_, stat_grad_, dir_;        // per non-vector layer (linear: folded)
  detail::StateTensors<T> fisher_, inv_, fresh_;         // the blocks, in layer order
  detail::StateTensors<T> bmom_, bsq_, bfrozen_, bdir_;  // convolution biases
  detail::StateTensors<T> am_, av_, ad_;                 // vector layers (Adam)
  BackendArray<int> info_;
};

}  // namespace

template <class T>
std::unique_ptr<Optimizer<T>> make_mbf(const MbfOptions& o) {
  return std::make_unique<Mbf<T>>(o);
}

template std::unique_ptr<Optimizer<float>> make_mbf<float>(const MbfOptions&);
template std::unique_ptr<Optimizer<double>> make_mbf<double>(const MbfOptions&);

}  // namespace curvkit::optim
