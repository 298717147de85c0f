// CUDA backend of the Kronecker family (contracts: curvkit/gemm.hpp and curvkit/kron.hpp).
//
// Everything is a batched product of row-major matrices, so one GEMM engine serves every op.  A
// GemmJob describes C = alpha op(A) op(B) + beta C over a two-level batch (an outer index: the
// matrix or tensor; an inner index: the slab of a tensor) with per-level offsets, 0 for a
// shared operand, and a k sum that may run over several segments (the slabs of a mode Gram).
// Paths, chosen per group by the work m n k of one matrix:
//
//   m n k < 64^3   tile_gemm_kernel: one block per (matrix, output tile).  The tile is 8 x 8,
//                  16 x 16, 16 x 64, 64 x 16, 32 x 32 or 64 x 64 by m and n, so that tiny
//                  matrices do not idle a 64 x 64 block; k advances 16 at a time through shared
//                  memory.  Both operands are staged k-major whatever their transposition, each
//                  loaded along its contiguous direction (coalesced for all four op
//                  combinations).  Symmetric results (syrk, mode_gram) skip the tiles above the
//                  diagonal and write the strict upper triangle, for Fill::full, from the same
//                  register as the lower one (an exact mirror).
//   larger         cuBLAS (strided batched GEMM, SYRK): from this size on its tuned, register-
//                  blocked kernels are the right tool.  Row-major C = op(A) op(B) is column-major
//                  C^T = op(B)^T op(A)^T, so the operands swap; a row-major lower triangle is a
//                  column-major upper one.  A two-level batch whose offsets do not compose into
//                  one stride becomes one call per outer index (at most 16 calls, else the
//                  tile kernel); cuBLAS has no batched SYRK, so SYRK goes per matrix (at most
//                  16) and Fill::full adds mirror_kernel.  One handle per device, created on
//                  first use, host pointer mode, default math mode (FP32 stays FP32: no TF32).
//
// mode_product: the slab products Y_l = op(U) X_l (d' x d times d x R) as a two-level batch
//   (tensor, slab); for the last mode (R = 1) one GEMM per tensor, Y = X op(U)^T (L x d').  No
//   Context workspace (the public layer keeps it for chain intermediates).
// mode_gram: per mode one symmetric job: mat_k(X) mat_k(X)^T summed over the slabs in a fixed
//   order (deterministic, no atomics); the first and the last mode are a single matrix
//   (cuBLAS SYRK when large), a middle mode runs the tile kernel with one k segment per slab.
// tnt_normalize: two passes, because each variable's scales come from the diagonals that the
//   normalisation itself rescales.  Pass 1 (several blocks per variable) recomputes the traces
//   and scales the off-diagonal elements; pass 2 (a warp per variable) recomputes them from
//   the still untouched diagonals, writes info and scales the diagonals.  The traces are warp
//   sums in double in a fixed order, so both passes derive the same scales bit for bit.
// kfac_pi_damping: a warp per pair of factors, both diagonals summed in double by warp_sum (a
//   fixed order); up to kPiGroups groups per launch, their views passed by value.
// kron_apply:
//   fused      one block per matrix: grad and one factor in shared memory (opt-in beyond
//              48 KB).  Inverse form for d_out, d_in <= 64: grad A^{-1} in registers, then
//              G^{-1} times it, written straight to out.  Cholesky form when the block fits in
//              shared memory (square layers to about 170 (float) / 120 (double) on an H100)
//              and the layer is small (d_out, d_in <= 64) or the batch has >= 4 matrices: the
//              four triangular solves as right-looking substitutions, one barrier per step, the
//              factors' strict upper triangles never read.  (A single larger layer is one block
//              with ~2 (d_out + d_in) dependent steps; cuBLAS's blocked TRSM spreads it wider.)
//   otherwise  inverse form: grad A^{-1} into the Context workspace (kron_apply_workspace_size
//              bytes: the largest such intermediate of one group; groups run in stream order
//              and reuse it), then out = alpha G^{-1} times it, both through the GEMM engine.
//              Cholesky form: out = alpha grad, then four in-place cuBLAS TRSMs per matrix (no
//              workspace).
//
// Grouped calls: one launch sequence per group, all on ctx.cuda_stream().  Nothing here
// synchronises the host or allocates memory (beyond cuBLAS's own handle on first use).
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <limits>
#include <mutex>
#include <string>

#include "blas_handle.cuh"
#include "checks.hpp"
#include "host_common.cuh"
#include "kron_backends.hpp"
#include "warp_reduce.cuh"

namespace curvkit::cuda {
namespace {

constexpr index_t kMaxGrid = 0x7fffffff;  // gridDim.x limit: larger launches are split
constexpr int kBK = 16;                   // k depth of one shared-memory stage of the tile kernel
constexpr double kBlasWork = 262144.0;    // m n k of one matrix from which cuBLAS takes a product
constexpr index_t kBlasCalls = 16;        // most cuBLAS calls one batched product is split into
constexpr int kKronThreads = 256;         // fused kron_apply kernel
constexpr int kKronWarps = kKronThreads / 32;
constexpr int kFusedInverse = 64;      // largest d_out, d_in of the fused inverse-form kernel
constexpr index_t kFusedMinBatch = 4;  // fused Cholesky form beyond 64: batches from this size
constexpr int kTntMax = 16;            // most matrices per variable in tnt_normalize
constexpr int kTntRows = 32;           // rows (of all K matrices of a variable) per pass-1 block
constexpr int kTntThreads = 256;
constexpr int kPiGroups = 32;  // groups per kfac_pi_damping launch (kernel parameters < 4 KB)
constexpr int kPiThreads = 256;

// ---- device code ------------------------------------------------------------------------------

enum class Tri : int {
  none,    // general product
  lower,   // symmetric result: the lower triangle only
  mirror,  // symmetric result: the lower triangle and its exact mirror
};

// One operand of a batched product.  Matrix (o, i) of the batch starts at p + o so + i si;
// segment s of the k sum starts seg further on.
template <class T>
struct Operand {
  const T* p = nullptr;
  index_t ld = 0;
  bool trans = false;  // op(X) = X^T
  index_t so = 0, si = 0, seg = 0;
};

// C = alpha sum_s op(A_s) op(B_s) + beta C for every matrix z = o * ninner + i of the batch.
template <class T>
struct GemmJob {
  index_t m = 0, n = 0, k = 0;  // op(A) m x k and op(B) k x n per segment; C m x n
  index_t nseg = 1;
  index_t nouter = 1, ninner = 1;
  Operand<T> a, b;
  T* c = nullptr;
  index_t ldc = 0, cso = 0, csi = 0;
  T alpha = T(1), beta = T(0);
  Tri tri = Tri::none;  // not none: m == n and b is a with the opposite transposition
};

// Stages the BX x kBK block (x0.., k0..) of op(X) into sm[kk][x].  Element (x, kk) is stored at
// kk * ld + x (kmajor) or x * ld + kk; consecutive threads take consecutive addresses either way.
template <class T, int BX, int NT>
__device__ __forceinline__ void load_tile(T (*sm)[BX + 1], const T* p, index_t ld, bool kmajor,
                                          index_t x0, index_t k0, index_t nx, index_t nk) {
  static_assert((BX * kBK) % NT == 0, "a tile stage must split evenly over the block");
  constexpr int kPer = BX * kBK / NT;
  const int tid = threadIdx.x;
  if (kmajor) {
#pragma unroll
    for (int q = 0; q < kPer; ++q) {
      const int e = tid + q * NT, x = e % BX, kk = e / BX;
      const index_t gx = x0 + x, gk = k0 + kk;
      sm[kk][x] = gx < nx && gk < nk ? p[gk * ld + gx] : T(0);
    }
  } else {
#pragma unroll
    for (int q = 0; q < kPer; ++q) {
      const int e = tid + q * NT, kk = e % kBK, x = e / kBK;
      const index_t gx = x0 + x, gk = k0 + kk;
      sm[kk][x] = gx < nx && gk < nk ? p[gx * ld + gk] : T(0);
    }
  }
}

// One block per (matrix, BM x BN output tile); thread (tx, ty) owns the TM x TN outputs
// (ty + r NY, tx + c NX): interleaved, so shared-memory reads and the stores of C are
// contiguous across a warp.  Zero padding past m, n and k keeps the inner loop branch-free.
template <class T, int BM, int BN, int TM, int TN>
__global__ void __launch_bounds__((BM / TM) * (BN / TN))
    tile_gemm_kernel(const GemmJob<T> job, const index_t first) {
  constexpr int NX = BN / TN, NY = BM / TM, NT = NX * NY;
  __shared__ T as[kBK][BM + 1];
  __shared__ T bs[kBK][BN + 1];
  const index_t tiles_n = (job.n + BN - 1) / BN;
  const index_t per = ((job.m + BM - 1) / BM) * tiles_n;
  const index_t blk = first + blockIdx.x;
  const index_t z = blk / per, t = blk - z * per;
  const index_t i0 = t / tiles_n * BM, j0 = t % tiles_n * BN;
  if (job.tri != Tri::none && j0 > i0 + BM - 1) return;  // strictly above the diagonal
  const index_t zo = z / job.ninner, zi = z - zo * job.ninner;
  const T* pa = job.a.p + zo * job.a.so + zi * job.a.si;
  const T* pb = job.b.p + zo * job.b.so + zi * job.b.si;
  T* pc = job.c + zo * job.cso + zi * job.csi;
  const int tx = threadIdx.x % NX, ty = threadIdx.x / NX;

  T acc[TM][TN];
#pragma unroll
  for (int r = 0; r < TM; ++r)
#pragma unroll
    for (int c = 0; c < TN; ++c) acc[r][c] = T(0);

  for (index_t s = 0; s < job.nseg; ++s, pa += job.a.seg, pb += job.b.seg) {
    for (index_t k0 = 0; k0 < job.k; k0 += kBK) {
      load_tile<T, BM, NT>(as, pa, job.a.ld, job.a.trans, i0, k0, job.m, job.k);
      load_tile<T, BN, NT>(bs, pb, job.b.ld, !job.b.trans, j0, k0, job.n, job.k);
      __syncthreads();
#pragma unroll
      for (int kk = 0; kk < kBK; ++kk) {
        T av[TM], bv[TN];
#pragma unroll
        for (int r = 0; r < TM; ++r) av[r] = as[kk][ty + r * NY];
#pragma unroll
        for (int c = 0; c < TN; ++c) bv[c] = bs[kk][tx + c * NX];
#pragma unroll
        for (int r = 0; r < TM; ++r)
#pragma unroll
          for (int c = 0; c < TN; ++c) acc[r][c] += av[r] * bv[c];
      }
      __syncthreads();
    }
  }

#pragma unroll
  for (int r = 0; r < TM; ++r) {
    const index_t i = i0 + ty + r * NY;
    if (i >= job.m) continue;
#pragma unroll
    for (int c = 0; c < TN; ++c) {
      const index_t j = j0 + tx + c * NX;
      if (j >= job.n || (job.tri != Tri::none && j > i)) continue;
      T* dst = pc + i * job.ldc + j;
      T v = job.alpha * acc[r][c];
      if (job.beta != T(0)) v += job.beta * *dst;  // beta == 0: C is not read
      *dst = v;
      if (job.tri == Tri::mirror && j < i) pc[j * job.ldc + i] = v;
    }
  }
}

// Strict upper triangle <- strict lower triangle (after a cuBLAS SYRK with Fill::full).  One
// block per 32 x 32 tile pair, through shared memory: rows are read and written contiguously.
template <class T>
__global__ void __launch_bounds__(256) mirror_kernel(T* c, index_t n, index_t ld, index_t so,
                                                     index_t si, index_t ninner, index_t first) {
  __shared__ T tile[32][33];
  const index_t tiles = (n + 31) / 32;
  const index_t blk = first + blockIdx.x;
  const index_t z = blk / (tiles * tiles), t = blk - z * tiles * tiles;
  const index_t ti = t / tiles, tj = t - ti * tiles;
  if (ti < tj) return;
  const index_t zo = z / ninner, zi = z - zo * ninner;
  T* p = c + zo * so + zi * si;
  const int tx = threadIdx.x % 32, ty = threadIdx.x / 32;
  for (int r = ty; r < 32; r += 8) {
    const index_t i = ti * 32 + r, j = tj * 32 + tx;
    if (i < n && j < i) tile[r][tx] = p[i * ld + j];
  }
  __syncthreads();
  for (int r = ty; r < 32; r += 8) {
    const index_t i = ti * 32 + tx, j = tj * 32 + r;  // the lower element (i, j) goes to (j, i)
    if (i < n && j < i) p[j * ld + i] = tile[tx][r];
  }
}

// y = alpha x, one block per row (the start of kron_apply's in-place cuBLAS solves).
template <class T>
__global__ void __launch_bounds__(256)
    scale_copy_kernel(const T* x, index_t ldx, index_t sx, T* y, index_t ldy, index_t sy,
                      index_t rows, index_t cols, T alpha, index_t first) {
  const index_t row = first + blockIdx.x;
  const index_t b = row / rows, i = row - b * rows;
  const T* xr = x + b * sx + i * ldx;
  T* yr = y + b * sy + i * ldy;
  for (index_t j = threadIdx.x; j < cols; j += blockDim.x) yr[j] = alpha * xr[j];
}

// ---- kron_apply, fused ---------------------------------------------------------------------

template <class T>
struct KronJob {
  const T* g;  // G^{-1} or L_G, d_out x d_out
  index_t ldg, sg;
  const T* a;  // A^{-1} or L_A, d_in x d_in
  index_t lda, sa;
  const T* x;  // grad
  index_t ldx, sx;
  T* y;  // out
  index_t ldy, sy;
  int r, c;  // d_out, d_in
  int ldf;   // row stride of the factor in shared memory (odd: column reads are conflict-free)
  T alpha;
};

// An n x n factor into shared memory: all of it, or only its lower triangle.
template <class T>
__device__ void stage_factor(T* f, int ldf, const T* src, index_t ld, int n, bool lower) {
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  for (int i = warp; i < n; i += kKronWarps) {
    const int end = lower ? i + 1 : n;
    for (int j = lane; j < end; j += 32) f[i * ldf + j] = src[i * ld + j];
  }
}

// M <- M L^{-T}, then M <- M L^{-1} (M r x c with row stride c, L c x c lower).  Right-looking
// substitutions over the columns, rows spread over the warps; the thread that updates the next
// pivot column also divides it by its diagonal element, so each step takes one barrier.
template <class T>
__device__ void right_solves(T* m, int r, int c, const T* f, int ldf) {
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  // Y L^T = M: y_q = (m_q - sum_{j<q} y_j L_qj) / L_qq.
  for (int i = threadIdx.x; i < r; i += blockDim.x) m[i * c] /= f[0];
  __syncthreads();
  for (int j = 0; j + 1 < c; ++j) {
    for (int i = warp; i < r; i += kKronWarps) {
      T* row = m + i * c;
      const T y = row[j];
      for (int q = j + 1 + lane; q < c; q += 32) {
        T v = row[q] - y * f[q * ldf + j];
        if (q == j + 1) v /= f[q * ldf + q];
        row[q] = v;
      }
    }
    __syncthreads();
  }
  // Z L = Y: z_q = (y_q - sum_{j>q} z_j L_jq) / L_qq.
  for (int i = threadIdx.x; i < r; i += blockDim.x) m[i * c + c - 1] /= f[(c - 1) * ldf + c - 1];
  __syncthreads();
  for (int j = c - 1; j > 0; --j) {
    for (int i = warp; i < r; i += kKronWarps) {
      T* row = m + i * c;
      const T z = row[j];
      for (int q = lane; q < j; q += 32) {
        T v = row[q] - z * f[j * ldf + q];
        if (q == j - 1) v /= f[q * ldf + q];
        row[q] = v;
      }
    }
    __syncthreads();
  }
}

// M <- L^{-1} M, then M <- L^{-T} M (M r x c, L r x r lower); as above over the rows.
template <class T>
__device__ void left_solves(T* m, int r, int c, const T* f, int ldf) {
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  // L Y = M: y_p = (m_p - sum_{i<p} L_pi y_i) / L_pp.
  for (int j = threadIdx.x; j < c; j += blockDim.x) m[j] /= f[0];
  __syncthreads();
  for (int i = 0; i + 1 < r; ++i) {
    const T* yi = m + i * c;
    for (int p = i + 1 + warp; p < r; p += kKronWarps) {
      T* row = m + p * c;
      const T l = f[p * ldf + i], d = f[p * ldf + p];
      for (int j = lane; j < c; j += 32) {
        T v = row[j] - l * yi[j];
        if (p == i + 1) v /= d;
        row[j] = v;
      }
    }
    __syncthreads();
  }
  // L^T Z = Y: z_p = (y_p - sum_{i>p} L_ip z_i) / L_pp.
  for (int j = threadIdx.x; j < c; j += blockDim.x) m[(r - 1) * c + j] /= f[(r - 1) * ldf + r - 1];
  __syncthreads();
  for (int i = r - 1; i > 0; --i) {
    const T* zi = m + i * c;
    for (int p = warp; p < i; p += kKronWarps) {
      T* row = m + p * c;
      const T l = f[i * ldf + p], d = f[p * ldf + p];
      for (int j = lane; j < c; j += 32) {
        T v = row[j] - l * zi[j];
        if (p == i - 1) v /= d;
        row[j] = v;
      }
    }
    __syncthreads();
  }
}

// One block per matrix: out = alpha G^{-1} grad A^{-1} with grad and one factor at a time in
// shared memory (M: r x c, then F: max(r, c) rows of ldf).
template <class T, bool kCholesky>
__global__ void __launch_bounds__(kKronThreads)
    kron_fused_kernel(const KronJob<T> job, const index_t first) {
  extern __shared__ __align__(16) unsigned char kron_smem[];
  T* m = reinterpret_cast<T*>(kron_smem);
  T* f = m + job.r * job.c;
  const index_t b = first + blockIdx.x;
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  const int r = job.r, c = job.c;
  const T* x = job.x + b * job.sx;
  T* y = job.y + b * job.sy;
  for (int i = warp; i < r; i += kKronWarps)
    for (int j = lane; j < c; j += 32) m[i * c + j] = x[i * job.ldx + j];
  stage_factor(f, job.ldf, job.a + b * job.sa, job.lda, c, kCholesky);
  __syncthreads();
  if constexpr (kCholesky) {
    right_solves(m, r, c, f, job.ldf);  // ends with a barrier: F may be overwritten
    stage_factor(f, job.ldf, job.g + b * job.sg, job.ldg, r, true);
    __syncthreads();
    left_solves(m, r, c, f, job.ldf);
    for (int i = warp; i < r; i += kKronWarps)
      for (int j = lane; j < c; j += 32) y[i * job.ldy + j] = job.alpha * m[i * c + j];
  } else {
    // grad A^{-1} into registers: rows warp + 8 s, columns lane + 32 u (r, c <= 64).
    constexpr int kS = kFusedInverse / kKronWarps, kU = kFusedInverse / 32;
    T t[kS][kU];
#pragma unroll
    for (int s = 0; s < kS; ++s)
#pragma unroll
      for (int u = 0; u < kU; ++u) {
        const int i = warp + kKronWarps * s, j = lane + 32 * u;
        T acc = T(0);
        if (i < r && j < c)
          for (int q = 0; q < c; ++q) acc += m[i * c + q] * f[q * job.ldf + j];
        t[s][u] = acc;
      }
    __syncthreads();  // every read of M and F is done
#pragma unroll
    for (int s = 0; s < kS; ++s)
#pragma unroll
      for (int u = 0; u < kU; ++u) {
        const int i = warp + kKronWarps * s, j = lane + 32 * u;
        if (i < r && j < c) m[i * c + j] = t[s][u];
      }
    stage_factor(f, job.ldf, job.g + b * job.sg, job.ldg, r, false);
    __syncthreads();
    for (int i = warp; i < r; i += kKronWarps)
      for (int j = lane; j < c; j += 32) {
        T acc = T(0);
        for (int q = 0; q < r; ++q) acc += f[i * job.ldf + q] * m[q * c + j];
        y[i * job.ldy + j] = job.alpha * acc;
      }
  }
}

// ---- tnt_normalize --------------------------------------------------------------------------

template <class T>
struct TntJob {
  T* p[kTntMax];
  index_t ld[kTntMax], stride[kTntMax], d[kTntMax];
  int k;
  int* info;
  index_t rows;  // sum of d_i: the rows of one variable's matrices
};

// Run by a whole warp for variable b: returns its info code (every lane) and, for code 0, lane
// 0 writes the scale of matrix i to s[i].  Fixed summation order: the same bits in both passes.
template <class T>
__device__ int tnt_plan(const TntJob<T>& job, index_t b, double* s) {
  const int lane = threadIdx.x % 32;
  double sum = 0;
  bool finite = true;
  for (int i = 0; i < job.k; ++i) {
    const T* g = job.p[i] + b * job.stride[i];
    double t = 0;
    for (index_t j = lane; j < job.d[i]; j += 32) t += double(g[j * (job.ld[i] + 1)]);
    t = warp_sum(t);
    finite = finite && isfinite(t);
    sum += t;
  }
  if (!finite) return -1;
  const double t = sum / job.k;
  if (!(t > 0)) return 1;
  double all = 1;
  for (int i = 0; i < job.k; ++i) all *= double(job.d[i]);
  const double ck = pow(pow(t / all, 1.0 / job.k), job.k - 1);  // c0^{K-1}
  if (lane == 0)
    for (int i = 0; i < job.k; ++i) {
      double others = 1;
      for (int j = 0; j < job.k; ++j)
        if (j != i) others *= double(job.d[j]);
      s[i] = 1.0 / (ck * others);
    }
  return 0;
}

// Pass 1: the off-diagonal elements of rows [part kTntRows, (part + 1) kTntRows) of variable b's
// matrices (concatenated), a warp per row.
template <class T>
__global__ void __launch_bounds__(kTntThreads)
    tnt_offdiag_kernel(const TntJob<T> job, index_t parts, index_t first) {
  __shared__ double s[kTntMax];
  __shared__ int code;
  const index_t blk = first + blockIdx.x;
  const index_t b = blk / parts, part = blk - b * parts;
  if (threadIdx.x < 32) {
    const int c = tnt_plan(job, b, s);
    if (threadIdx.x == 0) code = c;
  }
  __syncthreads();
  if (code == 1) return;
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  const T nan = std::numeric_limits<T>::quiet_NaN();
  const index_t end = std::min(job.rows, (part + 1) * kTntRows);
  for (index_t row = part * kTntRows + warp; row < end; row += kTntThreads / 32) {
    int i = 0;
    index_t rr = row;
    while (rr >= job.d[i]) rr -= job.d[i++];
    T* g = job.p[i] + b * job.stride[i] + rr * job.ld[i];
    const double si = s[i];
    for (index_t j = lane; j < job.d[i]; j += 32)
      if (j != rr) g[j] = code == 0 ? T(double(g[j]) * si) : nan;
  }
}

// Pass 2: a warp per variable: info and the diagonals.
template <class T>
__global__ void __launch_bounds__(kTntThreads)
    tnt_diag_kernel(const TntJob<T> job, index_t batch, index_t first) {
  __shared__ double s[kTntThreads / 32][kTntMax];
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  const index_t b = (first + blockIdx.x) * (kTntThreads / 32) + warp;
  if (b >= batch) return;  // warp-uniform
  const int code = tnt_plan(job, b, s[warp]);
  __syncwarp();
  if (lane == 0) job.info[b] = code;
  if (code == 1) return;
  const T nan = std::numeric_limits<T>::quiet_NaN();
  for (int i = 0; i < job.k; ++i) {
    T* g = job.p[i] + b * job.stride[i];
    const double si = s[warp][i];
    // Each lane rewrites only the diagonal elements it read in tnt_plan.
    for (index_t j = lane; j < job.d[i]; j += 32) {
      T& v = g[j * (job.ld[i] + 1)];
      v = code == 0 ? T(double(v) * si) : nan;
    }
  }
}

// ---- kfac_pi_damping ------------------------------------------------------------------------

template <class T>
struct PiJob {
  MatrixBatch<const T> a[kPiGroups], g[kPiGroups];
  index_t first[kPiGroups + 1];  // pair first[l] + b is matrix b of group l
  int groups;
  double root_lambda;
  T *shift_a, *shift_g;
  int* info;
};

// Mean diagonal entry of matrix b of f (0 for an empty matrix), the same value in every lane.
template <class T>
__device__ double mean_diagonal(const MatrixBatch<const T>& f, index_t b) {
  const int lane = threadIdx.x % 32;
  const T* p = f.data + b * f.stride;
  double t = 0;
  for (index_t i = lane; i < f.rows; i += 32) t += double(p[i * (f.ld + 1)]);
  t = warp_sum(t);
  return f.rows == 0 ? t : t / double(f.rows);
}

template <class T>
__global__ void __launch_bounds__(kPiThreads)
    pi_damping_kernel(const PiJob<T> job, index_t first_pair) {
  const index_t i = first_pair + index_t(blockIdx.x) * (kPiThreads / 32) + threadIdx.x / 32;
  if (i >= job.first[job.groups]) return;  // warp-uniform
  int l = 0;
  while (i >= job.first[l + 1]) ++l;
  const index_t b = i - job.first[l];
  const double t_a = mean_diagonal(job.a[l], b), t_g = mean_diagonal(job.g[l], b);
  if (threadIdx.x % 32 != 0) return;
  if (!isfinite(t_a) || !isfinite(t_g)) {
    job.info[i] = -1;
    job.shift_a[i] = job.shift_g[i] = std::numeric_limits<T>::quiet_NaN();
    return;
  }
  const bool ok = t_a > 0 && t_g > 0;
  const double pi = ok ? sqrt(t_a / t_g) : 1.0;
  job.info[i] = ok ? 0 : 1;
  job.shift_a[i] = T(pi * job.root_lambda);
  job.shift_g[i] = T(job.root_lambda / pi);
}

// ---- host side --------------------------------------------------------------------------------

unsigned grid_of(index_t blocks) {
  return unsigned(std::min(blocks, kMaxGrid));
}

template <class U>
Status check_group(const char* op, const MatrixBatch<U>& v, const char* name, std::size_t groups,
                   std::size_t g) {
  if (v.extent() == 0) return Status::success();
  return check_device_pointer(op, v.data, detail::view_name(name, groups > 1, g) + ".data");
}

// ---- cuBLAS -------------------------------------------------------------------------------------

cublasOperation_t blas_op(bool trans) {
  return trans ? CUBLAS_OP_T : CUBLAS_OP_N;
}

cublasStatus_t gemm_strided(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, index_t m,
                            index_t n, index_t k, const float* alpha, const float* a, index_t lda,
                            index_t sa, const float* b, index_t ldb, index_t sb, const float* beta,
                            float* c, index_t ldc, index_t sc, index_t count) {
  return cublasSgemmStridedBatched_64(h, ta, tb, m, n, k, alpha, a, lda, sa, b, ldb, sb, beta, c,
                                      ldc, sc, count);
}
cublasStatus_t gemm_strided(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, index_t m,
                            index_t n, index_t k, const double* alpha, const double* a, index_t lda,
                            index_t sa, const double* b, index_t ldb, index_t sb,
                            const double* beta, double* c, index_t ldc, index_t sc, index_t count) {
  return cublasDgemmStridedBatched_64(h, ta, tb, m, n, k, alpha, a, lda, sa, b, ldb, sb, beta, c,
                                      ldc, sc, count);
}
cublasStatus_t syrk(cublasHandle_t h, cublasOperation_t t, index_t n, index_t k, const float* alpha,
                    const float* a, index_t lda, const float* beta, float* c, index_t ldc) {
  return cublasSsyrk_64(h, CUBLAS_FILL_MODE_UPPER, t, n, k, alpha, a, lda, beta, c, ldc);
}
cublasStatus_t syrk(cublasHandle_t h, cublasOperation_t t, index_t n, index_t k,
                    const double* alpha, const double* a, index_t lda, const double* beta,
                    double* c, index_t ldc) {
  return cublasDsyrk_64(h, CUBLAS_FILL_MODE_UPPER, t, n, k, alpha, a, lda, beta, c, ldc);
}
cublasStatus_t trsm(cublasHandle_t h, cublasSideMode_t side, cublasOperation_t t, index_t m,
                    index_t n, const float* alpha, const float* a, index_t lda, float* b,
                    index_t ldb) {
  return cublasStrsm_64(h, side, CUBLAS_FILL_MODE_UPPER, t, CUBLAS_DIAG_NON_UNIT, m, n, alpha, a,
                        lda, b, ldb);
}
cublasStatus_t trsm(cublasHandle_t h, cublasSideMode_t side, cublasOperation_t t, index_t m,
                    index_t n, const double* alpha, const double* a, index_t lda, double* b,
                    index_t ldb) {
  return cublasDtrsm_64(h, side, CUBLAS_FILL_MODE_UPPER, t, CUBLAS_DIAG_NON_UNIT, m, n, alpha, a,
                        lda, b, ldb);
}

// ---- the GEMM engine ------------------------------------------------------------------------

template <class T, int BM, int BN, int TM, int TN>
cudaError_t launch_tile_config(const GemmJob<T>& job, cudaStream_t st) {
  constexpr int NT = (BM / TM) * (BN / TN);
  const index_t total = job.nouter * job.ninner * ((job.m + BM - 1) / BM) * ((job.n + BN - 1) / BN);
  for (index_t first = 0; first < total; first += kMaxGrid) {
    tile_gemm_kernel<T, BM, BN, TM, TN><<<grid_of(total - first), NT, 0, st>>>(job, first);
    if (const cudaError_t e = cudaGetLastError(); e != cudaSuccess) return e;
  }
  return cudaSuccess;
}

// The tile shape by m and n (square whenever m == n, as symmetric jobs need).
template <class T>
cudaError_t launch_tiles(const GemmJob<T>& job, cudaStream_t st) {
  const index_t m = job.m, n = job.n;
  if (m <= 8 && n <= 8) return launch_tile_config<T, 8, 8, 1, 1>(job, st);
  if (m <= 16 && n <= 16) return launch_tile_config<T, 16, 16, 1, 1>(job, st);
  if (m <= 16) return launch_tile_config<T, 16, 64, 1, 4>(job, st);
  if (n <= 16) return launch_tile_config<T, 64, 16, 4, 1>(job, st);
  if (m <= 32 && n <= 32) return launch_tile_config<T, 32, 32, 2, 2>(job, st);
  return launch_tile_config<T, 64, 64, 4, 4>(job, st);
}

// cuBLAS strided batched GEMM.  *done is false when the batch would take more than kBlasCalls
// calls (then the tile kernel runs it).
template <class T>
Status blas_gemm(const char* op, const GemmJob<T>& job, cudaStream_t st, bool* done) {
  const index_t no = job.nouter, ni = job.ninner;
  const Operand<T>&a = job.a, &b = job.b;
  // One call over all matrices when the (outer, inner) offsets compose into one stride.
  index_t calls = 1, count = no * ni, sa = a.si, sb = b.si, sc = job.csi;
  if (ni == 1) {
    sa = a.so, sb = b.so, sc = job.cso;
  } else if (no > 1 && (a.so != a.si * ni || b.so != b.si * ni || job.cso != job.csi * ni)) {
    calls = no;
    count = ni;
  }
  *done = calls <= kBlasCalls;
  if (!*done) return Status::success();
  Blas blas;
  CURVKIT_RETURN_IF_ERROR(blas.open(op, st));
  for (index_t o = 0; o < calls; ++o) {
    const index_t step = calls > 1 ? o : 0;
    // Row-major C = op(A) op(B) is column-major C^T = op(B)^T op(A)^T.
    const cublasStatus_t e =
        gemm_strided(blas.handle(), blas_op(b.trans), blas_op(a.trans), job.n, job.m, job.k,
                     &job.alpha, b.p + step * b.so, b.ld, sb, a.p + step * a.so, a.ld, sa,
                     &job.beta, job.c + step * job.cso, job.ldc, sc, count);
    if (e != CUBLAS_STATUS_SUCCESS) return blas_error(op, e);
  }
  return finish(op, cudaSuccess);
}

// cuBLAS SYRK per matrix (there is no batched SYRK), then the mirror for Fill::full.
template <class T>
Status blas_syrk(const char* op, const GemmJob<T>& job, cudaStream_t st, bool* done) {
  const index_t nmat = job.nouter * job.ninner;
  *done = nmat <= kBlasCalls;
  if (!*done) return Status::success();
  {
    Blas blas;
    CURVKIT_RETURN_IF_ERROR(blas.open(op, st));
    // Row-major lower = column-major upper; the column-major view of a row-major op(A) is
    // transposed, hence the flipped operation.
    const cublasOperation_t t = blas_op(!job.a.trans);
    for (index_t z = 0; z < nmat; ++z) {
      const index_t zo = z / job.ninner, zi = z - zo * job.ninner;
      const cublasStatus_t e =
          syrk(blas.handle(), t, job.m, job.k, &job.alpha, job.a.p + zo * job.a.so + zi * job.a.si,
               job.a.ld, &job.beta, job.c + zo * job.cso + zi * job.csi, job.ldc);
      if (e != CUBLAS_STATUS_SUCCESS) return blas_error(op, e);
    }
  }
  if (job.tri == Tri::mirror) {
    const index_t tiles = (job.m + 31) / 32, total = nmat * tiles * tiles;
    for (index_t first = 0; first < total; first += kMaxGrid) {
      mirror_kernel<T><<<grid_of(total - first), 256, 0, st>>>(job.c, job.m, job.ldc, job.cso,
                                                               job.csi, job.ninner, first);
      if (const cudaError_t e = cudaGetLastError(); e != cudaSuccess) return finish(op, e);
    }
  }
  return finish(op, cudaSuccess);
}

// Runs a job on the path its size calls for (see the top of the file).
template <class T>
Status run_gemm(const char* op, GemmJob<T> job, cudaStream_t st) {
  if (job.m == 0 || job.n == 0 || job.nouter == 0 || job.ninner == 0) return Status::success();
  if (job.k == 0 || job.nseg == 0) {  // C = beta C: nothing is read but C (and only if beta != 0)
    job.k = 0;
    job.nseg = 1;
    job.alpha = T(0);
  }
  const double work = double(job.m) * double(job.n) * double(job.k) * double(job.nseg);
  if (work >= kBlasWork && job.nseg == 1) {
    bool done = false;
    const Status s =
        job.tri == Tri::none ? blas_gemm(op, job, st, &done) : blas_syrk(op, job, st, &done);
    if (!s.ok() || done) return s;
  }
  return finish(op, launch_tiles(job, st));
}

// ---- kron_apply paths -------------------------------------------------------------------------

std::size_t fused_bytes(index_t r, index_t c, std::size_t elem) {
  const index_t d = std::max(r, c), ldf = d | 1;
  return std::size_t(r * c + d * ldf) * elem;
}

bool fused_inverse(index_t r, index_t c) {
  return r <= kFusedInverse && c <= kFusedInverse;
}

bool fused_cholesky(index_t r, index_t c, index_t batch, std::size_t bytes, int limit) {
  return bytes <= std::size_t(limit) &&
         ((r <= kFusedInverse && c <= kFusedInverse) || batch >= kFusedMinBatch);
}

template <class T>
KronJob<T> kron_job(const MatrixBatch<const T>& g, const MatrixBatch<const T>& a,
                    const MatrixBatch<const T>& x, const MatrixBatch<T>& y, T alpha) {
  KronJob<T> j;
  j.g = g.data;
  j.ldg = g.ld;
  j.sg = g.batch == 1 ? 0 : g.stride;  // batch 1: one factor for every matrix
  j.a = a.data;
  j.lda = a.ld;
  j.sa = a.batch == 1 ? 0 : a.stride;
  j.x = x.data;
  j.ldx = x.ld;
  j.sx = x.stride;
  j.y = y.data;
  j.ldy = y.ld;
  j.sy = y.stride;
  j.r = int(x.rows);
  j.c = int(x.cols);
  j.ldf = int(std::max(x.rows, x.cols) | 1);
  j.alpha = alpha;
  return j;
}

template <class T, bool kCholesky>
cudaError_t launch_fused(const KronJob<T>& job, index_t batch, std::size_t bytes, cudaStream_t st) {
  auto* kernel = kron_fused_kernel<T, kCholesky>;
  if (const cudaError_t e = allow_smem(kernel, bytes); e != cudaSuccess) return e;
  for (index_t first = 0; first < batch; first += kMaxGrid) {
    kernel<<<grid_of(batch - first), kKronThreads, bytes, st>>>(job, first);
    if (const cudaError_t e = cudaGetLastError(); e != cudaSuccess) return e;
  }
  return cudaSuccess;
}

// out = alpha grad, then (column-major view) four in-place TRSMs per matrix with the factors'
// storage read as upper triangular matrices U = L^T: G^{-1} = U_G^{-1} U_G^{-T} from the right,
// A^{-1} = U_A^{-T} U_A^{-1} from the left.
template <class T>
Status blas_cholesky(const char* op, MatrixBatch<const T> g, MatrixBatch<const T> a,
                     MatrixBatch<const T> x, MatrixBatch<T> y, T alpha, cudaStream_t st) {
  const index_t r = x.rows, c = x.cols, rows = x.batch * r;
  for (index_t first = 0; first < rows; first += kMaxGrid) {
    scale_copy_kernel<T><<<grid_of(rows - first), 256, 0, st>>>(x.data, x.ld, x.stride, y.data,
                                                                y.ld, y.stride, r, c, alpha, first);
    if (const cudaError_t e = cudaGetLastError(); e != cudaSuccess) return finish(op, e);
  }
  Blas blas;
  CURVKIT_RETURN_IF_ERROR(blas.open(op, st));
  const T one = T(1);
  for (index_t b = 0; b < x.batch; ++b) {
    const T* lg = g.data + (g.batch == 1 ? 0 : b * g.stride);
    const T* la = a.data + (a.batch == 1 ? 0 : b * a.stride);
    T* yb = y.data + b * y.stride;
    cublasStatus_t e = trsm(blas.handle(), CUBLAS_SIDE_RIGHT, CUBLAS_OP_N, c, r, &one, lg, g.ld, yb,
                            y.ld);  // out <- L_G^{-1} out
    if (e == CUBLAS_STATUS_SUCCESS)
      e = trsm(blas.handle(), CUBLAS_SIDE_RIGHT, CUBLAS_OP_T, c, r, &one, lg, g.ld, yb,
               y.ld);  // out <- L_G^{-T} out
    if (e == CUBLAS_STATUS_SUCCESS)
      e = trsm(blas.handle(), CUBLAS_SIDE_LEFT, CUBLAS_OP_T, c, r, &one, la, a.ld, yb,
               y.ld);  // out <- out L_A^{-T}
    if (e == CUBLAS_STATUS_SUCCESS)
      e = trsm(blas.handle(), CUBLAS_SIDE_LEFT, CUBLAS_OP_N, c, r, &one, la, a.ld, yb,
               y.ld);  // out <- out L_A^{-1}
    if (e != CUBLAS_STATUS_SUCCESS) return blas_error(op, e);
  }
  return finish(op, cudaSuccess);
}

template <class T>
Operand<T> operand(const MatrixBatch<const T>& v, bool trans) {
  Operand<T> o;
  o.p = v.data;
  o.ld = v.ld;
  o.trans = trans;
  o.so = v.batch == 1 ? 0 : v.stride;  // batch 1: shared by every C
  return o;
}

}  // namespace

// ---- entry points -------------------------------------------------------------------------------

template <class T>
Status gemm(const Context& ctx, Op op_a, Op op_b, T alpha, GroupedBatch<const T> a,
            GroupedBatch<const T> b, T beta, GroupedBatch<T> c) {
  const char* op = "gemm";
  for (std::size_t g = 0; g < c.size(); ++g) {
    const MatrixBatch<T>& cg = c[g];
    if (cg.batch == 0 || cg.rows == 0 || cg.cols == 0) continue;
    CURVKIT_RETURN_IF_ERROR(check_group(op, a[g], "a", c.size(), g));
    CURVKIT_RETURN_IF_ERROR(check_group(op, b[g], "b", c.size(), g));
    CURVKIT_RETURN_IF_ERROR(check_group(op, cg, "c", c.size(), g));
    GemmJob<T> job;
    job.m = cg.rows;
    job.n = cg.cols;
    job.k = op_a == Op::none ? a[g].cols : a[g].rows;
    job.nouter = cg.batch;
    job.a = operand(a[g], op_a == Op::trans);
    job.b = operand(b[g], op_b == Op::trans);
    job.c = cg.data;
    job.ldc = cg.ld;
    job.cso = cg.stride;
    job.alpha = alpha;
    job.beta = beta;
    CURVKIT_RETURN_IF_ERROR(run_gemm(op, job, stream_of(ctx)));
  }
  return Status::success();
}

template <class T>
Status syrk(const Context& ctx, Op op_a, T alpha, GroupedBatch<const T> a, T beta,
            GroupedBatch<T> c, Fill fill) {
  const char* op = "syrk";
  for (std::size_t g = 0; g < c.size(); ++g) {
    const MatrixBatch<T>& cg = c[g];
    if (cg.batch == 0 || cg.rows == 0) continue;
    CURVKIT_RETURN_IF_ERROR(check_group(op, a[g], "a", c.size(), g));
    CURVKIT_RETURN_IF_ERROR(check_group(op, cg, "c", c.size(), g));
    GemmJob<T> job;
    job.m = job.n = cg.rows;
    job.k = op_a == Op::none ? a[g].cols : a[g].rows;
    job.nouter = cg.batch;
    job.a = operand(a[g], op_a == Op::trans);
    job.b = job.a;
    job.b.trans = !job.a.trans;  // op(B) = op(A)^T
    job.c = cg.data;
    job.ldc = cg.ld;
    job.cso = cg.stride;
    job.alpha = alpha;
    job.beta = beta;
    job.tri = fill == Fill::full ? Tri::mirror : Tri::lower;
    CURVKIT_RETURN_IF_ERROR(run_gemm(op, job, stream_of(ctx)));
  }
  return Status::success();
}

template <class T>
Status mode_product(const Context& ctx, TensorBatch<const T> x, int mode, MatrixBatch<const T> u,
                    TensorBatch<T> y, Op op_u) {
  const char* op = "mode_product";
  if (x.batch == 0 || y.size() == 0) return Status::success();
  CURVKIT_RETURN_IF_ERROR(check_group(op, u, "u", 1, 0));
  if (x.extent() > 0) CURVKIT_RETURN_IF_ERROR(check_device_pointer(op, x.data, "x.data"));
  CURVKIT_RETURN_IF_ERROR(check_device_pointer(op, y.data, "y.data"));
  const index_t d = x.dims[mode], dp = y.dims[mode], outer = x.outer(mode), inner = x.inner(mode);
  const index_t su = u.batch == 1 ? 0 : u.stride;
  GemmJob<T> job;
  job.nouter = x.batch;
  job.k = d;
  job.c = y.data;
  job.cso = y.stride;
  if (inner == 1 && outer > 1) {
    // The last mode: per tensor Y (L x d') = X (L x d) op(U)^T, one product instead of L
    // matrix-vector products.
    job.m = outer;
    job.n = dp;
    job.a.p = x.data;
    job.a.ld = d;
    job.a.so = x.stride;
    job.b.p = u.data;
    job.b.ld = u.ld;
    job.b.trans = op_u == Op::none;
    job.b.so = su;
    job.ldc = dp;
  } else {
    // Slab l of tensor t: Y_l (d' x R) = op(U_t) X_l (d x R).
    job.m = dp;
    job.n = inner;
    job.ninner = outer;
    job.a.p = u.data;
    job.a.ld = u.ld;
    job.a.trans = op_u == Op::trans;
    job.a.so = su;
    job.b.p = x.data;
    job.b.ld = inner;
    job.b.so = x.stride;
    job.b.si = d * inner;
    job.ldc = inner;
    job.csi = dp * inner;
  }
  return run_gemm(op, job, stream_of(ctx));
}

template <class T>
Status mode_gram(const Context& ctx, TensorBatch<const T> x, std::span<const MatrixBatch<T>> grams,
                 const ModeGramOptions& options) {
  const char* op = "mode_gram";
  if (x.batch == 0) return Status::success();
  if (x.extent() > 0) CURVKIT_RETURN_IF_ERROR(check_device_pointer(op, x.data, "x.data"));
  const int modes = std::min<int>(x.order, int(grams.size()));
  for (int k = 0; k < modes; ++k) {
    const MatrixBatch<T>& g = grams[k];
    const index_t d = x.dims[k];
    if (g.data == nullptr || d == 0) continue;
    CURVKIT_RETURN_IF_ERROR(check_group(op, g, "grams", grams.size(), std::size_t(k)));
    const index_t outer = x.outer(k), inner = x.inner(k);
    GemmJob<T> job;
    job.m = job.n = d;
    job.nouter = x.batch;
    job.a.p = x.data;
    job.a.so = x.stride;
    if (outer * inner == 0) {
      job.k = 0;  // an empty unfolding: S = beta S_old
    } else if (inner == 1 && outer > 1) {
      job.k = outer;  // the last mode: mat_k(X) = X^T with X stored L x d
      job.a.ld = d;
      job.a.trans = true;
    } else if (outer == 1) {
      job.k = inner;  // the first mode: mat_k(X) = X, d x R
      job.a.ld = inner;
    } else {
      job.k = inner;  // a middle mode: one k segment per slab, summed in slab order
      job.nseg = outer;
      job.a.ld = inner;
      job.a.seg = d * inner;
    }
    job.b = job.a;
    job.b.trans = !job.a.trans;
    job.c = g.data;
    job.ldc = g.ld;
    job.cso = g.stride;
    job.alpha = T((1.0 - options.beta) * options.scale);
    job.beta = T(options.beta);
    job.tri = options.fill == Fill::full ? Tri::mirror : Tri::lower;
    CURVKIT_RETURN_IF_ERROR(run_gemm(op, job, stream_of(ctx)));
  }
  return Status::success();
}

template <class T>
Status tnt_normalize(const Context& ctx, std::span<const MatrixBatch<T>> grams, int* info) {
  const char* op = "tnt_normalize";
  if (grams.empty() || grams[0].batch == 0) return Status::success();
  if (grams.size() > std::size_t(kTntMax))
    return Status::not_supported(op, "the cuda backend normalises at most " +
                                         std::to_string(kTntMax) + " matrices per variable (got " +
                                         std::to_string(grams.size()) + ")");
  TntJob<T> job{};
  job.k = int(grams.size());
  job.info = info;
  for (int i = 0; i < job.k; ++i) {
    CURVKIT_RETURN_IF_ERROR(check_group(op, grams[i], "grams", grams.size(), std::size_t(i)));
    job.p[i] = grams[i].data;
    job.ld[i] = grams[i].ld;
    job.stride[i] = grams[i].stride;
    job.d[i] = grams[i].rows;
    job.rows += grams[i].rows;
  }
  CURVKIT_RETURN_IF_ERROR(check_device_pointer(op, info, "info"));
  const cudaStream_t st = stream_of(ctx);
  const index_t batch = grams[0].batch;
  if (job.rows > 0) {  // pass 1 must finish before pass 2 rescales the diagonals: stream order
    const index_t parts = (job.rows + kTntRows - 1) / kTntRows, total = batch * parts;
    for (index_t first = 0; first < total; first += kMaxGrid) {
      tnt_offdiag_kernel<T><<<grid_of(total - first), kTntThreads, 0, st>>>(job, parts, first);
      if (const cudaError_t e = cudaGetLastError(); e != cudaSuccess) return finish(op, e);
    }
  }
  const index_t per = kTntThreads / 32, blocks = (batch + per - 1) / per;
  for (index_t first = 0; first < blocks; first += kMaxGrid) {
    tnt_diag_kernel<T><<<grid_of(blocks - first), kTntThreads, 0, st>>>(job, batch, first);
    if (const cudaError_t e = cudaGetLastError(); e != cudaSuccess) return finish(op, e);
  }
  return finish(op, cudaSuccess);
}

template <class T>
Status kfac_pi_damping(const Context& ctx, GroupedBatch<const T> a_factors,
                       GroupedBatch<const T> g_factors, double lambda, T* shift_a, T* shift_g,
                       int* info) {
  const char* op = "kfac_pi_damping";
  const std::size_t groups = a_factors.size();
  if (total_batch(a_factors) == 0) return Status::success();
  for (std::size_t l = 0; l < groups; ++l) {
    CURVKIT_RETURN_IF_ERROR(check_group(op, a_factors[l], "a_factors", groups, l));
    CURVKIT_RETURN_IF_ERROR(check_group(op, g_factors[l], "g_factors", groups, l));
  }
  CURVKIT_RETURN_IF_ERROR(check_device_pointer(op, shift_a, "shift_a"));
  CURVKIT_RETURN_IF_ERROR(check_device_pointer(op, shift_g, "shift_g"));
  CURVKIT_RETURN_IF_ERROR(check_device_pointer(op, info, "info"));
  const cudaStream_t st = stream_of(ctx);
  index_t out = 0;
  for (std::size_t g0 = 0; g0 < groups; g0 += kPiGroups) {
    PiJob<T> job{};
    job.groups = int(std::min<std::size_t>(kPiGroups, groups - g0));
    job.root_lambda = std::sqrt(lambda);
    for (int l = 0; l < job.groups; ++l) {
      job.a[l] = a_factors[g0 + std::size_t(l)];
      job.g[l] = g_factors[g0 + std::size_t(l)];
      job.first[l + 1] = job.first[l] + job.a[l].batch;
    }
    job.shift_a = shift_a + out;
    job.shift_g = shift_g + out;
    job.info = info + out;
    const index_t pairs = job.first[job.groups], per = kPiThreads / 32;
    const index_t blocks = (pairs + per - 1) / per;
    for (index_t first = 0; first < blocks; first += kMaxGrid) {
      pi_damping_kernel<T><<<grid_of(blocks - first), kPiThreads, 0, st>>>(job, first * per);
      if (const cudaError_t e = cudaGetLastError(); e != cudaSuccess) return finish(op, e);
    }
    out += pairs;
  }
  return finish(op, cudaSuccess);
}

template <class T>
std::size_t kron_apply_workspace_size(const Context&, GroupedBatch<const T> grad,
                                      const KronApplyOptions& options) {
  if (options.form != KronFactor::inverse) return 0;
  std::size_t bytes = 0;  // the groups run in stream order: one intermediate at a time
  for (const auto& x : grad)
    if (x.batch > 0 && x.rows > 0 && x.cols > 0 && !fused_inverse(x.rows, x.cols))
      bytes = std::max(bytes, std::size_t(x.batch * x.rows * x.cols) * sizeof(T));
  return bytes;
}

template <class T>
Status kron_apply(const Context& ctx, GroupedBatch<const T> g_factor,
                  GroupedBatch<const T> a_factor, GroupedBatch<const T> grad, GroupedBatch<T> out,
                  const KronApplyOptions& options) {
  const char* op = "kron_apply";
  const cudaStream_t st = stream_of(ctx);
  const bool chol = options.form == KronFactor::cholesky;
  const T alpha = T(options.alpha);
  int limit = 0;
  if (chol)
    if (const cudaError_t e = smem_limit(&limit); e != cudaSuccess) return finish(op, e);
  const std::size_t groups = grad.size();
  for (std::size_t l = 0; l < groups; ++l) {
    const MatrixBatch<const T>&x = grad[l], &g = g_factor[l], &a = a_factor[l];
    const MatrixBatch<T>& y = out[l];
    const index_t r = x.rows, c = x.cols;
    if (x.batch == 0 || r == 0 || c == 0) continue;
    CURVKIT_RETURN_IF_ERROR(check_group(op, g, "g_factor", groups, l));
    CURVKIT_RETURN_IF_ERROR(check_group(op, a, "a_factor", groups, l));
    CURVKIT_RETURN_IF_ERROR(check_group(op, x, "grad", groups, l));
    CURVKIT_RETURN_IF_ERROR(check_group(op, y, "out", groups, l));
    const std::size_t bytes = fused_bytes(r, c, sizeof(T));
    if (chol ? fused_cholesky(r, c, x.batch, bytes, limit) : fused_inverse(r, c)) {
      const KronJob<T> job = kron_job(g, a, x, y, alpha);
      const cudaError_t e = chol ? launch_fused<T, true>(job, x.batch, bytes, st)
                                 : launch_fused<T, false>(job, x.batch, bytes, st);
      CURVKIT_RETURN_IF_ERROR(finish(op, e));
      continue;
    }
    if (chol) {
      CURVKIT_RETURN_IF_ERROR(blas_cholesky(op, g, a, x, y, alpha, st));
      continue;
    }
    // Inverse form, large: W = grad A^{-1} in the workspace, then out = alpha G^{-1} W.
    T* w = static_cast<T*>(ctx.workspace().data);
    GemmJob<T> first;
    first.m = r;
    first.n = c;
    first.k = c;
    first.nouter = x.batch;
    first.a = operand(x, false);
    first.b = operand(a, false);
    first.c = w;
    first.ldc = c;
    first.cso = r * c;
    CURVKIT_RETURN_IF_ERROR(run_gemm(op, first, st));
    MatrixBatch<const T> wv{w, x.batch, r, c, c, r * c};
    GemmJob<T> second;
    second.m = r;
    second.n = c;
    second.k = r;
    second.nouter = x.batch;
    second.a = operand(g, false);
    second.b = operand(wv, false);
    second.c = y.data;
    second.ldc = y.ld;
    second.cso = y.stride;
    second.alpha = alpha;
    CURVKIT_RETURN_IF_ERROR(run_gemm(op, second, st));
  }
  return Status::success();
}

}  // namespace curvkit::cuda

CURVKIT_INSTANTIATE_KRON_BACKEND(cuda)
template std::size_t curvkit::cuda::kron_apply_workspace_size<float>(
    const curvkit::Context&, curvkit::GroupedBatch<const float>, const curvkit::KronApplyOptions&);
template std::size_t curvkit::cuda::kron_apply_workspace_size<double>(
    const curvkit::Context&, curvkit::GroupedBatch<const double>, const curvkit::KronApplyOptions&);
