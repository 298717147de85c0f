// CUDA backend of the batched SPD family (contract: include/curvkit/spd.hpp).
//
// For the orders this library targets the ops are memory-bound on an H100
// (research/anchors-performance.md §1): what matters is moving each matrix on chip once with
// coalesced accesses and keeping the dependent chain of a factorisation short.  Paths by the
// order n of a group:
//
//   n <= 8     thread_kernel: one thread per matrix.  A block stages the lower triangles of
//              128 matrices through shared memory (consecutive threads read consecutive
//              elements); each thread runs the device/ building blocks at a compile-time order
//              NM = 1, 2, 4 or 8, the matrix padded to NM with an identity block.
//   n <= 32    seg_kernel: a segment of G = 16 or 32 lanes per matrix (2 or 1 per warp).  Rows
//              are staged through shared memory; lane i keeps row i in registers and runs a
//              right-looking Cholesky whose pivot column is broadcast through shared memory
//              (one __syncwarp and a few 16-byte loads per pivot).
//   n <= cap   block_kernel: one thread block per matrix, the lower triangle resident in shared
//              memory as 32 x 32 tiles for the whole op (cap = 288 for float and 192 for double
//              with the H100's 227 KB).  Right-looking blocked Cholesky in which warp 0 factors
//              the next diagonal tile as soon as its last update is done (lookahead) while the
//              other warps update the rest; solves invert the diagonal tiles, so a triangular
//              solve is 2 n / 32 matrix-vector steps instead of 2 n dependent ones.
//   larger n   p4_* kernels: right-looking blocked factorisation in global memory with one launch
//              per step and kind of tile operation (32 x 32 tiles staged in a warp's shared
//              memory), so that a few large matrices still fill the GPU.  The shift policy
//              retries (rare) in one block per failed matrix after rebuilding A from the partial
//              factor; potri uses the output's strict upper triangle as scratch.
//
// Grouped batches: one launch (sequence) per group, all on the Context's stream.  Nothing here
// synchronises the host or allocates memory.
#include <cuda_runtime.h>

#include <algorithm>
#include <climits>
#include <cstddef>
#include <string>

#include "checks.hpp"
#include "curvkit/device/cholesky.hpp"
#include "host_common.cuh"
#include "spd_backends.hpp"
#include "spd_common.hpp"

namespace curvkit::cuda {
namespace {

// ---- device code ------------------------------------------------------------------------

enum class Op { potrf, potrs, posv, potri };

constexpr unsigned kFull = 0xffffffffu;
constexpr int kTile = 32;  // tile order of the block and global paths: one warp per tile

template <class T>
constexpr int kVec = 16 / int(sizeof(T));  // elements per 16-byte shared-memory access
// Row stride of a 32-wide tile: rows stay 16-byte aligned and an odd number of 16-byte units
// apart, so 8 lanes reading 16 bytes each from 8 consecutive rows touch all 32 banks once.
template <class T>
constexpr int kLd = kTile + kVec<T>;

// One group, as the kernels see it.
template <class T>
struct Job {
  T* a;  // A, or L for potrs (which never writes it)
  index_t lda, sa;
  T* b;  // right-hand sides (posv, potrs)
  index_t ldb, sb, nrhs;
  index_t batch;
  int n;
  int* info;  // this group's slice of the flat per-matrix outputs
  T* shift;   // may be null
  device::ShiftLadder<T> ladder;
};

template <class T>
struct Vec16;
template <>
struct Vec16<float> {
  using type = float4;
};
template <>
struct Vec16<double> {
  using type = double2;
};

template <class T>
__device__ __forceinline__ void ld16(const T* p, T* v) {
  const auto x = *reinterpret_cast<const typename Vec16<T>::type*>(p);
  if constexpr (sizeof(T) == 4) {
    v[0] = x.x, v[1] = x.y, v[2] = x.z, v[3] = x.w;
  } else {
    v[0] = x.x, v[1] = x.y;
  }
}

template <class T>
__device__ __forceinline__ void st16(T* p, const T* v) {
  typename Vec16<T>::type x;
  if constexpr (sizeof(T) == 4) {
    x.x = v[0], x.y = v[1], x.z = v[2], x.w = v[3];
  } else {
    x.x = v[0], x.y = v[1];
  }
  *reinterpret_cast<typename Vec16<T>::type*>(p) = x;
}

template <class T>
__device__ __forceinline__ T nan_value() {
  return device::quiet_nan<T>();
}

// 1 / sqrt(x) as one approximation (float: a single MUFU instruction, 2 ulp; double: 1 ulp)
// instead of an IEEE square root and a division on the critical path of every pivot.
template <class T>
__device__ __forceinline__ T rsqrt_of(T x) {
  if constexpr (sizeof(T) == 4)
    return rsqrtf(x);
  else
    return rsqrt(x);
}

// info code of pivot k (0-based) with value d, as the device/ routines and LAPACK define it.
template <class T>
__device__ __forceinline__ int pivot_code(T d, int k) {
  if (!device::is_finite(d)) return info::non_finite(k);
  return d > T(0) ? 0 : info::not_positive(k);
}

// A tile-local info code moved to global pivot numbering.
__device__ __forceinline__ int offset_code(int code, int base) {
  return code > 0 ? code + base : (code < 0 ? code - base : 0);
}

// Row i of entry t = i (i + 1) / 2 + j (j <= i) of a row-wise enumeration of a lower triangle.
__device__ __forceinline__ int tri_row(int t) {
  int i = int((sqrtf(8.0f * float(t) + 1.0f) - 1.0f) * 0.5f);
  while ((i + 1) * (i + 2) / 2 <= t) ++i;
  while (i * (i + 1) / 2 > t) --i;
  return i;
}

template <int G, class T>
__device__ __forceinline__ T seg_max(T v) {
#pragma unroll
  for (int o = G / 2; o > 0; o /= 2) {
    const T w = __shfl_xor_sync(kFull, v, o, G);
    v = w > v ? w : v;
  }
  return v;
}

// Called by the 32 lanes of warp 0: max_i |a_ii| (1 if that is 0; NaN entries are skipped),
// the scale of the shift ladder, read from global memory.
template <class T>
__device__ T warp_diagonal_scale(const T* a, index_t lda, int n) {
  T m = T(0);
  for (int i = threadIdx.x; i < n; i += 32) {
    const T d = a[i * lda + i] < T(0) ? -a[i * lda + i] : a[i * lda + i];
    m = d > m ? d : m;
  }
  m = seg_max<32>(m);
  return m > T(0) ? m : T(1);
}

template <int G>
__device__ __forceinline__ int seg_min(int v) {
#pragma unroll
  for (int o = G / 2; o > 0; o /= 2) {
    const int w = __shfl_xor_sync(kFull, v, o, G);
    v = w < v ? w : v;
  }
  return v;
}

// Entry (gi, gj) of the lower-triangle tiles of A + shift I, extended by an identity block to
// a multiple of 32 rows: zero above the diagonal.  Reads neither the strict upper triangle nor
// anything beyond n.
template <class T>
__device__ __forceinline__ T tile_elem(const T* a, index_t lda, int n, int gi, int gj, T shift) {
  if (gi >= n) return gi == gj ? T(1) : T(0);
  if (gj > gi) return T(0);
  const T v = a[gi * lda + gj];
  return gi == gj ? v + shift : v;
}

// ---- segment-level building blocks (G lanes own one matrix of order n <= G) ----

// Factor the leading n x n lower triangle of the rows s[i * ls + j] (16-byte aligned) plus
// shift I.  Lane i keeps row i in registers; step k broadcasts column k of L through `col`
// (2 G entries used alternately, so one __syncwarp per step suffices).  Lane i also keeps its
// pivot a_ii + shift - sum_k l_ik^2 in a register, so the next pivot is one shuffle away and
// does not wait for the column broadcast: a step costs about a shuffle, a reciprocal square
// root and two multiplies of latency.  Entries above the diagonal, and rows >= n, end up
// holding junk that never reaches the lower triangle of rows < n.  Returns the info code of
// the first bad pivot (the same on every lane of the segment); r[] receives row i of L and
// rinv = 1 / L_ii (1 for rows >= n).  All segments of the warp must call this together.
template <class T, int G>
__device__ int seg_factor(const T* s, int ls, int n, T shift, T* col, T (&r)[G], T& rinv) {
  constexpr int V = kVec<T>;
  const int i = threadIdx.x % G;
  __syncwarp();  // col may still be read by a previous call
#pragma unroll
  for (int q = 0; q < G; q += V) ld16(s + i * ls + q, r + q);
#pragma unroll
  for (int j = 0; j < G; ++j) r[j] = j < i ? r[j] : T(0);
  T diag = s[i * ls + i] + shift, piv = T(1);
  rinv = T(1);
#pragma unroll
  for (int k = 0; k < G; ++k) {
    if (k >= n) break;
    const T d = __shfl_sync(kFull, diag, k, G);
    const T inv = rsqrt_of(d);
    const T lik = (i == k ? d : r[k]) * inv;  // L_kk = d / sqrt(d) on lane k
    if (i == k) rinv = inv, piv = d;
    r[k] = lik;
    diag -= lik * lik;
    T* c = col + (k & 1) * G;
    c[i] = lik;
    __syncwarp();
#pragma unroll
    for (int q = (k + 1) / V * V; q < G; q += V) {
      if (q >= n) break;
      T cv[V];
      ld16(c + q, cv);
#pragma unroll
      for (int t = 0; t < V; ++t)
        if (q + t > k) r[q + t] -= lik * cv[t];
    }
  }
  // Pivots up to the first bad one are exact, later ones may be junk: report the first.
  const int own = i < n ? pivot_code(piv, i) : 0;
  const int first = seg_min<G>(own != 0 ? i : G);
  const int code = __shfl_sync(kFull, own, first % G, G);
  return first < G ? code : 0;
}

// Writes a factor held as rows (seg_factor) into the tile: L in the lower triangle, L^T in the
// strict upper triangle (so that column k of L below the diagonal is the contiguous row
// segment s[k * ls + k + 1 ...], read with 16-byte loads by the solves) and 1 / L_ii into rd.
template <class T, int G>
__device__ void seg_store_factor(T* s, int ls, const T (&r)[G], T rinv, T* rd) {
  constexpr int V = kVec<T>;
  const int i = threadIdx.x % G;
  __syncwarp();
#pragma unroll
  for (int q = 0; q < G; q += V) st16(s + i * ls + q, r + q);
  rd[i] = rinv;
  __syncwarp();
#pragma unroll
  for (int j = 0; j < G - 1; ++j)
    if (j < i) s[j * ls + i] = r[j];
  __syncwarp();
}

// Forward substitution L y = x for the column x owned by this lane (tile from seg_store_factor:
// column k of L read as row k of the upper triangle).  Rows >= n of x become junk.
template <class T, int G>
__device__ void cols_forward(T (&x)[G], const T* s, int ls, const T* rd, int n) {
  constexpr int V = kVec<T>;
#pragma unroll
  for (int k = 0; k < G; ++k) {
    if (k >= n) break;
    x[k] *= rd[k];
    const T xk = x[k];
#pragma unroll
    for (int q = (k + 1) / V * V; q < G; q += V) {
      if (q >= n) break;
      T v[V];
      ld16(s + k * ls + q, v);
#pragma unroll
      for (int t = 0; t < V; ++t)
        if (q + t > k) x[q + t] -= v[t] * xk;
    }
  }
}

// Backward substitution L^T x = y (row k of L read from the lower triangle).
template <class T, int G>
__device__ void cols_backward(T (&x)[G], const T* s, int ls, const T* rd, int n) {
  constexpr int V = kVec<T>;
#pragma unroll
  for (int k = G - 1; k >= 0; --k) {
    if (k >= n) continue;
    x[k] *= rd[k];
    const T xk = x[k];
#pragma unroll
    for (int q = 0; q < k; q += V) {
      T v[V];
      ld16(s + k * ls + q, v);
#pragma unroll
      for (int t = 0; t < V; ++t)
        if (q + t < k) x[q + t] -= v[t] * xk;
    }
  }
}

// (L L^T) x = b for one right-hand side spread over the segment (lane i holds b_i): the
// forward sweep uses lane i's row of L in registers, the backward sweep row k of L in the tile.
template <class T, int G>
__device__ T seg_solve_vec(T b, const T (&r)[G], T rinv, const T* s, int ls, int n) {
  const int i = threadIdx.x % G;
#pragma unroll
  for (int k = 0; k < G; ++k) {
    if (k >= n) break;
    if (i == k) b *= rinv;
    const T y = __shfl_sync(kFull, b, k, G);
    if (i > k) b -= r[k] * y;
  }
#pragma unroll
  for (int k = G - 1; k >= 0; --k) {
    if (k >= n) continue;
    if (i == k) b *= rinv;
    const T x = __shfl_sync(kFull, b, k, G);
    if (i < k) b -= s[k * ls + i] * x;
  }
  return b;
}

// ---- warp-level 32 x 32 tile operations (tiles with row stride kLd) ----

// X := X L^{-T}; lane r owns row r of X, L is a diagonal tile from seg_store_factor (or
// p4_stage_factor): column k of L is row k of its upper triangle, rd[k] = 1 / L_kk.
template <class T>
__device__ void warp_trsm_tile(T* X, const T* L, const T* rd) {
  constexpr int ld = kLd<T>, V = kVec<T>;
  const int r = threadIdx.x % 32;
  T x[kTile];
#pragma unroll
  for (int q = 0; q < kTile; q += V) ld16(X + r * ld + q, x + q);
#pragma unroll
  for (int k = 0; k < kTile; ++k) {
    x[k] *= rd[k];
    const T xk = x[k];
#pragma unroll
    for (int q = (k + 1) / V * V; q < kTile; q += V) {
      T v[V];
      ld16(L + k * ld + q, v);
#pragma unroll
      for (int t = 0; t < V; ++t)
        if (q + t > k) x[q + t] -= xk * v[t];
    }
  }
#pragma unroll
  for (int q = 0; q < kTile; q += V) st16(X + r * ld + q, x + q);
}

// C := C (+ or -) A B^T (C := A B^T when !beta).  Lane (ry, cx) = (lane / 4, lane % 4) owns
// rows ry + 8u and columns cx + 4v: every 16-byte operand load of the warp then reads 8 (A)
// or 4 (B) consecutive rows, and every C access 32 distinct banks.  With lower_only the
// entries above the diagonal of C are left alone.
template <class T, bool Add>
__device__ void warp_gemm(T* C, const T* A, const T* B, bool lower_only, bool beta) {
  constexpr int ld = kLd<T>, V = kVec<T>;
  const int lane = threadIdx.x % 32, ry = lane >> 2, cx = lane & 3;
  T acc[4][8];
#pragma unroll
  for (int u = 0; u < 4; ++u)
#pragma unroll
    for (int v = 0; v < 8; ++v) acc[u][v] = beta ? C[(ry + 8 * u) * ld + cx + 4 * v] : T(0);
#pragma unroll
  for (int q = 0; q < kTile; q += V) {
    T av[4][V], bv[8][V];
#pragma unroll
    for (int u = 0; u < 4; ++u) ld16(A + (ry + 8 * u) * ld + q, av[u]);
#pragma unroll
    for (int v = 0; v < 8; ++v) ld16(B + (cx + 4 * v) * ld + q, bv[v]);
#pragma unroll
    for (int t = 0; t < V; ++t)
#pragma unroll
      for (int u = 0; u < 4; ++u)
#pragma unroll
        for (int v = 0; v < 8; ++v) {
          if constexpr (Add)
            acc[u][v] += av[u][t] * bv[v][t];
          else
            acc[u][v] -= av[u][t] * bv[v][t];
        }
  }
#pragma unroll
  for (int u = 0; u < 4; ++u)
#pragma unroll
    for (int v = 0; v < 8; ++v) {
      const int row = ry + 8 * u, c = cx + 4 * v;
      if (!lower_only || c <= row) C[row * ld + c] = acc[u][v];
    }
}

// ---- path 1: one thread per matrix, n <= 8 ----

template <class T, int NM, Op op>
__global__ void __launch_bounds__(128) thread_kernel(const Job<T> job) {
  constexpr int kTri = NM * (NM + 1) / 2;
  constexpr int kS = kTri | 1;  // odd per-matrix stride: a thread's own accesses are conflict-free
  constexpr int kU = 8;         // loads in flight per thread while staging
  __shared__ T sm[128 * kS];
  const index_t first = index_t(blockIdx.x) * 128;
  const int cnt = int(job.batch - first < 128 ? job.batch - first : 128);
  const int n = job.n, total = cnt * NM * NM;
  auto tri = [](int i, int j) { return i * (i + 1) / 2 + j; };

  // Stage the lower triangles: consecutive threads read consecutive elements of a row (one
  // contiguous range for a contiguous batch).
  for (int e0 = threadIdx.x; e0 < total; e0 += 128 * kU) {
    T v[kU];
#pragma unroll
    for (int u = 0; u < kU; ++u) {
      const int e = e0 + 128 * u, m = e / (NM * NM), i = e / NM % NM, j = e % NM;
      v[u] = (e < total && i < n && j <= i) ? job.a[(first + m) * job.sa + i * job.lda + j] : T(0);
    }
#pragma unroll
    for (int u = 0; u < kU; ++u) {
      const int e = e0 + 128 * u, m = e / (NM * NM), i = e / NM % NM, j = e % NM;
      if (e < total && i < n && j <= i) sm[m * kS + tri(i, j)] = v[u];
    }
  }
  __syncthreads();

  if (int(threadIdx.x) < cnt) {
    const index_t mat = first + threadIdx.x;
    T* own = sm + threadIdx.x * kS;
    T l[NM * NM];
    auto load = [&]() {
#pragma unroll
      for (int i = 0; i < NM; ++i)
#pragma unroll
        for (int j = 0; j < NM; ++j)
          l[i * NM + j] = j > i ? T(0) : (i >= n ? T(i == j ? 1 : 0) : own[tri(i, j)]);
    };
    const device::Fixed<NM> order{};
    load();
    T x[NM];  // first right-hand side, loaded before the factorisation to hide its latency
    if constexpr (op == Op::posv || op == Op::potrs) {
#pragma unroll
      for (int i = 0; i < NM; ++i)
        x[i] = i < n && job.nrhs > 0 ? job.b[mat * job.sb + i * job.ldb] : T(0);
    }
    int code;
    T delta = T(0);
    if constexpr (op == Op::potrs) {
      code = device::check_factor_diagonal(order, l, NM);
    } else {
      // The shift policy re-reads the untouched original from shared memory for each rung.
      const auto& lad = job.ladder;
      code = device::potrf_lower(order, l, NM, lad.lambda);
      if (code > 0 && lad.retries > 0) {
        T m = T(0);
#pragma unroll
        for (int i = 0; i < NM; ++i) {
          const T d = i < n ? own[tri(i, i)] : T(0);
          const T ad = d < T(0) ? -d : d;
          m = ad > m ? ad : m;
        }
        T d = lad.start * (m > T(0) ? m : T(1));
        for (int r = 0; r < lad.retries; ++r, d *= lad.growth) {
          load();
          delta = d;
          code = device::potrf_lower(order, l, NM, lad.lambda + d);
          if (code <= 0) break;
        }
      }
      if constexpr (op == Op::potri) {
        if (code == 0) {
          device::trtri_lower(order, l, NM);
          device::lauum_lower_full(order, l, NM);
        }
      }
#pragma unroll
      for (int i = 0; i < NM; ++i)
#pragma unroll
        for (int j = 0; j <= i; ++j)
          if (i < n) own[tri(i, j)] = code == 0 ? l[i * NM + j] : nan_value<T>();
      if (job.shift) job.shift[mat] = code == 0 ? delta : nan_value<T>();
    }
    if constexpr (op == Op::posv || op == Op::potrs) {
      T* b = job.nrhs > 0 ? job.b + mat * job.sb : nullptr;
      for (index_t c = 0; c < job.nrhs; ++c) {
        if (c > 0) {
#pragma unroll
          for (int i = 0; i < NM; ++i) x[i] = i < n && code == 0 ? b[i * job.ldb + c] : T(0);
        }
        if (code == 0) device::potrs_lower(order, 1, l, NM, x, 1);
#pragma unroll
        for (int i = 0; i < NM; ++i)
          if (i < n) b[i * job.ldb + c] = code == 0 ? x[i] : nan_value<T>();
      }
    }
    job.info[mat] = code;
  }
  __syncthreads();

  if constexpr (op != Op::potrs) {
    for (int e = threadIdx.x; e < total; e += 128) {
      const int m = e / (NM * NM), i = e / NM % NM, j = e % NM;
      if (i >= n || j >= n || (op != Op::potri && j > i)) continue;
      // potri: the upper triangle mirrors the (symmetric) lower one.
      job.a[(first + m) * job.sa + i * job.lda + j] = sm[m * kS + (j <= i ? tri(i, j) : tri(j, i))];
    }
  }
}

// ---- path 2: a segment of G lanes per matrix, 8 < n <= 32 ----

template <class T, int G>
struct SegSmem {
  static constexpr int kLs = G + kVec<T>;  // padded row stride (16-byte aligned rows)
  static constexpr int kSegs = 128 / G;    // matrices per block
  alignas(16) T tile[kSegs][G * kLs];
  alignas(16) T col[kSegs][2 * G];
  alignas(16) T rd[kSegs][G];
};

// Solves B := (L L^T)^{-1} B (or NaN if code != 0) for the segment's matrix: one right-hand
// side is spread over the lanes (shuffles); several are done G at a time, one per lane.  The
// two are separate kernels (kMany) so that the common single right-hand side does not pay the
// many-column path's registers.
template <class T, int G, bool kMany>
__device__ void seg_solve_rhs(const Job<T>& job, T* b, bool valid, int code, const T (&row)[G],
                              T rinv, const T* s, const T* rd, T b0) {
  constexpr int ls = SegSmem<T, G>::kLs;
  const int i = threadIdx.x % G, n = job.n;
  if constexpr (!kMany) {  // nrhs <= 1; b0 = b_i, loaded before the factorisation
    if (job.nrhs == 0) return;
    const T v = seg_solve_vec<T, G>(b0, row, rinv, s, ls, n);
    if (valid && i < n) b[i * job.ldb] = code == 0 ? v : nan_value<T>();
  } else {
    for (index_t c0 = 0; c0 < job.nrhs; c0 += G) {
      const index_t c = c0 + i;
      const bool on = valid && c < job.nrhs;
      T x[G];
#pragma unroll
      for (int r = 0; r < G; ++r) x[r] = on && r < n ? b[r * job.ldb + c] : T(0);
      cols_forward<T, G>(x, s, ls, rd, n);
      cols_backward<T, G>(x, s, ls, rd, n);
      if (on) {
#pragma unroll
        for (int r = 0; r < G; ++r)
          if (r < n) b[r * job.ldb + c] = code == 0 ? x[r] : nan_value<T>();
      }
    }
  }
}

template <class T, int G, Op op, bool kMany>
__global__ void __launch_bounds__(128) seg_kernel(const Job<T> job) {
  using S = SegSmem<T, G>;
  constexpr int ls = S::kLs;
  __shared__ S sm;
  const int seg = threadIdx.x / G, i = threadIdx.x % G, n = job.n;
  // Warps wholly past the end of the batch leave (this kernel has no block-wide barrier).
  if (index_t(blockIdx.x) * S::kSegs + threadIdx.x / 32 * (32 / G) >= job.batch) return;
  const index_t mat = index_t(blockIdx.x) * S::kSegs + seg;
  const bool valid = mat < job.batch;
  T* s = sm.tile[seg];
  T* a = job.a + (valid ? mat : 0) * job.sa;

  // Stage the lower triangle with 128 bytes per lane in flight: the lanes of a segment read
  // consecutive elements of a row.
  constexpr int kU = sizeof(T) == 4 ? G : G / 2;
  for (int r0 = 0; r0 < n; r0 += kU) {
    T v[kU];
#pragma unroll
    for (int u = 0; u < kU; ++u) {
      const int r = r0 + u;
      v[u] = valid && r < n && i <= r ? a[r * job.lda + i] : T(0);
    }
#pragma unroll
    for (int u = 0; u < kU; ++u)
      if (r0 + u < n) s[(r0 + u) * ls + i] = v[u];
  }
  T b0 = T(0);
  if constexpr (op == Op::posv || op == Op::potrs)
    if (!kMany && job.nrhs == 1 && valid && i < n) b0 = job.b[mat * job.sb + i * job.ldb];
  __syncwarp();

  T row[G];
  T rinv;
  int code;
  T delta = T(0);
  if constexpr (op == Op::potrs) {
    // info from L's diagonal (first bad entry in order), then the solve's tile layout.
    const T d = i < n ? s[i * ls + i] : T(1);
    const int bad = valid && i < n ? pivot_code(d, i) : 0;
    const int first = seg_min<G>(bad != 0 ? i : G);
    const int c = __shfl_sync(kFull, bad, first % G, G);
    code = first < G ? c : 0;
    rinv = T(1) / d;
#pragma unroll
    for (int q = 0; q < G; q += kVec<T>) ld16(s + i * ls + q, row + q);
  } else {
    const auto& lad = job.ladder;
    code = seg_factor<T, G>(s, ls, n, lad.lambda, sm.col[seg], row, rinv);
    if (!valid) code = 0;
    // Shift policy: the warp's segments retry together (shuffles need every lane); a segment
    // that already succeeded repeats its last attempt, which reproduces it exactly.
    if (lad.retries > 0 && __any_sync(kFull, code > 0)) {
      T m = T(0);
      if (i < n) {
        const T d = s[i * ls + i];
        m = d < T(0) ? -d : d;
      }
      m = seg_max<G>(m);
      T d = lad.start * (m > T(0) ? m : T(1));
      for (int r = 0; r < lad.retries; ++r, d *= lad.growth) {
        const bool retry = code > 0;
        if (!__any_sync(kFull, retry)) break;
        if (retry) delta = d;
        code = seg_factor<T, G>(s, ls, n, lad.lambda + delta, sm.col[seg], row, rinv);
        if (!valid) code = 0;
      }
    }
  }
  seg_store_factor<T, G>(s, ls, row, rinv, sm.rd[seg]);

  if constexpr (op == Op::potrf || op == Op::posv) {
    for (int r = 0; r < n; ++r)
      if (valid && i <= r) a[r * job.lda + i] = code == 0 ? s[r * ls + i] : nan_value<T>();
  }
  if constexpr (op == Op::posv || op == Op::potrs) {
    T* b = job.nrhs > 0 ? job.b + (valid ? mat : 0) * job.sb : nullptr;
    seg_solve_rhs<T, G, kMany>(job, b, valid, code, row, rinv, s, sm.rd[seg], b0);
  }
  if constexpr (op == Op::potri) {
    // Lane c solves for column c of the inverse; the lower triangle of the result goes to the
    // tile and out by rows, the upper triangle mirrors it (exactly symmetric).
    T x[G];
#pragma unroll
    for (int r = 0; r < G; ++r) x[r] = r == i ? T(1) : T(0);
    cols_forward<T, G>(x, s, ls, sm.rd[seg], n);
    cols_backward<T, G>(x, s, ls, sm.rd[seg], n);
    __syncwarp();
#pragma unroll
    for (int r = 0; r < G; ++r)
      if (r >= i) s[r * ls + i] = x[r];
    __syncwarp();
    for (int r = 0; r < n; ++r)
      if (valid && i < n)
        a[r * job.lda + i] = code != 0 ? nan_value<T>() : (i <= r ? s[r * ls + i] : s[i * ls + r]);
  }
  if (valid && i == 0) {
    job.info[mat] = code;
    if constexpr (op != Op::potrs)
      if (job.shift) job.shift[mat] = code == 0 ? delta : nan_value<T>();
  }
}

// ---- path 3: one block per matrix, lower triangle resident in shared memory ----

template <class T>
struct BlockSmem {
  T* tiles;   // tile (I, J), J <= I, at tiles + (I (I + 1) / 2 + J) * kTile * kLd
  T* col;     // 2 kTile per warp (seg_factor)
  T* rd;      // 1 / L_ii, kTile per tile row
  T* xs;      // right-hand-side chunk: column c at xs + c * xld (rows >= n are zero)
  int* flag;  // [0] info of the factorisation, [1] first bad diagonal entry (potrs)
  int xld;
  __device__ T* tile_at(int t) const { return tiles + t * (kTile * kLd<T>); }
  __device__ T* tile(int I, int J) const { return tile_at(I * (I + 1) / 2 + J); }
};

template <class T>
__host__ __device__ constexpr std::size_t block_smem_bytes(int tiles, int warps, int chunk) {
  return (std::size_t(tiles) * (tiles + 1) / 2 * kTile * kLd<T> + std::size_t(warps) * 2 * kTile +
          std::size_t(tiles) * kTile + std::size_t(chunk) * (kTile * tiles + 1)) *
             sizeof(T) +
         2 * sizeof(int);
}

template <class T>
__device__ BlockSmem<T> block_smem(unsigned char* raw, int tiles, int warps, int chunk) {
  BlockSmem<T> s;
  s.tiles = reinterpret_cast<T*>(raw);
  s.col = s.tiles + std::size_t(tiles) * (tiles + 1) / 2 * kTile * kLd<T>;
  s.rd = s.col + warps * 2 * kTile;
  s.xs = s.rd + tiles * kTile;
  s.xld = kTile * tiles + 1;  // odd: columns of the chunk start in different banks
  s.flag = reinterpret_cast<int*>(s.xs + std::size_t(chunk) * s.xld);
  return s;
}

// All tiles of A + shift I (identity-padded) into shared memory; one tile row per warp task,
// kU tasks' loads in flight per warp (one block per SM for large n: it needs many).
template <class T>
__device__ void block_load(const BlockSmem<T>& sm, const T* a, index_t lda, int n, int tiles,
                           T shift) {
  constexpr int kU = 16;
  const int W = blockDim.x / 32, warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int tasks = tiles * (tiles + 1) / 2 * kTile;
  for (int q0 = warp; q0 < tasks; q0 += kU * W) {
    T v[kU];
#pragma unroll
    for (int u = 0; u < kU; ++u) {
      const int q = q0 + u * W, t = q / kTile, I = tri_row(t), J = t - I * (I + 1) / 2;
      v[u] =
          q < tasks ? tile_elem(a, lda, n, kTile * I + q % kTile, kTile * J + lane, shift) : T(0);
    }
#pragma unroll
    for (int u = 0; u < kU; ++u) {
      const int q = q0 + u * W;
      if (q < tasks) sm.tile_at(q / kTile)[(q % kTile) * kLd<T> + lane] = v[u];
    }
  }
  if (threadIdx.x == 0) {
    sm.flag[0] = 0;
    sm.flag[1] = INT_MAX;
  }
}

// The lower triangle of tile columns [j0, j1) to global memory.
template <class T>
__device__ void block_store_lower(const BlockSmem<T>& sm, T* a, index_t lda, int n, int tiles,
                                  int j0, int j1) {
  const int W = blockDim.x / 32, warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  for (int J = j0; J < j1; ++J)
    for (int q = warp; q < (tiles - J) * kTile; q += W) {
      const int I = J + q / kTile, gi = kTile * I + q % kTile, gj = kTile * J + lane;
      if (gi < n && gj <= gi) a[gi * lda + gj] = sm.tile(I, J)[(q % kTile) * kLd<T> + lane];
    }
}

// NaN into rows x cols of p (only j <= i if lower).
template <class T>
__device__ void block_fill_nan(T* p, index_t ld, int rows, index_t cols, bool lower) {
  const int W = blockDim.x / 32, warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  for (int i = warp; i < rows; i += W) {
    const index_t end = lower ? i + 1 : cols;
    for (index_t j = lane; j < end; j += 32) p[i * ld + j] = nan_value<T>();
  }
}

// Warp `warp` factors diagonal tile J (already fully updated) and publishes a failure.
template <class T>
__device__ void block_diag_step(const BlockSmem<T>& sm, int J, int n) {
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  T row[kTile];
  T rinv;
  T* t = sm.tile(J, J);
  const int nv = n - kTile * J < kTile ? n - kTile * J : kTile;
  const int code = seg_factor<T, kTile>(t, kLd<T>, nv, T(0), sm.col + warp * 2 * kTile, row, rinv);
  seg_store_factor<T, kTile>(t, kLd<T>, row, rinv, sm.rd + kTile * J);
  if (code != 0 && lane == 0) sm.flag[0] = offset_code(code, kTile * J);
}

// Right-looking blocked Cholesky of the resident tiles (shift already added by block_load).
// If `out` is set, each tile column goes to global memory as soon as it is final.  Returns info
// (block-uniform).
template <class T>
__device__ int block_factor(const BlockSmem<T>& sm, int n, int tiles, T* out, index_t lda) {
  const int W = blockDim.x / 32, warp = threadIdx.x / 32;
  if (warp == 0) block_diag_step(sm, 0, n);
  __syncthreads();
  for (int J = 0; J < tiles && sm.flag[0] == 0; ++J) {
    for (int I = J + 1 + warp; I < tiles; I += W)
      warp_trsm_tile(sm.tile(I, J), sm.tile(J, J), sm.rd + kTile * J);
    __syncthreads();
    if (out) block_store_lower(sm, out, lda, n, tiles, J, J + 1);
    // Trailing update.  Item 0 is the next diagonal tile: warp 0 updates and then factors it
    // (lookahead) while warps 1.. share the other items.
    const int m = tiles - J - 1, items = m * (m + 1) / 2;
    const int q0 = W == 1 ? 0 : (warp == 0 ? 0 : warp),
              dq = W == 1 ? 1 : (warp == 0 ? items : W - 1);
    for (int q = q0; q < items; q += dq) {
      const int ii = tri_row(q), I = J + 1 + ii, K = J + 1 + q - ii * (ii + 1) / 2;
      warp_gemm<T, false>(sm.tile(I, K), sm.tile(I, J), sm.tile(K, J), I == K, true);
      if (q == 0) block_diag_step(sm, J + 1, n);
    }
    __syncthreads();
  }
  const int code = sm.flag[0];
  __syncthreads();  // everyone has read the flag before it is reset
  return code;
}

// potrs: info from L's diagonal, and the layout the solve needs (rd, L^T above the diagonal).
template <class T>
__device__ int block_check_factor(const BlockSmem<T>& sm, int tiles) {
  constexpr int ld = kLd<T>;
  const int W = blockDim.x / 32, warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  for (int J = warp; J < tiles; J += W) {
    T* t = sm.tile(J, J);
    const T d = t[lane * ld + lane];  // padded rows hold 1
    const unsigned bad = __ballot_sync(kFull, pivot_code(d, 0) != 0);
    if (bad != 0 && lane == 0) atomicMin(&sm.flag[1], kTile * J + __ffs(bad) - 1);
    sm.rd[kTile * J + lane] = T(1) / d;
#pragma unroll
    for (int j = 0; j < kTile - 1; ++j)
      if (j < lane) t[j * ld + lane] = t[lane * ld + j];
  }
  __syncthreads();
  const int g = sm.flag[1];
  if (g == INT_MAX) return 0;
  return pivot_code(sm.tile(g / kTile, g / kTile)[(g % kTile) * (ld + 1)], g);
}

// Diagonal tiles := their inverses (lower triangle; the upper triangle is zeroed).  Lane c
// computes column c of L_JJ^{-1} by forward substitution.
template <class T>
__device__ void block_invert_diagonal(const BlockSmem<T>& sm, int tiles) {
  constexpr int ld = kLd<T>;
  const int W = blockDim.x / 32, warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  for (int J = warp; J < tiles; J += W) {
    T* t = sm.tile(J, J);
    T x[kTile];
#pragma unroll
    for (int r = 0; r < kTile; ++r) x[r] = r == lane ? T(1) : T(0);
    cols_forward<T, kTile>(x, t, ld, sm.rd + kTile * J, kTile);
    __syncwarp();  // all lanes are done reading L^T
#pragma unroll
    for (int r = 0; r < kTile; ++r) t[r * ld + lane] = r >= lane ? x[r] : T(0);
    __syncwarp();
  }
}

template <class T>
__device__ __forceinline__ T dot_row32(const T* l, const T* x) {
  constexpr int V = kVec<T>;
  T s0 = T(0), s1 = T(0);
#pragma unroll
  for (int q = 0; q < kTile; q += V) {
    T v[V];
    ld16(l + q, v);
#pragma unroll
    for (int t = 0; t < V; ++t) (t & 1 ? s1 : s0) += v[t] * x[q + t];
  }
  return s0 + s1;
}

// X := (L L^T)^{-1} X for the chunk's `cols` columns, with inverted diagonal tiles.  Block
// row J: phase A applies L_JJ^{-1} (one warp per column, lane r computes row r), phase B
// subtracts L_IJ X_J from the rows below (one thread per row and column); then the same
// backwards with the transposes.  Rows below 32 jlo are known to be zero (potri) and skipped.
template <class T>
__device__ void block_solve_chunk(const BlockSmem<T>& sm, int tiles, int cols, int jlo) {
  constexpr int ld = kLd<T>;
  const int W = blockDim.x / 32, warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  for (int J = jlo; J < tiles; ++J) {
    const T* li = sm.tile(J, J) + lane * ld;
    for (int c = warp; c < cols; c += W) {
      T* x = sm.xs + c * sm.xld + kTile * J;
      const T y = dot_row32(li, x);
      __syncwarp();
      x[lane] = y;
    }
    __syncthreads();
    if (J + 1 < tiles) {
      const int base = kTile * (J + 1), rows = kTile * tiles - base;
      for (int e = threadIdx.x; e < rows * cols; e += blockDim.x) {
        const int c = e / rows, i = e % rows;
        T* x = sm.xs + c * sm.xld;
        x[base + i] -= dot_row32(sm.tile(J + 1 + i / kTile, J) + (i % kTile) * ld, x + kTile * J);
      }
      __syncthreads();
    }
  }
  for (int J = tiles - 1; J >= jlo; --J) {
    const T* li = sm.tile(J, J) + lane;  // column `lane` of L_JJ^{-1}
    for (int c = warp; c < cols; c += W) {
      T* x = sm.xs + c * sm.xld + kTile * J;
      T s0 = T(0), s1 = T(0);
#pragma unroll
      for (int k = 0; k < kTile; ++k) (k & 1 ? s1 : s0) += li[k * ld] * x[k];
      __syncwarp();
      x[lane] = s0 + s1;
    }
    __syncthreads();
    if (J > jlo) {
      const int base = kTile * jlo, rows = kTile * J - base;
      for (int e = threadIdx.x; e < rows * cols; e += blockDim.x) {
        const int c = e / rows, i = e % rows;
        const T* lt = sm.tile(J, jlo + i / kTile) + i % kTile;  // column of L_JI
        T* x = sm.xs + c * sm.xld;
        const T* xj = x + kTile * J;
        T s0 = T(0), s1 = T(0);
#pragma unroll
        for (int k = 0; k < kTile; ++k) (k & 1 ? s1 : s0) += lt[k * ld] * xj[k];
        x[base + i] -= s0 + s1;
      }
      __syncthreads();
    }
  }
}

// Columns c0 .. c0 + cols - 1 of B into the chunk (rows >= n zero).
template <class T>
__device__ void block_load_rhs(const BlockSmem<T>& sm, const T* b, index_t ldb, int n, int tiles,
                               index_t c0, int cols) {
  for (int e = threadIdx.x; e < kTile * tiles * cols; e += blockDim.x) {
    const int i = e / cols, c = e % cols;
    sm.xs[c * sm.xld + i] = i < n ? b[i * ldb + c0 + c] : T(0);
  }
}

// Double needs at most 8 warps here (tiles <= 6), so it may use up to 255 registers.
template <class T, Op op>
__global__ void __launch_bounds__(sizeof(T) == 4 ? 512 : 256)
    block_kernel(const Job<T> job, int tiles, int chunk) {
  extern __shared__ __align__(16) unsigned char smem_raw[];
  const BlockSmem<T> sm = block_smem<T>(smem_raw, tiles, blockDim.x / 32, chunk);
  const index_t mat = blockIdx.x;
  const int n = job.n;
  T* a = job.a + mat * job.sa;
  constexpr bool kSolves = op == Op::posv || op == Op::potrs;
  T* b = kSolves && job.nrhs > 0 ? job.b + mat * job.sb : nullptr;
  // The first chunk of B is loaded together with A, so its latency hides behind the factor.
  const int cols0 = int(job.nrhs < chunk ? job.nrhs : chunk);
  if (kSolves && cols0 > 0) block_load_rhs(sm, b, job.ldb, n, tiles, 0, cols0);
  int code;
  T delta = T(0);
  if constexpr (op == Op::potrs) {
    block_load(sm, a, job.lda, n, tiles, T(0));
    __syncthreads();
    code = block_check_factor(sm, tiles);
  } else {
    const auto& lad = job.ladder;
    // With the report policy the columns of L go out as soon as they are final; with the
    // shift policy A must stay intact for the retries.
    constexpr bool kStoresL = op == Op::potrf || op == Op::posv;
    T* early = kStoresL && lad.retries == 0 ? a : nullptr;
    block_load(sm, a, job.lda, n, tiles, lad.lambda);
    __syncthreads();
    code = block_factor(sm, n, tiles, early, job.lda);
    if (code > 0 && lad.retries > 0) {
      if (threadIdx.x < 32) {
        const T m = warp_diagonal_scale(a, job.lda, n);
        if (threadIdx.x == 0) sm.col[0] = m;
      }
      __syncthreads();
      T d = lad.start * sm.col[0];
      __syncthreads();
      for (int r = 0; r < lad.retries; ++r, d *= lad.growth) {
        delta = d;
        block_load(sm, a, job.lda, n, tiles, lad.lambda + d);
        __syncthreads();
        code = block_factor(sm, n, tiles, static_cast<T*>(nullptr), job.lda);
        if (code <= 0) break;
      }
    }
    if (code == 0 && kStoresL && !early) block_store_lower(sm, a, job.lda, n, tiles, 0, tiles);
    if (code != 0) block_fill_nan(a, job.lda, n, n, op != Op::potri);
  }
  if constexpr (kSolves) {
    if (job.nrhs > 0 && code != 0) {
      block_fill_nan(b, job.ldb, n, job.nrhs, false);
    } else if (job.nrhs > 0) {
      __syncthreads();  // L is stored before the diagonal tiles are inverted
      block_invert_diagonal(sm, tiles);
      __syncthreads();
      for (index_t c0 = 0; c0 < job.nrhs; c0 += chunk) {
        const int cols = int(job.nrhs - c0 < chunk ? job.nrhs - c0 : chunk);
        if (c0 > 0) block_load_rhs(sm, b, job.ldb, n, tiles, c0, cols);
        __syncthreads();
        block_solve_chunk(sm, tiles, cols, 0);
        for (int e = threadIdx.x; e < n * cols; e += blockDim.x) {
          const int i = e / cols, c = e % cols;
          b[i * job.ldb + c0 + c] = sm.xs[c * sm.xld + i];
        }
        __syncthreads();
      }
    }
  }
  if constexpr (op == Op::potri) {
    if (code == 0) {
      block_invert_diagonal(sm, tiles);
      __syncthreads();
      // Columns c0.. of the inverse by solving with the identity; the lower triangle of those
      // columns and, by symmetry, the matching rows of the upper triangle are written from the
      // same values, so the result is exactly symmetric.
      for (int c0 = 0; c0 < n; c0 += chunk) {
        const int cols = n - c0 < chunk ? n - c0 : chunk;
        for (int e = threadIdx.x; e < kTile * tiles * cols; e += blockDim.x) {
          const int i = e / cols, c = e % cols;
          sm.xs[c * sm.xld + i] = i == c0 + c ? T(1) : T(0);
        }
        __syncthreads();
        block_solve_chunk(sm, tiles, cols, c0 / kTile);
        for (int e = threadIdx.x; e < (n - c0) * cols; e += blockDim.x) {
          const int i = c0 + e / cols, c = e % cols;
          if (c0 + c <= i) a[i * job.lda + c0 + c] = sm.xs[c * sm.xld + i];
        }
        for (int e = threadIdx.x; e < cols * n; e += blockDim.x) {
          const int c = e / n, j = e % n;
          if (j > c0 + c) a[(c0 + c) * job.lda + j] = sm.xs[c * sm.xld + j];
        }
        __syncthreads();
      }
    }
  }
  if (threadIdx.x == 0) {
    job.info[mat] = code;
    if constexpr (op != Op::potrs)
      if (job.shift) job.shift[mat] = code == 0 ? delta : nan_value<T>();
  }
}

// ---- path 4: blocked in global memory, tiles staged in a warp's shared memory ----

template <class T>
struct Scratch {
  alignas(16) T c[kTile * kLd<T>];
  alignas(16) T a[kTile * kLd<T>];
  alignas(16) T b[kTile * kLd<T>];
  alignas(16) T col[2 * kTile];
  alignas(16) T rd[kTile];
};

// Tile (I, J) of the lower triangle of A + shift I into dst (see tile_elem).
template <class T>
__device__ void warp_load_tile(T* dst, const T* a, index_t lda, int n, int I, int J, T shift) {
  const int lane = threadIdx.x % 32;
  __syncwarp();
#pragma unroll 8
  for (int r = 0; r < kTile; ++r)
    dst[r * kLd<T> + lane] = tile_elem(a, lda, n, kTile * I + r, kTile * J + lane, shift);
  __syncwarp();
}

// The part of tile (I, J) inside the lower triangle of the n x n matrix back to global memory.
template <class T>
__device__ void warp_store_tile(const T* src, T* a, index_t lda, int n, int I, int J) {
  const int lane = threadIdx.x % 32, gj = kTile * J + lane;
  __syncwarp();
  for (int r = 0; r < kTile; ++r) {
    const int gi = kTile * I + r;
    if (gi < n && gj <= gi) a[gi * lda + gj] = src[r * kLd<T> + lane];
  }
}

// Diagonal tile J of L into w.a with L^T above its diagonal and 1 / L_ii in w.rd.
template <class T>
__device__ void p4_stage_factor(Scratch<T>& w, const T* a, index_t lda, int n, int J) {
  constexpr int ld = kLd<T>;
  const int lane = threadIdx.x % 32;
  warp_load_tile(w.a, a, lda, n, J, J, T(0));
  w.rd[lane] = T(1) / w.a[lane * ld + lane];
#pragma unroll
  for (int j = 0; j < kTile - 1; ++j)
    if (j < lane) w.a[j * ld + lane] = w.a[lane * ld + j];
  __syncwarp();
}

// Factors diagonal tile J (all its updates applied) with `shift` added; writes it back only on
// success, so a failed step leaves the Schur complement in place for a rebuild.
template <class T>
__device__ int p4_item_diag(Scratch<T>& w, T* a, index_t lda, int n, int J, T shift) {
  warp_load_tile(w.c, a, lda, n, J, J, shift);
  T row[kTile];
  T rinv;
  const int nv = n - kTile * J < kTile ? n - kTile * J : kTile;
  const int code = seg_factor<T, kTile>(w.c, kLd<T>, nv, T(0), w.col, row, rinv);
  if (code != 0) return offset_code(code, kTile * J);
  seg_store_factor<T, kTile>(w.c, kLd<T>, row, rinv, w.rd);
  warp_store_tile(w.c, a, lda, n, J, J);
  return 0;
}

template <class T>
__device__ void p4_item_trsm(Scratch<T>& w, T* a, index_t lda, int n, int I, int J) {
  p4_stage_factor(w, a, lda, n, J);
  warp_load_tile(w.c, a, lda, n, I, J, T(0));
  warp_trsm_tile(w.c, w.a, w.rd);
  warp_store_tile(w.c, a, lda, n, I, J);
}

template <class T>
__device__ void p4_item_update(Scratch<T>& w, T* a, index_t lda, int n, int I, int K, int J) {
  warp_load_tile(w.c, a, lda, n, I, K, T(0));
  warp_load_tile(w.a, a, lda, n, I, J, T(0));
  warp_load_tile(w.b, a, lda, n, K, J, T(0));
  warp_gemm<T, false>(w.c, w.a, w.b, I == K, true);
  warp_store_tile(w.c, a, lda, n, I, K);
}

// Tile (I, K) := [tile (I, K) if beta] + sum_{P in [p0, p1)} L_IP L_KP^T - sub I: the pieces of
// rebuilding A from a partial factor.
template <class T>
__device__ void p4_item_rebuild(Scratch<T>& w, T* a, index_t lda, int n, int I, int K, int p0,
                                int p1, bool beta, T sub) {
  const int lane = threadIdx.x % 32;
  if (beta) {
    warp_load_tile(w.c, a, lda, n, I, K, T(0));
  } else {
    __syncwarp();
    for (int r = 0; r < kTile; ++r) w.c[r * kLd<T> + lane] = T(0);
  }
  for (int P = p0; P < p1; ++P) {
    warp_load_tile(w.a, a, lda, n, I, P, T(0));
    warp_load_tile(w.b, a, lda, n, K, P, T(0));
    warp_gemm<T, true>(w.c, w.a, w.b, false, true);
  }
  __syncwarp();
  if (I == K) w.c[lane * kLd<T> + lane] -= sub;
  warp_store_tile(w.c, a, lda, n, I, K);
}

template <class T>
__global__ void p4_init(const Job<T> job) {
  const index_t b = index_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (b >= job.batch) return;
  job.info[b] = 0;
  if (job.shift) job.shift[b] = T(0);
}

template <class T>
__global__ void __launch_bounds__(32) p4_diag(const Job<T> job, int J) {
  __shared__ Scratch<T> w;
  const index_t b = blockIdx.x;
  if (job.info[b] != 0) return;
  const int code = p4_item_diag(w, job.a + b * job.sa, job.lda, job.n, J, job.ladder.lambda);
  if (code != 0 && threadIdx.x == 0) {
    job.info[b] = code;
    if (job.shift) job.shift[b] = nan_value<T>();
  }
}

template <class T>
__global__ void __launch_bounds__(32) p4_trsm(const Job<T> job, int J, int tiles) {
  __shared__ Scratch<T> w;
  const int m = tiles - J - 1;
  const index_t b = blockIdx.x / m;
  if (job.info[b] != 0) return;
  p4_item_trsm(w, job.a + b * job.sa, job.lda, job.n, J + 1 + int(blockIdx.x % m), J);
}

template <class T>
__global__ void __launch_bounds__(32) p4_update(const Job<T> job, int J, int tiles) {
  __shared__ Scratch<T> w;
  const int m = tiles - J - 1, items = m * (m + 1) / 2;
  const index_t b = blockIdx.x / items;
  if (job.info[b] != 0) return;
  const int q = int(blockIdx.x % items), ii = tri_row(q);
  p4_item_update(w, job.a + b * job.sa, job.lda, job.n, J + 1 + ii, J + 1 + q - ii * (ii + 1) / 2,
                 J);
}

// Whole factorisation of one matrix by one block (the retries of the shift policy).
template <class T>
__device__ int p4_factor_block(Scratch<T>& w, T* a, index_t lda, int n, int tiles, T shift,
                               int* flag) {
  const int W = blockDim.x / 32, warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  for (int J = 0; J < tiles; ++J) {
    if (warp == 0) {
      const int c = p4_item_diag(w, a, lda, n, J, shift);
      if (lane == 0) *flag = c;
    }
    __syncthreads();
    const int code = *flag;
    __syncthreads();
    if (code != 0) return code;
    for (int I = J + 1 + warp; I < tiles; I += W) p4_item_trsm(w, a, lda, n, I, J);
    __syncthreads();
    const int m = tiles - J - 1;
    for (int q = warp; q < m * (m + 1) / 2; q += W) {
      const int ii = tri_row(q);
      p4_item_update(w, a, lda, n, J + 1 + ii, J + 1 + q - ii * (ii + 1) / 2, J);
    }
    __syncthreads();
  }
  return 0;
}

// Rebuilds A (lower triangle, without `shift`) after a failure in diagonal tile jf: tile
// columns >= jf hold the Schur complement, columns < jf hold L (with the shift).
template <class T>
__device__ void p4_rebuild_block(Scratch<T>& w, T* a, index_t lda, int n, int tiles, int jf,
                                 T shift) {
  const int W = blockDim.x / 32, warp = threadIdx.x / 32;
  const int m = tiles - jf;
  for (int q = warp; q < m * (m + 1) / 2; q += W) {  // first: it still needs columns < jf
    const int ii = tri_row(q);
    p4_item_rebuild(w, a, lda, n, jf + ii, jf + q - ii * (ii + 1) / 2, 0, jf, true, T(0));
  }
  __syncthreads();
  for (int K = jf - 1; K >= 0; --K) {  // right to left; tile (K, K) last in its column
    for (int I = K + 1 + warp; I < tiles; I += W)
      p4_item_rebuild(w, a, lda, n, I, K, 0, K + 1, false, T(0));
    __syncthreads();
    if (warp == 0) p4_item_rebuild(w, a, lda, n, K, K, 0, K + 1, false, shift);
    __syncthreads();
  }
}

template <class T>
__global__ void __launch_bounds__(128) p4_retry(const Job<T> job, int tiles) {
  extern __shared__ __align__(16) unsigned char smem_raw[];
  __shared__ int flag;
  __shared__ T scale;
  Scratch<T>& w = reinterpret_cast<Scratch<T>*>(smem_raw)[threadIdx.x / 32];
  const index_t b = blockIdx.x;
  int code = job.info[b];
  if (code <= 0) return;  // succeeded, or non-finite (never retried)
  const int n = job.n;
  const auto& lad = job.ladder;
  T* a = job.a + b * job.sa;
  p4_rebuild_block(w, a, job.lda, n, tiles, (code - 1) / kTile, lad.lambda);
  if (threadIdx.x < 32) {
    const T m = warp_diagonal_scale(a, job.lda, n);
    if (threadIdx.x == 0) scale = m;
  }
  __syncthreads();
  T d = lad.start * scale, delta = T(0);
  for (int r = 0; r < lad.retries; ++r, d *= lad.growth) {
    delta = d;
    code = p4_factor_block(w, a, job.lda, n, tiles, lad.lambda + d, &flag);
    if (code <= 0) break;
    if (r + 1 < lad.retries)
      p4_rebuild_block(w, a, job.lda, n, tiles, (code - 1) / kTile, lad.lambda + d);
  }
  if (threadIdx.x == 0) {
    job.info[b] = code;
    if (job.shift) job.shift[b] = code == 0 ? delta : nan_value<T>();
  }
}

// potrs: info from the diagonal of L, one warp per matrix.
template <class T>
__global__ void __launch_bounds__(128) p4_check(const Job<T> job) {
  const index_t b = (index_t(blockIdx.x) * blockDim.x + threadIdx.x) / 32;
  if (b >= job.batch) return;
  const int lane = threadIdx.x % 32;
  const T* a = job.a + b * job.sa;
  int code = 0;
  for (int i0 = 0; i0 < job.n; i0 += 32) {
    const int i = i0 + lane;
    const int c = i < job.n ? pivot_code(a[i * (job.lda + 1)], i) : 0;
    const unsigned bad = __ballot_sync(kFull, c != 0);
    if (bad != 0) {
      code = __shfl_sync(kFull, c, __ffs(bad) - 1);
      break;
    }
  }
  if (lane == 0) job.info[b] = code;
}

// Rows 32 I .. 32 I + 31 of the chunk's 32 columns (c0 ..) into x of lane c.  Potri keeps
// column gc = c0 + c of the inverse in row gc of the strict upper triangle (entries k > gc;
// k < gc is 0, k = gc is 1 before the forward solve of its tile and 1 / L_gc,gc after it),
// transposed through shared memory so that the global accesses are coalesced.
template <class T, bool Potri>
__device__ void p4_load_x(Scratch<T>& w, const Job<T>& job, index_t b, int I, int c0, bool pre,
                          T (&x)[kTile]) {
  constexpr int ld = kLd<T>;
  const int lane = threadIdx.x % 32, n = job.n;
  if constexpr (!Potri) {
    const T* B = job.b + b * job.sb;
    const index_t c = c0 + lane;
#pragma unroll
    for (int r = 0; r < kTile; ++r) {
      const int gi = kTile * I + r;
      x[r] = gi < n && c < job.nrhs ? B[gi * job.ldb + c] : T(0);
    }
  } else {
    const T* A = job.a + b * job.sa;
    const int k = kTile * I + lane;
    __syncwarp();
    for (int c = 0; c < kTile; ++c) {
      const int gc = c0 + c;
      T v = T(0);
      if (gc < n && k < n && k >= gc)
        v = k > gc ? A[gc * job.lda + k] : (pre ? T(1) : T(1) / A[gc * job.lda + gc]);
      w.b[lane * ld + c] = v;
    }
    __syncwarp();
#pragma unroll
    for (int r = 0; r < kTile; ++r) x[r] = w.b[r * ld + lane];
  }
}

template <class T, bool Potri>
__device__ void p4_store_x(Scratch<T>& w, const Job<T>& job, index_t b, int I, int c0,
                           const T (&x)[kTile]) {
  constexpr int ld = kLd<T>;
  const int lane = threadIdx.x % 32, n = job.n;
  if constexpr (!Potri) {
    T* B = job.b + b * job.sb;
    const index_t c = c0 + lane;
#pragma unroll
    for (int r = 0; r < kTile; ++r) {
      const int gi = kTile * I + r;
      if (gi < n && c < job.nrhs) B[gi * job.ldb + c] = x[r];
    }
  } else {
    T* A = job.a + b * job.sa;
    const int k = kTile * I + lane;
    __syncwarp();
#pragma unroll
    for (int r = 0; r < kTile; ++r) w.b[r * ld + lane] = x[r];
    __syncwarp();
    for (int c = 0; c < kTile; ++c) {
      const int gc = c0 + c;
      if (gc < n && k < n && k > gc) A[gc * job.lda + k] = w.b[lane * ld + c];
    }
  }
}

// (L L^T) X = X for 32 columns per block (chunk c0 = 32 * (blockIdx % chunks)), X in global
// memory: B for posv / potrs; for potri the identity's columns kept in the strict upper
// triangle (the rows above the chunk's diagonal block are zero and skipped, and entries above
// a column's own diagonal are neither needed nor stored).  Warp 0 solves the diagonal blocks,
// all warps apply the off-diagonal tiles.
template <class T, bool Potri>
__global__ void __launch_bounds__(128) p4_solve(const Job<T> job, int tiles, int chunks) {
  extern __shared__ __align__(16) unsigned char smem_raw[];
  constexpr int ld = kLd<T>, V = kVec<T>;
  Scratch<T>& w = reinterpret_cast<Scratch<T>*>(smem_raw)[threadIdx.x / 32];
  const int W = blockDim.x / 32, warp = threadIdx.x / 32, n = job.n;
  const index_t b = blockIdx.x / chunks;
  const int ch = int(blockIdx.x % chunks), c0 = kTile * ch;
  if (job.info[b] != 0) return;
  T* a = job.a + b * job.sa;
  const int jlo = Potri ? ch : 0;
  if constexpr (Potri) {  // start from the identity's zeros
    for (int c = warp; c < kTile && c0 + c < n; c += W)
      for (int k = c0 + c + 1 + int(threadIdx.x % 32); k < n; k += 32)
        a[(c0 + c) * job.lda + k] = T(0);
    __syncthreads();
  }
  T x[kTile], y[kTile];
  for (int J = jlo; J < tiles; ++J) {
    if (warp == 0) {
      p4_stage_factor(w, a, job.lda, n, J);
      p4_load_x<T, Potri>(w, job, b, J, c0, J == jlo, x);
      cols_forward<T, kTile>(x, w.a, ld, w.rd, kTile);
      p4_store_x<T, Potri>(w, job, b, J, c0, x);
    }
    __syncthreads();
    for (int I = J + 1 + warp; I < tiles; I += W) {
      warp_load_tile(w.a, a, job.lda, n, I, J, T(0));
      p4_load_x<T, Potri>(w, job, b, J, c0, false, y);
      p4_load_x<T, Potri>(w, job, b, I, c0, false, x);
#pragma unroll
      for (int r = 0; r < kTile; ++r) x[r] -= dot_row32(w.a + r * ld, y);
      p4_store_x<T, Potri>(w, job, b, I, c0, x);
    }
    __syncthreads();
  }
  for (int J = tiles - 1; J >= jlo; --J) {
    if (warp == 0) {
      p4_stage_factor(w, a, job.lda, n, J);
      p4_load_x<T, Potri>(w, job, b, J, c0, false, x);
      cols_backward<T, kTile>(x, w.a, ld, w.rd, kTile);
      p4_store_x<T, Potri>(w, job, b, J, c0, x);
    }
    __syncthreads();
    for (int I = jlo + warp; I < J; I += W) {
      warp_load_tile(w.a, a, job.lda, n, J, I, T(0));  // L_JI
      p4_load_x<T, Potri>(w, job, b, J, c0, false, y);
      p4_load_x<T, Potri>(w, job, b, I, c0, false, x);
#pragma unroll
      for (int k = 0; k < kTile; ++k) {
#pragma unroll
        for (int q = 0; q < kTile; q += V) {
          T v[V];
          ld16(w.a + k * ld + q, v);
#pragma unroll
          for (int t = 0; t < V; ++t) x[q + t] -= v[t] * y[k];
        }
      }
      p4_store_x<T, Potri>(w, job, b, I, c0, x);
    }
    __syncthreads();
  }
}

// potri: diagonal of the inverse, A^{-1}_ii = (1 / L_ii - sum_{k > i} L_ki A^{-1}_ki) / L_ii
// (the last step of the backward solve for column i, which p4_solve leaves out because the
// diagonal still holds L_ii for the other columns).  One warp per (matrix, i).
template <class T>
__global__ void __launch_bounds__(128) p4_potri_diag(const Job<T> job) {
  const index_t wid = (index_t(blockIdx.x) * blockDim.x + threadIdx.x) / 32;
  const index_t b = wid / job.n;
  if (b >= job.batch || job.info[b] != 0) return;
  const int i = int(wid % job.n), lane = threadIdx.x % 32;
  T* a = job.a + b * job.sa;
  T s = T(0);
  for (int k = i + 1 + lane; k < job.n; k += 32) s += a[k * job.lda + i] * a[i * job.lda + k];
#pragma unroll
  for (int o = 16; o > 0; o /= 2) s += __shfl_xor_sync(kFull, s, o);
  if (lane == 0) {
    const T l = a[i * job.lda + i];
    a[i * job.lda + i] = (T(1) / l - s) / l;
  }
}

// potri: strict lower triangle := transpose of the strict upper one; one warp per tile pair.
template <class T>
__global__ void __launch_bounds__(32) p4_mirror(const Job<T> job, int tiles) {
  __shared__ T s[kTile * (kTile + 1)];
  const int items = tiles * (tiles + 1) / 2;
  const index_t b = blockIdx.x / items;
  if (job.info[b] != 0) return;
  const int q = int(blockIdx.x % items), I = tri_row(q), J = q - I * (I + 1) / 2;
  const int lane = threadIdx.x, n = job.n;
  T* a = job.a + b * job.sa;
  for (int r = 0; r < kTile; ++r) {  // upper tile (J, I)
    const int gi = kTile * J + r, gj = kTile * I + lane;
    if (gi < n && gj < n && gj > gi) s[r * (kTile + 1) + lane] = a[gi * job.lda + gj];
  }
  __syncwarp();
  for (int r = 0; r < kTile; ++r) {  // lower tile (I, J)
    const int gi = kTile * I + r, gj = kTile * J + lane;
    if (gi < n && gj < gi) a[gi * job.lda + gj] = s[lane * (kTile + 1) + r];
  }
}

// NaN outputs of failed matrices: 1 = lower triangle of A, 2 = all of A, 4 = B.
template <class T>
__global__ void __launch_bounds__(256) p4_nan_fill(const Job<T> job, int what) {
  const index_t b = blockIdx.x;
  if (job.info[b] == 0) return;
  if (what & 3) block_fill_nan(job.a + b * job.sa, job.lda, job.n, job.n, (what & 2) == 0);
  if ((what & 4) && job.b) block_fill_nan(job.b + b * job.sb, job.ldb, job.n, job.nrhs, false);
}

// ---- host code --------------------------------------------------------------------------

constexpr index_t kMaxBlocks = (index_t(1) << 31) - 1;

template <class T>
Job<T> slice(Job<T> j, index_t off, index_t count) {
  j.a += off * j.sa;
  if (j.b) j.b += off * j.sb;
  j.info += off;
  if (j.shift) j.shift += off;
  j.batch = count;
  return j;
}

unsigned blocks_for(index_t work, int per_block) {
  return unsigned((work + per_block - 1) / per_block);
}

template <class T, Op op>
void launch_thread(const Job<T>& job, cudaStream_t st) {
  const unsigned grid = blocks_for(job.batch, 128);
  if (job.n <= 1)
    thread_kernel<T, 1, op><<<grid, 128, 0, st>>>(job);
  else if (job.n <= 2)
    thread_kernel<T, 2, op><<<grid, 128, 0, st>>>(job);
  else if (job.n <= 4)
    thread_kernel<T, 4, op><<<grid, 128, 0, st>>>(job);
  else
    thread_kernel<T, 8, op><<<grid, 128, 0, st>>>(job);
}

template <class T, Op op, bool kMany>
void launch_seg(const Job<T>& job, cudaStream_t st) {
  if (job.n <= 16)
    seg_kernel<T, 16, op, kMany><<<blocks_for(job.batch, 8), 128, 0, st>>>(job);
  else
    seg_kernel<T, 32, op, kMany><<<blocks_for(job.batch, 4), 128, 0, st>>>(job);
}

// Enough warps for the trailing updates of the first steps; double stays within the 256
// threads its kernel is compiled for (it never has more than 6 tile rows on an H100).
template <class T>
int block_warps(int tiles) {
  const int w = tiles <= 2 ? 2 : tiles <= 4 ? 4 : tiles <= 6 ? 8 : 16;
  return sizeof(T) == 4 ? w : std::min(w, 8);
}

// Launches the block path if the matrix fits in shared memory; false otherwise.
template <class T, Op op>
bool launch_block(const Job<T>& job, cudaStream_t st, cudaError_t* err) {
  int dev = 0, max_smem = 0;
  if ((*err = cudaGetDevice(&dev)) != cudaSuccess) return true;
  if ((*err = cudaDeviceGetAttribute(&max_smem, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev)) !=
      cudaSuccess)
    return true;
  const int tiles = (job.n + kTile - 1) / kTile, warps = block_warps<T>(tiles);
  const index_t want = op == Op::potri                       ? kTile
                       : (op == Op::posv || op == Op::potrs) ? std::min<index_t>(job.nrhs, kTile)
                                                             : 0;
  const std::size_t base = block_smem_bytes<T>(tiles, warps, 0);
  const std::size_t per_col = std::size_t(kTile * tiles + 1) * sizeof(T);
  if (base + (want > 0 ? per_col : 0) > std::size_t(max_smem)) return false;
  const int chunk = int(std::min<index_t>(want, index_t((std::size_t(max_smem) - base) / per_col)));
  const std::size_t bytes = block_smem_bytes<T>(tiles, warps, chunk);
  if ((*err = allow_smem(block_kernel<T, op>, bytes)) != cudaSuccess) return true;
  block_kernel<T, op><<<unsigned(job.batch), 32 * warps, bytes, st>>>(job, tiles, chunk);
  return true;
}

template <class T, Op op>
cudaError_t launch_global(const Job<T>& job, cudaStream_t st) {
  const int tiles = (job.n + kTile - 1) / kTile;
  const unsigned batch = unsigned(job.batch);
  const std::size_t wsmem = 4 * sizeof(Scratch<T>);
  cudaError_t e;
  if constexpr (op == Op::potrs) {
    p4_check<T><<<blocks_for(job.batch, 4), 128, 0, st>>>(job);
  } else {
    p4_init<T><<<blocks_for(job.batch, 256), 256, 0, st>>>(job);
    for (int J = 0; J < tiles; ++J) {
      p4_diag<T><<<batch, 32, 0, st>>>(job, J);
      const int m = tiles - J - 1;
      if (m == 0) continue;
      p4_trsm<T><<<batch * m, 32, 0, st>>>(job, J, tiles);
      const unsigned items = unsigned(m * (m + 1) / 2);
      p4_update<T><<<batch * items, 32, 0, st>>>(job, J, tiles);
    }
    if (job.ladder.retries > 0) {
      if ((e = allow_smem(p4_retry<T>, wsmem)) != cudaSuccess) return e;
      p4_retry<T><<<batch, 128, wsmem, st>>>(job, tiles);
    }
  }
  if constexpr (op == Op::posv || op == Op::potrs) {
    if (job.nrhs > 0) {
      const int chunks = int((job.nrhs + kTile - 1) / kTile);
      if ((e = allow_smem(p4_solve<T, false>, wsmem)) != cudaSuccess) return e;
      p4_solve<T, false><<<batch * chunks, 128, wsmem, st>>>(job, tiles, chunks);
    }
  }
  if constexpr (op == Op::potri) {
    if ((e = allow_smem(p4_solve<T, true>, wsmem)) != cudaSuccess) return e;
    p4_solve<T, true><<<batch * tiles, 128, wsmem, st>>>(job, tiles, tiles);
    p4_potri_diag<T><<<blocks_for(job.batch * job.n, 4), 128, 0, st>>>(job);
    const unsigned pairs = unsigned(tiles * (tiles + 1) / 2);
    p4_mirror<T><<<batch * pairs, 32, 0, st>>>(job, tiles);
  }
  const int what = op == Op::potrf ? 1 : op == Op::posv ? 1 | 4 : op == Op::potrs ? 4 : 2;
  p4_nan_fill<T><<<batch, 256, 0, st>>>(job, what);
  return cudaGetLastError();
}

// All launches of one group, on `st`.
template <class T, Op op>
cudaError_t launch_group(const Job<T>& job, cudaStream_t st) {
  if (job.n == 0) {  // nothing to factor: info 0, shift 0
    p4_init<T><<<blocks_for(job.batch, 256), 256, 0, st>>>(job);
    return cudaGetLastError();
  }
  // Largest number of blocks one matrix needs in any launch, to keep grids in range.
  const index_t tiles = (job.n + kTile - 1) / kTile;
  const index_t per = std::max<index_t>(
      {tiles * (tiles + 1) / 2, tiles * ((job.nrhs + kTile - 1) / kTile), index_t(job.n)});
  const index_t step = std::max<index_t>(1, kMaxBlocks / per);
  for (index_t off = 0; off < job.batch; off += step) {
    const Job<T> s = slice(job, off, std::min(step, job.batch - off));
    cudaError_t e = cudaSuccess;
    if (s.n <= 8) {
      launch_thread<T, op>(s, st);
    } else if (s.n <= 32) {
      if constexpr (op == Op::posv || op == Op::potrs) {
        if (s.nrhs > 1)
          launch_seg<T, op, true>(s, st);
        else
          launch_seg<T, op, false>(s, st);
      } else {
        launch_seg<T, op, false>(s, st);
      }
    } else if (!launch_block<T, op>(s, st, &e)) {
      e = launch_global<T, op>(s, st);
    }
    if (e == cudaSuccess) e = cudaGetLastError();
    if (e != cudaSuccess) return e;
  }
  return cudaSuccess;
}

template <class U>
Status check_views(const char* op, GroupedBatch<U> v, const char* name) {
  for (std::size_t g = 0; g < v.size(); ++g)
    if (v[g].extent() > 0)
      if (Status s = check_device_pointer(op, v[g].data, detail::view_name(name, v.size() > 1, g) + ".data");
          !s.ok())
        return s;
  return Status::success();
}

template <class T, Op op, class TA>
Status run(const char* name, const Context& ctx, GroupedBatch<TA> a, GroupedBatch<T> b, int* info,
           const SpdOptions& o, T* shift) {
  const index_t total = total_batch(a);
  if (total == 0) return Status::success();
  if (Status s = check_views(name, a, op == Op::potrs ? "l" : "a"); !s.ok()) return s;
  if (Status s = check_views(name, b, "b"); !s.ok()) return s;
  if (Status s = check_device_pointer(name, info, "info"); !s.ok()) return s;
  if (shift != nullptr)
    if (Status s = check_device_pointer(name, shift, "shift_used"); !s.ok()) return s;
  const auto st = stream_of(ctx);
  index_t off = 0;
  for (std::size_t g = 0; g < a.size(); ++g) {
    const auto& v = a[g];
    Job<T> job{};
    job.a = const_cast<T*>(v.data);
    job.lda = v.ld;
    job.sa = v.stride;
    if (g < b.size()) {
      job.b = b[g].data;
      job.ldb = b[g].ld;
      job.sb = b[g].stride;
      job.nrhs = b[g].cols;
    }
    job.batch = v.batch;
    job.n = int(v.rows);
    job.info = info + off;
    job.shift = shift != nullptr ? shift + off : nullptr;
    job.ladder = detail::make_ladder<T>(o, v.rows);
    off += v.batch;
    if (job.batch == 0) continue;
    if (const cudaError_t e = launch_group<T, op>(job, st); e != cudaSuccess)
      return Status::backend_error(name, cudaGetErrorString(e));
  }
  return Status::success();
}

}  // namespace

template <class T>
Status potrf(const Context& ctx, GroupedBatch<T> a, int* info, const SpdOptions& options,
             T* shift_used) {
  return run<T, Op::potrf>("potrf", ctx, a, GroupedBatch<T>{}, info, options, shift_used);
}

template <class T>
Status potrs(const Context& ctx, GroupedBatch<const T> l, GroupedBatch<T> b, int* info) {
  return run<T, Op::potrs>("potrs", ctx, l, b, info, SpdOptions{}, static_cast<T*>(nullptr));
}

template <class T>
Status posv(const Context& ctx, GroupedBatch<T> a, GroupedBatch<T> b, int* info,
            const SpdOptions& options, T* shift_used) {
  return run<T, Op::posv>("posv", ctx, a, b, info, options, shift_used);
}

template <class T>
Status potri(const Context& ctx, GroupedBatch<T> a, int* info, const SpdOptions& options,
             T* shift_used) {
  return run<T, Op::potri>("potri", ctx, a, GroupedBatch<T>{}, info, options, shift_used);
}

}  // namespace curvkit::cuda

CURVKIT_INSTANTIATE_SPD_BACKEND(cuda, float)
CURVKIT_INSTANTIATE_SPD_BACKEND(cuda, double)
