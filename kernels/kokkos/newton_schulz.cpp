// Kokkos backend of the Newton–Schulz family (newton_schulz.hpp).  Two paths, chosen per group
// from its shape and the execution space's concurrency (takes_gemm_loop; the workspace query
// uses the same rule):
//
//   per matrix  one work item per matrix runs every iteration of it (the embedded routines of
//               curvkit/device/newton_schulz.hpp) in Kokkos team scratch: a whole batch is one
//               launch per group and needs no Context workspace; on the host its products go
//               through the packed micro-kernel.
//   gemm loop   the larger order max(rows, cols) >= 512, or min(rows, cols) >= 128 with fewer
//               matrices than the space runs at once: one work item per matrix would leave
//               threads idle (on a GPU, all but a few).  The matrices of the group are taken one
//               after another; each runs the same iteration (ns_detail::*_with) with KokkosEngine,
//               whose products are the family's batched GEMM (kokkos::gemm: output tiles over all
//               threads) and whose elementwise steps and reductions are kernels.  Its buffers
//               live in the Context workspace, reused by every matrix; the residual comes back to
//               the host after each step (a reduction), which is what the stopping rule needs.
#include <algorithm>
#include <cmath>

#include "compat.hpp"
#include "curvkit/device/newton_schulz.hpp"
#include "kron_backends.hpp"
#include "newton_schulz_backends.hpp"

namespace curvkit::kokkos {
namespace {

using device::ns_detail::kSquareBuffers;
using device::ns_detail::polar_buffer_elements;

enum class Op4 { inverse, sqrt, root, polar };

// ---- path choice ---------------------------------------------------------------------------

constexpr index_t kLoopOrder = 512;  // from this order on a single matrix is worth all threads
constexpr index_t kLoopBusy = 128;   // ... and from this one, when the batch cannot fill them

template <class T>
bool takes_gemm_loop(const ExecSpace& space, const MatrixBatch<const T>& a) {
  const index_t k = std::min(a.rows, a.cols), big = std::max(a.rows, a.cols);
  return big >= kLoopOrder || (k >= kLoopBusy && a.batch < index_t(space.concurrency()));
}

// Elements of the gemm loop's buffers: the square ops keep kSquareBuffers n x n, the polar
// factor polar_buffer_elements (fewer for a square matrix; the query cannot know the op).
template <class T>
std::size_t loop_elements(const MatrixBatch<const T>& a) {
  return a.rows == a.cols ? std::size_t(kSquareBuffers * a.rows * a.rows)
                          : std::size_t(polar_buffer_elements(a.rows, a.cols));
}

// ---- the per-matrix path -------------------------------------------------------------------

template <class T>
struct NsItem {
  Op4 op;
  MatrixBatch<const T> a;
  MatrixBatch<T> x, x2;  // x2: sqrt's inverse square root
  NsReport<T> report;
  index_t first = 0;  // index of this group's first matrix in the report arrays
  NewtonSchulzOptions o;
  PolarOptions po;
  int p = 1;

  KOKKOS_INLINE_FUNCTION void operator()(index_t b, void* scratch) const {
    T* s = static_cast<T*>(scratch);
    const index_t n = a.rows;
    T* out = x.data ? x.matrix(b) : nullptr;
    int steps = 0, code = 0;
    double r = 0;
    switch (op) {
      case Op4::inverse:
        code = device::ns_inverse(n, a.matrix(b), a.ld, out, x.ld, o, s, &steps, &r);
        break;
      case Op4::sqrt:
        code = device::ns_sqrt(n, a.matrix(b), a.ld, out, x.ld, x2.data ? x2.matrix(b) : nullptr,
                               x2.ld, o, s, &steps, &r);
        break;
      case Op4::root:
        code = device::ns_inverse_root(n, a.matrix(b), a.ld, p, out, x.ld, o, s, &steps, &r);
        break;
      case Op4::polar:
        code = device::ns_polar(a.rows, a.cols, a.matrix(b), a.ld, out, x.ld, o, po, s, &steps, &r);
        break;
    }
    report.info[first + b] = code;
    if (report.iterations) report.iterations[first + b] = steps;
    if (report.residual) report.residual[first + b] = T(r);
  }
};

// ---- the gemm loop: whole-matrix operations as kernels ---------------------------------------

template <class T>
struct ScreenRow {  // row i's share of ||A + eps I||_F^2
  const T* a;
  index_t lda, cols;
  double eps;
  KOKKOS_INLINE_FUNCTION double operator()(index_t i) const {
    return device::ns_detail::screen_row(i, cols, a + i * lda, eps);
  }
};

template <class T>
struct BadDiagonal {
  const T* a;
  index_t lda;
  double eps;
  KOKKOS_INLINE_FUNCTION double operator()(index_t i) const {
    return device::ns_detail::bad_diagonal(a[i * lda + i], eps) ? 1.0 : 0.0;
  }
};

template <class T>
struct AbsSum {  // sum of |A + eps I| along row i (by_rows) or column i
  const T* a;
  index_t lda, n;
  double eps;
  bool by_rows;
  KOKKOS_INLINE_FUNCTION double operator()(index_t i) const {
    double s = 0;
    for (index_t j = 0; j < n; ++j) {
      const double v = by_rows ? double(a[i * lda + j]) : double(a[j * lda + i]);
      s += std::fabs(v + (i == j ? eps : 0.0));
    }
    return s;
  }
};

template <class T>
struct ResidualRow {
  const T* x;
  index_t n;
  KOKKOS_INLINE_FUNCTION double operator()(index_t i) const {
    return device::ns_detail::residual_row(i, n, x);
  }
};

// y(i, j) = alpha [i == j] + beta x(i, j) over rows x cols, x and y with their own leading
// dimensions; x may be transposed (x(i, j) read as x[j * ldx + i]); x null means 0.  With
// `load`, y = T(scale_d (x + eps I)) with the factor and eps in double.  On the host one index
// is a row (a vectorised inner loop, no index division per element); on a GPU one element
// (coalesced).
template <class T>
struct Elementwise {
  const T* x;
  T* y;
  index_t cols, ldx, ldy;
  T alpha, beta;
  bool trans = false;
  bool load = false;
  double scale_d = 0, eps = 0;

  static index_t extent(index_t rows, index_t cols) { return kHostExecution ? rows : rows * cols; }

  KOKKOS_INLINE_FUNCTION T element(index_t i, index_t j) const {
    if (load) return T(scale_d * (double(x[i * ldx + j]) + (i == j ? eps : 0.0)));
    const T xv = x == nullptr ? T(0) : trans ? x[j * ldx + i] : x[i * ldx + j];
    return beta * xv + (i == j ? alpha : T(0));
  }

  KOKKOS_INLINE_FUNCTION void operator()(index_t idx) const {
    if constexpr (!kHostExecution) {
      y[(idx / cols) * ldy + idx % cols] = element(idx / cols, idx % cols);
    } else {
      const index_t i = idx;
      T* yi = y + i * ldy;
      if (load || trans) {
        for (index_t j = 0; j < cols; ++j) yi[j] = element(i, j);
        return;
      }
      if (x == nullptr) {
        for (index_t j = 0; j < cols; ++j) yi[j] = beta * T(0);
      } else {
        const T* xi = x + i * ldx;
        CURVKIT_SIMD
        for (index_t j = 0; j < cols; ++j) yi[j] = beta * xi[j];
      }
      if (i < cols) yi[i] += alpha;
    }
  }
};

template <class T>
struct StoreReport {
  NsReport<T> report;
  index_t at;
  int code, steps;
  double r;
  KOKKOS_INLINE_FUNCTION void operator()(index_t) const {
    report.info[at] = code;
    if (report.iterations) report.iterations[at] = steps;
    if (report.residual) report.residual[at] = T(r);
  }
};

// The engine of ns_detail::*_with (see curvkit/device/newton_schulz.hpp) on all threads.
template <class T>
struct KokkosEngine {
  const Context* ctx;
  ExecSpace space;

  void elementwise(index_t rows, index_t cols, const Elementwise<T>& f) const {
    for_each_index(space, "curvkit::newton_schulz elementwise", Elementwise<T>::extent(rows, cols),
                   f);
  }
  int screen(index_t rows, index_t cols, const T* a, index_t lda, double eps, bool needs_spd,
             double* fro) const {
    const double s =
        reduce_sum(space, "curvkit::newton_schulz screen", rows, ScreenRow<T>{a, lda, cols, eps});
    index_t bad = 0;
    if (needs_spd && std::isfinite(s))
      bad = index_t(
          reduce_sum(space, "curvkit::newton_schulz diagonal", rows, BadDiagonal<T>{a, lda, eps}));
    *fro = std::sqrt(s);
    return device::ns_detail::screen_verdict(s, bad, needs_spd);
  }
  void norms(index_t n, const T* a, index_t lda, double eps, double* norm1, double* norminf) const {
    *norminf =
        reduce_max(space, "curvkit::newton_schulz norms", n, AbsSum<T>{a, lda, n, eps, true});
    *norm1 = reduce_max(space, "curvkit::newton_schulz norms", n, AbsSum<T>{a, lda, n, eps, false});
  }
  void load(index_t rows, index_t cols, const T* a, index_t lda, double scale, double eps,
            T* dst) const {
    Elementwise<T> f{a, dst, cols, lda, cols, T(0), T(0)};
    f.load = true;
    f.scale_d = scale;
    f.eps = eps;
    elementwise(rows, cols, f);
  }
  void transpose(index_t n, T scale, const T* x, T* y) const {
    Elementwise<T> f{x, y, n, n, n, T(0), scale};
    f.trans = true;
    elementwise(n, n, f);
  }
  void identity(index_t n, T alpha, T* y) const {
    elementwise(n, n, Elementwise<T>{nullptr, y, n, n, n, alpha, T(0)});
  }
  void shift(index_t n, T alpha, T beta, const T* x, T* y) const {
    elementwise(n, n, Elementwise<T>{x, y, n, n, n, alpha, beta});
  }
  void product(index_t m, index_t n, index_t k, T alpha, const T* a, bool ta, const T* b, bool tb,
               T beta, T* c) const {
    // Dense operands as stored: op(A) m x k is A (k x m) when transposed.
    const index_t ar = ta ? k : m, ac = ta ? m : k, br = tb ? n : k, bc = tb ? k : n;
    const MatrixBatch<const T> av{a, 1, ar, ac, ac, ar * ac}, bv{b, 1, br, bc, bc, br * bc};
    const MatrixBatch<T> cv{c, 1, m, n, n, m * n};
    // Shapes are consistent by construction, so the only failure left is a kernel error, which
    // Kokkos reports by aborting.
    (void)kokkos::gemm<T>(*ctx, ta ? Op::trans : Op::none, tb ? Op::trans : Op::none, alpha,
                          GroupedBatch<const T>(&av, 1), GroupedBatch<const T>(&bv, 1), beta,
                          GroupedBatch<T>(&cv, 1));
  }
  void syrk(index_t n, index_t depth, T alpha, const T* a, bool ta, T beta, T* c) const {
    const index_t ar = ta ? depth : n, ac = ta ? n : depth;
    const MatrixBatch<const T> av{a, 1, ar, ac, ac, ar * ac};
    const MatrixBatch<T> cv{c, 1, n, n, n, n * n};
    (void)kokkos::syrk<T>(*ctx, ta ? Op::trans : Op::none, alpha, GroupedBatch<const T>(&av, 1),
                          beta, GroupedBatch<T>(&cv, 1), Fill::full);
  }
  double residual(index_t n, const T* x) const {
    const double s = reduce_sum(space, "curvkit::newton_schulz residual", n, ResidualRow<T>{x, n});
    return n > 0 ? std::sqrt(s / double(n)) : 0.0;
  }
  void store(index_t rows, index_t cols, T scale, const T* x, T* y, index_t ldy) const {
    if (y != nullptr) elementwise(rows, cols, Elementwise<T>{x, y, cols, cols, ldy, T(0), scale});
  }
  void fill_nan(index_t rows, index_t cols, T* y, index_t ldy) const {
    // beta NaN times x = 0 is NaN in every element.
    if (y != nullptr)
      elementwise(rows, cols, Elementwise<T>{nullptr, y, cols, cols, ldy, T(NAN), T(NAN)});
  }
};

template <class T>
void run_gemm_loop(const Context& ctx, Op4 op, const MatrixBatch<const T>& a,
                   const MatrixBatch<T>& x, const MatrixBatch<T>& x2, NsReport<T> report,
                   index_t first, const NewtonSchulzOptions& o, const PolarOptions& po, int p) {
  const KokkosEngine<T> e{&ctx, exec_space(ctx)};
  T* buf = static_cast<T*>(ctx.workspace().data);
  for (index_t b = 0; b < a.batch; ++b) {
    T* out = x.data ? x.matrix(b) : nullptr;
    int steps = 0, code = 0;
    double r = 0;
    using namespace device::ns_detail;
    switch (op) {
      case Op4::inverse:
        code = inverse_with(e, a.rows, a.matrix(b), a.ld, out, x.ld, o, buf, &steps, &r);
        break;
      case Op4::sqrt:
        code = sqrt_with(e, a.rows, a.matrix(b), a.ld, out, x.ld, x2.data ? x2.matrix(b) : nullptr,
                         x2.ld, o, buf, &steps, &r);
        break;
      case Op4::root:
        code = inverse_root_with(e, a.rows, a.matrix(b), a.ld, p, out, x.ld, o, buf, &steps, &r);
        break;
      case Op4::polar:
        code = polar_with(e, a.rows, a.cols, a.matrix(b), a.ld, out, x.ld, o, po, buf, &steps, &r);
        break;
    }
    for_each_index(e.space, "curvkit::newton_schulz report", 1,
                   StoreReport<T>{report, first + b, code, steps, r});
  }
}

template <class T>
Status run(const Context& ctx, Op4 op, GroupedBatch<const T> a, GroupedBatch<T> x,
           GroupedBatch<T> x2, NsReport<T> report, const NewtonSchulzOptions& o,
           const PolarOptions& po, int p) {
  const ExecSpace space = exec_space(ctx);
  index_t first = 0;
  for (std::size_t g = 0; g < a.size(); ++g) {
    const MatrixBatch<T> xg = x.empty() ? MatrixBatch<T>{} : x[g];
    const MatrixBatch<T> x2g = x2.empty() ? MatrixBatch<T>{} : x2[g];
    if (takes_gemm_loop(space, a[g])) {
      run_gemm_loop<T>(ctx, op, a[g], xg, x2g, report, first, o, po, p);
    } else {
      const NsItem<T> f{op, a[g], xg, x2g, report, first, o, po, p};
      const index_t elems = op == Op4::polar ? device::ns_polar_scratch<T>(a[g].rows, a[g].cols)
                                             : device::ns_square_scratch<T>(a[g].rows);
      for_each_with_scratch(space, "curvkit::newton_schulz", a[g].batch,
                            sizeof(T) * std::size_t(elems), f);
    }
    first += a[g].batch;
  }
  return Status::success();
}

}  // namespace

template <class T>
std::size_t newton_schulz_workspace_size(const Context& ctx, GroupedBatch<const T> a) {
  const ExecSpace space = exec_space(ctx);
  std::size_t elems = 0;
  for (const auto& g : a)
    if (g.batch > 0 && takes_gemm_loop(space, g)) elems = std::max(elems, loop_elements(g));
  return sizeof(T) * elems;
}

template <class T>
Status newton_schulz_inverse(const Context& ctx, GroupedBatch<const T> a, GroupedBatch<T> x,
                             NsReport<T> r, const NewtonSchulzOptions& o) {
  return run<T>(ctx, Op4::inverse, a, x, {}, r, o, {}, 1);
}

template <class T>
Status newton_schulz_sqrt(const Context& ctx, GroupedBatch<const T> a, GroupedBatch<T> sq,
                          GroupedBatch<T> inv, NsReport<T> r, const NewtonSchulzOptions& o) {
  return run<T>(ctx, Op4::sqrt, a, sq, inv, r, o, {}, 1);
}

template <class T>
Status newton_schulz_inverse_root(const Context& ctx, GroupedBatch<const T> a, int p,
                                  GroupedBatch<T> x, NsReport<T> r, const NewtonSchulzOptions& o) {
  return run<T>(ctx, Op4::root, a, x, {}, r, o, {}, p);
}

template <class T>
Status newton_schulz_polar(const Context& ctx, GroupedBatch<const T> a, GroupedBatch<T> u,
                           NsReport<T> r, const NewtonSchulzOptions& o, const PolarOptions& po) {
  return run<T>(ctx, Op4::polar, a, u, {}, r, o, po, 1);
}

}  // namespace curvkit::kokkos

CURVKIT_INSTANTIATE_NS_BACKEND(kokkos)
