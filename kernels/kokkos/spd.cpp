// Kokkos backend of the SPD family.
//
// Two paths, chosen per group:
//  * lanes (host execution spaces, n <= 64, few right-hand sides): one Kokkos index is a
//    chunk of W matrices processed in lock-step, one per SIMD lane
//    (include/curvkit/device/cholesky_lanes.hpp): the fast path for the huge batches of
//    small blocks in the seeds (MBF's 9 x 9, MBAG's 16..32, TENGraD's up to 128);
//  * per matrix (everything else, and device execution spaces): one index per matrix with
//    the building blocks of include/curvkit/device/cholesky.hpp, which switch to the blocked
//    right-looking factorisation and the vectorised inverse on the host for n >= 96.
// Orders 1..16 are dispatched to compile-time sizes (Fixed<N>) so their loops unroll.
// Functors rather than lambdas: nvcc's extended lambdas cannot live inside the generic
// size dispatch, and functors compile identically on every Kokkos version.
// Grouped batches: one parallel_for per group, all on the same execution-space instance.
#include "compat.hpp"
#include "curvkit/device/cholesky_lanes.hpp"
#include "spd_backends.hpp"
#include "spd_common.hpp"

namespace curvkit::kokkos {
namespace {

using device::Fixed;
using device::ShiftLadder;

// Calls f(size) with size = Fixed<n> for n <= 16 and the runtime n otherwise.
template <class F>
void with_order(index_t n, F&& f) {
  switch (n) {
    case 1:
      return f(Fixed<1>{});
    case 2:
      return f(Fixed<2>{});
    case 3:
      return f(Fixed<3>{});
    case 4:
      return f(Fixed<4>{});
    case 5:
      return f(Fixed<5>{});
    case 6:
      return f(Fixed<6>{});
    case 7:
      return f(Fixed<7>{});
    case 8:
      return f(Fixed<8>{});
    case 9:
      return f(Fixed<9>{});
    case 10:
      return f(Fixed<10>{});
    case 11:
      return f(Fixed<11>{});
    case 12:
      return f(Fixed<12>{});
    case 13:
      return f(Fixed<13>{});
    case 14:
      return f(Fixed<14>{});
    case 15:
      return f(Fixed<15>{});
    case 16:
      return f(Fixed<16>{});
    default:
      return f(n);
  }
}

// The three ops that factor A first.
enum class FactorOp { potrf, posv, potri };

// One matrix per index: factor under the shift ladder (in place), then solve (posv) or invert
// (potri); on failure NaN-fill every output of the matrix.  x is only used by posv.
template <class T, class Size, FactorOp op>
struct PerMatrix {
  MatrixBatch<T> a;
  MatrixBatch<T> x;
  Size n;
  ShiftLadder<T> ladder;
  int* info;
  T* shift_used;
  KOKKOS_INLINE_FUNCTION void operator()(index_t b) const {
    T* m = a.matrix(b);
    T shift = T(0);
    const int code = device::potrf_lower_with_policy(n, m, a.ld, ladder, &shift);
    info[b] = code;
    if (shift_used != nullptr) shift_used[b] = shift;
    if (code != 0) {
      device::fill_nan(n, a.cols, m, a.ld, op != FactorOp::potri);
      if (op == FactorOp::posv) device::fill_nan(x.rows, x.cols, x.matrix(b), x.ld, false);
      return;
    }
    if (op == FactorOp::posv) device::potrs_lower(n, x.cols, m, a.ld, x.matrix(b), x.ld);
    if (op == FactorOp::potri) device::potri_from_factor(n, m, a.ld);
  }
};

template <class T, class Size>
struct Potrs {
  MatrixBatch<const T> l;
  MatrixBatch<T> x;
  Size n;
  int* info;
  KOKKOS_INLINE_FUNCTION void operator()(index_t b) const {
    const T* m = l.matrix(b);
    T* rhs = x.matrix(b);
    const int code = device::check_factor_diagonal(n, m, l.ld);
    info[b] = code;
    if (code != 0) {
      device::fill_nan(x.rows, x.cols, rhs, x.ld, false);
      return;
    }
    device::potrs_lower(n, x.cols, m, l.ld, rhs, x.ld);
  }
};

// ---- SIMD across matrices (host execution spaces, n <= kLanesMaxOrder) ----------------------
// One Kokkos index = W consecutive matrices, gathered into an interleaved lane buffer on the
// stack, factored / solved / inverted in lock-step (device/cholesky_lanes.hpp), scattered
// back.  A lane that fails under the shift policy is redone by the per-matrix path on the
// untouched original in global memory (the lane path writes a matrix back only on success).

inline constexpr index_t kLanesMaxOrder = 64;
inline constexpr index_t kLanesMaxRhs = 4;

// Matrices per chunk: 128 bytes of lanes (four 256-bit vectors per element), except float at
// runtime orders (n > 16), where 64 bytes keeps the 2 x 2 register block of
// lanes::potrf within the 16 vector registers (measured: 1.4x faster at n = 32..64).
template <class T, class Size>
constexpr int lane_width() {
  return std::is_same_v<Size, index_t> && sizeof(T) == 4 ? 16 : 128 / int(sizeof(T));
}

// Gathers the lower triangles of matrices first .. first+active-1 of `v` into lane buffer
// `buf`; idle lanes (the tail of the last chunk) get the identity, which never fails.  Full
// chunks go element by element across the W matrices: contiguous vector stores into the lane
// buffer (strided loads) instead of W scalar stores per element.
template <int W, class T, class V>
void gather_lower(T* buf, const MatrixBatch<V>& v, index_t first, int active, index_t n) {
  if (active == W) {
    const V* base = v.matrix(first);
    for (index_t i = 0; i < n; ++i)
      for (index_t j = 0; j <= i; ++j) {
        T* dst = buf + device::lanes::tri(i, j) * W;
        const V* src = base + i * v.ld + j;
        CURVKIT_SIMD
        for (int w = 0; w < W; ++w) dst[w] = src[w * v.stride];
      }
    return;
  }
  for (int w = 0; w < W; ++w) {
    const V* m = w < active ? v.matrix(first + w) : nullptr;
    for (index_t i = 0; i < n; ++i)
      for (index_t j = 0; j <= i; ++j)
        buf[device::lanes::tri(i, j) * W + w] = m ? m[i * v.ld + j] : T(i == j);
  }
}

// Gathers rows x cols blocks (right-hand sides) into lanes: element (i, c) of lane w at
// dst[(i * cols + c) * W + w]; idle lanes get zeros.
template <int W, class T>
void gather_block(T* dst, const MatrixBatch<T>& v, index_t first, int active, index_t rows,
                  index_t cols) {
  for (index_t i = 0; i < rows; ++i)
    for (index_t c = 0; c < cols; ++c) {
      T* d = dst + (i * cols + c) * W;
      for (int w = 0; w < W; ++w) d[w] = w < active ? v(first + w, i, c) : T(0);
    }
}

// Writes lane w of a gathered block back to matrix b of `v`.
template <int W, class T>
void scatter_block(const MatrixBatch<T>& v, index_t b, const T* src, int w, index_t rows,
                   index_t cols) {
  T* m = v.matrix(b);
  for (index_t i = 0; i < rows; ++i)
    for (index_t c = 0; c < cols; ++c) m[i * v.ld + c] = src[(i * cols + c) * W + w];
}

// Lanes read W matrices element by element, which hardware prefetchers follow poorly; ask
// for the next chunk's memory while this chunk computes.
template <int W, class V>
void prefetch_chunk(const MatrixBatch<V>& v, index_t first) {
#if defined(__GNUC__)
  if (first + W > v.batch) return;
  const char* p = reinterpret_cast<const char*>(v.matrix(first));
  const std::size_t bytes = std::size_t(W * v.stride) * sizeof(V);
  for (std::size_t off = 0; off < bytes; off += 64) __builtin_prefetch(p + off, 1);
#else
  (void)v;
  (void)first;
#endif
}

template <class T, class Size, FactorOp op>
struct LanesKernel {
  static constexpr int W = lane_width<T, Size>();
  MatrixBatch<T> a;
  MatrixBatch<T> x;  // posv only
  Size n;
  ShiftLadder<T> ladder;
  int* info;
  T* shift_used;

  void operator()(index_t chunk) const {
    const index_t first = chunk * W;
    const int active = int(a.batch - first < W ? a.batch - first : W);
    const index_t nn = n;
    const index_t nrhs = op == FactorOp::posv ? x.cols : 0;
    T buf[device::lanes::tri_size(kLanesMaxOrder) * W];
    T inv[kLanesMaxOrder * W];
    T rhs[kLanesMaxOrder * kLanesMaxRhs * W];
    int code[W];
    gather_lower<W>(buf, a, first, active, nn);
    if constexpr (op == FactorOp::posv) gather_block<W>(rhs, x, first, active, nn, nrhs);
    prefetch_chunk<W>(a, first + W);
    if constexpr (op == FactorOp::posv) prefetch_chunk<W>(x, first + W);

    device::lanes::potrf<W>(n, buf, ladder.lambda, inv, code);
    if constexpr (op == FactorOp::posv) device::lanes::potrs<W>(n, nrhs, buf, inv, rhs);
    if constexpr (op == FactorOp::potri) device::lanes::potri<W>(n, buf, inv);

    for (int w = 0; w < active; ++w) {
      const index_t b = first + w;
      T* m = a.matrix(b);
      if (code[w] != 0) {
        finish_failed_lane(b, code[w]);
        continue;
      }
      info[b] = 0;
      if (shift_used) shift_used[b] = T(0);
      for (index_t i = 0; i < nn; ++i)
        for (index_t j = 0; j <= i; ++j) {
          const T v = buf[device::lanes::tri(i, j) * W + w];
          m[i * a.ld + j] = v;
          if constexpr (op == FactorOp::potri) m[j * a.ld + i] = v;
        }
      if constexpr (op == FactorOp::posv) scatter_block<W>(x, b, rhs, w, nn, nrhs);
    }
  }

  // Report policy (or NaN input): record and NaN-fill.  Shift policy: redo this matrix with
  // the per-matrix path, which retries on the still-original A.
  void finish_failed_lane(index_t b, int lane_code) const {
    T* m = a.matrix(b);
    if (lane_code > 0 && ladder.retries > 0) {
      PerMatrix<T, Size, op>{a, x, n, ladder, info, shift_used}(b);
      return;
    }
    info[b] = lane_code;
    if (shift_used) shift_used[b] = device::quiet_nan<T>();
    device::fill_nan(n, a.cols, m, a.ld, op != FactorOp::potri);
    if (op == FactorOp::posv) device::fill_nan(x.rows, x.cols, x.matrix(b), x.ld, false);
  }
};

// potrs on lanes: W factors checked (info from the diagonal) and solved in lock-step.
template <class T, class Size>
struct PotrsLanes {
  static constexpr int W = lane_width<T, Size>();
  MatrixBatch<const T> l;
  MatrixBatch<T> x;
  Size n;
  int* info;

  void operator()(index_t chunk) const {
    const index_t first = chunk * W;
    const int active = int(l.batch - first < W ? l.batch - first : W);
    const index_t nn = n;
    const index_t nrhs = x.cols;
    T buf[device::lanes::tri_size(kLanesMaxOrder) * W];
    T inv[kLanesMaxOrder * W];
    T rhs[kLanesMaxOrder * kLanesMaxRhs * W];
    int code[W];
    gather_lower<W>(buf, l, first, active, nn);
    gather_block<W>(rhs, x, first, active, nn, nrhs);
    for (int w = 0; w < W; ++w) code[w] = info::success;
    for (index_t i = 0; i < nn; ++i)
      for (int w = 0; w < W; ++w) {
        T d = buf[device::lanes::tri(i, i) * W + w];
        const bool finite = device::is_finite(d);
        if (!finite || !(d > T(0))) {
          if (code[w] == info::success)
            code[w] = finite ? info::not_positive(i) : info::non_finite(i);
          d = T(1);
        }
        inv[i * W + w] = T(1) / d;
      }
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"  // buf, inv: filled above for rows < n
#endif
    device::lanes::potrs<W>(n, nrhs, buf, inv, rhs);
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif
    for (int w = 0; w < active; ++w) {
      const index_t b = first + w;
      info[b] = code[w];
      if (code[w] != 0)
        device::fill_nan(x.rows, x.cols, x.matrix(b), x.ld, false);
      else
        scatter_block<W>(x, b, rhs, w, nn, nrhs);
    }
  }
};

// Runs the lane path if it applies (host space, small n, few right-hand sides).
template <class T, FactorOp op, class Size>
bool try_lanes(const ExecSpace& space, const char* label, const MatrixBatch<T>& a,
               const MatrixBatch<T>& x, Size n, const ShiftLadder<T>& ladder, int* info,
               T* shift_used) {
  if constexpr (!kHostExecution) {
    return false;
  } else {
    if (index_t(n) > kLanesMaxOrder || (op == FactorOp::posv && x.cols > kLanesMaxRhs))
      return false;
    constexpr int W = lane_width<T, Size>();
    for_each_index(space, label, (a.batch + W - 1) / W,
                   LanesKernel<T, Size, op>{a, x, n, ladder, info, shift_used});
    return true;
  }
}

template <class T>
T* offset_or_null(T* p, index_t k) {
  return p ? p + k : nullptr;
}

// Every group: the lane path if it applies, else one index per matrix.  `xs` is only read
// for posv (potrf and potri pass `as` again).
template <FactorOp op, class T>
Status run_factor_op(const Context& ctx, GroupedBatch<T> as, GroupedBatch<T> xs, int* info,
                     const SpdOptions& o, T* shift_used) {
  const ExecSpace space = exec_space(ctx);
  index_t k = 0;
  for (std::size_t g = 0; g < as.size(); ++g) {
    const auto& a = as[g];
    const auto& x = xs[g];
    const auto ladder = detail::make_ladder<T>(o, a.rows);
    T* shift = offset_or_null(shift_used, k);
    with_order(a.rows, [&](auto n) {
      if (try_lanes<T, op>(space, "curvkit::spd_lanes", a, x, n, ladder, info + k, shift)) return;
      for_each_index(space, "curvkit::spd", a.batch,
                     PerMatrix<T, decltype(n), op>{a, x, n, ladder, info + k, shift});
    });
    k += a.batch;
  }
  return Status::success();
}

}  // namespace

template <class T>
Status potrf(const Context& ctx, GroupedBatch<T> as, int* info, const SpdOptions& o,
             T* shift_used) {
  return run_factor_op<FactorOp::potrf>(ctx, as, as, info, o, shift_used);
}

template <class T>
Status posv(const Context& ctx, GroupedBatch<T> as, GroupedBatch<T> xs, int* info,
            const SpdOptions& o, T* shift_used) {
  return run_factor_op<FactorOp::posv>(ctx, as, xs, info, o, shift_used);
}

template <class T>
Status potri(const Context& ctx, GroupedBatch<T> as, int* info, const SpdOptions& o,
             T* shift_used) {
  return run_factor_op<FactorOp::potri>(ctx, as, as, info, o, shift_used);
}

template <class T>
Status potrs(const Context& ctx, GroupedBatch<const T> ls, GroupedBatch<T> xs, int* info) {
  const ExecSpace space = exec_space(ctx);
  index_t k = 0;
  for (std::size_t g = 0; g < ls.size(); ++g) {
    const auto& l = ls[g];
    const auto& x = xs[g];
    with_order(l.rows, [&](auto n) {
      if constexpr (kHostExecution) {
        if (l.rows <= kLanesMaxOrder && x.cols <= kLanesMaxRhs) {
          constexpr int W = lane_width<T, decltype(n)>();
          for_each_index(space, "curvkit::potrs_lanes", (l.batch + W - 1) / W,
                         PotrsLanes<T, decltype(n)>{l, x, n, info + k});
          return;
        }
      }
      for_each_index(space, "curvkit::potrs", l.batch, Potrs<T, decltype(n)>{l, x, n, info + k});
    });
    k += l.batch;
  }
  return Status::success();
}

}  // namespace curvkit::kokkos

CURVKIT_INSTANTIATE_SPD_BACKEND(kokkos, float)
CURVKIT_INSTANTIATE_SPD_BACKEND(kokkos, double)
