// Kokkos backend of the Kronecker family (gemm.hpp, kron.hpp).
//
// Every product is a GemmJob: a two-level batch of strided products C = alpha sum_t op(A_t)
// op(B_t) + beta C, cut into work items of one block of one C (sized by choose_blocks).  A work
// item runs device::gemm_block (packed, register-tiled on the host), or device::gemm_small
// when n, k <= 32, with its packing buffer in Kokkos team scratch, so no Context workspace is
// needed.  GEMM and SYRK are jobs of one term; a mode product is a job over (tensor, slab), or
// over the inner index when slabs are thinner than one micro-kernel panel, with no permutation
// of the tensor; a mode Gram is a SYRK job whose terms are the slabs of the unfolding (or its
// columns, whichever gives the longer inner dimension).  kron_apply's inverse form fuses its two
// products per block of rows (the intermediate block lives in scratch); the Cholesky form is a
// blocked triangular solve over blocks of columns, then one over blocks of rows, their
// off-diagonal updates through gemm_block.  On a GPU execution space each work item is one
// thread: correct, but the native CUDA backend is the fast path there.  Grouped calls launch
// once per group, except kfac_pi_damping: one launch per kPiGroups groups, a work item per pair
// of factors (two diagonal sums in double).
#include <algorithm>
#include <cmath>

#include "compat.hpp"
#include "curvkit/device/cholesky.hpp"
#include "curvkit/device/gemm.hpp"
#include "kron_backends.hpp"

namespace curvkit::kokkos {
namespace {

using device::Strided;

constexpr index_t kMaxBlockRows = 384;  // rows per work item, a multiple of device::kGemmMr
constexpr index_t kMinBlockRows = 96;
constexpr index_t kSolveBlock = 64;  // diagonal block of the blocked triangular solves

KOKKOS_INLINE_FUNCTION index_t imin(index_t a, index_t b) {
  return a < b ? a : b;
}
index_t blocks(index_t n, index_t b) {
  return (n + b - 1) / b;
}

// Block of `extent` per work item: as large as `largest` (packing amortised over the most
// work), halved down to `smallest` while there are fewer than four work items per thread.
// `items_per_block` is the number of work items each block makes.
index_t block_size(index_t extent, index_t largest, index_t smallest, index_t items_per_block,
                   index_t concurrency) {
  index_t b = largest;
  while (b > smallest && extent > smallest && items_per_block * blocks(extent, b) < 4 * concurrency)
    b /= 2;
  return b;
}

// Rows of C per work item: up to kMaxBlockRows, so that each packed block of B serves many row
// tiles.
index_t rows_per_item(index_t rows, index_t items_per_row_block, index_t concurrency) {
  return block_size(rows, kMaxBlockRows, kMinBlockRows, items_per_row_block, concurrency);
}

// op(X) of a row-major matrix with leading dimension ld, and op(X)^T.
template <class T>
Strided<const T> operand(const T* p, index_t ld, Op op) {
  return op == Op::none ? Strided<const T>{p, ld, 1} : Strided<const T>{p, 1, ld};
}
template <class T>
Strided<const T> operand_t(const T* p, index_t ld, Op op) {
  return op == Op::none ? Strided<const T>{p, 1, ld} : Strided<const T>{p, ld, 1};
}

template <class T>
struct GemmJob {
  index_t m = 0, n = 0, k = 0;
  T alpha = 1, beta = 0;
  Strided<const T> a{}, b{};
  index_t a_s0 = 0, a_s1 = 0, a_st = 0;  // offsets per outer / inner batch index and per term
  index_t b_s0 = 0, b_s1 = 0, b_st = 0;
  T* c = nullptr;
  index_t ldc = 0, c_cs = 1, c_s0 = 0, c_s1 = 0;
  index_t n0 = 0, n1 = 1;  // batch = n0 x n1
  index_t terms = 1;
  bool lower = false, mirror = false;
  index_t block_rows = 0, block_cols = 0;  // one work item: a block of C, chosen by run()
  index_t row_blocks = 0, col_blocks = 0;

  // Products whose packed B fits kSmall^2 elements (every m, n, k <= kSmall does) pack into a
  // stack buffer: no team, no scratch.
  static constexpr index_t kSmall = 32;
  KOKKOS_INLINE_FUNCTION void operator()(index_t w) const {
    T pack[kSmall * kSmall];
    (*this)(w, pack);
  }

  KOKKOS_INLINE_FUNCTION void operator()(index_t w, void* scratch) const {
    const index_t per = row_blocks * col_blocks;
    const index_t batch = w / per, r = w % per;
    const index_t i0 = (r / col_blocks) * block_rows, j0 = (r % col_blocks) * block_cols;
    const index_t mb = imin(block_rows, m - i0), nb = imin(block_cols, n - j0);
    if (lower && j0 > i0 + mb - 1) return;  // entirely above the diagonal
    const index_t o = batch / n1, in = batch % n1;
    const Strided<T> cb{c + o * c_s0 + in * c_s1, ldc, c_cs};
    T* pack = static_cast<T*>(scratch);
    const index_t nt = terms > 0 ? terms : 1, kk = terms > 0 ? k : 0;
    // Narrow, shallow products waste most of the micro-kernel's tile and packing: the row
    // kernel wins.
    const bool small = nb <= device::kGemmSmall && kk <= device::kGemmSmall;
    for (index_t t = 0; t < nt; ++t) {
      Strided<const T> at{a.p + o * a_s0 + in * a_s1 + t * a_st, a.rs, a.cs};
      Strided<const T> bt{b.p + o * b_s0 + in * b_s1 + t * b_st, b.rs, b.cs};
      const T bt_beta = t == 0 ? beta : T(1);
      if (small)
        device::gemm_small(mb, nb, kk, alpha, at.at(i0, 0), bt.at(0, j0), bt_beta, cb.at(i0, j0),
                           pack, lower, i0 - j0);
      else
        device::gemm_block(mb, nb, kk, alpha, at.at(i0, 0), bt.at(0, j0), bt_beta, cb.at(i0, j0),
                           pack, lower, i0 - j0);
    }
    if (mirror) device::mirror_lower_block(cb, i0, i0 + mb, j0, j0 + nb);
  }

  // Work items as large as the packing blocks (each packed B block serves many row tiles, each
  // packed A tile a whole kGemmNc-wide B block), split while there are fewer than four per
  // thread: rows first (rows_per_item), then columns, down to 256.  On one thread a product is one
  // work item as wide as a packed B block: every extra row block packs B again, every extra column
  // block packs A again, and there is nothing to balance (with 192 x 256 items, 16% of a
  // 1024^2 Newton-Schulz iteration was gemm_block's own code, its A packing, in perf).
  void choose_blocks(index_t concurrency) {
    if (concurrency <= 1) {
      block_rows = m;
      block_cols = device::kGemmNc<T>;
    } else {
      block_rows = rows_per_item(m, n0 * n1 * blocks(n, device::kGemmNc<T>), concurrency);
      block_cols =
          block_size(n, device::kGemmNc<T>, 256, n0 * n1 * blocks(m, block_rows), concurrency);
    }
    row_blocks = blocks(m, block_rows);
    col_blocks = blocks(n, block_cols);
  }

  void run(const Context& ctx, const char* label) {
    if (m <= 0 || n <= 0 || n0 * n1 <= 0) return;
    const ExecSpace space = exec_space(ctx);
    choose_blocks(index_t(space.concurrency()));
    const index_t pack = device::gemm_pack_elements<T>(imin(n, block_cols), k);
    if (pack <= kSmall * kSmall) {
      for_each_index(space, label, n0 * n1 * row_blocks * col_blocks, *this);
      return;
    }
    const std::size_t bytes = sizeof(T) * static_cast<std::size_t>(pack);
    for_each_with_scratch(space, label, n0 * n1 * row_blocks * col_blocks, bytes, *this);
  }
};

// out rows [i0, i0+mb) = alpha (Gf rows) grad Af, the intermediate block in scratch.
template <class T>
struct KronInverse {
  MatrixBatch<const T> g, a, x;
  MatrixBatch<T> out;
  T alpha;
  index_t block_rows, row_blocks;
  index_t pack_elems;
  KOKKOS_INLINE_FUNCTION void operator()(index_t w, void* scratch) const {
    const index_t b = w / row_blocks, i0 = (w % row_blocks) * block_rows;
    const index_t d_out = x.rows, d_in = x.cols, mb = imin(block_rows, d_out - i0);
    T* pack = static_cast<T*>(scratch);
    T* tmp = pack + pack_elems;
    const T* gb = g.matrix(g.batch == 1 ? 0 : b);
    const T* ab = a.matrix(a.batch == 1 ? 0 : b);
    device::gemm_block(mb, d_in, d_out, T(1), Strided<const T>{gb + i0 * g.ld, g.ld, 1},
                       Strided<const T>{x.matrix(b), x.ld, 1}, T(0), Strided<T>{tmp, d_in, 1},
                       pack);
    device::gemm_block(mb, d_in, d_in, alpha, Strided<const T>{tmp, d_in, 1},
                       Strided<const T>{ab, a.ld, 1}, T(0),
                       Strided<T>{out.matrix(b) + i0 * out.ld, out.ld, 1}, pack);
  }
};

// The Cholesky form's triangular solves, blocked: kSolveBlock x kSolveBlock diagonal blocks by
// substitution, everything off the diagonal as one gemm_block update per block step
// (right-looking, so each solved block is packed once and updates all that remains).

// Z (n x nb, row stride ldz) <- L^-T L^-1 Z, L the lower triangle of l (n x n, row stride ld).
template <class T>
KOKKOS_INLINE_FUNCTION void solve_left(index_t n, index_t nb, const T* l, index_t ld, T* z,
                                       index_t ldz, T* pack) {
  for (index_t i0 = 0; i0 < n; i0 += kSolveBlock) {  // L W = Z, top block first
    const index_t bs = imin(kSolveBlock, n - i0);
    for (index_t i = i0; i < i0 + bs; ++i) {
      T* zi = z + i * ldz;
      for (index_t q = i0; q < i; ++q) {
        const T lq = l[i * ld + q];
        const T* zq = z + q * ldz;
        CURVKIT_SIMD
        for (index_t j = 0; j < nb; ++j) zi[j] -= lq * zq[j];
      }
      const T inv = T(1) / l[i * ld + i];
      CURVKIT_SIMD
      for (index_t j = 0; j < nb; ++j) zi[j] *= inv;
    }
    if (i0 + bs < n)  // Z(below) -= L(below, block) Z(block)
      device::gemm_block(n - i0 - bs, nb, bs, T(-1),
                         Strided<const T>{l + (i0 + bs) * ld + i0, ld, 1},
                         Strided<const T>{z + i0 * ldz, ldz, 1}, T(1),
                         Strided<T>{z + (i0 + bs) * ldz, ldz, 1}, pack);
  }
  for (index_t i0 = (n - 1) / kSolveBlock * kSolveBlock; i0 >= 0; i0 -= kSolveBlock) {  // L^T Z = W
    const index_t bs = imin(kSolveBlock, n - i0);
    for (index_t i = i0 + bs - 1; i >= i0; --i) {
      T* zi = z + i * ldz;
      const T inv = T(1) / l[i * ld + i];
      CURVKIT_SIMD
      for (index_t j = 0; j < nb; ++j) zi[j] *= inv;
      for (index_t q = i0; q < i; ++q) {
        const T lq = l[i * ld + q];
        T* zq = z + q * ldz;
        CURVKIT_SIMD
        for (index_t j = 0; j < nb; ++j) zq[j] -= lq * zi[j];
      }
    }
    if (i0 > 0)  // Z(above) -= L(block, above)^T Z(block)
      device::gemm_block(i0, nb, bs, T(-1), Strided<const T>{l + i0 * ld, 1, ld},
                         Strided<const T>{z + i0 * ldz, ldz, 1}, T(1), Strided<T>{z, ldz, 1}, pack);
  }
}

// Z (rows x n, row stride ldz) <- Z L^-T L^-1, L the lower triangle of l (n x n, row stride ld).
template <class T>
KOKKOS_INLINE_FUNCTION void solve_right(index_t rows, index_t n, const T* l, index_t ld, T* z,
                                        index_t ldz, T* pack) {
  for (index_t j0 = 0; j0 < n; j0 += kSolveBlock) {  // V L^T = Z, left block first
    const index_t bs = imin(kSolveBlock, n - j0);
    for (index_t r = 0; r < rows; ++r) {
      T* zr = z + r * ldz;
      for (index_t j = j0; j < j0 + bs; ++j) {  // dot form along the contiguous row of L
        const T* lj = l + j * ld;
        T s = zr[j];
        CURVKIT_SIMD_REDUCTION(s)
        for (index_t q = j0; q < j; ++q) s -= lj[q] * zr[q];
        zr[j] = s / lj[j];
      }
    }
    if (j0 + bs < n)  // Z(:, right) -= V(:, block) L(right, block)^T
      device::gemm_block(rows, n - j0 - bs, bs, T(-1), Strided<const T>{z + j0, ldz, 1},
                         Strided<const T>{l + (j0 + bs) * ld + j0, 1, ld}, T(1),
                         Strided<T>{z + j0 + bs, ldz, 1}, pack);
  }
  for (index_t j0 = (n - 1) / kSolveBlock * kSolveBlock; j0 >= 0; j0 -= kSolveBlock) {  // Y L = V
    const index_t bs = imin(kSolveBlock, n - j0);
    for (index_t r = 0; r < rows; ++r) {
      T* zr = z + r * ldz;
      for (index_t j = j0 + bs - 1; j >= j0; --j) {  // axpy form along the row of L
        const T* lj = l + j * ld;
        const T yj = zr[j] / lj[j];
        zr[j] = yj;
        CURVKIT_SIMD
        for (index_t q = j0; q < j; ++q) zr[q] -= lj[q] * yj;
      }
    }
    if (j0 > 0)  // V(:, left) -= Y(:, block) L(block, left)
      device::gemm_block(rows, j0, bs, T(-1), Strided<const T>{z + j0, ldz, 1},
                         Strided<const T>{l + j0 * ld, ld, 1}, T(1), Strided<T>{z, ldz, 1}, pack);
  }
}

// out[:, cols] = G^-1 grad[:, cols] for one block of columns (G = L L^T, L in g's lower triangle).
template <class T>
struct KronLeftSolve {
  MatrixBatch<const T> g, x;
  MatrixBatch<T> out;
  index_t block_cols, col_blocks;
  KOKKOS_INLINE_FUNCTION void operator()(index_t w, void* scratch) const {
    const index_t b = w / col_blocks, j0 = (w % col_blocks) * block_cols;
    const index_t n = x.rows, nb = imin(block_cols, x.cols - j0);
    const T* xb = x.matrix(b) + j0;
    T* z = out.matrix(b) + j0;
    for (index_t i = 0; i < n; ++i) {
      CURVKIT_SIMD
      for (index_t j = 0; j < nb; ++j) z[i * out.ld + j] = xb[i * x.ld + j];
    }
    solve_left(n, nb, g.matrix(g.batch == 1 ? 0 : b), g.ld, z, out.ld, static_cast<T*>(scratch));
  }
};

// out[rows, :] = alpha out[rows, :] A^-1 for one block of rows (A = L L^T, L in a's lower
// triangle), in place.
template <class T>
struct KronRightSolve {
  MatrixBatch<const T> a;
  MatrixBatch<T> out;
  T alpha;
  index_t block_rows, row_blocks;
  KOKKOS_INLINE_FUNCTION void operator()(index_t w, void* scratch) const {
    const index_t b = w / row_blocks, i0 = (w % row_blocks) * block_rows;
    const index_t rows = imin(block_rows, out.rows - i0), n = out.cols;
    T* z = out.matrix(b) + i0 * out.ld;
    solve_right(rows, n, a.matrix(a.batch == 1 ? 0 : b), a.ld, z, out.ld, static_cast<T*>(scratch));
    for (index_t r = 0; r < rows; ++r) {
      CURVKIT_SIMD
      for (index_t j = 0; j < n; ++j) z[r * out.ld + j] *= alpha;
    }
  }
};

template <class T>
struct TntNormalize {
  MatrixBatch<T> s[kMaxTensorOrder];
  int order;
  int* info;
  KOKKOS_INLINE_FUNCTION void operator()(index_t b) const {
    double mean_trace = 0, prod = 1;
    bool finite = true;
    for (int i = 0; i < order; ++i) {
      double t = 0;
      for (index_t d = 0; d < s[i].rows; ++d) t += double(s[i](b, d, d));
      finite = finite && t - t == 0;  // false for NaN and +-Inf
      mean_trace += t / order;
      prod *= double(s[i].rows);
    }
    info[b] = !finite ? -1 : (mean_trace > 0 ? 0 : 1);
    if (info[b] == 1) return;
    const double c0 = finite ? std::pow(mean_trace / prod, 1.0 / order) : 0.0;
    for (int i = 0; i < order; ++i) {
      const T f = finite ? T(1.0 / (std::pow(c0, double(order - 1)) * (prod / s[i].rows)))
                         : device::quiet_nan<T>();
      for (index_t r = 0; r < s[i].rows; ++r) {
        T* row = s[i].matrix(b) + r * s[i].ld;
        for (index_t c = 0; c < s[i].cols; ++c) row[c] = finite ? row[c] * f : f;
      }
    }
  }
};

// kfac_pi_damping over up to kPiGroups groups: work item i is pair i of the chunk, pair
// first[l] + b being matrix b of group l; the outputs start at the chunk's `out` offset.
constexpr int kPiGroups = 32;

template <class T>
struct PiDamping {
  MatrixBatch<const T> a[kPiGroups], g[kPiGroups];
  index_t first[kPiGroups + 1];
  int groups;
  double root_lambda;
  T *shift_a, *shift_g;
  int* info;
  KOKKOS_INLINE_FUNCTION static double mean_diagonal(const MatrixBatch<const T>& f, index_t b) {
    double t = 0;
    for (index_t i = 0; i < f.rows; ++i) t += double(f(b, i, i));
    return f.rows == 0 ? t : t / double(f.rows);
  }
  KOKKOS_INLINE_FUNCTION void operator()(index_t i) const {
    int l = 0;
    while (i >= first[l + 1]) ++l;
    const index_t b = i - first[l];
    const double t_a = mean_diagonal(a[l], b), t_g = mean_diagonal(g[l], b);
    if (!(t_a - t_a == 0) || !(t_g - t_g == 0)) {  // NaN or +-Inf
      info[i] = -1;
      shift_a[i] = shift_g[i] = device::quiet_nan<T>();
      return;
    }
    const bool ok = t_a > 0 && t_g > 0;
    const double pi = ok ? std::sqrt(t_a / t_g) : 1.0;
    info[i] = ok ? 0 : 1;
    shift_a[i] = T(pi * root_lambda);
    shift_g[i] = T(root_lambda / pi);
  }
};

template <class T>
index_t batch_stride(const MatrixBatch<T>& v) {
  return v.batch == 1 ? 0 : v.stride;
}

}  // namespace

template <class T>
Status gemm(const Context& ctx, Op op_a, Op op_b, T alpha, GroupedBatch<const T> a,
            GroupedBatch<const T> b, T beta, GroupedBatch<T> c) {
  for (std::size_t g = 0; g < c.size(); ++g) {
    GemmJob<T> job;
    job.m = c[g].rows;
    job.n = c[g].cols;
    job.k = op_a == Op::none ? a[g].cols : a[g].rows;
    job.alpha = alpha;
    job.beta = beta;
    job.a = operand(a[g].data, a[g].ld, op_a);
    job.b = operand(b[g].data, b[g].ld, op_b);
    job.a_s0 = batch_stride(a[g]);
    job.b_s0 = batch_stride(b[g]);
    job.c = c[g].data;
    job.ldc = c[g].ld;
    job.c_s0 = c[g].stride;
    job.n0 = c[g].batch;
    job.run(ctx, "curvkit::gemm");
  }
  return Status::success();
}

template <class T>
Status syrk(const Context& ctx, Op op_a, T alpha, GroupedBatch<const T> a, T beta,
            GroupedBatch<T> c, Fill fill) {
  for (std::size_t g = 0; g < c.size(); ++g) {
    GemmJob<T> job;
    job.m = job.n = c[g].rows;
    job.k = op_a == Op::none ? a[g].cols : a[g].rows;
    job.alpha = alpha;
    job.beta = beta;
    job.a = operand(a[g].data, a[g].ld, op_a);
    job.b = operand_t(a[g].data, a[g].ld, op_a);
    job.a_s0 = job.b_s0 = batch_stride(a[g]);
    job.c = c[g].data;
    job.ldc = c[g].ld;
    job.c_s0 = c[g].stride;
    job.n0 = c[g].batch;
    job.lower = true;
    job.mirror = fill == Fill::full;
    job.run(ctx, "curvkit::syrk");
  }
  return Status::success();
}

template <class T>
Status mode_product(const Context& ctx, TensorBatch<const T> x, int mode, MatrixBatch<const T> u,
                    TensorBatch<T> y, Op op_u) {
  const index_t d = x.dims[mode], dp = y.dims[mode];
  const index_t outer = x.outer(mode), inner = x.inner(mode);
  GemmJob<T> job;
  job.k = d;
  job.c = y.data;
  job.c_s0 = y.stride;
  job.n0 = x.batch;
  if (inner < device::kGemmNr<T>) {
    // Thin slabs (fewer columns than one micro-kernel panel): for each inner index r,
    // Y(:, :, r) (outer x d') = X(:, :, r) (outer x d) op(U)^T, rows and columns strided.  The
    // shared U is the packed operand and the tall outer dimension fills the row tiles.
    job.m = outer;
    job.n = dp;
    job.a = {x.data, d * inner, inner};
    job.a_s0 = x.stride;
    job.a_s1 = 1;
    job.b = operand_t(u.data, u.ld, op_u);
    job.b_s0 = batch_stride(u);
    job.ldc = dp * inner;
    job.c_cs = inner;
    job.c_s1 = 1;
    job.n1 = inner;
  } else {  // per slab: Y_l (d' x inner) = op(U) X_l (d x inner)
    job.m = dp;
    job.n = inner;
    job.a = operand(u.data, u.ld, op_u);
    job.a_s0 = batch_stride(u);
    job.b = {x.data, inner, 1};
    job.b_s0 = x.stride;
    job.b_s1 = d * inner;
    job.ldc = inner;
    job.c_s1 = dp * inner;
    job.n1 = outer;
  }
  job.run(ctx, "curvkit::mode_product");
  return Status::success();
}

template <class T>
Status mode_gram(const Context& ctx, TensorBatch<const T> x, std::span<const MatrixBatch<T>> grams,
                 const ModeGramOptions& o) {
  for (int k = 0; k < x.order; ++k) {
    const MatrixBatch<T>& s = grams[static_cast<std::size_t>(k)];
    if (s.data == nullptr) continue;
    const index_t d = x.dims[k], outer = x.outer(k), inner = x.inner(k);
    GemmJob<T> job;
    job.m = job.n = d;
    job.alpha = T((1.0 - o.beta) * o.scale);
    job.beta = T(o.beta);
    job.a_s0 = job.b_s0 = x.stride;
    if (inner >= outer) {  // sum over slabs l of X_l X_l^T, inner dimension `inner`
      job.k = inner;
      job.terms = outer;
      job.a = {x.data, inner, 1};
      job.b = {x.data, 1, inner};
      job.a_st = job.b_st = d * inner;
    } else {  // sum over columns r of A_r A_r^T, A_r(i, l) = X[l, i, r], inner dimension `outer`
      job.k = outer;
      job.terms = inner;
      job.a = {x.data, inner, d * inner};
      job.b = {x.data, d * inner, inner};
      job.a_st = job.b_st = 1;
    }
    job.c = s.data;
    job.ldc = s.ld;
    job.c_s0 = s.stride;
    job.n0 = x.batch;
    job.lower = true;
    job.mirror = o.fill == Fill::full;
    job.run(ctx, "curvkit::mode_gram");
  }
  return Status::success();
}

template <class T>
Status tnt_normalize(const Context& ctx, std::span<const MatrixBatch<T>> grams, int* info) {
  TntNormalize<T> f{};
  f.order = static_cast<int>(grams.size());
  for (int i = 0; i < f.order; ++i) f.s[i] = grams[static_cast<std::size_t>(i)];
  f.info = info;
  for_each_index(exec_space(ctx), "curvkit::tnt_normalize", grams[0].batch, f);
  return Status::success();
}

template <class T>
Status kfac_pi_damping(const Context& ctx, GroupedBatch<const T> a_factors,
                       GroupedBatch<const T> g_factors, double lambda, T* shift_a, T* shift_g,
                       int* info) {
  const ExecSpace space = exec_space(ctx);
  index_t out = 0;
  for (std::size_t g0 = 0; g0 < a_factors.size(); g0 += kPiGroups) {
    PiDamping<T> f{};
    f.groups = int(std::min<std::size_t>(kPiGroups, a_factors.size() - g0));
    f.root_lambda = std::sqrt(lambda);
    f.first[0] = 0;
    for (int l = 0; l < f.groups; ++l) {
      f.a[l] = a_factors[g0 + std::size_t(l)];
      f.g[l] = g_factors[g0 + std::size_t(l)];
      f.first[l + 1] = f.first[l] + f.a[l].batch;
    }
    f.shift_a = shift_a + out;
    f.shift_g = shift_g + out;
    f.info = info + out;
    for_each_index(space, "curvkit::kfac_pi_damping", f.first[f.groups], f);
    out += f.first[f.groups];
  }
  return Status::success();
}

template <class T>
Status kron_apply(const Context& ctx, GroupedBatch<const T> g_factor,
                  GroupedBatch<const T> a_factor, GroupedBatch<const T> grad, GroupedBatch<T> out,
                  const KronApplyOptions& o) {
  const ExecSpace space = exec_space(ctx);
  for (std::size_t l = 0; l < grad.size(); ++l) {
    const index_t batch = grad[l].batch, d_out = grad[l].rows, d_in = grad[l].cols;
    if (batch == 0 || d_out == 0 || d_in == 0) continue;
    if (o.form == KronFactor::inverse) {
      const index_t rows = rows_per_item(d_out, batch, index_t(space.concurrency()));
      const index_t rb = blocks(d_out, rows);
      const index_t pack = std::max(device::gemm_pack_elements<T>(d_in, d_out),
                                    device::gemm_pack_elements<T>(d_in, d_in));
      KronInverse<T> f{g_factor[l], a_factor[l], grad[l], out[l], T(o.alpha), rows, rb, pack};
      const std::size_t bytes = sizeof(T) * static_cast<std::size_t>(pack + rows * d_in);
      for_each_with_scratch(space, "curvkit::kron_apply", batch * rb, bytes, f);
    } else {
      // Left pass over blocks of columns (as wide as a packed B block, fewer when threads
      // need work), right pass over blocks of rows.
      const index_t conc = index_t(space.concurrency());
      const index_t cols = block_size(d_in, device::kGemmNc<T>, kSolveBlock, batch, conc);
      const index_t cb = blocks(d_in, cols);
      const std::size_t left_bytes =
          sizeof(T) * static_cast<std::size_t>(device::gemm_pack_elements<T>(cols, kSolveBlock));
      for_each_with_scratch(space, "curvkit::kron_apply_left", batch * cb, left_bytes,
                            KronLeftSolve<T>{g_factor[l], grad[l], out[l], cols, cb});
      const index_t rows = rows_per_item(d_out, batch, conc);
      const index_t rb = blocks(d_out, rows);
      const std::size_t right_bytes =
          sizeof(T) * static_cast<std::size_t>(device::gemm_pack_elements<T>(d_in, kSolveBlock));
      for_each_with_scratch(space, "curvkit::kron_apply_right", batch * rb, right_bytes,
                            KronRightSolve<T>{a_factor[l], out[l], T(o.alpha), rows, rb});
    }
  }
  return Status::success();
}

}  // namespace curvkit::kokkos

CURVKIT_INSTANTIATE_KRON_BACKEND(kokkos)
