// Kokkos backend of the elementwise family (elementwise.hpp): one launch per group; each work
// item is one row of one matrix on the host (a vectorisable inner loop, no index division per
// element) or one element on a GPU (coalesced).  add_diagonal visits the diagonal only.  The
// per-element math is curvkit/device/elementwise.hpp's map_element, instantiated per kind.
// sum_products (and sum_squares, x = y): one work item per matrix when the batch fills the
// threads, else a reduction over the rows of each matrix.
#include <algorithm>

#include "compat.hpp"
#include "elementwise_backends.hpp"

namespace curvkit::kokkos {
namespace {

using device::MapKind;

template <MapKind K, class T>
struct MapRows {
  MapCall<T> call;  // its `groups` span is not used on the device
  MapGroup<T> g;

  KOKKOS_INLINE_FUNCTION void element(index_t b, index_t i, index_t j,
                                      const device::MapPerMatrix<T>& pm) const {
    device::map_element<K, T>(call.k, pm, g.slot[0].at(b, i, j), g.slot[1].at(b, i, j),
                              g.slot[2].at(b, i, j), g.slot[3].at(b, i, j));
  }

  static index_t extent(const MapGroup<T>& g) {
    if (K == MapKind::add_diagonal) return g.batch * std::min(g.rows, g.cols);
    return kHostExecution ? g.batch * g.rows : g.batch * g.rows * g.cols;
  }

  KOKKOS_INLINE_FUNCTION void operator()(index_t w) const {
    if constexpr (K == MapKind::add_diagonal) {
      const index_t d = g.rows < g.cols ? g.rows : g.cols, b = w / d, i = w % d;
      element(b, i, i, call.per_matrix(g.first + b));
    } else if constexpr (kHostExecution) {
      const index_t b = w / g.rows, i = w % g.rows;
      const auto pm = call.per_matrix(g.first + b);
      for (index_t j = 0; j < g.cols; ++j) element(b, i, j, pm);
    } else {
      const index_t per = g.rows * g.cols, b = w / per, i = (w % per) / g.cols, j = w % g.cols;
      element(b, i, j, call.per_matrix(g.first + b));
    }
  }
};

template <MapKind K, class T>
void run(const ExecSpace& space, const MapCall<T>& call) {
  MapCall<T> device_call = call;
  device_call.groups = {};
  for (const MapGroup<T>& g : call.groups)
    for_each_index(space, "curvkit::elementwise", MapRows<K, T>::extent(g),
                   MapRows<K, T>{device_call, g});
}

template <class T>
struct MatrixProducts {  // one work item per matrix
  MatrixBatch<const T> x, y;
  T* out;
  bool accumulate;
  KOKKOS_INLINE_FUNCTION void operator()(index_t b) const {
    double s = accumulate ? double(out[b]) : 0.0;
    for (index_t i = 0; i < x.rows; ++i) {
      const T* xi = x.matrix(b) + i * x.ld;
      const T* yi = y.matrix(b) + i * y.ld;
      double row = 0;
      for (index_t j = 0; j < x.cols; ++j) row += double(xi[j]) * double(yi[j]);
      s += row;
    }
    out[b] = T(s);
  }
};

template <class T>
struct RowProducts {  // row i's share of one matrix
  const T *x, *y;
  index_t ldx, ldy, cols;
  KOKKOS_INLINE_FUNCTION double operator()(index_t i) const {
    double row = 0;
    for (index_t j = 0; j < cols; ++j) row += double(x[i * ldx + j]) * double(y[i * ldy + j]);
    return row;
  }
};

template <class T>
struct StoreSum {
  T* out;
  double s;
  bool accumulate;
  KOKKOS_INLINE_FUNCTION void operator()(index_t) const {
    out[0] = T(accumulate ? double(out[0]) + s : s);
  }
};

}  // namespace

template <class T>
Status elementwise_map(const Context& ctx, const MapCall<T>& call) {
  const ExecSpace space = exec_space(ctx);
  switch (call.kind) {
    case MapKind::axpby:
      run<MapKind::axpby>(space, call);
      break;
    case MapKind::fill:
      run<MapKind::fill>(space, call);
      break;
    case MapKind::add_diagonal:
      run<MapKind::add_diagonal>(space, call);
      break;
    case MapKind::add_scalar:
      run<MapKind::add_scalar>(space, call);
      break;
    case MapKind::square_ema:
      run<MapKind::square_ema>(space, call);
      break;
    case MapKind::diag_precondition:
      run<MapKind::diag_precondition>(space, call);
      break;
    case MapKind::adam:
      run<MapKind::adam>(space, call);
      break;
    case MapKind::scale_by_ratio:
      run<MapKind::scale_by_ratio>(space, call);
      break;
    case MapKind::copy_if_ok:
      run<MapKind::copy_if_ok>(space, call);
      break;
    case MapKind::clip_by_quadratic:
      run<MapKind::clip_by_quadratic>(space, call);
      break;
    case MapKind::axpby_scaled:
      run<MapKind::axpby_scaled>(space, call);
      break;
  }
  return Status::success();
}

template <class T>
Status sum_products(const Context& ctx, GroupedBatch<const T> x, GroupedBatch<const T> y, T* out,
                    bool accumulate) {
  const ExecSpace space = exec_space(ctx);
  const index_t conc = index_t(space.concurrency());
  index_t flat = 0;
  for (std::size_t q = 0; q < x.size(); ++q) {
    const auto &g = x[q], &h = y[q];
    if (g.batch >= conc) {
      for_each_index(space, "curvkit::sum_products", g.batch,
                     MatrixProducts<T>{g, h, out + flat, accumulate});
    } else {
      // Few (large) matrices, e.g. one tensor per layer: a reduction over each one's rows.
      for (index_t b = 0; b < g.batch; ++b) {
        const double s = reduce_sum(space, "curvkit::sum_products", g.rows,
                                    RowProducts<T>{g.matrix(b), h.matrix(b), g.ld, h.ld, g.cols});
        for_each_index(space, "curvkit::sum_products store", 1,
                       StoreSum<T>{out + flat + b, s, accumulate});
      }
    }
    flat += g.batch;
  }
  return Status::success();
}

template <class T>
struct LmDampingUpdate {
  const T *f0, *f1, *gv, *vv;
  index_t count;
  LmDampingRule r;
  T* state;
  index_t copies;
  KOKKOS_INLINE_FUNCTION void operator()(index_t) const {
    device::lm_damping_update(r.lr, r.boost, r.drop, r.epsilon, r.floor, *f0, *f1, gv, vv, count,
                              state, copies);
  }
};

template <class T>
Status lm_damping_update(const Context& ctx, const T* f0, const T* f1, const T* gv, const T* vv,
                         index_t count, const LmDampingRule& r, T* state, index_t copies) {
  for_each_index(exec_space(ctx), "curvkit::lm_damping_update", 1,
                 LmDampingUpdate<T>{f0, f1, gv, vv, count, r, state, copies});
  return Status::success();
}

}  // namespace curvkit::kokkos

CURVKIT_INSTANTIATE_EW_BACKEND(kokkos)
