// Public entry points of the Sherman–Morrison / Woodbury family (sherman_morrison.hpp and
// quasi_newton.hpp): validate every argument once, then dispatch to the backend the Context
// names.
#include <cmath>
#include <string>
#include <utility>

#include "checks.hpp"
#include "sherman_morrison_backends.hpp"

namespace curvkit {
namespace {

using detail::check_disjoint;
using detail::check_info;
using detail::check_shape;
using detail::check_view;
using detail::check_workspace;

bool finite(double x) {
  return std::isfinite(x);
}

// A batch of square matrices.
template <class T>
Status check_square(const char* op, const MatrixBatch<T>& a, const char* name) {
  if (auto e = check_view(a, name); !e.empty()) return Status::invalid_argument(op, e);
  if (a.rows != a.cols)
    return Status::invalid_argument(op, std::string(name) + " must be square (rows " +
                                            std::to_string(a.rows) + ", cols " +
                                            std::to_string(a.cols) + ")");
  return Status::success();
}

// Pairs (s, y) of the L-BFGS ops and the right-hand sides x.
template <class T>
Status check_lbfgs(const char* op, MatrixBatch<const T> s, MatrixBatch<const T> y, MatrixBatch<T> x,
                   int* info, const LbfgsOptions& o) {
  if (auto e = check_view(s, "s"); !e.empty()) return Status::invalid_argument(op, e);
  CURVKIT_RETURN_IF_ERROR(check_shape(op, y, "y", s.batch, s.rows, s.cols));
  if (auto e = check_view(x, "x"); !e.empty()) return Status::invalid_argument(op, e);
  if (x.batch != s.batch || x.rows != s.cols)
    return Status::invalid_argument(
        op, "x must be batch x d x nrhs with batch = s.batch (" + std::to_string(s.batch) +
                ") and d = s.cols (" + std::to_string(s.cols) + "); it is " +
                std::to_string(x.batch) + " x " + std::to_string(x.rows) + " x " +
                std::to_string(x.cols));
  CURVKIT_RETURN_IF_ERROR(check_disjoint(op, x, "x", s, "s"));
  CURVKIT_RETURN_IF_ERROR(check_disjoint(op, x, "x", y, "y"));
  if (!finite(o.gamma)) return Status::invalid_argument(op, "options.gamma must be finite");
  return check_info(op, s.batch, info);
}

}  // namespace

// ---- rank-1 chains and Woodbury -------------------------------------------------------------

template <class T>
Status rank1_update(const Context& ctx, MatrixBatch<T> h, MatrixBatch<const T> u, int* info,
                    const Rank1Options& o) {
  const char* op = "rank1_update";
  if (!(o.decay > 0) || !finite(o.decay))
    return Status::invalid_argument(op, "options.decay must be finite and > 0");
  if (!finite(o.weight)) return Status::invalid_argument(op, "options.weight must be finite");
  CURVKIT_RETURN_IF_ERROR(check_square(op, h, "h"));
  CURVKIT_RETURN_IF_ERROR(check_shape(op, u, "u", h.batch, u.rows, h.rows));
  CURVKIT_RETURN_IF_ERROR(check_disjoint(op, h, "h", u, "u"));
  CURVKIT_RETURN_IF_ERROR(check_info(op, h.batch, info));
  CURVKIT_DISPATCH(rank1_update<T>, ctx, h, u, info, o)
}

template <class T>
std::size_t woodbury_solve_workspace_size(const Context& ctx, MatrixBatch<const T> ut,
                                          MatrixBatch<const T> b) {
  // Only the CUDA backend uses Context workspace (src/sherman_morrison_backends.hpp).
  return ctx.backend() == Backend::cuda ? cuda::woodbury_solve_workspace_size<T>(ctx, ut, b) : 0;
}

template <class T>
Status woodbury_solve(const Context& ctx, MatrixBatch<const T> ut, MatrixBatch<T> b, int* info,
                      const WoodburyOptions& o, MatrixBatch<const T> c, MatrixBatch<const T> gram) {
  const char* op = "woodbury_solve";
  if (!(o.lambda > 0) || !finite(o.lambda))
    return Status::invalid_argument(op, "options.lambda must be finite and > 0");
  if (auto e = check_view(ut, "ut"); !e.empty()) return Status::invalid_argument(op, e);
  const index_t batch = ut.batch, k = ut.rows, n = ut.cols;
  if (auto e = check_view(b, "b"); !e.empty()) return Status::invalid_argument(op, e);
  if (b.batch != batch || b.rows != n)
    return Status::invalid_argument(
        op, "b must be batch x n x nrhs with batch = ut.batch (" + std::to_string(batch) +
                ") and n = ut.cols (" + std::to_string(n) + "); it is " + std::to_string(b.batch) +
                " x " + std::to_string(b.rows) + " x " + std::to_string(b.cols));
  CURVKIT_RETURN_IF_ERROR(check_disjoint(op, b, "b", ut, "ut"));
  switch (o.c_form) {
    case WoodburyC::scalar:
      if (!(o.c_scale > 0) || !finite(o.c_scale))
        return Status::invalid_argument(op, "options.c_scale must be finite and > 0");
      break;
    case WoodburyC::diagonal:
      if (c.data == nullptr && batch * k > 0)
        return Status::invalid_argument(op, "c is required (c.data is null) for c_form diagonal");
      CURVKIT_RETURN_IF_ERROR(check_shape(op, c, "c", batch, 1, k));
      CURVKIT_RETURN_IF_ERROR(check_disjoint(op, b, "b", c, "c"));
      break;
    case WoodburyC::matrix:
      if (c.data == nullptr && batch * k > 0)
        return Status::invalid_argument(op, "c is required (c.data is null) for c_form matrix");
      CURVKIT_RETURN_IF_ERROR(check_shape(op, c, "c", batch, k, k));
      CURVKIT_RETURN_IF_ERROR(check_disjoint(op, b, "b", c, "c"));
      break;
    default:
      return Status::invalid_argument(op, "options.c_form is not a WoodburyC value");
  }
  if (gram.data != nullptr) {
    CURVKIT_RETURN_IF_ERROR(check_shape(op, gram, "gram", batch, k, k));
    CURVKIT_RETURN_IF_ERROR(check_disjoint(op, b, "b", gram, "gram"));
  }
  CURVKIT_RETURN_IF_ERROR(check_info(op, batch, info));
  CURVKIT_RETURN_IF_ERROR(check_workspace(op, ctx, woodbury_solve_workspace_size<T>(ctx, ut, b)));
  CURVKIT_DISPATCH(woodbury_solve<T>, ctx, ut, b, info, o, c, gram)
}

// ---- quasi-Newton ---------------------------------------------------------------------------

template <class T>
Status bfgs_update(const Context& ctx, MatrixBatch<T> h, MatrixBatch<const T> s,
                   MatrixBatch<const T> y, int* info, const BfgsOptions& o, const int* skip_mask,
                   int* skipped) {
  const char* op = "bfgs_update";
  if (!finite(o.min_curvature))
    return Status::invalid_argument(op, "options.min_curvature must be finite");
  CURVKIT_RETURN_IF_ERROR(check_square(op, h, "h"));
  CURVKIT_RETURN_IF_ERROR(check_shape(op, s, "s", h.batch, s.rows, h.rows));
  CURVKIT_RETURN_IF_ERROR(check_shape(op, y, "y", h.batch, s.rows, h.rows));
  CURVKIT_RETURN_IF_ERROR(check_disjoint(op, h, "h", s, "s"));
  CURVKIT_RETURN_IF_ERROR(check_disjoint(op, h, "h", y, "y"));
  CURVKIT_RETURN_IF_ERROR(check_info(op, h.batch, info));
  CURVKIT_DISPATCH(bfgs_update<T>, ctx, h, s, y, info, o, skip_mask, skipped)
}

template <class T>
Status bfgs_damping(const Context& ctx, MatrixBatch<const T> h, MatrixBatch<T> s, MatrixBatch<T> y,
                    int* info, const DampingOptions& o, T* theta, int* skip) {
  const char* op = "bfgs_damping";
  if (o.scheme != DampingScheme::powell_lm && o.scheme != DampingScheme::double_damping &&
      o.scheme != DampingScheme::powell_identity_lm && o.scheme != DampingScheme::powell_lm_hy)
    return Status::invalid_argument(op, "options.scheme is not a DampingScheme value");
  const bool given_hy = o.scheme == DampingScheme::powell_lm_hy;
  if (given_hy && o.skip_test)
    return Status::invalid_argument(
        op, "options.skip_test needs H itself: not available with scheme powell_lm_hy");
  if (!(o.mu1 > 0 && o.mu1 < 1))
    return Status::invalid_argument(op, "options.mu1 must be in (0, 1)");
  if (!(o.mu2 > 0) || !finite(o.mu2))
    return Status::invalid_argument(op, "options.mu2 must be finite and > 0");
  if (o.scheme == DampingScheme::double_damping && o.mu2 > 1)
    return Status::invalid_argument(op, "options.mu2 must be <= 1 for double_damping");
  if (auto e = check_view(s, "s"); !e.empty()) return Status::invalid_argument(op, e);
  if (s.rows != 1)
    return Status::invalid_argument(op, "s must hold one vector per matrix (rows == 1)");
  const index_t batch = s.batch, n = s.cols;
  CURVKIT_RETURN_IF_ERROR(check_shape(op, y, "y", batch, 1, n));
  CURVKIT_RETURN_IF_ERROR(check_disjoint(op, s, "s", y, "y"));
  const bool needs_h = o.scheme != DampingScheme::powell_identity_lm || o.skip_test;
  if (needs_h && h.data == nullptr && batch * n > 0)
    return Status::invalid_argument(
        op, "h is required (h.data is null) unless scheme is powell_identity_lm without skip_test");
  if (needs_h || h.data != nullptr) {
    // powell_lm_hy: h holds the products H y, one vector per matrix.
    CURVKIT_RETURN_IF_ERROR(
        check_shape(op, h, given_hy ? "h (the products H y)" : "h", batch, given_hy ? 1 : n, n));
    CURVKIT_RETURN_IF_ERROR(check_disjoint(op, s, "s", h, "h"));
    CURVKIT_RETURN_IF_ERROR(check_disjoint(op, y, "y", h, "h"));
  }
  CURVKIT_RETURN_IF_ERROR(check_info(op, batch, info));
  CURVKIT_DISPATCH(bfgs_damping<T>, ctx, h, s, y, info, o, theta, skip)
}

template <class T>
Status hessian_action_pair(const Context& ctx, MatrixBatch<const T> h, MatrixBatch<const T> abar,
                           MatrixBatch<const T> x, MatrixBatch<T> s, MatrixBatch<T> y, int* info,
                           const HessianActionOptions& o) {
  const char* op = "hessian_action_pair";
  if (!(o.lambda >= 0) || !finite(o.lambda))
    return Status::invalid_argument(op, "options.lambda must be finite and >= 0");
  if (!finite(o.scale)) return Status::invalid_argument(op, "options.scale must be finite");
  CURVKIT_RETURN_IF_ERROR(check_square(op, h, "h"));
  const index_t batch = h.batch, n = h.rows;
  CURVKIT_RETURN_IF_ERROR(check_shape(op, abar, "abar", batch, 1, n));
  CURVKIT_RETURN_IF_ERROR(check_shape(op, x, "x", batch, x.rows, n));
  CURVKIT_RETURN_IF_ERROR(check_shape(op, s, "s", batch, 1, n));
  CURVKIT_RETURN_IF_ERROR(check_shape(op, y, "y", batch, 1, n));
  CURVKIT_RETURN_IF_ERROR(check_disjoint(op, s, "s", y, "y"));
  const std::pair<MatrixBatch<T>, const char*> outputs[] = {{s, "s"}, {y, "y"}};
  for (const auto& [out, name] : outputs) {
    CURVKIT_RETURN_IF_ERROR(check_disjoint(op, out, name, h, "h"));
    CURVKIT_RETURN_IF_ERROR(check_disjoint(op, out, name, abar, "abar"));
    CURVKIT_RETURN_IF_ERROR(check_disjoint(op, out, name, x, "x"));
  }
  CURVKIT_RETURN_IF_ERROR(check_info(op, batch, info));
  CURVKIT_DISPATCH(hessian_action_pair<T>, ctx, h, abar, x, s, y, info, o)
}

// No backend needs Context workspace for L-BFGS (Kokkos team scratch, CUDA shared memory); the
// queries exist so that a future backend can, without an API change.
template <class T>
std::size_t lbfgs_apply_workspace_size(const Context&, MatrixBatch<const T>, MatrixBatch<const T>) {
  return 0;
}
template <class T>
std::size_t lbfgs_two_loop_workspace_size(const Context&, MatrixBatch<const T>,
                                          MatrixBatch<const T>) {
  return 0;
}

template <class T>
Status lbfgs_apply(const Context& ctx, MatrixBatch<const T> s, MatrixBatch<const T> y,
                   MatrixBatch<T> x, int* info, const LbfgsOptions& o, MatrixBatch<const T> sty,
                   MatrixBatch<const T> yty) {
  const char* op = "lbfgs_apply";
  CURVKIT_RETURN_IF_ERROR(check_lbfgs(op, s, y, x, info, o));
  if (sty.data != nullptr && s.rows > 0) {
    CURVKIT_RETURN_IF_ERROR(check_shape(op, sty, "sty", s.batch, s.rows, s.rows));
    CURVKIT_RETURN_IF_ERROR(check_disjoint(op, x, "x", sty, "sty"));
  }
  if (yty.data != nullptr && s.rows > 0) {
    CURVKIT_RETURN_IF_ERROR(check_shape(op, yty, "yty", s.batch, s.rows, s.rows));
    CURVKIT_RETURN_IF_ERROR(check_disjoint(op, x, "x", yty, "yty"));
  }
  CURVKIT_DISPATCH(lbfgs_apply<T>, ctx, s, y, x, info, o, sty, yty)
}

template <class T>
Status lbfgs_two_loop(const Context& ctx, MatrixBatch<const T> s, MatrixBatch<const T> y,
                      MatrixBatch<T> x, int* info, const LbfgsOptions& o) {
  const char* op = "lbfgs_two_loop";
  CURVKIT_RETURN_IF_ERROR(check_lbfgs(op, s, y, x, info, o));
  CURVKIT_DISPATCH(lbfgs_two_loop<T>, ctx, s, y, x, info, o)
}

// The public templates have the backends' signatures (default arguments aside).
CURVKIT_SM_ENTRY_POINTS(template, float, <float>)
CURVKIT_SM_ENTRY_POINTS(template, double, <double>)
#define CURVKIT_SM_WORKSPACE_QUERIES(T)                                                       \
  template std::size_t woodbury_solve_workspace_size<T>(const Context&, MatrixBatch<const T>, \
                                                        MatrixBatch<const T>);                \
  template std::size_t lbfgs_apply_workspace_size<T>(const Context&, MatrixBatch<const T>,    \
                                                     MatrixBatch<const T>);                   \
  template std::size_t lbfgs_two_loop_workspace_size<T>(const Context&, MatrixBatch<const T>, \
                                                        MatrixBatch<const T>);
CURVKIT_SM_WORKSPACE_QUERIES(float)
CURVKIT_SM_WORKSPACE_QUERIES(double)

}  // namespace curvkit
