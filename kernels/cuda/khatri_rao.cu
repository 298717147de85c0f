// CUDA backend of the Khatri–Rao family (contract: curvkit/khatri_rao.hpp).
//
// Products of two row blocks go through the same register-tiled scheme everywhere: a team of
// threads owns a BX x BX tile, k advances kBK columns at a time through shared memory, each
// operand row read along its contiguous direction (coalesced), zero padding past the edges so
// the inner loop is branch-free.  Floats accumulate in float (FMA), doubles in double (layer
// sums and the coarse Gram: double for both).
//
// khatri_rao_gram, per output group (one per layer, or one summed over all layers):
//   linear layers (S = 1)  linear_gram_kernel: one block of 256 threads per (batch entry, lower
//               tile of K), 16 x 16, 32 x 32 or 64 x 64 (by m and by the blocks there are).  For
//               every layer both A_I A_J^T and G_I G_J^T land in registers; the block keeps
//               sum_l (. + bias) o (.) in registers and writes the tile once (up to 16 layers
//               per launch).  Diagonal tiles stage their rows once.
//   S > 1, fused  pair_gram_kernel: one team per (batch entry, sample pair j <= i): the S x S
//               position blocks of A_i A_j^T and G_i G_j^T in P x P tiles (P = 4, 8, 16, 32 or
//               64 by S; 16 / 4 teams per block for P = 4 / 8), multiplied and summed in
//               registers, then a team reduction (fixed order, no atomics) and one store.
//   S > 1, direct  per batch entry and slice of c output channels: W_i = G_i(:, slice)^T A_i
//               for all m samples by cuda::gemm into the Context workspace (row i of the
//               m x c (d_in + bias) matrix is vec W_i), the bias column by bias_column_kernel,
//               then K += alpha W W^T by cuda::syrk.
//   Contributions run in a fixed order (linear launches, fused launches grouped by P, direct
//   layers, each in layer order); the first applies the caller's beta, the later ones beta = 1
//   (stream order); only the last one mirrors for Fill::full, from the value it writes.
//   Layers with no rows (S = 0) contribute nothing; a direct layer whose per-sample gradient is
//   empty (d_out = 0 or d_in + bias = 0) takes the fused path, so that NaN/Inf propagate as the
//   reference formula says.  With no contribution at all, K = beta K (lower, or full).
// khatri_rao_jv   jv_kernel, summed over the layers of a summed call (16 per launch; linear
//                 layers and the others in separate launches).  8 rows x 128 columns of A~ sit
//                 in registers while the block's warps stream V's rows (lanes on columns), so
//                 each V element read serves 8 rows: 8 samples per block for linear layers;
//                 otherwise one sample per block, its S rows 8 at a time (V read S / 8 times).
//                 V is read again by every block (from L2): without workspace, and with a
//                 deterministic sum, a sample's scalar cannot be split over blocks.
// khatri_rao_jtu  jtu_kernel: V = alpha G^T diag(u (x) 1_S) A~ + beta V, one block per (batch
//                 entry, tile of V; 8 x 8 to 64 x 64 by V's shape and the block count), the
//                 k loop over all m S rows with u_{r / S} staged beside each depth chunk and
//                 applied to G's values as they are read.  No split-k (it would need workspace
//                 or atomics).
// khatri_rao_layer_sums  one block of 128 threads per (batch entry, sample, layer), warps over
//                 rows and lanes over columns, summed in double.
// coarse_gram     one thread per (batch entry, i, j) of L x L, sums over m in double.
//
// Grouped calls: one launch sequence per output group, all on ctx.cuda_stream().  Nothing here
// synchronises the host or allocates memory.
#include <cuda_runtime.h>

#include <algorithm>
#include <cstddef>
#include <string>

#include "checks.hpp"
#include "host_common.cuh"
#include "khatri_rao_backends.hpp"
#include "kron_backends.hpp"
#include "warp_reduce.cuh"

namespace curvkit::cuda {
namespace {

constexpr index_t kMaxGrid = 0x7fffffff;  // gridDim.x limit: larger launches are split
constexpr int kBK = 16;                   // k depth of one shared-memory stage
constexpr int kMaxLayers = 16;            // layers per launch of a summing kernel
constexpr int kGramThreads = 256;
constexpr index_t kFillBlocks = 256;  // blocks from which a Gram takes 64 x 64 tiles
constexpr int kJvThreads = 256;
constexpr int kJvWarps = kJvThreads / 32;
constexpr int kJvRows = 8;            // rows of a sample held in registers at once
constexpr int kJvPer = 4;             // columns per lane per chunk
constexpr int kJvCols = 32 * kJvPer;  // columns per chunk
constexpr int kSumThreads = 128;      // layer sums
constexpr int kBiasThreads = 128;     // bias column of the direct path
constexpr int kCoarseTile = 16;       // coarse Gram: 16 x 16 outputs per block

// ---- device helpers -------------------------------------------------------------------------

// Sum of v over a team of NT consecutive threads (NT a power of two, or a multiple of 32):
// every thread of the team gets the same bits (butterfly, then the warps in a fixed order).
// red: NTEAMS * NT / 32 shared elements when NT > 32.  Called by every thread of the block.
template <class T, int NT>
__device__ __forceinline__ T team_sum(T v, T* red) {
  constexpr int W = NT < 32 ? NT : 32;
#pragma unroll
  for (int o = W / 2; o > 0; o /= 2) v += __shfl_xor_sync(kFull, v, o);
  if constexpr (NT <= 32) {
    return v;
  } else {
    constexpr int NW = NT / 32;
    const int warp = threadIdx.x / 32;
    if (threadIdx.x % 32 == 0) red[warp] = v;
    __syncthreads();
    const int w0 = (warp / NW) * NW;
    T s = red[w0];
#pragma unroll
    for (int w = 1; w < NW; ++w) s += red[w0 + w];
    return s;
  }
}

// Row i and column j <= i of entry q of a row-wise enumeration of a lower triangle.
__device__ __forceinline__ void tri_decode(index_t q, index_t& i, index_t& j) {
  index_t r = index_t((sqrt(8.0 * double(q) + 1.0) - 1.0) * 0.5);
  while (r * (r + 1) / 2 > q) --r;
  while ((r + 1) * (r + 2) / 2 <= q) ++r;
  i = r;
  j = q - r * (r + 1) / 2;
}

// Stages rows x0 .. x0 + BX (of n), columns k0 .. k0 + kBK (of depth) of the row-major p into
// sm[kk][x], zero past the edges.  lt: the thread's index in a team of NT; 16 consecutive
// threads read 16 consecutive elements of a row.
template <class T, int BX, int NT>
__device__ __forceinline__ void stage_rows(T (*sm)[BX + 1], const T* p, index_t ld, index_t x0,
                                           index_t n, index_t k0, index_t depth, int lt) {
  static_assert((BX * kBK) % NT == 0, "a stage must split evenly over the team");
  constexpr int kPer = BX * kBK / NT;
#pragma unroll
  for (int q = 0; q < kPer; ++q) {
    const int e = lt + q * NT, kk = e % kBK, x = e / kBK;
    const index_t gx = x0 + x, gk = k0 + kk;
    sm[kk][x] = gx < n && gk < depth ? p[gx * ld + gk] : T(0);
  }
}

// acc = X Y^T for the BX x BX tile: X = rows x0.. of px, Y = rows y0.. of py (both n rows of
// `depth` columns, row-major, ld).  Thread (tx, ty) of the team owns rows ty + r NX and columns
// tx + c NX.  same: X and Y are the same rows (staged once).  Every thread of the block calls
// it with the same depth (it synchronises the block).
template <class T, int BX, int TX>
__device__ __forceinline__ void team_product(T (*xs)[BX + 1], T (*ys)[BX + 1], const T* px,
                                             const T* py, index_t ld, index_t depth, index_t x0,
                                             index_t y0, index_t n, bool same, int lt,
                                             T (&acc)[TX][TX]) {
  constexpr int NX = BX / TX, NT = NX * NX;
  const int tx = lt % NX, ty = lt / NX;
#pragma unroll
  for (int r = 0; r < TX; ++r)
#pragma unroll
    for (int c = 0; c < TX; ++c) acc[r][c] = T(0);
  for (index_t k0 = 0; k0 < depth; k0 += kBK) {
    stage_rows<T, BX, NT>(xs, px, ld, x0, n, k0, depth, lt);
    if (!same) stage_rows<T, BX, NT>(ys, py, ld, y0, n, k0, depth, lt);
    __syncthreads();
    const T(*yv)[BX + 1] = same ? xs : ys;
#pragma unroll
    for (int kk = 0; kk < kBK; ++kk) {
      T xv[TX], yw[TX];
#pragma unroll
      for (int r = 0; r < TX; ++r) xv[r] = xs[kk][ty + r * NX];
#pragma unroll
      for (int c = 0; c < TX; ++c) yw[c] = yv[kk][tx + c * NX];
#pragma unroll
      for (int r = 0; r < TX; ++r)
#pragma unroll
        for (int c = 0; c < TX; ++c) acc[r][c] = fma(xv[r], yw[c], acc[r][c]);
    }
    __syncthreads();
  }
}

// ---- khatri_rao_gram ------------------------------------------------------------------------

// A layer input or output gradient of one layer: batch entry b starts at p + b stride.
template <class T>
struct View {
  const T* p = nullptr;
  index_t ld = 0, stride = 0, cols = 0;
};

template <class T>
View<T> view_of(const MatrixBatch<const T>& x) {
  return {x.data, x.ld, x.stride, x.cols};
}

template <class T>
struct GramLayer {
  View<T> a, g;
  index_t s = 1;  // positions per sample
};

// K = alpha sum over the job's layers of their Grams + beta K (K read only when `read`).
template <class T>
struct GramJob {
  GramLayer<T> layer[kMaxLayers];
  int nlayers = 0;
  T* k = nullptr;
  index_t ldk = 0, sk = 0, m = 0;
  T alpha = T(1), beta = T(0), bias = T(0);
  bool read = false;    // beta != 0
  bool mirror = false;  // also write the strict upper triangle (the last contribution)
};

// The element (b, i, j), j <= i, of K and, for `mirror`, its transpose.
template <class T>
__device__ __forceinline__ void store_gram(const GramJob<T>& job, index_t b, index_t i, index_t j,
                                           T sum) {
  T* kb = job.k + b * job.sk;
  T v = job.alpha * sum;
  if (job.read) v = fma(job.beta, kb[i * job.ldk + j], v);
  kb[i * job.ldk + j] = v;
  if (job.mirror && j < i) kb[j * job.ldk + i] = v;
}

// Linear layers: one block per (batch entry, BM x BM tile of K on or below the diagonal).
template <class T, int BM, int TM>
__global__ void __launch_bounds__((BM / TM) * (BM / TM))
    linear_gram_kernel(const GramJob<T> job, const index_t tiles, const index_t first) {
  constexpr int NX = BM / TM;
  __shared__ T xs[kBK][BM + 1];
  __shared__ T ys[kBK][BM + 1];
  const index_t blk = first + blockIdx.x, b = blk / tiles;
  index_t ti, tj;
  tri_decode(blk - b * tiles, ti, tj);
  const index_t i0 = ti * BM, j0 = tj * BM, m = job.m;
  const bool diag = ti == tj;
  const int lt = threadIdx.x, tx = lt % NX, ty = lt / NX;

  T sum[TM][TM];
#pragma unroll
  for (int r = 0; r < TM; ++r)
#pragma unroll
    for (int c = 0; c < TM; ++c) sum[r][c] = T(0);
  for (int l = 0; l < job.nlayers; ++l) {
    const GramLayer<T>& L = job.layer[l];
    const T* pa = L.a.p + b * L.a.stride;
    const T* pg = L.g.p + b * L.g.stride;
    T ta[TM][TM], tg[TM][TM];
    team_product<T, BM, TM>(xs, ys, pa, pa, L.a.ld, L.a.cols, i0, j0, m, diag, lt, ta);
    team_product<T, BM, TM>(xs, ys, pg, pg, L.g.ld, L.g.cols, i0, j0, m, diag, lt, tg);
#pragma unroll
    for (int r = 0; r < TM; ++r)
#pragma unroll
      for (int c = 0; c < TM; ++c) sum[r][c] = fma(ta[r][c] + job.bias, tg[r][c], sum[r][c]);
  }

#pragma unroll
  for (int r = 0; r < TM; ++r) {
    const index_t i = i0 + ty + r * NX;
    if (i >= m) continue;
#pragma unroll
    for (int c = 0; c < TM; ++c) {
      const index_t j = j0 + tx + c * NX;
      if (j > i) continue;  // also j >= m, since i < m
      store_gram(job, b, i, j, sum[r][c]);
    }
  }
}

// Layers with S > 1, fused: team z of the block takes pair q = (first + block) NPB + z of the
// enumeration (batch entry, i, j <= i).  All teams run the same loops (the layers' S and depths
// are shared), so the block barriers inside team_product line up; a team past the end computes
// pair 0 and does not store.
template <class T, int P, int TP, int NPB>
__global__ void __launch_bounds__(NPB*(P / TP) * (P / TP))
    pair_gram_kernel(const GramJob<T> job, const index_t pairs, const index_t total,
                     const index_t first) {
  constexpr int NT = (P / TP) * (P / TP);
  __shared__ T xs[NPB][kBK][P + 1];
  __shared__ T ys[NPB][kBK][P + 1];
  __shared__ T red[NT > 32 ? NPB * NT / 32 : 1];
  const int team = threadIdx.x / NT, lt = threadIdx.x % NT;
  index_t q = (first + blockIdx.x) * NPB + team;
  const bool valid = q < total;
  if (!valid) q = 0;
  const index_t b = q / pairs;
  index_t i, j;
  tri_decode(q - b * pairs, i, j);

  T partial = T(0);
  for (int l = 0; l < job.nlayers; ++l) {
    const GramLayer<T>& L = job.layer[l];
    const index_t s = L.s;
    const T* ai = L.a.p + b * L.a.stride + i * s * L.a.ld;
    const T* aj = L.a.p + b * L.a.stride + j * s * L.a.ld;
    const T* gi = L.g.p + b * L.g.stride + i * s * L.g.ld;
    const T* gj = L.g.p + b * L.g.stride + j * s * L.g.ld;
    for (index_t t0 = 0; t0 < s; t0 += P)
      for (index_t t1 = 0; t1 < s; t1 += P) {
        const bool same = i == j && t0 == t1;
        T ta[TP][TP], tg[TP][TP];
        team_product<T, P, TP>(xs[team], ys[team], ai, aj, L.a.ld, L.a.cols, t0, t1, s, same, lt,
                               ta);
        team_product<T, P, TP>(xs[team], ys[team], gi, gj, L.g.ld, L.g.cols, t0, t1, s, same, lt,
                               tg);
        // Padding (past S) is zero in both products: (0 + bias) 0 adds nothing.
#pragma unroll
        for (int r = 0; r < TP; ++r)
#pragma unroll
          for (int c = 0; c < TP; ++c) partial = fma(ta[r][c] + job.bias, tg[r][c], partial);
      }
  }
  const T sum = team_sum<T, NT>(partial, red);
  if (valid && lt == 0) store_gram(job, b, i, j, sum);
}

// Direct path: w[i row + p wcols + wcols - 1] = sum_t g(i S + t, p) for the slice's channels p
// (g already offset to the batch entry and the slice's first channel).
template <class T>
__global__ void __launch_bounds__(kBiasThreads)
    bias_column_kernel(const T* g, index_t ldg, index_t s, index_t channels, T* w, index_t wcols,
                       index_t row, index_t parts, index_t first) {
  const index_t blk = first + blockIdx.x, i = blk / parts, part = blk - i * parts;
  const index_t p = part * kBiasThreads + threadIdx.x;
  if (p >= channels) return;
  const T* gi = g + i * s * ldg + p;
  T sum = T(0);
  for (index_t t = 0; t < s; ++t) sum += gi[t * ldg];
  w[i * row + p * wcols + wcols - 1] = sum;
}

// ---- khatri_rao_jv --------------------------------------------------------------------------

template <class T>
struct JvLayer {
  View<T> a, g, v;
  index_t s = 1;
};

template <class T>
struct JvJob {
  JvLayer<T> layer[kMaxLayers];
  int nlayers = 0;
  T* u = nullptr;
  index_t ldu = 0, su = 0, m = 0;
  T alpha = T(1), beta = T(0);
  bool read = false;
  int bias = 0;
};

// u_i = alpha sum_l sum_t g_t^T V a~_t + beta u_i.  A block holds a chunk of kJvRows rows and
// kJvCols columns of A~ in registers (lane q: columns q, q + 32, ...; every row), and warp w
// takes V's rows p = w, w + 8, ...: each V element read is used for all the chunk's rows.
//   kLinear   (every layer of the job has S = 1) the rows are kJvRows consecutive samples, each
//             with its own accumulator: one block per (batch entry, kJvRows samples).
//   otherwise one block per (batch entry, sample); the chunk is kJvRows of the sample's S rows,
//             collapsed before V: y = sum_t g(t, p) a~(t, c), acc += V(p, c) y.
template <class T, bool kLinear>
__global__ void __launch_bounds__(kJvThreads)
    jv_kernel(const JvJob<T> job, const index_t per, const index_t first) {
  constexpr int NR = kLinear ? kJvRows : 1;  // outputs of the block
  __shared__ T red[NR][kJvWarps];
  const index_t blk = first + blockIdx.x, b = blk / per, i0 = (blk - b * per) * NR;
  const int nout = int(job.m - i0 < NR ? job.m - i0 : NR);
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  T acc[NR];
#pragma unroll
  for (int r = 0; r < NR; ++r) acc[r] = T(0);
  for (int l = 0; l < job.nlayers; ++l) {
    const JvLayer<T>& L = job.layer[l];
    const index_t s = L.s, din = L.a.cols, dout = L.g.cols, nc = din + job.bias;
    const index_t rows = kLinear ? nout : s;  // the block's rows, from row i0 S on
    const T* a = L.a.p + b * L.a.stride + i0 * s * L.a.ld;
    const T* g = L.g.p + b * L.g.stride + i0 * s * L.g.ld;
    const T* v = L.v.p + b * L.v.stride;
    for (index_t r0 = 0; r0 < rows; r0 += kJvRows) {
      const int nr = int(rows - r0 < kJvRows ? rows - r0 : kJvRows);
      for (index_t c0 = 0; c0 < nc; c0 += kJvCols) {
        T ar[kJvRows][kJvPer];
#pragma unroll
        for (int r = 0; r < kJvRows; ++r)
#pragma unroll
          for (int q = 0; q < kJvPer; ++q) {
            const index_t c = c0 + lane + 32 * q;
            T x = T(0);
            if (r < nr && c < nc) x = c < din ? a[(r0 + r) * L.a.ld + c] : T(1);
            ar[r][q] = x;
          }
        for (index_t p = warp; p < dout; p += kJvWarps) {
          T gr[kJvRows];
#pragma unroll
          for (int r = 0; r < kJvRows; ++r) gr[r] = r < nr ? g[(r0 + r) * L.g.ld + p] : T(0);
          const T* vp = v + p * L.v.ld;
#pragma unroll
          for (int q = 0; q < kJvPer; ++q) {
            const index_t c = c0 + lane + 32 * q;
            if (c >= nc) continue;
            const T vpc = vp[c];
            if constexpr (kLinear) {
#pragma unroll
              for (int r = 0; r < kJvRows; ++r) acc[r] = fma(vpc, gr[r] * ar[r][q], acc[r]);
            } else {
              T y = T(0);
#pragma unroll
              for (int r = 0; r < kJvRows; ++r) y = fma(gr[r], ar[r][q], y);
              acc[0] = fma(vpc, y, acc[0]);
            }
          }
        }
      }
    }
  }
  // Block sums in a fixed order (warp butterflies, then the warps in order).
#pragma unroll
  for (int r = 0; r < NR; ++r) {
    const T w = warp_sum(acc[r]);
    if (lane == 0) red[r][warp] = w;
  }
  __syncthreads();
  if (threadIdx.x < NR && int(threadIdx.x) < nout) {
    const int r = threadIdx.x;
    T sum = red[r][0];
#pragma unroll
    for (int w = 1; w < kJvWarps; ++w) sum += red[r][w];
    T* out = job.u + b * job.su + (i0 + r) * job.ldu;
    T val = job.alpha * sum;
    if (job.read) val = fma(job.beta, *out, val);
    *out = val;
  }
}

// ---- khatri_rao_jtu -------------------------------------------------------------------------

template <class T>
struct JtuJob {
  View<T> a, g;
  const T* u = nullptr;
  index_t ldu = 0, su = 0;
  T* v = nullptr;
  index_t ldv = 0, sv = 0;
  index_t rows = 0, s = 1;  // m S rows, S per sample
  int bias = 0;
  T alpha = T(1), beta = T(0);
  bool read = false;
};

// One block per (batch entry, BM x BN tile of V): V(p, c) = alpha sum_r u_{r / S} g(r, p) a~(r, c)
// + beta V(p, c).  G's rows are staged transposed (consecutive threads along p), A~'s along c,
// the stage's u values beside them; thread (tx, ty) owns rows ty + r NY and columns tx + c NX.
template <class T, int BM, int BN, int TM, int TN>
__global__ void __launch_bounds__((BM / TM) * (BN / TN))
    jtu_kernel(const JtuJob<T> job, const index_t tiles_n, const index_t per, const index_t first) {
  constexpr int NX = BN / TN, NY = BM / TM, NT = NX * NY;
  static_assert(NT >= kBK, "the u values of a stage take kBK threads");
  static_assert((BM * kBK) % NT == 0 && (BN * kBK) % NT == 0, "stages split evenly");
  __shared__ T gs[kBK][BM + 1];
  __shared__ T as[kBK][BN + 1];
  __shared__ T ws[kBK];
  const index_t blk = first + blockIdx.x, b = blk / per, t = blk - b * per;
  const index_t p0 = t / tiles_n * BM, c0 = t % tiles_n * BN;
  const index_t din = job.a.cols, dout = job.g.cols, nc = din + job.bias, rows = job.rows;
  const T* a = job.a.p + b * job.a.stride;
  const T* g = job.g.p + b * job.g.stride;
  const T* u = job.u + b * job.su;
  const int tid = threadIdx.x, tx = tid % NX, ty = tid / NX;

  T acc[TM][TN];
#pragma unroll
  for (int r = 0; r < TM; ++r)
#pragma unroll
    for (int c = 0; c < TN; ++c) acc[r][c] = T(0);

  for (index_t k0 = 0; k0 < rows; k0 += kBK) {
#pragma unroll
    for (int q = 0; q < BM * kBK / NT; ++q) {
      const int e = tid + q * NT, x = e % BM, kk = e / BM;
      const index_t r = k0 + kk, p = p0 + x;
      gs[kk][x] = r < rows && p < dout ? g[r * job.g.ld + p] : T(0);
    }
#pragma unroll
    for (int q = 0; q < BN * kBK / NT; ++q) {
      const int e = tid + q * NT, x = e % BN, kk = e / BN;
      const index_t r = k0 + kk, c = c0 + x;
      T val = T(0);
      if (r < rows && c < nc) val = c < din ? a[r * job.a.ld + c] : T(1);
      as[kk][x] = val;
    }
    if (tid < kBK) {
      const index_t r = k0 + tid;
      ws[tid] = r < rows ? u[(r / job.s) * job.ldu] : T(0);
    }
    __syncthreads();
#pragma unroll
    for (int kk = 0; kk < kBK; ++kk) {
      const T w = ws[kk];
      T gv[TM], av[TN];
#pragma unroll
      for (int r = 0; r < TM; ++r) gv[r] = w * gs[kk][ty + r * NY];
#pragma unroll
      for (int c = 0; c < TN; ++c) av[c] = as[kk][tx + c * NX];
#pragma unroll
      for (int r = 0; r < TM; ++r)
#pragma unroll
        for (int c = 0; c < TN; ++c) acc[r][c] = fma(gv[r], av[c], acc[r][c]);
    }
    __syncthreads();
  }

  T* vb = job.v + b * job.sv;
#pragma unroll
  for (int r = 0; r < TM; ++r) {
    const index_t p = p0 + ty + r * NY;
    if (p >= dout) continue;
#pragma unroll
    for (int c = 0; c < TN; ++c) {
      const index_t col = c0 + tx + c * NX;
      if (col >= nc) continue;
      T* dst = vb + p * job.ldv + col;
      T val = job.alpha * acc[r][c];
      if (job.read) val = fma(job.beta, *dst, val);
      *dst = val;
    }
  }
}

// ---- layer sums and the coarse Gram -------------------------------------------------------

template <class T>
struct SumsJob {
  View<T> x[kMaxLayers];
  index_t s[kMaxLayers];
  int nlayers = 0, l0 = 0;  // the job's layers are columns l0 .. l0 + nlayers of sums
  T* sums = nullptr;
  index_t lds = 0, ss = 0, m = 0;
  bool bias = false;
};

// One block per (batch entry, sample, layer of the job), layer fastest.
template <class T>
__global__ void __launch_bounds__(kSumThreads)
    layer_sums_kernel(const SumsJob<T> job, const index_t first) {
  __shared__ double red[kSumThreads / 32];
  const index_t blk = first + blockIdx.x, per = job.m * job.nlayers;
  const index_t b = blk / per, rest = blk - b * per, i = rest / job.nlayers;
  const int l = int(rest - i * job.nlayers);
  const View<T>& x = job.x[l];
  const index_t s = job.s[l];
  const T* xi = x.p + b * x.stride + i * s * x.ld;
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  double acc = 0;
  for (index_t t = warp; t < s; t += kSumThreads / 32)
    for (index_t c = lane; c < x.cols; c += 32) acc += double(xi[t * x.ld + c]);
  const double sum = team_sum<double, kSumThreads>(acc, red);
  if (threadIdx.x == 0)
    job.sums[b * job.ss + i * job.lds + job.l0 + l] = T(sum + (job.bias ? double(s) : 0.0));
}

template <class T>
struct CoarseJob {
  const T *sa = nullptr, *sg = nullptr;  // sums_a, sums_g: m x L
  index_t lda = 0, sda = 0, ldg = 0, sdg = 0;
  T *oa = nullptr, *og = nullptr, *f = nullptr;  // s_a, s_g, f: L x L
  index_t ldoa = 0, soa = 0, ldog = 0, sog = 0, ldf = 0, sf = 0;
  index_t m = 0, layers = 0;
  double w = 0, beta = 0;  // (1 - beta) / m and beta
};

// One thread per (i, j) of a kCoarseTile x kCoarseTile tile of one batch entry.
template <class T>
__global__ void __launch_bounds__(kCoarseTile* kCoarseTile)
    coarse_gram_kernel(const CoarseJob<T> job, const index_t tiles, const index_t first) {
  const index_t blk = first + blockIdx.x, per = tiles * tiles, b = blk / per, t = blk - b * per;
  const index_t i = t / tiles * kCoarseTile + threadIdx.x / kCoarseTile;
  const index_t j = t % tiles * kCoarseTile + threadIdx.x % kCoarseTile;
  if (i >= job.layers || j >= job.layers) return;
  const T* xa = job.sa + b * job.sda;
  const T* xg = job.sg + b * job.sdg;
  double sa = 0, sg = 0;
  for (index_t r = 0; r < job.m; ++r) {
    sa = fma(double(xa[r * job.lda + i]), double(xa[r * job.lda + j]), sa);
    sg = fma(double(xg[r * job.ldg + i]), double(xg[r * job.ldg + j]), sg);
  }
  T& oa = job.oa[b * job.soa + i * job.ldoa + j];
  T& og = job.og[b * job.sog + i * job.ldog + j];
  double va = job.w * sa, vg = job.w * sg;
  if (job.beta != 0) {  // beta == 0: s_a and s_g are not read
    va = fma(job.beta, double(oa), va);
    vg = fma(job.beta, double(og), vg);
  }
  const T ta = T(va), tg = T(vg);
  oa = ta;
  og = tg;
  job.f[b * job.sf + i * job.ldf + j] = ta * tg;
}

// ---- host side --------------------------------------------------------------------------------

unsigned grid_of(index_t blocks) {
  return unsigned(std::min(blocks, kMaxGrid));
}

// Every pointer a kernel dereferences must be device memory (skipped for empty views).
template <class U>
Status check_view_memory(const char* op, const MatrixBatch<U>& v, const char* name, bool grouped,
                         std::size_t g) {
  if (v.extent() == 0) return Status::success();
  return check_device_pointer(op, v.data, detail::view_name(name, grouped, g) + ".data");
}

// Every view of a J v / J^T u call must be device memory (u and v may be inputs or outputs).
template <class T, class UV, class VV>
Status check_jacobian_memory(const char* op, GroupedBatch<const T> a, GroupedBatch<const T> g,
                             std::span<const MatrixBatch<VV>> v,
                             std::span<const MatrixBatch<UV>> u) {
  const bool grouped = a.size() != 1;
  for (std::size_t l = 0; l < a.size(); ++l) {
    CURVKIT_RETURN_IF_ERROR(check_view_memory(op, a[l], "a", grouped, l));
    CURVKIT_RETURN_IF_ERROR(check_view_memory(op, g[l], "g", grouped, l));
    CURVKIT_RETURN_IF_ERROR(check_view_memory(op, v[l], "v", grouped, l));
  }
  for (std::size_t j = 0; j < u.size(); ++j)
    CURVKIT_RETURN_IF_ERROR(check_view_memory(op, u[j], "u", u.size() != 1, j));
  return Status::success();
}

template <class Launch>
cudaError_t launch_split(index_t blocks, Launch launch) {
  for (index_t first = 0; first < blocks; first += kMaxGrid) {
    launch(grid_of(blocks - first), first);
    if (const cudaError_t e = cudaGetLastError(); e != cudaSuccess) return e;
  }
  return cudaSuccess;
}

template <class T, int BM, int TM>
cudaError_t launch_linear_config(const GramJob<T>& job, index_t batch, cudaStream_t st) {
  constexpr int NT = (BM / TM) * (BM / TM);
  const index_t nt = (job.m + BM - 1) / BM, tiles = nt * (nt + 1) / 2;
  return launch_split(batch * tiles, [&](unsigned grid, index_t first) {
    linear_gram_kernel<T, BM, TM><<<grid, NT, 0, st>>>(job, tiles, first);
  });
}

// Tiles of 16 for tiny m; 64 when there are enough of them to fill the device, else 32.
template <class T>
cudaError_t launch_linear(const GramJob<T>& job, index_t batch, cudaStream_t st) {
  const index_t m = job.m, n64 = (m + 63) / 64;
  if (m <= 16) return launch_linear_config<T, 16, 1>(job, batch, st);
  if (m > 32 && batch * (n64 * (n64 + 1) / 2) >= kFillBlocks)
    return launch_linear_config<T, 64, 4>(job, batch, st);
  return launch_linear_config<T, 32, 2>(job, batch, st);
}

// Position tile of the fused convolution path by S: P = 4, 8, 16, 32, 64.
constexpr int kPairConfigs = 5;
int pair_config(index_t s) {
  return s <= 4 ? 0 : s <= 8 ? 1 : s <= 16 ? 2 : s <= 32 ? 3 : 4;
}

template <class T, int P, int TP, int NPB>
cudaError_t launch_pair_config(const GramJob<T>& job, index_t batch, cudaStream_t st) {
  constexpr int NT = NPB * (P / TP) * (P / TP);
  static_assert(NT == kGramThreads, "the pair kernel runs blocks of 256 threads");
  const index_t pairs = job.m * (job.m + 1) / 2, total = batch * pairs;
  return launch_split((total + NPB - 1) / NPB, [&](unsigned grid, index_t first) {
    pair_gram_kernel<T, P, TP, NPB><<<grid, NT, 0, st>>>(job, pairs, total, first);
  });
}

template <class T>
cudaError_t launch_pair(int config, const GramJob<T>& job, index_t batch, cudaStream_t st) {
  switch (config) {
    case 0:
      return launch_pair_config<T, 4, 1, 16>(job, batch, st);
    case 1:
      return launch_pair_config<T, 8, 1, 4>(job, batch, st);
    case 2:
      return launch_pair_config<T, 16, 1, 1>(job, batch, st);
    case 3:
      return launch_pair_config<T, 32, 2, 1>(job, batch, st);
    default:
      return launch_pair_config<T, 64, 4, 1>(job, batch, st);
  }
}

// How one layer enters a Gram of m samples.
enum class GramKind { none, linear, fused, direct };

GramKind gram_kind(index_t m, index_t s, index_t d_in, index_t d_out, const KhatriRaoOptions& o) {
  if (s == 0) return GramKind::none;  // no rows: a sum over nothing
  if (s == 1) return GramKind::linear;
  if (detail::gram_path(m, s, d_in, d_out, o.bias, o.path) == GramPath::fused)
    return GramKind::fused;
  // An empty per-sample gradient: the fused formula (what the reference computes) instead.
  if (d_out == 0 || d_in + (o.bias ? 1 : 0) == 0) return GramKind::fused;
  return GramKind::direct;
}

// One direct-path layer into k: per batch entry and channel slice, W into the workspace, then
// K += alpha W W^T (the caller's beta on this contribution's first slice; Fill::full mirrored
// on the last slice of the last contribution).
template <class T>
Status direct_gram(const char* op, const Context& ctx, const MatrixBatch<const T>& a,
                   const MatrixBatch<const T>& g, const MatrixBatch<T>& k, index_t s,
                   const KhatriRaoOptions& o, bool first, bool last) {
  const cudaStream_t st = stream_of(ctx);
  const index_t m = k.rows, din = a.cols, dout = g.cols, wcols = din + (o.bias ? 1 : 0);
  const index_t chunk = detail::direct_gram_channels(m, din, dout, o.bias);
  T* w = static_cast<T*>(ctx.workspace().data);
  for (index_t b = 0; b < k.batch; ++b)
    for (index_t c0 = 0; c0 < dout; c0 += chunk) {
      const index_t c = std::min(chunk, dout - c0), row = c * wcols;
      // W_i(:, 0:d_in) = G_i(:, c0:c0+c)^T A_i for every sample i: m products c x S x d_in.
      const MatrixBatch<const T> gi{g.data + b * g.stride + c0, m, s, c, g.ld, s * g.ld};
      const MatrixBatch<const T> ai{a.data + b * a.stride, m, s, din, a.ld, s * a.ld};
      const MatrixBatch<T> wi{w, m, c, din, wcols, row};
      CURVKIT_RETURN_IF_ERROR(
          curvkit::cuda::gemm<T>(ctx, Op::trans, Op::none, T(1), GroupedBatch<const T>(&gi, 1),
                                 GroupedBatch<const T>(&ai, 1), T(0), GroupedBatch<T>(&wi, 1)));
      if (o.bias) {
        const index_t parts = (c + kBiasThreads - 1) / kBiasThreads;
        const cudaError_t e = launch_split(m * parts, [&](unsigned grid, index_t f) {
          bias_column_kernel<T>
              <<<grid, kBiasThreads, 0, st>>>(gi.data, g.ld, s, c, w, wcols, row, parts, f);
        });
        if (e != cudaSuccess) return finish(op, e);
      }
      const bool first_slice = first && c0 == 0, last_slice = last && c0 + c >= dout;
      const MatrixBatch<const T> rows{w, 1, m, row, row, m * row};
      const MatrixBatch<T> kb{k.data + b * k.stride, 1, m, m, k.ld, k.stride};
      CURVKIT_RETURN_IF_ERROR(
          curvkit::cuda::syrk<T>(ctx, Op::none, T(o.alpha), GroupedBatch<const T>(&rows, 1),
                                 first_slice ? T(o.beta) : T(1), GroupedBatch<T>(&kb, 1),
                                 last_slice ? o.fill : Fill::lower));
    }
  return Status::success();
}

// K = alpha sum_{l in layers} (layer l's Gram) + beta K, layers = [l_begin, l_end).
template <class T>
Status gram_into(const char* op, const Context& ctx, GroupedBatch<const T> a,
                 GroupedBatch<const T> g, std::size_t l_begin, std::size_t l_end,
                 const MatrixBatch<T>& k, const KhatriRaoOptions& o) {
  const cudaStream_t st = stream_of(ctx);
  const index_t m = k.rows, batch = k.batch;
  if (m == 0 || batch == 0) return Status::success();
  auto kind = [&](std::size_t l, index_t* s) {
    *s = detail::positions(a[l].rows, m);
    return gram_kind(m, *s, a[l].cols, g[l].cols, o);
  };
  auto chunks = [](index_t n) { return (n + kMaxLayers - 1) / kMaxLayers; };

  // Count the contributions (launches of the summing kernels, direct layers).
  index_t nlinear = 0, nfused[kPairConfigs] = {}, ndirect = 0;
  for (std::size_t l = l_begin; l < l_end; ++l) {
    index_t s = 0;
    switch (kind(l, &s)) {
      case GramKind::linear:
        ++nlinear;
        break;
      case GramKind::fused:
        ++nfused[pair_config(s)];
        break;
      case GramKind::direct:
        ++ndirect;
        break;
      case GramKind::none:
        break;
    }
  }
  index_t total = chunks(nlinear) + ndirect;
  for (int c = 0; c < kPairConfigs; ++c) total += chunks(nfused[c]);
  if (ndirect > 0 && ctx.workspace().data != nullptr)
    CURVKIT_RETURN_IF_ERROR(check_device_pointer(op, ctx.workspace().data, "the workspace"));

  GramJob<T> base;
  base.k = k.data;
  base.ldk = k.ld;
  base.sk = k.stride;
  base.m = m;
  base.alpha = T(o.alpha);
  base.bias = o.bias ? T(1) : T(0);
  index_t done = 0;
  // Sets the job's beta and mirror by its place in the sequence.
  auto place = [&](GramJob<T>& job) {
    const bool first = done == 0;
    job.beta = first ? T(o.beta) : T(1);
    job.read = first ? o.beta != 0.0 : true;
    job.mirror = o.fill == Fill::full && done == std::max<index_t>(total, 1) - 1;
    ++done;
  };

  if (total == 0) {  // no layer adds anything: K = beta K
    GramJob<T> job = base;
    place(job);
    return finish(op, launch_linear(job, batch, st));
  }
  // Linear layers, then fused layers by position tile, each kMaxLayers to a launch.
  for (int config = -1; config < kPairConfigs; ++config) {
    GramJob<T> job = base;
    auto flush = [&]() -> cudaError_t {
      if (job.nlayers == 0) return cudaSuccess;
      place(job);
      const cudaError_t e =
          config < 0 ? launch_linear(job, batch, st) : launch_pair(config, job, batch, st);
      job.nlayers = 0;
      return e;
    };
    for (std::size_t l = l_begin; l < l_end; ++l) {
      index_t s = 0;
      const GramKind kd = kind(l, &s);
      if (config < 0 ? kd != GramKind::linear : kd != GramKind::fused || pair_config(s) != config)
        continue;
      job.layer[job.nlayers++] = {view_of(a[l]), view_of(g[l]), s};
      if (job.nlayers == kMaxLayers)
        if (const cudaError_t e = flush(); e != cudaSuccess) return finish(op, e);
    }
    if (const cudaError_t e = flush(); e != cudaSuccess) return finish(op, e);
  }
  for (std::size_t l = l_begin; l < l_end; ++l) {
    index_t s = 0;
    if (kind(l, &s) != GramKind::direct) continue;
    const bool first = done == 0, last = done == total - 1;
    ++done;
    CURVKIT_RETURN_IF_ERROR(direct_gram(op, ctx, a[l], g[l], k, s, o, first, last));
  }
  return finish(op, cudaSuccess);
}

template <class T, int BM, int BN, int TM, int TN>
cudaError_t launch_jtu_config(const JtuJob<T>& job, index_t batch, index_t rows_v, index_t cols_v,
                              cudaStream_t st) {
  constexpr int NT = (BM / TM) * (BN / TN);
  const index_t tiles_n = (cols_v + BN - 1) / BN, per = ((rows_v + BM - 1) / BM) * tiles_n;
  return launch_split(batch * per, [&](unsigned grid, index_t first) {
    jtu_kernel<T, BM, BN, TM, TN><<<grid, NT, 0, st>>>(job, tiles_n, per, first);
  });
}

// The tile of V by its shape; 64 x 64 only when there are enough such tiles to fill the device
// (each block runs the whole k loop: more, smaller tiles are the only parallelism there is).
template <class T>
cudaError_t launch_jtu(const JtuJob<T>& job, index_t batch, index_t r, index_t c, cudaStream_t st) {
  if (r <= 8 && c <= 8) return launch_jtu_config<T, 8, 8, 1, 1>(job, batch, r, c, st);
  if (r <= 16 && c <= 16) return launch_jtu_config<T, 16, 16, 1, 1>(job, batch, r, c, st);
  if (r <= 16) return launch_jtu_config<T, 16, 64, 1, 4>(job, batch, r, c, st);
  if (c <= 16) return launch_jtu_config<T, 64, 16, 4, 1>(job, batch, r, c, st);
  const index_t tiles64 = ((r + 63) / 64) * ((c + 63) / 64);
  if (r > 32 && c > 32 && batch * tiles64 >= kFillBlocks)
    return launch_jtu_config<T, 64, 64, 4, 4>(job, batch, r, c, st);
  return launch_jtu_config<T, 32, 32, 2, 2>(job, batch, r, c, st);
}

}  // namespace

// ---- entry points -------------------------------------------------------------------------------

template <class T>
Status khatri_rao_gram(const Context& ctx, GroupedBatch<const T> a, GroupedBatch<const T> g,
                       GroupedBatch<T> k, const KhatriRaoOptions& o) {
  const char* op = "khatri_rao_gram";
  const bool grouped = a.size() != 1, summed = k.size() == 1 && a.size() > 1;
  for (std::size_t l = 0; l < a.size(); ++l) {
    CURVKIT_RETURN_IF_ERROR(check_view_memory(op, a[l], "a", grouped, l));
    CURVKIT_RETURN_IF_ERROR(check_view_memory(op, g[l], "g", grouped, l));
  }
  for (std::size_t j = 0; j < k.size(); ++j)
    CURVKIT_RETURN_IF_ERROR(check_view_memory(op, k[j], "k", k.size() != 1, j));
  if (summed) return gram_into(op, ctx, a, g, 0, a.size(), k[0], o);
  for (std::size_t l = 0; l < a.size(); ++l)
    CURVKIT_RETURN_IF_ERROR(gram_into(op, ctx, a, g, l, l + 1, k[l], o));
  return Status::success();
}

template <class T>
Status khatri_rao_jv(const Context& ctx, GroupedBatch<const T> a, GroupedBatch<const T> g,
                     GroupedBatch<const T> v, GroupedBatch<T> u, const KhatriRaoOptions& o) {
  const char* op = "khatri_rao_jv";
  const bool summed = u.size() == 1 && a.size() > 1;
  CURVKIT_RETURN_IF_ERROR(check_jacobian_memory(op, a, g, v, u));
  const cudaStream_t st = stream_of(ctx);
  for (std::size_t out = 0; out < u.size(); ++out) {
    const MatrixBatch<T>& uu = u[out];
    const index_t m = uu.rows, batch = uu.batch;
    if (m == 0 || batch == 0) continue;
    const std::size_t l_begin = summed ? 0 : out, l_end = summed ? a.size() : out + 1;
    JvJob<T> job;
    job.u = uu.data;
    job.ldu = uu.ld;
    job.su = uu.stride;
    job.m = m;
    job.alpha = T(o.alpha);
    job.bias = o.bias ? 1 : 0;
    bool first = true;
    // Linear layers (S = 1), then the others, kMaxLayers to a launch; the first launch applies
    // beta, and there is at least one (u = beta u when no layer adds anything).
    for (int linear = 1; linear >= 0; --linear) {
      auto flush = [&]() -> cudaError_t {
        job.beta = first ? T(o.beta) : T(1);
        job.read = first ? o.beta != 0.0 : true;
        first = false;
        const index_t per = linear ? (m + kJvRows - 1) / kJvRows : m;
        const cudaError_t e = launch_split(batch * per, [&](unsigned grid, index_t f) {
          if (linear)
            jv_kernel<T, true><<<grid, kJvThreads, 0, st>>>(job, per, f);
          else
            jv_kernel<T, false><<<grid, kJvThreads, 0, st>>>(job, per, f);
        });
        job.nlayers = 0;
        return e;
      };
      for (std::size_t l = l_begin; l < l_end; ++l) {
        const index_t s = detail::positions(a[l].rows, m);
        if (s == 0 || (s == 1) != bool(linear)) continue;  // no rows: adds nothing
        job.layer[job.nlayers++] = {view_of(a[l]), view_of(g[l]), view_of(v[l]), s};
        if (job.nlayers == kMaxLayers)
          if (const cudaError_t e = flush(); e != cudaSuccess) return finish(op, e);
      }
      if (job.nlayers > 0 || (first && !linear))
        if (const cudaError_t e = flush(); e != cudaSuccess) return finish(op, e);
    }
  }
  return finish(op, cudaSuccess);
}

template <class T>
Status khatri_rao_jtu(const Context& ctx, GroupedBatch<const T> a, GroupedBatch<const T> g,
                      GroupedBatch<const T> u, GroupedBatch<T> v, const KhatriRaoOptions& o) {
  const char* op = "khatri_rao_jtu";
  CURVKIT_RETURN_IF_ERROR(check_jacobian_memory(op, a, g, v, u));
  const cudaStream_t st = stream_of(ctx);
  for (std::size_t l = 0; l < v.size(); ++l) {
    const MatrixBatch<T>& vv = v[l];
    if (vv.batch == 0 || vv.rows == 0 || vv.cols == 0) continue;
    const MatrixBatch<const T>& uu = u[u.size() == 1 ? 0 : l];
    JtuJob<T> job;
    job.a = view_of(a[l]);
    job.g = view_of(g[l]);
    job.u = uu.data;
    job.ldu = uu.ld;
    job.su = uu.stride;
    job.v = vv.data;
    job.ldv = vv.ld;
    job.sv = vv.stride;
    job.s = detail::positions(a[l].rows, uu.rows);
    job.rows = uu.rows * job.s;  // = a.rows (0 when m = 0: V = beta V)
    job.bias = o.bias ? 1 : 0;
    job.alpha = T(o.alpha);
    job.beta = T(o.beta);
    job.read = o.beta != 0.0;
    CURVKIT_RETURN_IF_ERROR(finish(op, launch_jtu(job, vv.batch, vv.rows, vv.cols, st)));
  }
  return Status::success();
}

template <class T>
Status khatri_rao_layer_sums(const Context& ctx, GroupedBatch<const T> x, MatrixBatch<T> sums,
                             bool bias) {
  const char* op = "khatri_rao_layer_sums";
  const index_t m = sums.rows, batch = sums.batch;
  if (m == 0 || batch == 0 || x.empty()) return Status::success();
  for (std::size_t l = 0; l < x.size(); ++l)
    CURVKIT_RETURN_IF_ERROR(check_view_memory(op, x[l], "x", true, l));
  CURVKIT_RETURN_IF_ERROR(check_view_memory(op, sums, "sums", false, 0));
  const cudaStream_t st = stream_of(ctx);
  for (std::size_t l0 = 0; l0 < x.size(); l0 += kMaxLayers) {
    SumsJob<T> job;
    job.l0 = int(l0);
    job.nlayers = int(std::min<std::size_t>(kMaxLayers, x.size() - l0));
    for (int q = 0; q < job.nlayers; ++q) {
      job.x[q] = view_of(x[l0 + q]);
      job.s[q] = detail::positions(x[l0 + q].rows, m);
    }
    job.sums = sums.data;
    job.lds = sums.ld;
    job.ss = sums.stride;
    job.m = m;
    job.bias = bias;
    const cudaError_t e = launch_split(batch * m * job.nlayers, [&](unsigned grid, index_t first) {
      layer_sums_kernel<T><<<grid, kSumThreads, 0, st>>>(job, first);
    });
    if (e != cudaSuccess) return finish(op, e);
  }
  return finish(op, cudaSuccess);
}

template <class T>
Status coarse_gram(const Context& ctx, MatrixBatch<const T> sums_a, MatrixBatch<const T> sums_g,
                   MatrixBatch<T> s_a, MatrixBatch<T> s_g, MatrixBatch<T> f,
                   const CoarseGramOptions& o) {
  const char* op = "coarse_gram";
  const index_t batch = sums_a.batch, m = sums_a.rows, layers = sums_a.cols;
  if (batch == 0 || layers == 0) return Status::success();
  CURVKIT_RETURN_IF_ERROR(check_view_memory(op, sums_a, "sums_a", false, 0));
  CURVKIT_RETURN_IF_ERROR(check_view_memory(op, sums_g, "sums_g", false, 0));
  CURVKIT_RETURN_IF_ERROR(check_view_memory(op, s_a, "s_a", false, 0));
  CURVKIT_RETURN_IF_ERROR(check_view_memory(op, s_g, "s_g", false, 0));
  CURVKIT_RETURN_IF_ERROR(check_view_memory(op, f, "f", false, 0));
  CoarseJob<T> job;
  job.sa = sums_a.data;
  job.lda = sums_a.ld;
  job.sda = sums_a.stride;
  job.sg = sums_g.data;
  job.ldg = sums_g.ld;
  job.sdg = sums_g.stride;
  job.oa = s_a.data;
  job.ldoa = s_a.ld;
  job.soa = s_a.stride;
  job.og = s_g.data;
  job.ldog = s_g.ld;
  job.sog = s_g.stride;
  job.f = f.data;
  job.ldf = f.ld;
  job.sf = f.stride;
  job.m = m;
  job.layers = layers;
  job.beta = o.beta;
  job.w = m > 0 ? (1.0 - o.beta) / double(m) : 0.0;
  const index_t tiles = (layers + kCoarseTile - 1) / kCoarseTile;
  const cudaStream_t st = stream_of(ctx);
  return finish(op, launch_split(batch * tiles * tiles, [&](unsigned grid, index_t first) {
                  coarse_gram_kernel<T>
                      <<<grid, kCoarseTile * kCoarseTile, 0, st>>>(job, tiles, first);
                }));
}

}  // namespace curvkit::cuda

CURVKIT_INSTANTIATE_KHATRI_RAO_BACKEND(cuda)
