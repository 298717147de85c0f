// CUDA backend of the Newton–Schulz family (contract: curvkit/newton_schulz.hpp; oracle:
// reference/newton_schulz.cpp, whose step order, scalings, screening, residuals and stopping rule
// every path here follows).
//
// Paths, chosen per group from its shape alone (plan_group; the workspace query uses the same
// plan, so it cannot know the op or options.compute):
//
//   fused    k = min(rows, cols) <= 128 and rows cols k <= 128^3, and either rows cols k <= 64^3
//            or batch >= 8 (a few larger matrices go to cuBLAS instead: one block each would idle
//            the GPU).  fused_kernel: ONE launch for the whole group, one block per matrix
//            (grid-stride over the batch); every iteration's products are block-level GEMMs on
//            three resident buffers, the residual is reduced in the block (fixed order), the
//            stopping decision is taken per matrix in the block, outputs and report written at
//            the end.  Buffers: square ops n x n each (inverse: A + eps I, X, AX; sqrt: Y, Z, ZY;
//            inverse root: M, X, T); polar: X (rows x cols) and two k x k (Gram B, quintic
//            polynomial Q).  A product accumulates its output in registers and writes it after a
//            barrier, so its destination may be one of its operands (X <- 2X - X R in place);
//            outputs wider than a block tile (polar X of a tall / wide matrix) go in passes of
//            S rows / columns, which is safe in place because X <- X Q is row-local and
//            X <- Q X column-local.  Block tile S x S with S = 16, 32, 64, 128 (>= k) and 64, 128,
//            256, 256 threads.
//              smem     the buffers in dynamic shared memory when they fit (H100, 227 KB:
//                       float square ops to n = 128, 3 x 128 x 136 x 4 B = 204 KB; double to 97).
//              scratch  otherwise (double n in 98..128, polar with a long side) the same kernel
//                       with the buffers in the Context workspace: at most 2 blocks per SM,
//                       each reusing one slice for the matrices it strides over.
//   cublas   everything else (k > 128, or large products in small batches).  A host loop over
//            the maximum number of steps; every product is one strided-batched cublasGemmEx
//            over the group (row-major C = op(A) op(B) issued as column-major
//            C^T = op(B)^T op(A)^T), the rest small kernels.  The per-matrix state (info code,
//            residual and its start, step count, active flag) lives in the workspace, so the host
//            never synchronises: products run for every matrix every step, and the kernels that
//            update an iterate skip the matrices that stopped (their iterate stays frozen, and
//            what is derived from it is recomputed to the same value).  Residuals: per 32-row
//            chunk partial sums in double, then one thread per matrix adds them in order and
//            applies the stopping rule.  Screening (non-finite, SPD diagonal, zero matrix) and
//            the norms: the same chunked two-level reductions.
//
// Precision (options.compute, float only):
//   native  FP32 / FP64 FMAs in the fused kernel; cuBLAS COMPUTE_32F (default math mode: no TF32)
//           or COMPUTE_64F.
//   tf32    fused: warp-level mma.sync m16n8k8 TF32 (operands rounded with cvt.rna.tf32, FP32
//           accumulation); cuBLAS: CUBLAS_COMPUTE_32F_FAST_TF32.
//   bf16    fused: mma.sync m16n8k16 BF16 (operands rounded to nearest even), FP32 accumulation;
//           cuBLAS: both operands converted to BF16 copies in the workspace, CUDA_R_16BF inputs,
//           FP32 output, CUBLAS_COMPUTE_32F.
//   Only the products are reduced precision; the elementwise updates, residuals and stopping
//   tests stay in FP32 (the cuBLAS path sums residuals in double).  On devices before sm_80 the
//   fused kernel runs tf32 / bf16 in FP32.
// Inverse root on both paths: M <- T^p M as M <- T^(2^j) M for the set bits j of p, T squared in
// between (popcount(p) + floor(log2 p) products instead of p).
//
// Workspace (newton_schulz_workspace_size; the groups run in stream order and share it, so the
// query returns the largest group's need): smem 0; scratch blocks x (rows ld + 2 k ld') x
// sizeof(T) with blocks = min(batch, 2 SMs) and padded row strides; cublas batch x
// (2 rows cols + 2 k^2) x sizeof(T), plus for float batch x (rows cols + k^2) BF16 elements (the
// query cannot know whether bf16 will be asked for), plus batch x 48 B of state and
// batch x max(ceil(rows / 32), ceil(cols / 256)) x 40 B of chunk partials; every region
// 256-byte aligned.
//
// Grouped calls: one launch sequence per group, all on ctx.cuda_stream().  Nothing here
// synchronises the host or allocates memory (beyond cuBLAS's own handle on first use).
#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <mutex>
#include <string>
#include <type_traits>

#include "blas_handle.cuh"
#include "checks.hpp"
#include "host_common.cuh"
#include "newton_schulz_backends.hpp"
#include "warp_reduce.cuh"

namespace curvkit::cuda {
namespace {

constexpr index_t kMaxGrid = 0x7fffffff;              // gridDim.x limit: larger launches are split
constexpr index_t kStrideBlocks = 1 << 20;            // grid of the grid-stride elementwise kernels
constexpr int kFusedMax = 128;                        // largest k of the fused path
constexpr double kFusedWork = 128.0 * 128.0 * 128.0;  // largest rows cols k of the fused path
constexpr double kSmallWork = 64.0 * 64.0 * 64.0;     // fused whatever the batch up to this
constexpr index_t kFusedMinBatch = 8;      // larger fused products need this many matrices
constexpr int kScratchPerSm = 2;           // scratch-path blocks (and workspace slices) per SM
constexpr std::size_t kStaticSmem = 1024;  // static shared memory of fused_kernel, reserved
constexpr int kChunkRows = 32;             // rows per block of the cuBLAS path's reductions
constexpr int kEwThreads = 256;            // elementwise and reduction kernels
constexpr int kColThreads = 256;           // columns per block of the column-sum kernel
constexpr std::size_t kAlign = 256;

enum class NsOp : int { inverse, sqrt, root, polar };
enum class Engine : int { simt, tf32, bf16 };

template <class T>
__host__ __device__ __forceinline__ T nan_v() {
  return std::numeric_limits<T>::quiet_NaN();
}

template <class T>
__device__ __forceinline__ T abs_v(T x) {
  return x < T(0) ? -x : x;
}

// ---- block tiles of the fused kernel ------------------------------------------------------------

// S x S output tile per pass.  SIMT: thread (tx, ty) of an NX x NY grid owns the TM x TN outputs
// (ty + r NY, tx + c NX), interleaved so that a warp reads consecutive B elements and few
// distinct A rows.  MMA: a WM x WN grid of warps, each owning MT x NTL tiles of 16 x 8.
template <int S>
struct Cfg;
template <>
struct Cfg<16> {
  static constexpr int NX = 8, NY = 8, TM = 2, TN = 2, WM = 1, WN = 2, MT = 1, NTL = 1;
};
template <>
struct Cfg<32> {
  static constexpr int NX = 16, NY = 8, TM = 4, TN = 2, WM = 2, WN = 2, MT = 1, NTL = 2;
};
template <>
struct Cfg<64> {
  static constexpr int NX = 16, NY = 16, TM = 4, TN = 4, WM = 4, WN = 2, MT = 1, NTL = 4;
};
template <>
struct Cfg<128> {
  static constexpr int NX = 16, NY = 16, TM = 8, TN = 8, WM = 4, WN = 2, MT = 2, NTL = 8;
};

template <int S>
struct Tile : Cfg<S> {
  using C = Cfg<S>;
  static constexpr int kThreads = C::NX * C::NY;
  static constexpr int kWarps = kThreads / 32;
  static constexpr int kAcc = C::TM * C::TN;
  static_assert(C::NY * C::TM == S && C::NX * C::TN == S, "SIMT grid must cover the tile");
  static_assert(C::WM * C::WN == kWarps, "one MMA warp tile per warp");
  static_assert(C::WM * C::MT * 16 == S && C::WN * C::NTL * 8 == S, "MMA grid must cover the tile");
  static_assert(C::MT * C::NTL * 4 == kAcc, "both engines keep the same accumulators");
};

// Row stride of a fused buffer with `cols` columns.  SIMT: odd, so that a warp reading one
// column of several rows hits distinct banks.  MMA: = 8 mod 32, so that the 8 x 4 (row, k)
// fragment loads of a warp hit 32 distinct banks.
inline int ld_for(int cols, Engine e) {
  if (e == Engine::simt) return cols | 1;
  return cols + ((8 - cols % 32) + 32) % 32;
}

// ---- block-level reductions ---------------------------------------------------------------------

template <class T>
__device__ __forceinline__ T warp_max(T v) {
#pragma unroll
  for (int o = 16; o > 0; o /= 2) {
    const T w = __shfl_xor_sync(kFull, v, o);
    v = w > v ? w : v;
  }
  return v;
}

// Every thread gets the same value (warp partials added in warp order: deterministic).  The
// trailing barrier lets `red` be reused at once.
template <int NT, class T>
__device__ T block_sum(T v, T* red) {
  v = warp_sum(v);
  if (threadIdx.x % 32 == 0) red[threadIdx.x / 32] = v;
  __syncthreads();
  T s = T(0);
#pragma unroll
  for (int w = 0; w < NT / 32; ++w) s += red[w];
  __syncthreads();
  return s;
}
template <int NT, class T>
__device__ T block_max(T v, T* red) {
  v = warp_max(v);
  if (threadIdx.x % 32 == 0) red[threadIdx.x / 32] = v;
  __syncthreads();
  T s = red[0];
#pragma unroll
  for (int w = 1; w < NT / 32; ++w) s = red[w] > s ? red[w] : s;
  __syncthreads();
  return s;
}

// ---- block-level products -----------------------------------------------------------------------

// C(i, j) = sum_q opA(i, q) opB(q, j) is handed to an Epi, which writes
// dst = alpha C + beta D (D may be dst itself) and returns (delta_ij - dst_ij)^2 when `resid`.
template <class T>
struct Epi {
  T* dst;
  int ldd;
  T alpha;
  const T* d;  // null: no D term (and D is never read)
  int ld_d;
  T beta;
  bool resid;
  __device__ __forceinline__ T operator()(int i, int j, T acc) const {
    T v = alpha * acc;
    if (d != nullptr) v += beta * d[i * ld_d + j];
    dst[i * ldd + j] = v;
    if (!resid) return T(0);
    const T e = (i == j ? T(1) : T(0)) - v;
    return e * e;
  }
};

template <class T>
__device__ __forceinline__ Epi<T> plain(T* dst, int ld, bool resid = false) {
  return Epi<T>{dst, ld, T(1), nullptr, 0, T(0), resid};
}

// opA(i, q) and opB(q, j) of row-major operands.
template <class T, bool TA>
__device__ __forceinline__ T at_a(const T* a, int lda, int i, int q) {
  return TA ? a[q * lda + i] : a[i * lda + q];
}
template <class T, bool TB>
__device__ __forceinline__ T at_b(const T* b, int ldb, int q, int j) {
  return TB ? b[j * ldb + q] : b[q * ldb + j];
}

// SIMT tile: rows / columns past the edge are clamped (computed, never stored), so the inner
// loop has no branch.
template <class T, int S, bool TA, bool TB>
__device__ __forceinline__ void simt_tile(T* acc, const T* a, int lda, const T* b, int ldb, int i0,
                                          int j0, int rows, int cols, int inner) {
  using C = Cfg<S>;
  const int tx = threadIdx.x % C::NX, ty = threadIdx.x / C::NX;
  int ii[C::TM], jj[C::TN];
#pragma unroll
  for (int r = 0; r < C::TM; ++r) ii[r] = min(i0 + ty + r * C::NY, rows - 1);
#pragma unroll
  for (int c = 0; c < C::TN; ++c) jj[c] = min(j0 + tx + c * C::NX, cols - 1);
#pragma unroll
  for (int e = 0; e < C::TM * C::TN; ++e) acc[e] = T(0);
#pragma unroll 2
  for (int q = 0; q < inner; ++q) {
    T av[C::TM], bv[C::TN];
#pragma unroll
    for (int r = 0; r < C::TM; ++r) av[r] = at_a<T, TA>(a, lda, ii[r], q);
#pragma unroll
    for (int c = 0; c < C::TN; ++c) bv[c] = at_b<T, TB>(b, ldb, q, jj[c]);
#pragma unroll
    for (int r = 0; r < C::TM; ++r)
#pragma unroll
      for (int c = 0; c < C::TN; ++c) acc[r * C::TN + c] += av[r] * bv[c];
  }
}

// Tensor-core tile (float only, sm_80+).  Fragment layouts of mma.m16n8k8.tf32 and
// mma.m16n8k16.bf16 (PTX ISA): g = lane / 4, t = lane % 4;
//   tf32 A 16x8: a0 (g, t), a1 (g+8, t), a2 (g, t+4), a3 (g+8, t+4); B 8x8: b0 (t, g), b1 (t+4, g)
//   bf16 A 16x16: a0 (g, 2t..2t+1), a1 (g+8, 2t..), a2 (g, 2t+8..), a3 (g+8, 2t+8..);
//        B 16x8: b0 (2t..2t+1, g), b1 (2t+8..2t+9, g)   (lower k in the low half)
//   C 16x8: c0 (g, 2t), c1 (g, 2t+1), c2 (g+8, 2t), c3 (g+8, 2t+1).
// Rows / columns past the edge are clamped; k past `inner` reads 0 (it is summed).
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
__device__ __forceinline__ std::uint32_t to_tf32(float x) {
  std::uint32_t u;
  asm("cvt.rna.tf32.f32 %0, %1;" : "=r"(u) : "f"(x));
  return u;
}
__device__ __forceinline__ std::uint32_t pack_bf16(float lo, float hi) {
  const std::uint32_t l = __bfloat16_as_ushort(__float2bfloat16_rn(lo));
  const std::uint32_t h = __bfloat16_as_ushort(__float2bfloat16_rn(hi));
  return l | (h << 16);
}
#endif

template <int S, Engine E, bool TA, bool TB>
__device__ __forceinline__ void mma_tile(float* acc, const float* a, int lda, const float* b,
                                         int ldb, int i0, int j0, int rows, int cols, int inner) {
  using C = Cfg<S>;
#pragma unroll
  for (int e = 0; e < C::MT * C::NTL * 4; ++e) acc[e] = 0.f;
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  const int g = lane / 4, t = lane % 4;
  const int wm = warp / C::WN, wn = warp % C::WN;
  int r0[C::MT], r1[C::MT], cj[C::NTL];
#pragma unroll
  for (int mt = 0; mt < C::MT; ++mt) {
    const int base = i0 + (wm * C::MT + mt) * 16 + g;
    r0[mt] = min(base, rows - 1);
    r1[mt] = min(base + 8, rows - 1);
  }
#pragma unroll
  for (int nt = 0; nt < C::NTL; ++nt) cj[nt] = min(j0 + (wn * C::NTL + nt) * 8 + g, cols - 1);
  auto la = [&](int i, int q) { return q < inner ? at_a<float, TA>(a, lda, i, q) : 0.f; };
  auto lb = [&](int q, int j) { return q < inner ? at_b<float, TB>(b, ldb, q, j) : 0.f; };
  constexpr int KS = E == Engine::tf32 ? 8 : 16;
  for (int k0 = 0; k0 < inner; k0 += KS) {
    std::uint32_t af[C::MT][4], bfr[C::NTL][2];
    if constexpr (E == Engine::tf32) {
      const int ka = k0 + t, kb = k0 + t + 4;
#pragma unroll
      for (int mt = 0; mt < C::MT; ++mt) {
        af[mt][0] = to_tf32(la(r0[mt], ka));
        af[mt][1] = to_tf32(la(r1[mt], ka));
        af[mt][2] = to_tf32(la(r0[mt], kb));
        af[mt][3] = to_tf32(la(r1[mt], kb));
      }
#pragma unroll
      for (int nt = 0; nt < C::NTL; ++nt) {
        bfr[nt][0] = to_tf32(lb(ka, cj[nt]));
        bfr[nt][1] = to_tf32(lb(kb, cj[nt]));
      }
    } else {
      const int ka = k0 + 2 * t, kb = k0 + 2 * t + 8;
#pragma unroll
      for (int mt = 0; mt < C::MT; ++mt) {
        af[mt][0] = pack_bf16(la(r0[mt], ka), la(r0[mt], ka + 1));
        af[mt][1] = pack_bf16(la(r1[mt], ka), la(r1[mt], ka + 1));
        af[mt][2] = pack_bf16(la(r0[mt], kb), la(r0[mt], kb + 1));
        af[mt][3] = pack_bf16(la(r1[mt], kb), la(r1[mt], kb + 1));
      }
#pragma unroll
      for (int nt = 0; nt < C::NTL; ++nt) {
        bfr[nt][0] = pack_bf16(lb(ka, cj[nt]), lb(ka + 1, cj[nt]));
        bfr[nt][1] = pack_bf16(lb(kb, cj[nt]), lb(kb + 1, cj[nt]));
      }
    }
#pragma unroll
    for (int mt = 0; mt < C::MT; ++mt)
#pragma unroll
      for (int nt = 0; nt < C::NTL; ++nt) {
        float* c = acc + (mt * C::NTL + nt) * 4;
        if constexpr (E == Engine::tf32)
          asm volatile(
              "mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 {%0,%1,%2,%3}, "
              "{%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};"
              : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
              : "r"(af[mt][0]), "r"(af[mt][1]), "r"(af[mt][2]), "r"(af[mt][3]), "r"(bfr[nt][0]),
                "r"(bfr[nt][1]));
        else
          asm volatile(
              "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, "
              "{%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};"
              : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
              : "r"(af[mt][0]), "r"(af[mt][1]), "r"(af[mt][2]), "r"(af[mt][3]), "r"(bfr[nt][0]),
                "r"(bfr[nt][1]));
      }
  }
#else
  // Never launched (the host picks Engine::simt below sm_80); keeps older targets compiling.
  (void)a, (void)lda, (void)b, (void)ldb, (void)i0, (void)j0, (void)rows, (void)cols, (void)inner;
  __trap();
#endif
}

// Accumulator e of this thread holds output (i, j) of the pass at (i0, j0).
template <int S, Engine E>
__device__ __forceinline__ void coord(int e, int i0, int j0, int* i, int* j) {
  using C = Cfg<S>;
  if constexpr (E == Engine::simt) {
    const int tx = threadIdx.x % C::NX, ty = threadIdx.x / C::NX;
    *i = i0 + ty + (e / C::TN) * C::NY;
    *j = j0 + tx + (e % C::TN) * C::NX;
  } else {
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
    const int wm = warp / C::WN, wn = warp % C::WN;
    const int q = e % 4, tile = e / 4, mt = tile / C::NTL, nt = tile % C::NTL;
    *i = i0 + (wm * C::MT + mt) * 16 + lane / 4 + (q >= 2 ? 8 : 0);
    *j = j0 + (wn * C::NTL + nt) * 8 + 2 * (lane % 4) + (q & 1);
  }
}

// rows x cols = opA (rows x inner) opB (inner x cols), through `epi`.  At most one of rows, cols
// exceeds S; the output goes in S-row passes (rows > S; the product must then be row-local if it
// is in place) or S-column passes.  Each pass: accumulate in registers, barrier, write; a final
// barrier publishes the result.  Returns this thread's share of the residual sum.
template <class T, int S, Engine E, bool TA = false, bool TB = false>
__device__ T product(const T* a, int lda, const T* b, int ldb, int rows, int cols, int inner,
                     const Epi<T>& epi) {
  constexpr int kAcc = Tile<S>::kAcc;
  T part = T(0);
  const bool by_rows = rows > S;
  const int passes = by_rows ? (rows + S - 1) / S : (cols + S - 1) / S;
  for (int ps = 0; ps < passes; ++ps) {
    const int i0 = by_rows ? ps * S : 0, j0 = by_rows ? 0 : ps * S;
    T acc[kAcc];
    if constexpr (E == Engine::simt)
      simt_tile<T, S, TA, TB>(acc, a, lda, b, ldb, i0, j0, rows, cols, inner);
    else
      mma_tile<S, E, TA, TB>(acc, a, lda, b, ldb, i0, j0, rows, cols, inner);
    __syncthreads();  // every read of this pass is done: the writes may overwrite an operand
#pragma unroll
    for (int e = 0; e < kAcc; ++e) {
      int i = 0, j = 0;
      coord<S, E>(e, i0, j0, &i, &j);
      if (i < rows && j < cols) part += epi(i, j, acc[e]);
    }
  }
  __syncthreads();
  return part;
}

// ---- the stopping rule --------------------------------------------------------------------------

// reference iterate(): residual stop before a step when r <= tol; after a step non-finite,
// r > 2 max(r0, 1) or growth while >= 1 is divergence (-2); in residual mode a residual that does
// not decrease stops (the rounding floor); at the end in residual mode info 1 when r > tol.  Run by
// every thread of the block with the same values (the step's residual is a broadcast block sum).
template <class T, class Step>
__device__ void iterate(int max_steps, bool rstop, double tol, T r0, Step&& step, int* steps,
                        T* r_out, int* code_out) {
  T r = r0;
  int k = 0, code = 0;
  const T limit = T(2) * (r0 < T(1) ? T(1) : r0);  // std::max(r0, 1): NaN stays NaN
  while (k < max_steps) {
    if (rstop && double(r) <= tol) break;
    const T next = step();
    ++k;
    if (!isfinite(next) || next > limit || (next >= r && next >= T(1))) {
      code = -2;  // also: growing while >= 1 (not the rounding floor)
      r = next;
      break;
    }
    const bool stalled = rstop && next >= r;
    r = next;
    if (stalled) break;
  }
  if (code == 0 && rstop && !(double(r) <= tol)) code = 1;
  *steps = k;
  *r_out = r;
  *code_out = code;
}

// ---- the fused kernel ---------------------------------------------------------------------------

template <class T>
struct FusedJob {
  const T* a;
  index_t lda, sa;
  T* out0;  // x / u, or sqrt (null: not asked for)
  index_t ld0, s0;
  T* out1;  // inv_sqrt (null: not asked for)
  index_t ld1, s1;
  int* info;  // this group's slice of the per-matrix outputs
  int* iters;
  T* resid;
  index_t batch;
  int rows, cols;
  int ldb, lds;  // row strides of the rows x cols buffer and of the k x k ones
  T* scratch;    // null: dynamic shared memory; else per-block slices of scratch_elems
  index_t scratch_elems;
  int max_steps;  // options.iterations
  bool rstop;
  double tol, eps;
  int p;
  PolarSchedule schedule;
  T pa, pb, pc;
  int cubic_steps;
};

// Copies matrix b (A + eps I) into dst and screens it: -1 non-finite, 2 all zero, 3 (spd) a
// diagonal entry of A + eps I <= 0, else 0 (the reference's order).  *maxabs: the largest |entry|
// of A + eps I.
template <class T, int NT>
__device__ int load_screen(const FusedJob<T>& job, index_t b, T* dst, int ld, bool spd, T* red,
                           T* maxabs) {
  const T* src = job.a + b * job.sa;
  const int rows = job.rows, cols = job.cols, total = rows * cols;
  bool bad = false, notpos = false;
  T mx = T(0);
  for (int e = threadIdx.x; e < total; e += NT) {
    const int i = e / cols, j = e - i * cols;
    T x = src[index_t(i) * job.lda + j];
    bad = bad || !isfinite(x);
    if (i == j) {
      const double d = double(x) + job.eps;  // polar: eps == 0, x unchanged
      notpos = notpos || !(d > 0.0);
      x = T(d);
    }
    dst[i * ld + j] = x;
    const T ax = abs_v(x);
    mx = ax > mx ? ax : mx;
  }
  const bool any_bad = __syncthreads_or(bad) != 0;
  const bool any_notpos = __syncthreads_or(notpos) != 0;
  *maxabs = block_max<NT>(mx, red);
  if (any_bad) return -1;
  if (!(*maxabs > T(0))) return 2;
  return spd && any_notpos ? 3 : 0;
}

// ||M||_F, scaled by the largest |entry| (no overflow or underflow of the squares).
template <class T, int NT>
__device__ T frobenius(const T* m, int ld, int rows, int cols, T maxabs, T* red) {
  T s = T(0);
  for (int e = threadIdx.x; e < rows * cols; e += NT) {
    const int i = e / cols, j = e - i * cols;
    const T y = m[i * ld + j] / maxabs;
    s += y * y;
  }
  return maxabs * sqrt(block_sum<NT>(s, red));
}

// ||I - M||_F / sqrt(n).
template <class T, int NT>
__device__ T residual(const T* m, int ld, int n, T* red) {
  T s = T(0);
  for (int e = threadIdx.x; e < n * n; e += NT) {
    const int i = e / n, j = e - i * n;
    const T d = (i == j ? T(1) : T(0)) - m[i * ld + j];
    s += d * d;
  }
  return sqrt(block_sum<NT>(s, red) / T(n));
}

template <class T, int NT>
__device__ void write_out(T* out, index_t ld, index_t stride, index_t b, const T* m, int ldm,
                          int rows, int cols, T scale, bool nan) {
  if (out == nullptr) return;
  T* o = out + b * stride;
  for (int e = threadIdx.x; e < rows * cols; e += NT) {
    const int i = e / cols, j = e - i * cols;
    o[index_t(i) * ld + j] = nan ? nan_v<T>() : scale * m[i * ldm + j];
  }
}

template <class T>
__device__ void write_report(const FusedJob<T>& job, index_t b, int code, int steps, T r) {
  if (threadIdx.x != 0) return;
  job.info[b] = code;
  if (job.iters != nullptr) job.iters[b] = steps;
  if (job.resid != nullptr) job.resid[b] = r;
}

template <class T>
__device__ void write_screened(const FusedJob<T>& job, index_t b, int code) {
  write_report(job, b, code, 0, nan_v<T>());
}

// Hotelling: X_0 = A^T / (||A||_1 ||A||_inf), R = A X; X <- 2X - X R, R <- A X.
template <class T, int S, Engine E>
__device__ void inverse_body(const FusedJob<T>& job, index_t b, T* A, T* X, T* R, T* red) {
  constexpr int NT = Tile<S>::kThreads;
  const int n = job.rows, ld = job.ldb;
  T mx = T(0);
  if (const int code = load_screen<T, NT>(job, b, A, ld, false, red, &mx); code != 0) {
    write_out<T, NT>(job.out0, job.ld0, job.s0, b, A, ld, n, n, T(1), true);
    write_screened(job, b, code);
    return;
  }
  T c1 = T(0), ci = T(0);
  for (int q = threadIdx.x; q < n; q += NT) {
    T cs = T(0), rs = T(0);
    for (int i = 0; i < n; ++i) {
      cs += abs_v(A[i * ld + q]);
      rs += abs_v(A[q * ld + i]);
    }
    c1 = cs > c1 ? cs : c1;
    ci = rs > ci ? rs : ci;
  }
  const T norm1 = block_max<NT>(c1, red), norminf = block_max<NT>(ci, red);
  const double denom = double(norm1) * double(norminf);
  for (int e = threadIdx.x; e < n * n; e += NT) {
    const int i = e / n, j = e - i * n;
    X[i * ld + j] = T(double(A[j * ld + i]) / denom);
  }
  __syncthreads();
  const T r0 =
      sqrt(block_sum<NT>(product<T, S, E>(A, ld, X, ld, n, n, n, plain(R, ld, true)), red) / T(n));
  auto step = [&]() -> T {
    product<T, S, E>(X, ld, R, ld, n, n, n, Epi<T>{X, ld, T(-1), X, ld, T(2), false});
    const T part = product<T, S, E>(A, ld, X, ld, n, n, n, plain(R, ld, true));
    return sqrt(block_sum<NT>(part, red) / T(n));
  };
  int steps = 0, code = 0;
  T r = r0;
  iterate(job.max_steps, job.rstop, job.tol, r0, step, &steps, &r, &code);
  write_out<T, NT>(job.out0, job.ld0, job.s0, b, X, ld, n, n, T(1), code < 0);
  write_report(job, b, code, steps, r);
}

// Coupled sqrt: Y_0 = A / c, Z_0 = I, W = Z Y; Y <- 1.5 Y - 0.5 Y W, Z <- 1.5 Z - 0.5 W Z
// (= Y T and T Z with T = (3I - W) / 2, W of the previous step), W <- Z Y.
template <class T, int S, Engine E>
__device__ void sqrt_body(const FusedJob<T>& job, index_t b, T* Y, T* Z, T* W, T* red) {
  constexpr int NT = Tile<S>::kThreads;
  const int n = job.rows, ld = job.ldb;
  T mx = T(0);
  if (const int code = load_screen<T, NT>(job, b, Y, ld, true, red, &mx); code != 0) {
    write_out<T, NT>(job.out0, job.ld0, job.s0, b, Y, ld, n, n, T(1), true);
    write_out<T, NT>(job.out1, job.ld1, job.s1, b, Y, ld, n, n, T(1), true);
    write_screened(job, b, code);
    return;
  }
  const T c = frobenius<T, NT>(Y, ld, n, n, mx, red);
  for (int e = threadIdx.x; e < n * n; e += NT) {
    const int i = e / n, j = e - i * n;
    const T y = Y[i * ld + j] / c;
    Y[i * ld + j] = y;
    W[i * ld + j] = y;
    Z[i * ld + j] = i == j ? T(1) : T(0);
  }
  __syncthreads();
  const T r0 = residual<T, NT>(W, ld, n, red);
  auto step = [&]() -> T {
    product<T, S, E>(Y, ld, W, ld, n, n, n, Epi<T>{Y, ld, T(-0.5), Y, ld, T(1.5), false});
    product<T, S, E>(W, ld, Z, ld, n, n, n, Epi<T>{Z, ld, T(-0.5), Z, ld, T(1.5), false});
    const T part = product<T, S, E>(Z, ld, Y, ld, n, n, n, plain(W, ld, true));
    return sqrt(block_sum<NT>(part, red) / T(n));
  };
  int steps = 0, code = 0;
  T r = r0;
  iterate(job.max_steps, job.rstop, job.tol, r0, step, &steps, &r, &code);
  const T sc = sqrt(c);
  write_out<T, NT>(job.out0, job.ld0, job.s0, b, Y, ld, n, n, sc, code < 0);
  write_out<T, NT>(job.out1, job.ld1, job.s1, b, Z, ld, n, n, T(1) / sc, code < 0);
  write_report(job, b, code, steps, r);
}

// Coupled Newton inverse p-th root: z = (1 + p) / (2c), M_0 = z A, X_0 = z^{1/p} I;
// T = (1 + 1/p) I - M / p, X <- X T, M <- T^p M (binary powers of T applied to M in place:
// popcount(p) + floor(log2 p) products, T squared in place).
template <class T, int S, Engine E>
__device__ void root_body(const FusedJob<T>& job, index_t b, T* M, T* X, T* Tm, T* red) {
  constexpr int NT = Tile<S>::kThreads;
  const int n = job.rows, ld = job.ldb, p = job.p;
  T mx = T(0);
  if (const int code = load_screen<T, NT>(job, b, M, ld, true, red, &mx); code != 0) {
    write_out<T, NT>(job.out0, job.ld0, job.s0, b, M, ld, n, n, T(1), true);
    write_screened(job, b, code);
    return;
  }
  const T c = frobenius<T, NT>(M, ld, n, n, mx, red);
  const double z = double(1 + p) / (2.0 * double(c));
  const T zt = T(z), zp = T(pow(z, 1.0 / double(p)));
  for (int e = threadIdx.x; e < n * n; e += NT) {
    const int i = e / n, j = e - i * n;
    M[i * ld + j] = zt * M[i * ld + j];
    X[i * ld + j] = i == j ? zp : T(0);
  }
  __syncthreads();
  const T r0 = residual<T, NT>(M, ld, n, red);
  const T diag = T(1.0 + 1.0 / double(p)), inv_p = T(1.0 / double(p));
  auto step = [&]() -> T {
    for (int e = threadIdx.x; e < n * n; e += NT) {
      const int i = e / n, j = e - i * n;
      Tm[i * ld + j] = (i == j ? diag : T(0)) - inv_p * M[i * ld + j];
    }
    __syncthreads();
    product<T, S, E>(X, ld, Tm, ld, n, n, n, plain(X, ld));
    T part = T(0);
    for (int q = p;;) {
      // The highest bit comes last (q == 1): that product leaves the final M.
      if (q & 1) part = product<T, S, E>(Tm, ld, M, ld, n, n, n, plain(M, ld, q == 1));
      q >>= 1;
      if (q == 0) break;
      product<T, S, E>(Tm, ld, Tm, ld, n, n, n, plain(Tm, ld));
    }
    return sqrt(block_sum<NT>(part, red) / T(n));
  };
  int steps = 0, code = 0;
  T r = r0;
  iterate(job.max_steps, job.rstop, job.tol, r0, step, &steps, &r, &code);
  write_out<T, NT>(job.out0, job.ld0, job.s0, b, X, ld, n, n, T(1), code < 0);
  write_report(job, b, code, steps, r);
}

// Polar factor: X_0 = A / ||A||_F; B = X^T X (tall) or X X^T (wide), k x k;
// cubic X <- 1.5 X - 0.5 X B (or B X); quintic Q = b B + c B B, X <- a X + X Q (or Q X).
template <class T, int S, Engine E>
__device__ void polar_body(const FusedJob<T>& job, index_t b, T* X, T* Bm, T* Q, T* red) {
  constexpr int NT = Tile<S>::kThreads;
  const int rows = job.rows, cols = job.cols, k = min(rows, cols);
  const int ldx = job.ldb, ldk = job.lds;
  const bool tall = rows >= cols;
  T mx = T(0);
  if (const int code = load_screen<T, NT>(job, b, X, ldx, false, red, &mx); code != 0) {
    write_out<T, NT>(job.out0, job.ld0, job.s0, b, X, ldx, rows, cols, T(1), true);
    write_screened(job, b, code);
    return;
  }
  const T c = frobenius<T, NT>(X, ldx, rows, cols, mx, red);
  for (int e = threadIdx.x; e < rows * cols; e += NT) {
    const int i = e / cols, j = e - i * cols;
    X[i * ldx + j] = X[i * ldx + j] / c;
  }
  __syncthreads();
  auto gram = [&]() -> T {
    const T part =
        tall ? product<T, S, E, true, false>(X, ldx, X, ldx, k, k, rows, plain(Bm, ldk, true))
             : product<T, S, E, false, true>(X, ldx, X, ldx, k, k, cols, plain(Bm, ldk, true));
    return sqrt(block_sum<NT>(part, red) / T(k));
  };
  bool cubic = job.schedule == PolarSchedule::cubic;
  auto step = [&]() -> T {
    if (cubic) {
      const Epi<T> epi{X, ldx, T(-0.5), X, ldx, T(1.5), false};
      if (tall)
        product<T, S, E>(X, ldx, Bm, ldk, rows, cols, k, epi);
      else
        product<T, S, E>(Bm, ldk, X, ldx, rows, cols, k, epi);
    } else {
      product<T, S, E>(Bm, ldk, Bm, ldk, k, k, k, Epi<T>{Q, ldk, job.pc, Bm, ldk, job.pb, false});
      const Epi<T> epi{X, ldx, T(1), X, ldx, job.pa, false};
      if (tall)
        product<T, S, E>(X, ldx, Q, ldk, rows, cols, k, epi);
      else
        product<T, S, E>(Q, ldk, X, ldx, rows, cols, k, epi);
    }
    return gram();
  };
  const T r0 = gram();
  const bool convergent = job.schedule == PolarSchedule::convergent;
  int steps = 0, code = 0;
  T r = r0;
  iterate(job.max_steps, job.rstop && !convergent, job.tol, r0, step, &steps, &r, &code);
  if (code == 0 && convergent) {
    cubic = true;
    int more = 0;
    const T r1 = r;
    iterate(job.cubic_steps, true, job.tol, r1, step, &more, &r, &code);
    steps += more;
  }
  write_out<T, NT>(job.out0, job.ld0, job.s0, b, X, ldx, rows, cols, T(1), code < 0);
  write_report(job, b, code, steps, r);
}

// One block per matrix (grid-stride over the batch), three buffers: [rows x ldb][k x lds][k x lds].
template <class T, int S, NsOp OP, Engine E>
__global__ void __launch_bounds__(Tile<S>::kThreads) fused_kernel(const FusedJob<T> job) {
  extern __shared__ __align__(16) unsigned char ns_smem[];
  __shared__ T red[Tile<S>::kWarps];
  T* const base = job.scratch != nullptr ? job.scratch + index_t(blockIdx.x) * job.scratch_elems
                                         : reinterpret_cast<T*>(ns_smem);
  const int k = min(job.rows, job.cols);
  T* const b0 = base;
  T* const b1 = b0 + job.rows * job.ldb;
  T* const b2 = b1 + k * job.lds;
  for (index_t b = blockIdx.x; b < job.batch; b += gridDim.x) {
    if constexpr (OP == NsOp::inverse) inverse_body<T, S, E>(job, b, b0, b1, b2, red);
    if constexpr (OP == NsOp::sqrt) sqrt_body<T, S, E>(job, b, b0, b1, b2, red);
    if constexpr (OP == NsOp::root) root_body<T, S, E>(job, b, b0, b1, b2, red);
    if constexpr (OP == NsOp::polar) polar_body<T, S, E>(job, b, b0, b1, b2, red);
    __syncthreads();  // the next matrix reuses the buffers
  }
}

// Empty matrices (rows or cols 0): the reference's screen finds a zero Frobenius norm (info 2).
template <class T>
__global__ void __launch_bounds__(kEwThreads)
    empty_report_kernel(int* info, int* iters, T* resid, index_t batch) {
  for (index_t b = index_t(blockIdx.x) * blockDim.x + threadIdx.x; b < batch;
       b += index_t(gridDim.x) * blockDim.x) {
    info[b] = 2;
    if (iters != nullptr) iters[b] = 0;
    if (resid != nullptr) resid[b] = nan_v<T>();
  }
}

// ---- cuBLAS path: per-matrix state and chunked reductions ---------------------------------------

struct State {
  double r, r0;  // residual now and at the start of the current iterate() phase
  double scale;  // inverse: ||A||_1 ||A||_inf; sqrt, polar: ||A||_F; root: z
  double aux;    // the largest |entry| until the norms are known; root: z^{1/p}
  int code, steps, active, pad;
};

struct Partial {
  double maxabs, rowsum, colsum, sum;
  int flags, pad;  // 1: non-finite entry, 2: diagonal of A + eps I <= 0
};

template <class T>
struct ScreenJob {
  const T* a;
  index_t lda, sa;
  T* dst;  // A + eps I, dense rows x cols per matrix
  index_t rows, cols, batch, chunks, npart;
  double eps;
  Partial* part;
};

// Block-wide sum / max of doubles over kEwThreads threads, for thread 0 (fixed order).
__device__ double ew_block_sum(double v, double* red) {
  v = warp_sum(v);
  if (threadIdx.x % 32 == 0) red[threadIdx.x / 32] = v;
  __syncthreads();
  double s = 0;
  if (threadIdx.x == 0)
    for (int w = 0; w < kEwThreads / 32; ++w) s += red[w];
  __syncthreads();
  return s;
}
__device__ double ew_block_max(double v, double* red) {
  v = warp_max(v);
  if (threadIdx.x % 32 == 0) red[threadIdx.x / 32] = v;
  __syncthreads();
  double s = 0;
  if (threadIdx.x == 0)
    for (int w = 0; w < kEwThreads / 32; ++w) s = red[w] > s ? red[w] : s;
  __syncthreads();
  return s;
}

// Block (matrix, chunk of kChunkRows rows), a warp per row: copies A + eps I, flags, the largest
// |entry| and the largest row sum of |entries|.
template <class T>
__global__ void __launch_bounds__(kEwThreads)
    screen_rows_kernel(const ScreenJob<T> job, index_t first) {
  __shared__ double red[kEwThreads / 32];
  const index_t blk = first + blockIdx.x, b = blk / job.chunks, c = blk - b * job.chunks;
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  const T* src = job.a + b * job.sa;
  T* dst = job.dst + b * job.rows * job.cols;
  const index_t end = std::min(job.rows, (c + 1) * kChunkRows);
  bool bad = false, notpos = false;
  double mx = 0, rowmax = 0;
  for (index_t i = c * kChunkRows + warp; i < end; i += kEwThreads / 32) {
    double rs = 0;
    for (index_t j = lane; j < job.cols; j += 32) {
      T x = src[i * job.lda + j];
      bad = bad || !isfinite(x);
      if (i == j) {
        const double d = double(x) + job.eps;
        notpos = notpos || !(d > 0.0);
        x = T(d);
      }
      dst[i * job.cols + j] = x;
      const double ax = abs_v(double(x));
      mx = ax > mx ? ax : mx;
      rs += ax;
    }
    rs = warp_sum(rs);
    rowmax = rs > rowmax ? rs : rowmax;
  }
  const int flags = (__syncthreads_or(bad) ? 1 : 0) | (__syncthreads_or(notpos) ? 2 : 0);
  mx = ew_block_max(mx, red);
  rowmax = ew_block_max(rowmax, red);
  if (threadIdx.x == 0) {
    Partial& p = job.part[b * job.npart + c];
    p.flags = flags;
    p.maxabs = mx;
    p.rowsum = rowmax;
  }
}

// Block (matrix, kColThreads columns), a thread per column: the largest column sum of |A + eps I|.
template <class T>
__global__ void __launch_bounds__(kColThreads)
    colsum_kernel(const ScreenJob<T> job, index_t cblocks, index_t first) {
  __shared__ double red[kEwThreads / 32];
  const index_t blk = first + blockIdx.x, b = blk / cblocks, cb = blk - b * cblocks;
  const T* m = job.dst + b * job.rows * job.cols;
  const index_t j = cb * kColThreads + threadIdx.x;
  double s = 0;
  if (j < job.cols)
    for (index_t i = 0; i < job.rows; ++i) s += abs_v(double(m[i * job.cols + j]));
  s = ew_block_max(s, red);
  if (threadIdx.x == 0) job.part[b * job.npart + cb].colsum = s;
}

// A thread per matrix: the screen's info code; inverse: the two norms.
__global__ void __launch_bounds__(kEwThreads)
    screen_finalize_kernel(State* st, const Partial* part, index_t npart, index_t chunks,
                           index_t cblocks, index_t batch, bool spd) {
  for (index_t b = index_t(blockIdx.x) * blockDim.x + threadIdx.x; b < batch;
       b += index_t(gridDim.x) * blockDim.x) {
    const Partial* pb = part + b * npart;
    int flags = 0;
    double mx = 0, rowmax = 0, colmax = 0;
    for (index_t c = 0; c < chunks; ++c) {
      flags |= pb[c].flags;
      mx = pb[c].maxabs > mx ? pb[c].maxabs : mx;
      rowmax = pb[c].rowsum > rowmax ? pb[c].rowsum : rowmax;
    }
    for (index_t c = 0; c < cblocks; ++c) colmax = pb[c].colsum > colmax ? pb[c].colsum : colmax;
    const int code = (flags & 1) ? -1 : !(mx > 0) ? 2 : (spd && (flags & 2)) ? 3 : 0;
    State s{};
    s.r = s.r0 = nan_v<double>();
    s.code = code;
    s.steps = 0;
    s.active = code == 0 ? 1 : 0;
    s.aux = mx;
    s.scale = colmax * rowmax;  // inverse's ||A||_1 ||A||_inf (cblocks == 0 otherwise)
    st[b] = s;
  }
}

// Block (matrix, chunk): sum of (x / maxabs)^2 over the chunk's rows of a dense rows x cols.
template <class T>
__global__ void __launch_bounds__(kEwThreads)
    frob_kernel(const T* m, index_t rows, index_t cols, const State* st, Partial* part,
                index_t npart, index_t chunks, index_t first) {
  __shared__ double red[kEwThreads / 32];
  const index_t blk = first + blockIdx.x, b = blk / chunks, c = blk - b * chunks;
  if (st[b].code != 0) return;  // block-uniform
  const double scale = st[b].aux;
  const T* mb = m + b * rows * cols;
  const index_t end = std::min(rows, (c + 1) * kChunkRows);
  double s = 0;
  for (index_t i = c * kChunkRows + threadIdx.x / 32; i < end; i += kEwThreads / 32)
    for (index_t j = threadIdx.x % 32; j < cols; j += 32) {
      const double y = double(mb[i * cols + j]) / scale;
      s += y * y;
    }
  s = ew_block_sum(s, red);
  if (threadIdx.x == 0) part[b * npart + c].sum = s;
}

// A thread per matrix: ||A + eps I||_F, then the op's starting scalars.
__global__ void __launch_bounds__(kEwThreads)
    frob_finalize_kernel(State* st, const Partial* part, index_t npart, index_t chunks,
                         index_t batch, int root_p) {
  for (index_t b = index_t(blockIdx.x) * blockDim.x + threadIdx.x; b < batch;
       b += index_t(gridDim.x) * blockDim.x) {
    State s = st[b];
    if (s.code != 0) continue;
    double sum = 0;
    for (index_t c = 0; c < chunks; ++c) sum += part[b * npart + c].sum;
    const double f = s.aux * sqrt(sum);
    if (root_p > 0) {
      s.scale = double(1 + root_p) / (2.0 * f);
      s.aux = pow(s.scale, 1.0 / double(root_p));
    } else {
      s.scale = f;
    }
    st[b] = s;
  }
}

// X = A^T / (||A||_1 ||A||_inf) through 32 x 32 shared tiles (both sides coalesced).
template <class T>
__global__ void __launch_bounds__(256)
    transpose_init_kernel(const T* a, T* x, index_t n, const State* st, index_t first) {
  __shared__ T tile[32][33];
  const index_t tiles = (n + 31) / 32;
  const index_t blk = first + blockIdx.x, b = blk / (tiles * tiles), t = blk - b * tiles * tiles;
  if (st[b].code != 0) return;  // block-uniform
  const double denom = st[b].scale;
  const index_t ti = t / tiles, tj = t - ti * tiles;
  const T* ab = a + b * n * n;
  T* xb = x + b * n * n;
  const int tx = threadIdx.x % 32, ty = threadIdx.x / 32;
  for (int r = ty; r < 32; r += 8) {
    const index_t i = ti * 32 + r, j = tj * 32 + tx;
    if (i < n && j < n) tile[r][tx] = ab[i * n + j];
  }
  __syncthreads();
  for (int r = ty; r < 32; r += 8) {
    const index_t i = tj * 32 + r, j = ti * 32 + tx;  // x(i, j) = a(j, i)
    if (i < n && j < n) xb[i * n + j] = T(double(tile[tx][r]) / denom);
  }
}

// Starting iterates of sqrt (Y = A / c in u0, W = Y in u2, Z = I in u1), root (M = z A in u0,
// X = z^{1/p} I in u1) and polar (X = A / ||A||_F in u0).
template <class T, NsOp OP>
__global__ void __launch_bounds__(kEwThreads)
    init_kernel(T* u0, T* u1, T* u2, index_t rows, index_t cols, index_t batch, const State* st) {
  const index_t elems = rows * cols, total = batch * elems;
  for (index_t e = index_t(blockIdx.x) * blockDim.x + threadIdx.x; e < total;
       e += index_t(gridDim.x) * blockDim.x) {
    const index_t b = e / elems, r = e - b * elems, i = r / cols, j = r - i * cols;
    const State& s = st[b];
    if (s.code != 0) continue;
    if constexpr (OP == NsOp::sqrt) {
      const T y = T(double(u0[e]) / s.scale);
      u0[e] = y;
      u2[e] = y;
      u1[e] = i == j ? T(1) : T(0);
    } else if constexpr (OP == NsOp::root) {
      u0[e] = T(s.scale) * u0[e];
      u1[e] = i == j ? T(s.aux) : T(0);
    } else {
      u0[e] = T(double(u0[e]) / s.scale);
    }
  }
}

// dst = alpha x + beta y + gamma I over dense rows x cols matrices (x, y may be null; they may
// alias dst).  active_only: matrices that stopped keep their dst (a frozen iterate).
template <class T>
__global__ void __launch_bounds__(kEwThreads)
    axpby_kernel(T* dst, T alpha, const T* x, T beta, const T* y, T gamma, index_t rows,
                 index_t cols, index_t batch, const State* st) {
  const index_t elems = rows * cols, total = batch * elems;
  for (index_t e = index_t(blockIdx.x) * blockDim.x + threadIdx.x; e < total;
       e += index_t(gridDim.x) * blockDim.x) {
    const index_t b = e / elems;
    if (st != nullptr && st[b].active == 0) continue;
    const index_t r = e - b * elems, i = r / cols, j = r - i * cols;
    T v = i == j ? gamma : T(0);
    if (x != nullptr) v += alpha * x[e];
    if (y != nullptr) v += beta * y[e];
    dst[e] = v;
  }
}

// Block (matrix, chunk): sum of (delta_ij - w_ij)^2 over the chunk's rows (active matrices).
template <class T>
__global__ void __launch_bounds__(kEwThreads)
    resid_kernel(const T* w, index_t n, const State* st, Partial* part, index_t npart,
                 index_t chunks, index_t first) {
  __shared__ double red[kEwThreads / 32];
  const index_t blk = first + blockIdx.x, b = blk / chunks, c = blk - b * chunks;
  if (st[b].active == 0) return;  // block-uniform
  const T* wb = w + b * n * n;
  const index_t end = std::min(n, (c + 1) * kChunkRows);
  double s = 0;
  for (index_t i = c * kChunkRows + threadIdx.x / 32; i < end; i += kEwThreads / 32)
    for (index_t j = threadIdx.x % 32; j < n; j += 32) {
      const double d = (i == j ? 1.0 : 0.0) - double(wb[i * n + j]);
      s += d * d;
    }
  s = ew_block_sum(s, red);
  if (threadIdx.x == 0) part[b * npart + c].sum = s;
}

// A thread per active matrix: the residual from the chunk sums, then iterate()'s rule
// (start: r = r0 and the pre-step residual stop; step: divergence, stall, and the next
// pre-step stop folded in).
__global__ void __launch_bounds__(kEwThreads)
    judge_kernel(State* st, const Partial* part, index_t npart, index_t chunks, index_t n,
                 index_t batch, bool start, bool rstop, double tol) {
  for (index_t b = index_t(blockIdx.x) * blockDim.x + threadIdx.x; b < batch;
       b += index_t(gridDim.x) * blockDim.x) {
    State s = st[b];
    if (s.active == 0) continue;
    double sum = 0;
    for (index_t c = 0; c < chunks; ++c) sum += part[b * npart + c].sum;
    const double next = sqrt(sum / double(n));
    if (start) {
      s.r = s.r0 = next;
      if (rstop && next <= tol) s.active = 0;
    } else {
      ++s.steps;
      const double limit = 2.0 * (s.r0 < 1.0 ? 1.0 : s.r0);
      if (!isfinite(next) || next > limit || (next >= s.r && next >= 1.0)) {
        s.code = -2;  // also: growing while >= 1 (not the rounding floor)
        s.r = next;
        s.active = 0;
      } else {
        const bool stalled = rstop && next >= s.r;
        s.r = next;
        if (stalled || (rstop && next <= tol)) s.active = 0;
      }
    }
    st[b] = s;
  }
}

// Polar convergent: the cubic phase starts from the quintic phase's residual.
__global__ void __launch_bounds__(kEwThreads) phase_kernel(State* st, index_t batch, double tol) {
  for (index_t b = index_t(blockIdx.x) * blockDim.x + threadIdx.x; b < batch;
       b += index_t(gridDim.x) * blockDim.x) {
    State& s = st[b];
    if (s.code != 0) continue;
    s.r0 = s.r;
    s.active = s.r <= tol ? 0 : 1;
  }
}

// out = scale m (scale: 1, sqrt(c), 1 / sqrt(c) by `mode`), NaN for info < 0 or >= 2.
template <class T>
__global__ void __launch_bounds__(kEwThreads)
    out_kernel(T* out, index_t ld, index_t stride, const T* m, index_t rows, index_t cols,
               index_t batch, const State* st, int mode) {
  const index_t elems = rows * cols, total = batch * elems;
  for (index_t e = index_t(blockIdx.x) * blockDim.x + threadIdx.x; e < total;
       e += index_t(gridDim.x) * blockDim.x) {
    const index_t b = e / elems, r = e - b * elems, i = r / cols, j = r - i * cols;
    const State& s = st[b];
    T v = nan_v<T>();
    if (s.code >= 0 && s.code < 2) {
      const T scale = mode == 0 ? T(1) : mode == 1 ? T(sqrt(s.scale)) : T(1.0 / sqrt(s.scale));
      v = mode == 0 ? m[e] : scale * m[e];
    }
    out[b * stride + i * ld + j] = v;
  }
}

template <class T>
__global__ void __launch_bounds__(kEwThreads)
    report_kernel(const State* st, index_t batch, bool rstop, double tol, int* info, int* iters,
                  T* resid) {
  for (index_t b = index_t(blockIdx.x) * blockDim.x + threadIdx.x; b < batch;
       b += index_t(gridDim.x) * blockDim.x) {
    const State s = st[b];
    int code = s.code;
    if (code == 0 && rstop && !(s.r <= tol)) code = 1;
    info[b] = code;
    if (iters != nullptr) iters[b] = s.steps;
    if (resid != nullptr) resid[b] = T(s.r);
  }
}

__global__ void __launch_bounds__(kEwThreads)
    to_bf16_kernel(const float* x, __nv_bfloat16* y, index_t total) {
  for (index_t e = index_t(blockIdx.x) * blockDim.x + threadIdx.x; e < total;
       e += index_t(gridDim.x) * blockDim.x)
    y[e] = __float2bfloat16_rn(x[e]);
}

// ---- host: device properties and plans ----------------------------------------------------------

struct DevInfo {
  int smem = 48 * 1024;  // opt-in shared memory per block
  int sms = 1;
  int major = 0;
};

cudaError_t device_info(DevInfo* d) {
  int dev = 0;
  cudaError_t e = cudaGetDevice(&dev);
  if (e == cudaSuccess)
    e = cudaDeviceGetAttribute(&d->smem, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev);
  if (e == cudaSuccess) e = cudaDeviceGetAttribute(&d->sms, cudaDevAttrMultiProcessorCount, dev);
  if (e == cudaSuccess)
    e = cudaDeviceGetAttribute(&d->major, cudaDevAttrComputeCapabilityMajor, dev);
  return e;
}

enum class Path { none, empty, smem, scratch, blas };

std::size_t align_up(std::size_t x) {
  return (x + kAlign - 1) / kAlign * kAlign;
}

index_t div_up(index_t a, index_t b) {
  return (a + b - 1) / b;
}

// Elements of one fused matrix's buffers with the row strides of engine e.
index_t fused_elems(index_t rows, index_t cols, Engine e) {
  const index_t k = std::min(rows, cols);
  return rows * ld_for(int(cols), e) + 2 * k * ld_for(int(k), e);
}

// The largest of the engines' layouts (the plan cannot depend on options.compute).
template <class T>
index_t fused_elems_max(index_t rows, index_t cols) {
  index_t e = fused_elems(rows, cols, Engine::simt);
  if (std::is_same_v<T, float>) e = std::max(e, fused_elems(rows, cols, Engine::tf32));
  return e;
}

// The cuBLAS path's workspace regions for one group (base may be null: sizes only).
template <class T>
struct BlasLayout {
  T* u[4] = {};              // u0, u1: rows x cols; u2, u3: k x k (per matrix, dense)
  __nv_bfloat16* h[2] = {};  // float: BF16 operand copies, rows x cols and k x k
  State* st = nullptr;
  Partial* part = nullptr;
  index_t chunks = 0, cblocks = 0, npart = 0;
  std::size_t bytes = 0;
};

template <class T>
BlasLayout<T> blas_layout(index_t rows, index_t cols, index_t batch, void* base) {
  BlasLayout<T> l;
  const index_t k = std::min(rows, cols);
  const std::size_t big = std::size_t(batch * rows * cols), small = std::size_t(batch * k * k);
  l.chunks = div_up(rows, kChunkRows);
  l.cblocks = div_up(cols, kColThreads);
  l.npart = std::max(l.chunks, l.cblocks);
  auto* p = static_cast<unsigned char*>(base);
  std::size_t off = 0;
  auto take = [&](std::size_t bytes) {
    unsigned char* q = p == nullptr ? nullptr : p + off;
    off += align_up(bytes);
    return q;
  };
  l.u[0] = reinterpret_cast<T*>(take(big * sizeof(T)));
  l.u[1] = reinterpret_cast<T*>(take(big * sizeof(T)));
  l.u[2] = reinterpret_cast<T*>(take(small * sizeof(T)));
  l.u[3] = reinterpret_cast<T*>(take(small * sizeof(T)));
  if (std::is_same_v<T, float>) {
    l.h[0] = reinterpret_cast<__nv_bfloat16*>(take(big * sizeof(__nv_bfloat16)));
    l.h[1] = reinterpret_cast<__nv_bfloat16*>(take(small * sizeof(__nv_bfloat16)));
  }
  l.st = reinterpret_cast<State*>(take(std::size_t(batch) * sizeof(State)));
  l.part = reinterpret_cast<Partial*>(take(std::size_t(batch * l.npart) * sizeof(Partial)));
  l.bytes = off;
  return l;
}

struct Plan {
  Path path = Path::none;
  int tile = 0;        // S of the fused kernel
  index_t grid = 0;    // fused blocks
  index_t slice = 0;   // scratch: elements per block
  std::size_t ws = 0;  // workspace bytes
};

template <class T>
Plan plan_group(index_t rows, index_t cols, index_t batch, const DevInfo& dev) {
  Plan pl;
  if (batch == 0) return pl;
  if (rows == 0 || cols == 0) {
    pl.path = Path::empty;
    return pl;
  }
  const index_t k = std::min(rows, cols);
  const double work = double(rows) * double(cols) * double(k);
  if (k <= kFusedMax && work <= kFusedWork && (work <= kSmallWork || batch >= kFusedMinBatch)) {
    pl.tile = k <= 16 ? 16 : k <= 32 ? 32 : k <= 64 ? 64 : 128;
    const index_t elems = fused_elems_max<T>(rows, cols);
    const std::size_t bytes = std::size_t(elems) * sizeof(T);
    if (bytes + kStaticSmem <= std::size_t(dev.smem)) {
      pl.path = Path::smem;
      pl.grid = std::min(batch, kMaxGrid);
    } else {
      pl.path = Path::scratch;
      pl.grid = std::min<index_t>(batch, index_t(kScratchPerSm) * std::max(dev.sms, 1));
      pl.slice = elems;
      pl.ws = align_up(std::size_t(pl.grid) * bytes);
    }
    return pl;
  }
  pl.path = Path::blas;
  pl.ws = blas_layout<T>(rows, cols, batch, nullptr).bytes;
  return pl;
}

unsigned grid_of(index_t blocks) {
  return unsigned(std::min(blocks, kMaxGrid));
}

unsigned stride_grid(index_t total, int threads) {
  return unsigned(std::max<index_t>(1, std::min(div_up(total, threads), kStrideBlocks)));
}

// One launch per kMaxGrid blocks of a (matrix, part) decomposition.
template <class F>
cudaError_t launch_parts(index_t total, F&& launch) {
  for (index_t first = 0; first < total; first += kMaxGrid) {
    launch(grid_of(total - first), first);
    if (const cudaError_t e = cudaGetLastError(); e != cudaSuccess) return e;
  }
  return cudaSuccess;
}

// ---- host: the fused path -----------------------------------------------------------------------

template <class T, int S, NsOp OP, Engine E>
cudaError_t launch_fused_cfg(const FusedJob<T>& job, index_t grid, std::size_t smem,
                             cudaStream_t st) {
  auto* kernel = fused_kernel<T, S, OP, E>;
  if (const cudaError_t e = allow_smem(kernel, smem); e != cudaSuccess) return e;
  kernel<<<grid_of(grid), Tile<S>::kThreads, smem, st>>>(job);
  return cudaGetLastError();
}

template <class T, int S, NsOp OP>
cudaError_t launch_fused_engine(const FusedJob<T>& job, Engine e, index_t grid, std::size_t smem,
                                cudaStream_t st) {
  if constexpr (std::is_same_v<T, float>) {
    if (e == Engine::tf32) return launch_fused_cfg<T, S, OP, Engine::tf32>(job, grid, smem, st);
    if (e == Engine::bf16) return launch_fused_cfg<T, S, OP, Engine::bf16>(job, grid, smem, st);
  }
  return launch_fused_cfg<T, S, OP, Engine::simt>(job, grid, smem, st);
}

template <class T, NsOp OP>
cudaError_t launch_fused(const FusedJob<T>& job, int tile, Engine e, index_t grid, std::size_t smem,
                         cudaStream_t st) {
  switch (tile) {
    case 16:
      return launch_fused_engine<T, 16, OP>(job, e, grid, smem, st);
    case 32:
      return launch_fused_engine<T, 32, OP>(job, e, grid, smem, st);
    case 64:
      return launch_fused_engine<T, 64, OP>(job, e, grid, smem, st);
    default:
      return launch_fused_engine<T, 128, OP>(job, e, grid, smem, st);
  }
}

// Everything one op call passes down, per group.
template <class T>
struct Call {
  const char* name;
  NsOp op;
  const NewtonSchulzOptions* o;
  int p;
  const PolarOptions* po;
  cudaStream_t st;
  DevInfo dev;
};

template <class T>
struct Group {
  MatrixBatch<const T> a;
  MatrixBatch<T> out0, out1;  // out1: sqrt's inv_sqrt; data == nullptr: not asked for
  int* info;                  // this group's slices of the report
  int* iters;
  T* resid;
};

template <class T>
Status run_fused(const Call<T>& call, const Group<T>& g, const Plan& pl, void* ws) {
  const NewtonSchulzOptions& o = *call.o;
  const bool low =
      std::is_same_v<T, float> && o.compute != NsCompute::native && call.dev.major >= 8;
  const Engine engine = !low                           ? Engine::simt
                        : o.compute == NsCompute::tf32 ? Engine::tf32
                                                       : Engine::bf16;
  const index_t rows = g.a.rows, cols = g.a.cols, k = std::min(rows, cols);
  FusedJob<T> job{};
  job.a = g.a.data;
  job.lda = g.a.ld;
  job.sa = g.a.stride;
  job.out0 = g.out0.data;
  job.ld0 = g.out0.ld;
  job.s0 = g.out0.stride;
  job.out1 = g.out1.data;
  job.ld1 = g.out1.ld;
  job.s1 = g.out1.stride;
  job.info = g.info;
  job.iters = g.iters;
  job.resid = g.resid;
  job.batch = g.a.batch;
  job.rows = int(rows);
  job.cols = int(cols);
  job.ldb = ld_for(int(cols), engine);
  job.lds = ld_for(int(k), engine);
  job.max_steps = o.iterations;
  job.rstop = o.stop == NsStop::residual;
  job.tol = o.tolerance;
  job.eps = call.op == NsOp::polar ? 0.0 : o.epsilon;
  job.p = call.p;
  job.schedule = call.po != nullptr ? call.po->schedule : PolarSchedule::cubic;
  job.pa = call.po != nullptr ? T(call.po->a) : T(0);
  job.pb = call.po != nullptr ? T(call.po->b) : T(0);
  job.pc = call.po != nullptr ? T(call.po->c) : T(0);
  job.cubic_steps = call.po != nullptr ? call.po->cubic_iterations : 0;
  std::size_t smem = 0;
  if (pl.path == Path::smem) {
    smem = std::size_t(fused_elems(rows, cols, engine)) * sizeof(T);
  } else {
    job.scratch = static_cast<T*>(ws);
    job.scratch_elems = pl.slice;  // the largest engine layout: this engine's fits
  }
  cudaError_t e = cudaSuccess;
  switch (call.op) {
    case NsOp::inverse:
      e = launch_fused<T, NsOp::inverse>(job, pl.tile, engine, pl.grid, smem, call.st);
      break;
    case NsOp::sqrt:
      e = launch_fused<T, NsOp::sqrt>(job, pl.tile, engine, pl.grid, smem, call.st);
      break;
    case NsOp::root:
      e = launch_fused<T, NsOp::root>(job, pl.tile, engine, pl.grid, smem, call.st);
      break;
    case NsOp::polar:
      e = launch_fused<T, NsOp::polar>(job, pl.tile, engine, pl.grid, smem, call.st);
      break;
  }
  return finish(call.name, e);
}

// ---- host: cuBLAS -------------------------------------------------------------------------------

// A batched row-major operand: matrix b at p + b * stride, row stride ld, `elems` per matrix.
template <class T>
struct Mat {
  T* p;
  index_t ld, stride;
};

// Strided-batched row-major products over the `count` matrices of a group.
template <class T>
class Gemm {
 public:
  Gemm(const char* op, cublasHandle_t h, NsCompute mode, index_t count, __nv_bfloat16* big,
       __nv_bfloat16* small, cudaStream_t st)
      : op_(op), h_(h), mode_(mode), count_(count), big_(big), small_(small), st_(st) {}

  // C (m x n) = alpha op(A) op(B) + beta C.
  Status operator()(bool ta, bool tb, index_t m, index_t n, index_t k, T alpha, Mat<const T> a,
                    Mat<const T> b, T beta, Mat<T> c) const {
    cudaDataType in = std::is_same_v<T, float> ? CUDA_R_32F : CUDA_R_64F;
    const cudaDataType out = in;
    cublasComputeType_t compute =
        std::is_same_v<T, float> ? CUBLAS_COMPUTE_32F : CUBLAS_COMPUTE_64F;
    const void* pa = a.p;
    const void* pb = b.p;
    if constexpr (std::is_same_v<T, float>) {
      if (mode_ == NsCompute::tf32) compute = CUBLAS_COMPUTE_32F_FAST_TF32;
      if (mode_ == NsCompute::bf16) {
        // The larger operand goes to the rows x cols copy, the other to the k x k one (the
        // square ops' operands are all n x n; the polar ones are X and a k x k).
        const bool a_big = a.stride >= b.stride;
        __nv_bfloat16* ha = a_big ? big_ : small_;
        __nv_bfloat16* hb = a.p == b.p ? ha : (a_big ? small_ : big_);
        CURVKIT_RETURN_IF_ERROR(convert(a.p, ha, a.stride));
        if (b.p != a.p) CURVKIT_RETURN_IF_ERROR(convert(b.p, hb, b.stride));
        pa = ha;
        pb = hb;
        in = CUDA_R_16BF;
      }
    }
    // Row-major C = op(A) op(B) is column-major C^T = op(B)^T op(A)^T.
    const cublasStatus_t e = cublasGemmStridedBatchedEx_64(
        h_, tb ? CUBLAS_OP_T : CUBLAS_OP_N, ta ? CUBLAS_OP_T : CUBLAS_OP_N, n, m, k, &alpha, pb, in,
        b.ld, b.stride, pa, in, a.ld, a.stride, &beta, c.p, out, c.ld, c.stride, count_, compute,
        CUBLAS_GEMM_DEFAULT);
    if (e != CUBLAS_STATUS_SUCCESS) return blas_error(op_, e);
    return finish(op_, cudaSuccess);
  }

 private:
  Status convert(const T* x, __nv_bfloat16* y, index_t stride) const {
    if constexpr (std::is_same_v<T, float>) {
      const index_t total = count_ * stride;
      to_bf16_kernel<<<stride_grid(total, kEwThreads), kEwThreads, 0, st_>>>(x, y, total);
      return finish(op_, cudaSuccess);
    } else {
      (void)x, (void)y, (void)stride;
      return Status::success();
    }
  }

  const char* op_;
  cublasHandle_t h_;
  NsCompute mode_;
  index_t count_;
  __nv_bfloat16 *big_, *small_;
  cudaStream_t st_;
};

template <class T>
Status run_blas(const Call<T>& call, const Group<T>& g, void* ws) {
  const char* name = call.name;
  const NewtonSchulzOptions& o = *call.o;
  const cudaStream_t st = call.st;
  const index_t rows = g.a.rows, cols = g.a.cols, batch = g.a.batch, k = std::min(rows, cols);
  const index_t n = rows;  // square ops
  const BlasLayout<T> l = blas_layout<T>(rows, cols, batch, ws);
  const bool rstop = o.stop == NsStop::residual;
  const double tol = o.tolerance;
  const unsigned mgrid = stride_grid(batch, kEwThreads);  // a thread per matrix

  Blas blas;
  CURVKIT_RETURN_IF_ERROR(blas.open(name, st));
  const NsCompute mode = std::is_same_v<T, float> ? o.compute : NsCompute::native;
  const Gemm<T> gemm(name, blas.handle(), mode, batch, l.h[0], l.h[1], st);

  auto check = [&](cudaError_t e) { return finish(name, e); };
  // dst = alpha x + beta y + gamma I over the group's rows x cols (or k x k) matrices.
  auto ew = [&](T* dst, T alpha, const T* x, T beta, const T* y, T gamma, index_t r, index_t c,
                bool active_only) {
    const index_t total = batch * r * c;
    axpby_kernel<T><<<stride_grid(total, kEwThreads), kEwThreads, 0, st>>>(
        dst, alpha, x, beta, y, gamma, r, c, batch, active_only ? l.st : nullptr);
    return check(cudaGetLastError());
  };
  // The residual of the dense m x m matrices w, then the stopping rule.
  auto judge = [&](const T* w, index_t m, bool start, bool rs) {
    const index_t chunks = div_up(m, kChunkRows);
    cudaError_t e = launch_parts(batch * chunks, [&](unsigned grid, index_t first) {
      resid_kernel<T><<<grid, kEwThreads, 0, st>>>(w, m, l.st, l.part, l.npart, chunks, first);
    });
    if (e == cudaSuccess) {
      judge_kernel<<<mgrid, kEwThreads, 0, st>>>(l.st, l.part, l.npart, chunks, m, batch, start, rs,
                                                 tol);
      e = cudaGetLastError();
    }
    return check(e);
  };
  auto sq = [](T* p, index_t m) { return Mat<T>{p, m, m * m}; };
  auto csq = [](const T* p, index_t m) { return Mat<const T>{p, m, m * m}; };

  // Screening: A + eps I into u0, flags and norms.
  ScreenJob<T> sj{};
  sj.a = g.a.data;
  sj.lda = g.a.ld;
  sj.sa = g.a.stride;
  sj.dst = l.u[0];
  sj.rows = rows;
  sj.cols = cols;
  sj.batch = batch;
  sj.chunks = l.chunks;
  sj.npart = l.npart;
  sj.eps = call.op == NsOp::polar ? 0.0 : o.epsilon;
  sj.part = l.part;
  cudaError_t e = launch_parts(batch * l.chunks, [&](unsigned grid, index_t first) {
    screen_rows_kernel<T><<<grid, kEwThreads, 0, st>>>(sj, first);
  });
  const bool inverse = call.op == NsOp::inverse;
  if (e == cudaSuccess && inverse)
    e = launch_parts(batch * l.cblocks, [&](unsigned grid, index_t first) {
      colsum_kernel<T><<<grid, kColThreads, 0, st>>>(sj, l.cblocks, first);
    });
  if (e == cudaSuccess) {
    const bool spd = call.op == NsOp::sqrt || call.op == NsOp::root;
    screen_finalize_kernel<<<mgrid, kEwThreads, 0, st>>>(l.st, l.part, l.npart, l.chunks,
                                                         inverse ? l.cblocks : 0, batch, spd);
    e = cudaGetLastError();
  }
  if (e == cudaSuccess && !inverse) {
    e = launch_parts(batch * l.chunks, [&](unsigned grid, index_t first) {
      frob_kernel<T>
          <<<grid, kEwThreads, 0, st>>>(l.u[0], rows, cols, l.st, l.part, l.npart, l.chunks, first);
    });
    if (e == cudaSuccess) {
      frob_finalize_kernel<<<mgrid, kEwThreads, 0, st>>>(l.st, l.part, l.npart, l.chunks, batch,
                                                         call.op == NsOp::root ? call.p : 0);
      e = cudaGetLastError();
    }
  }
  CURVKIT_RETURN_IF_ERROR(check(e));

  const index_t elems_total = batch * rows * cols;
  const unsigned egrid = stride_grid(elems_total, kEwThreads);
  int max_steps = o.iterations;
  bool rstop_last = rstop;
  switch (call.op) {
    case NsOp::inverse: {
      T *A = l.u[0], *X = l.u[1], *R = l.u[2], *P = l.u[3];
      const index_t tiles = div_up(n, 32);
      CURVKIT_RETURN_IF_ERROR(
          check(launch_parts(batch * tiles * tiles, [&](unsigned grid, index_t first) {
            transpose_init_kernel<T><<<grid, 256, 0, st>>>(A, X, n, l.st, first);
          })));
      CURVKIT_RETURN_IF_ERROR(
          gemm(false, false, n, n, n, T(1), csq(A, n), csq(X, n), T(0), sq(R, n)));
      CURVKIT_RETURN_IF_ERROR(judge(R, n, true, rstop));
      for (int s = 0; s < max_steps; ++s) {
        CURVKIT_RETURN_IF_ERROR(
            gemm(false, false, n, n, n, T(1), csq(X, n), csq(R, n), T(0), sq(P, n)));
        CURVKIT_RETURN_IF_ERROR(ew(X, T(2), X, T(-1), P, T(0), n, n, true));  // X (2I - A X)
        CURVKIT_RETURN_IF_ERROR(
            gemm(false, false, n, n, n, T(1), csq(A, n), csq(X, n), T(0), sq(R, n)));
        CURVKIT_RETURN_IF_ERROR(judge(R, n, false, rstop));
      }
      if (g.out0.data != nullptr) {
        out_kernel<T><<<egrid, kEwThreads, 0, st>>>(g.out0.data, g.out0.ld, g.out0.stride, X, n, n,
                                                    batch, l.st, 0);
        CURVKIT_RETURN_IF_ERROR(check(cudaGetLastError()));
      }
      break;
    }
    case NsOp::sqrt: {
      T *Y = l.u[0], *Z = l.u[1], *W = l.u[2], *P = l.u[3];
      init_kernel<T, NsOp::sqrt><<<egrid, kEwThreads, 0, st>>>(Y, Z, W, n, n, batch, l.st);
      CURVKIT_RETURN_IF_ERROR(check(cudaGetLastError()));
      CURVKIT_RETURN_IF_ERROR(judge(W, n, true, rstop));
      for (int s = 0; s < max_steps; ++s) {
        // T = (3I - W) / 2 of the previous W for both: Y T = 1.5 Y - 0.5 Y W, T Z likewise.
        CURVKIT_RETURN_IF_ERROR(
            gemm(false, false, n, n, n, T(1), csq(Y, n), csq(W, n), T(0), sq(P, n)));
        CURVKIT_RETURN_IF_ERROR(ew(Y, T(1.5), Y, T(-0.5), P, T(0), n, n, true));
        CURVKIT_RETURN_IF_ERROR(
            gemm(false, false, n, n, n, T(1), csq(W, n), csq(Z, n), T(0), sq(P, n)));
        CURVKIT_RETURN_IF_ERROR(ew(Z, T(1.5), Z, T(-0.5), P, T(0), n, n, true));
        CURVKIT_RETURN_IF_ERROR(
            gemm(false, false, n, n, n, T(1), csq(Z, n), csq(Y, n), T(0), sq(W, n)));
        CURVKIT_RETURN_IF_ERROR(judge(W, n, false, rstop));
      }
      if (g.out0.data != nullptr) {
        out_kernel<T><<<egrid, kEwThreads, 0, st>>>(g.out0.data, g.out0.ld, g.out0.stride, Y, n, n,
                                                    batch, l.st, 1);
        CURVKIT_RETURN_IF_ERROR(check(cudaGetLastError()));
      }
      if (g.out1.data != nullptr) {
        out_kernel<T><<<egrid, kEwThreads, 0, st>>>(g.out1.data, g.out1.ld, g.out1.stride, Z, n, n,
                                                    batch, l.st, 2);
        CURVKIT_RETURN_IF_ERROR(check(cudaGetLastError()));
      }
      break;
    }
    case NsOp::root: {
      const int p = call.p;
      T *M = l.u[0], *X = l.u[1];
      init_kernel<T, NsOp::root><<<egrid, kEwThreads, 0, st>>>(M, X, nullptr, n, n, batch, l.st);
      CURVKIT_RETURN_IF_ERROR(check(cudaGetLastError()));
      CURVKIT_RETURN_IF_ERROR(judge(M, n, true, rstop));
      const T diag = T(1.0 + 1.0 / double(p)), inv_p = T(1.0 / double(p));
      for (int s = 0; s < max_steps; ++s) {
        // The two temporaries trade places as T is squared.
        T *Tm = l.u[2], *P = l.u[3];
        CURVKIT_RETURN_IF_ERROR(ew(Tm, -inv_p, M, T(0), nullptr, diag, n, n, false));
        CURVKIT_RETURN_IF_ERROR(
            gemm(false, false, n, n, n, T(1), csq(X, n), csq(Tm, n), T(0), sq(P, n)));
        CURVKIT_RETURN_IF_ERROR(ew(X, T(0), nullptr, T(1), P, T(0), n, n, true));  // X <- X T
        for (int q = p;;) {
          if (q & 1) {  // M <- T^(2^j) M
            CURVKIT_RETURN_IF_ERROR(
                gemm(false, false, n, n, n, T(1), csq(Tm, n), csq(M, n), T(0), sq(P, n)));
            CURVKIT_RETURN_IF_ERROR(ew(M, T(0), nullptr, T(1), P, T(0), n, n, true));
          }
          q >>= 1;
          if (q == 0) break;
          CURVKIT_RETURN_IF_ERROR(
              gemm(false, false, n, n, n, T(1), csq(Tm, n), csq(Tm, n), T(0), sq(P, n)));
          std::swap(Tm, P);
        }
        CURVKIT_RETURN_IF_ERROR(judge(M, n, false, rstop));
      }
      if (g.out0.data != nullptr) {
        out_kernel<T><<<egrid, kEwThreads, 0, st>>>(g.out0.data, g.out0.ld, g.out0.stride, X, n, n,
                                                    batch, l.st, 0);
        CURVKIT_RETURN_IF_ERROR(check(cudaGetLastError()));
      }
      break;
    }
    case NsOp::polar: {
      const PolarOptions& po = *call.po;
      const bool tall = rows >= cols;
      T *X = l.u[0], *P = l.u[1], *B = l.u[2], *Q = l.u[3];
      const Mat<T> mp{P, cols, rows * cols};
      const Mat<const T> cx{X, cols, rows * cols};
      init_kernel<T, NsOp::polar>
          <<<egrid, kEwThreads, 0, st>>>(X, nullptr, nullptr, rows, cols, batch, l.st);
      CURVKIT_RETURN_IF_ERROR(check(cudaGetLastError()));
      // B = X^T X (tall) or X X^T (wide), then its residual.
      auto gram = [&](bool start, bool rs) {
        CURVKIT_RETURN_IF_ERROR(tall ? gemm(true, false, k, k, rows, T(1), cx, cx, T(0), sq(B, k))
                                     : gemm(false, true, k, k, cols, T(1), cx, cx, T(0), sq(B, k)));
        return judge(B, k, start, rs);
      };
      auto step = [&](bool cubic, bool rs) {
        if (cubic) {
          CURVKIT_RETURN_IF_ERROR(
              tall ? gemm(false, false, rows, cols, k, T(1), cx, csq(B, k), T(0), mp)
                   : gemm(false, false, rows, cols, k, T(1), csq(B, k), cx, T(0), mp));
          CURVKIT_RETURN_IF_ERROR(ew(X, T(1.5), X, T(-0.5), P, T(0), rows, cols, true));
        } else {
          CURVKIT_RETURN_IF_ERROR(
              gemm(false, false, k, k, k, T(po.c), csq(B, k), csq(B, k), T(0), sq(Q, k)));
          CURVKIT_RETURN_IF_ERROR(ew(Q, T(1), Q, T(po.b), B, T(0), k, k, false));
          CURVKIT_RETURN_IF_ERROR(
              tall ? gemm(false, false, rows, cols, k, T(1), cx, csq(Q, k), T(0), mp)
                   : gemm(false, false, rows, cols, k, T(1), csq(Q, k), cx, T(0), mp));
          CURVKIT_RETURN_IF_ERROR(ew(X, T(po.a), X, T(1), P, T(0), rows, cols, true));
        }
        return gram(false, rs);
      };
      const bool convergent = po.schedule == PolarSchedule::convergent;
      const bool rs1 = rstop && !convergent;
      CURVKIT_RETURN_IF_ERROR(gram(true, rs1));
      for (int s = 0; s < max_steps; ++s)
        CURVKIT_RETURN_IF_ERROR(step(po.schedule == PolarSchedule::cubic, rs1));
      rstop_last = rs1;
      if (convergent) {
        phase_kernel<<<mgrid, kEwThreads, 0, st>>>(l.st, batch, tol);
        CURVKIT_RETURN_IF_ERROR(check(cudaGetLastError()));
        for (int s = 0; s < po.cubic_iterations; ++s) CURVKIT_RETURN_IF_ERROR(step(true, true));
        rstop_last = true;
      }
      if (g.out0.data != nullptr) {
        out_kernel<T><<<egrid, kEwThreads, 0, st>>>(g.out0.data, g.out0.ld, g.out0.stride, X, rows,
                                                    cols, batch, l.st, 0);
        CURVKIT_RETURN_IF_ERROR(check(cudaGetLastError()));
      }
      break;
    }
  }
  report_kernel<T>
      <<<mgrid, kEwThreads, 0, st>>>(l.st, batch, rstop_last, tol, g.info, g.iters, g.resid);
  return check(cudaGetLastError());
}

// ---- host: the driver ---------------------------------------------------------------------------

template <class U>
Status check_view_ptr(const char* op, const MatrixBatch<U>& v, const char* name, std::size_t groups,
                      std::size_t g) {
  if (v.data == nullptr || v.extent() == 0) return Status::success();
  return check_device_pointer(op, v.data, detail::view_name(name, groups > 1, g) + ".data");
}

template <class T>
Status run(const Context& ctx, NsOp op, const char* name, GroupedBatch<const T> a,
           GroupedBatch<T> out0, GroupedBatch<T> out1, const NsReport<T>& rep,
           const NewtonSchulzOptions& o, int p, const PolarOptions* po) {
  const index_t total = total_batch(a);
  if (total == 0) return Status::success();
  Call<T> call{name, op, &o, p, po, stream_of(ctx), DevInfo{}};
  CURVKIT_RETURN_IF_ERROR(finish(name, device_info(&call.dev)));
  CURVKIT_RETURN_IF_ERROR(check_device_pointer(name, rep.info, "info"));
  if (rep.iterations != nullptr)
    CURVKIT_RETURN_IF_ERROR(check_device_pointer(name, rep.iterations, "iterations"));
  if (rep.residual != nullptr)
    CURVKIT_RETURN_IF_ERROR(check_device_pointer(name, rep.residual, "residual"));
  const std::size_t groups = a.size();
  std::size_t need = 0;
  for (std::size_t g = 0; g < groups; ++g)
    need = std::max(need, plan_group<T>(a[g].rows, a[g].cols, a[g].batch, call.dev).ws);
  void* ws = ctx.workspace().data;
  if (need > 0) {
    // The public layer checked the size from the same plan; a device change in between would not.
    if (ws == nullptr || ctx.workspace().bytes < need)
      return {StatusCode::workspace_too_small,
              std::string(name) + ": the Context's workspace has " +
                  std::to_string(ctx.workspace().bytes) + " bytes but this call needs " +
                  std::to_string(need)};
    CURVKIT_RETURN_IF_ERROR(check_device_pointer(name, ws, "the workspace"));
  }
  // Every pointer is checked before the first launch: a rejected call writes nothing.
  const char* out_name = op == NsOp::sqrt ? "sqrt" : op == NsOp::polar ? "u" : "x";
  for (std::size_t g = 0; g < groups; ++g) {
    CURVKIT_RETURN_IF_ERROR(check_view_ptr(name, a[g], "a", groups, g));
    CURVKIT_RETURN_IF_ERROR(check_view_ptr(name, out0[g], out_name, groups, g));
    if (!out1.empty())
      CURVKIT_RETURN_IF_ERROR(check_view_ptr(name, out1[g], "inv_sqrt", groups, g));
  }
  index_t idx = 0;
  for (std::size_t g = 0; g < groups; ++g) {
    Group<T> grp;
    grp.a = a[g];
    grp.out0 = out0[g];
    if (!out1.empty()) grp.out1 = out1[g];
    grp.info = rep.info + idx;
    grp.iters = rep.iterations != nullptr ? rep.iterations + idx : nullptr;
    grp.resid = rep.residual != nullptr ? rep.residual + idx : nullptr;
    const index_t batch = a[g].batch;
    idx += batch;
    const Plan pl = plan_group<T>(a[g].rows, a[g].cols, batch, call.dev);
    if (pl.path == Path::none) continue;
    if (pl.path == Path::empty) {
      empty_report_kernel<T><<<stride_grid(batch, kEwThreads), kEwThreads, 0, call.st>>>(
          grp.info, grp.iters, grp.resid, batch);
      CURVKIT_RETURN_IF_ERROR(finish(name, cudaGetLastError()));
      continue;
    }
    if (pl.path == Path::blas)
      CURVKIT_RETURN_IF_ERROR(run_blas(call, grp, ws));
    else
      CURVKIT_RETURN_IF_ERROR(run_fused(call, grp, pl, ws));
  }
  return Status::success();
}

}  // namespace

// ---- entry points -------------------------------------------------------------------------------

template <class T>
std::size_t newton_schulz_workspace_size(const Context&, GroupedBatch<const T> a) {
  DevInfo dev;
  if (device_info(&dev) != cudaSuccess) {
    (void)cudaGetLastError();  // no device: the op itself will report it
    dev = DevInfo{};
  }
  std::size_t need = 0;  // the groups run in stream order and share the workspace
  for (const auto& g : a) need = std::max(need, plan_group<T>(g.rows, g.cols, g.batch, dev).ws);
  return need;
}

template <class T>
Status newton_schulz_inverse(const Context& ctx, GroupedBatch<const T> a, GroupedBatch<T> x,
                             NsReport<T> report, const NewtonSchulzOptions& options) {
  return run<T>(ctx, NsOp::inverse, "newton_schulz_inverse", a, x, GroupedBatch<T>(), report,
                options, 1, nullptr);
}

template <class T>
Status newton_schulz_sqrt(const Context& ctx, GroupedBatch<const T> a, GroupedBatch<T> sqrt,
                          GroupedBatch<T> inv_sqrt, NsReport<T> report,
                          const NewtonSchulzOptions& options) {
  return run<T>(ctx, NsOp::sqrt, "newton_schulz_sqrt", a, sqrt, inv_sqrt, report, options, 2,
                nullptr);
}

template <class T>
Status newton_schulz_inverse_root(const Context& ctx, GroupedBatch<const T> a, int p,
                                  GroupedBatch<T> x, NsReport<T> report,
                                  const NewtonSchulzOptions& options) {
  return run<T>(ctx, NsOp::root, "newton_schulz_inverse_root", a, x, GroupedBatch<T>(), report,
                options, p, nullptr);
}

template <class T>
Status newton_schulz_polar(const Context& ctx, GroupedBatch<const T> a, GroupedBatch<T> u,
                           NsReport<T> report, const NewtonSchulzOptions& options,
                           const PolarOptions& polar) {
  return run<T>(ctx, NsOp::polar, "newton_schulz_polar", a, u, GroupedBatch<T>(), report, options,
                1, &polar);
}

}  // namespace curvkit::cuda

CURVKIT_INSTANTIATE_NS_BACKEND(cuda)
