// Kokkos backend of the Sherman–Morrison / Woodbury family (sherman_morrison.hpp and
// quasi_newton.hpp).
//
// One work item per matrix, running the per-matrix building blocks of
// include/curvkit/device/{sherman_morrison,quasi_newton}.hpp; their inner loops run along the
// contiguous rows (vectorised on the host).  Scratch vectors come from Kokkos team scratch
// (one single-thread team per matrix), so these ops need no Context workspace.  On a GPU
// execution space this is one thread per matrix: correct, but the native CUDA backend is the
// fast path there.
#include "compat.hpp"
#include "curvkit/device/quasi_newton.hpp"
#include "sherman_morrison_backends.hpp"

namespace curvkit::kokkos {
namespace {

// Matrix b of v, or nullptr for an empty view (so no offset is applied to a null pointer).
template <class T>
KOKKOS_INLINE_FUNCTION T* matrix_or_null(const MatrixBatch<T>& v, index_t b) {
  return v.data ? v.matrix(b) : nullptr;
}

template <class T>
struct Rank1 {
  MatrixBatch<T> h;
  MatrixBatch<const T> u;
  int* info;
  T decay, weight;
  bool mirror;
  KOKKOS_INLINE_FUNCTION void operator()(index_t b, void* scratch) const {
    info[b] = device::rank1_chain(h.rows, h.matrix(b), h.ld, matrix_or_null(u, b), u.ld, u.rows,
                                  decay, weight, mirror, static_cast<T*>(scratch));
  }
};

template <class T>
struct Woodbury {
  MatrixBatch<const T> ut;
  MatrixBatch<T> x;
  MatrixBatch<const T> c;
  MatrixBatch<const T> gram;
  int* info;
  T lambda, c_scale;
  device::CForm form;
  KOKKOS_INLINE_FUNCTION void operator()(index_t b, void* scratch) const {
    const T* cb = form == device::CForm::scalar ? nullptr : c.matrix(b);
    info[b] = device::woodbury_solve(ut.cols, ut.rows, x.cols, matrix_or_null(ut, b), ut.ld,
                                     x.matrix(b), x.ld, lambda, form, c_scale, cb, c.ld,
                                     matrix_or_null(gram, b), gram.ld, static_cast<T*>(scratch));
  }
};

template <class T>
struct Bfgs {
  MatrixBatch<T> h;
  MatrixBatch<const T> s, y;
  int* info;
  const int* skip_mask;
  int* skipped;
  T min_curvature;
  bool skip_rejected, mirror;
  KOKKOS_INLINE_FUNCTION void operator()(index_t b, void* scratch) const {
    if (skip_mask && skip_mask[b] != 0) {
      info[b] = info::success;
      if (skipped) skipped[b] = 0;
      return;
    }
    info[b] =
        device::bfgs_update(h.rows, h.matrix(b), h.ld, matrix_or_null(s, b), s.ld,
                            matrix_or_null(y, b), y.ld, s.rows, min_curvature, skip_rejected,
                            mirror, static_cast<T*>(scratch), skipped ? skipped + b : nullptr);
  }
};

template <class T>
struct Damping {
  MatrixBatch<const T> h;
  MatrixBatch<T> s, y;
  int* info;
  T* theta;
  int* skip;
  device::Damping scheme;
  T mu1, mu2;
  bool skip_test;
  KOKKOS_INLINE_FUNCTION void operator()(index_t b, void* scratch) const {
    info[b] = device::bfgs_damping(s.cols, matrix_or_null(h, b), h.ld, s.matrix(b), y.matrix(b),
                                   scheme, mu1, mu2, skip_test, static_cast<T*>(scratch),
                                   theta ? theta + 2 * b : nullptr,
                                   theta ? theta + 2 * b + 1 : nullptr, skip ? skip + b : nullptr);
  }
};

template <class T>
struct HessianAction {
  MatrixBatch<const T> h, abar, x;
  MatrixBatch<T> s, y;
  int* info;
  T lambda, scale;
  KOKKOS_INLINE_FUNCTION void operator()(index_t b) const {
    info[b] = device::hessian_action_pair(h.rows, x.rows, h.matrix(b), h.ld, abar.matrix(b),
                                          matrix_or_null(x, b), x.ld, lambda, scale, s.matrix(b),
                                          y.matrix(b));
  }
};

template <class T>
struct LbfgsCompact {
  MatrixBatch<const T> s, y, sty, yty;
  MatrixBatch<T> x;
  int* info;
  T gamma;
  bool skip_zero_pairs;
  KOKKOS_INLINE_FUNCTION void operator()(index_t b, void* scratch) const {
    info[b] = device::lbfgs_compact_apply(
        s.cols, s.rows, x.cols, matrix_or_null(s, b), s.ld, matrix_or_null(y, b), y.ld,
        matrix_or_null(x, b), x.ld, gamma, matrix_or_null(sty, b), sty.ld, matrix_or_null(yty, b),
        yty.ld, static_cast<T*>(scratch), skip_zero_pairs);
  }
};

template <class T>
struct LbfgsTwoLoop {
  MatrixBatch<const T> s, y;
  MatrixBatch<T> x;
  int* info;
  T gamma;
  bool skip_zero_pairs;
  KOKKOS_INLINE_FUNCTION void operator()(index_t b, void* scratch) const {
    info[b] = device::lbfgs_two_loop(s.cols, s.rows, x.cols, matrix_or_null(s, b), s.ld,
                                     matrix_or_null(y, b), y.ld, matrix_or_null(x, b), x.ld, gamma,
                                     static_cast<T*>(scratch), skip_zero_pairs);
  }
};

template <class T>
std::size_t bytes_of(index_t elements) {
  return std::size_t(elements > 0 ? elements : 1) * sizeof(T);
}

}  // namespace

template <class T>
Status rank1_update(const Context& ctx, MatrixBatch<T> h, MatrixBatch<const T> u, int* info,
                    const Rank1Options& o) {
  for_each_with_scratch(exec_space(ctx), "curvkit::rank1_update", h.batch,
                        bytes_of<T>(device::rank1_chain_scratch(h.rows)),
                        Rank1<T>{h, u, info, T(o.decay), T(o.weight), o.mirror_upper});
  return Status::success();
}

template <class T>
Status woodbury_solve(const Context& ctx, MatrixBatch<const T> ut, MatrixBatch<T> x, int* info,
                      const WoodburyOptions& o, MatrixBatch<const T> c, MatrixBatch<const T> gram) {
  const auto form = static_cast<device::CForm>(o.c_form);
  const index_t elements = device::woodbury_scratch(ut.rows, x.cols, form == device::CForm::matrix);
  for_each_with_scratch(exec_space(ctx), "curvkit::woodbury_solve", ut.batch, bytes_of<T>(elements),
                        Woodbury<T>{ut, x, c, gram, info, T(o.lambda), T(o.c_scale), form});
  return Status::success();
}

template <class T>
Status bfgs_update(const Context& ctx, MatrixBatch<T> h, MatrixBatch<const T> s,
                   MatrixBatch<const T> y, int* info, const BfgsOptions& o, const int* skip_mask,
                   int* skipped) {
  const T min_curvature =
      o.min_curvature > 0 ? T(o.min_curvature) : T(h.rows) * device::epsilon<T>();
  for_each_with_scratch(
      exec_space(ctx), "curvkit::bfgs_update", h.batch, bytes_of<T>(h.rows),
      Bfgs<T>{h, s, y, info, skip_mask, skipped, min_curvature, o.skip_rejected, o.mirror_upper});
  return Status::success();
}

template <class T>
Status bfgs_damping(const Context& ctx, MatrixBatch<const T> h, MatrixBatch<T> s, MatrixBatch<T> y,
                    int* info, const DampingOptions& o, T* theta, int* skip) {
  for_each_with_scratch(
      exec_space(ctx), "curvkit::bfgs_damping", s.batch, bytes_of<T>(s.cols),
      Damping<T>{h, s, y, info, theta, skip, static_cast<device::Damping>(o.scheme), T(o.mu1),
                 T(o.mu2), o.skip_test});
  return Status::success();
}

template <class T>
Status hessian_action_pair(const Context& ctx, MatrixBatch<const T> h, MatrixBatch<const T> abar,
                           MatrixBatch<const T> x, MatrixBatch<T> s, MatrixBatch<T> y, int* info,
                           const HessianActionOptions& o) {
  const T scale = o.scale > 0 ? T(o.scale) : (x.rows > 0 ? T(1) / T(x.rows) : T(0));
  for_each_index(exec_space(ctx), "curvkit::hessian_action_pair", h.batch,
                 HessianAction<T>{h, abar, x, s, y, info, T(o.lambda), scale});
  return Status::success();
}

template <class T>
Status lbfgs_apply(const Context& ctx, MatrixBatch<const T> s, MatrixBatch<const T> y,
                   MatrixBatch<T> x, int* info, const LbfgsOptions& o, MatrixBatch<const T> sty,
                   MatrixBatch<const T> yty) {
  for_each_with_scratch(exec_space(ctx), "curvkit::lbfgs_apply", s.batch,
                        bytes_of<T>(device::lbfgs_compact_scratch(s.rows, x.cols)),
                        LbfgsCompact<T>{s, y, sty, yty, x, info, T(o.gamma), o.skip_zero_pairs});
  return Status::success();
}

template <class T>
Status lbfgs_two_loop(const Context& ctx, MatrixBatch<const T> s, MatrixBatch<const T> y,
                      MatrixBatch<T> x, int* info, const LbfgsOptions& o) {
  for_each_with_scratch(exec_space(ctx), "curvkit::lbfgs_two_loop", s.batch,
                        bytes_of<T>(device::lbfgs_two_loop_scratch(s.rows, s.cols)),
                        LbfgsTwoLoop<T>{s, y, x, info, T(o.gamma), o.skip_zero_pairs});
  return Status::success();
}

}  // namespace curvkit::kokkos

CURVKIT_INSTANTIATE_SM_BACKEND(kokkos)
