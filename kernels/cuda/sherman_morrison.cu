// CUDA backend of the Sherman–Morrison / Woodbury family (contracts: curvkit/sherman_morrison.hpp
// and curvkit/quasi_newton.hpp).  Each op computes what the per-matrix building blocks of
// curvkit/device/{sherman_morrison,quasi_newton}.hpp compute (the Kokkos backend runs those one
// matrix per work item), to rounding, with the same failure tests, info codes and NaN outputs.
//
// For the sizes the optimizers use these ops are bound by memory or by the length of their
// dependent chain, so each kernel moves a matrix on chip once and keeps barriers few.  Paths:
//
// rank1_update, bfgs_update: a chain of symmetric low-rank changes of H.
//   n <= 128  tile_chain_kernel.  H stays in registers for the whole chain, spread over a team
//             as interleaved R x C tiles: a warp for n <= 32 (4 teams per block, no block
//             barrier), a block of 128 / 512 threads for n <= 64 / 128.  w = H u is a register
//             FMA plus a shuffle reduction inside the row group; the update is a register FMA
//             with w broadcast through shared memory: one team barrier per vector.  H is
//             staged once through shared memory (coalesced lower-triangle load) and written
//             once from registers in coalesced rows.  The update is computed symmetrically
//             (uncontracted products), so the mirrored upper triangle equals the lower exactly.
//   n > 128   stream_chain_kernel, a block of 512 threads per matrix.  The lower triangle stays
//             packed in shared memory when it fits (n up to ~300 float / ~210 double on an
//             H100), else it is streamed from global memory on every pass.  rank1 uses the
//             chunked algorithm of device::rank1_chain with up to 16 vectors per pass (H read
//             twice, written once per chunk); bfgs applies its pairs one by one.  The symmetric
//             matvec reads rows by warps (lower part) and columns by threads (the transposed
//             part): both coalesced, deterministic, no atomics.  rank1_update has no workspace,
//             so one block serves one matrix.
// woodbury_solve:
//   fused     U^T (k x n), M (k x k), C^{-1} and a chunk of B fit in shared memory: one block
//             per matrix, one launch, U read once (the batched small-problem case).
//   global    otherwise (e.g. n = 4096, k = 256).  tn_kernel computes the Gram U^T U (lower
//             32 x 32 tiles) and P = U^T B with the n dimension split over blocks to fill the
//             GPU (partials in the workspace, summed in a fixed order: deterministic);
//             wood_factor_kernel forms M, its Cholesky and the k x k solve in one block per
//             matrix on the workspace; wood_expand_kernel writes X = (B - U P) / lambda.
// bfgs_damping, hessian_action_pair, lbfgs_apply, lbfgs_two_loop: one block per matrix, vectors
//   and p x p products in shared memory, block reductions by warp shuffles.  lbfgs_two_loop
//   runs one warp per right-hand side when there are several.
//
// Everything runs on ctx.cuda_stream() with no host synchronisation and no allocation.  Shapes
// whose per-matrix scratch exceeds the device's shared memory are Status::not_supported.
#include <cuda_runtime.h>

#include <algorithm>
#include <cstddef>
#include <initializer_list>
#include <string>
#include <utility>

#include "checks.hpp"
#include "curvkit/device/quasi_newton.hpp"
#include "host_common.cuh"
#include "sherman_morrison_backends.hpp"
#include "warp_reduce.cuh"

namespace curvkit::cuda {
namespace {

constexpr index_t kMaxGrid = 0x7fffffff;
constexpr int kThreads = 256;        // one-block-per-matrix kernels
constexpr int kStreamThreads = 512;  // stream_chain_kernel
constexpr int kMaxChunk = 16;        // rank-1 vectors per pass over H in stream_chain_kernel
constexpr int kRowChunk = 256;       // rows of X per pass in hessian_action_pair

template <class T>
__device__ __forceinline__ T nan_v() {
  return device::quiet_nan<T>();
}
__device__ __forceinline__ index_t imin(index_t a, index_t b) {
  return a < b ? a : b;
}
// Products kept out of FMA contraction, so that a tile update gives H_ij and H_ji the same bits.
__device__ __forceinline__ float mul_rn(float a, float b) {
  return __fmul_rn(a, b);
}
__device__ __forceinline__ double mul_rn(double a, double b) {
  return __dmul_rn(a, b);
}

// v[0..nv) summed over the block (red: 32 nv shared elements); all threads get the same bits.
template <class T>
__device__ void block_sum(T* v, int nv, T* red) {
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, nw = blockDim.x / 32;
  for (int q = 0; q < nv; ++q) v[q] = warp_sum(v[q]);
  __syncthreads();  // red may still be read by the previous call
  if (lane == 0)
    for (int q = 0; q < nv; ++q) red[q * 32 + warp] = v[q];
  __syncthreads();
  for (int q = 0; q < nv; ++q) {
    T a = T(0);
    for (int w = 0; w < nw; ++w) a += red[q * 32 + w];
    v[q] = a;
  }
}

// Row i of entry t of a row-wise enumeration of a lower triangle.
__device__ index_t tri_row(index_t t) {
  index_t i = index_t((sqrt(8.0 * double(t) + 1.0) - 1.0) * 0.5);
  while ((i + 1) * (i + 2) / 2 <= t) ++i;
  while (i * (i + 1) / 2 > t) --i;
  return i;
}

// Row i of a lower triangle: strided (ld > 0) or packed (ld == 0: row i at i (i + 1) / 2).
template <class T>
struct Rows {
  T* base;
  index_t ld;
  __device__ T* operator()(index_t i) const { return ld ? base + i * ld : base + i * (i + 1) / 2; }
};

// v_j = H x_j for j < nv (vectors of n in shared memory), H symmetric from its lower triangle.
// Lower part: a warp per row (contiguous reads); transposed part: a thread per column, the warp
// reading one row at a time (coalesced).  Each output has one writer: deterministic.
template <class T>
__device__ void block_symv(Rows<T> h, index_t n, int nv, const T* x, T* v) {
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, nw = blockDim.x / 32;
  for (index_t i = warp; i < n; i += nw) {
    const T* r = h(i);
    T acc[kMaxChunk];
#pragma unroll
    for (int j = 0; j < kMaxChunk; ++j) acc[j] = T(0);
    for (index_t c = lane; c <= i; c += 32) {
      const T a = r[c];
#pragma unroll
      for (int j = 0; j < kMaxChunk; ++j)
        if (j < nv) acc[j] += a * x[j * n + c];
    }
#pragma unroll
    for (int j = 0; j < kMaxChunk; ++j)
      if (j < nv) {
        const T s = warp_sum(acc[j]);
        if (lane == 0) v[j * n + i] = s;
      }
  }
  __syncthreads();
  for (index_t c0 = index_t(warp) * 32; c0 < n; c0 += index_t(nw) * 32) {
    const index_t c = c0 + lane;
    T acc[kMaxChunk];
#pragma unroll
    for (int j = 0; j < kMaxChunk; ++j) acc[j] = T(0);
    for (index_t i = c0 + 1; i < n; ++i) {
      if (i <= c || c >= n) continue;
      const T a = h(i)[c];
#pragma unroll
      for (int j = 0; j < kMaxChunk; ++j)
        if (j < nv) acc[j] += a * x[j * n + i];
    }
    if (c < n)
      for (int j = 0; j < nv; ++j) v[j * n + c] += acc[j];
  }
  __syncthreads();
}

template <class T>
struct DotArgs {
  const T* x;
  index_t ix;
  const T* y;
  index_t iy;
};

// store(e, <x_e, y_e>) for e < count, a warp per dot product of length len.
template <class T, class F, class G>
__device__ void warp_dots(index_t count, index_t len, F args, G store) {
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, nw = blockDim.x / 32;
  for (index_t e = warp; e < count; e += nw) {
    const DotArgs<T> a = args(e);
    T s = T(0);
    for (index_t l = lane; l < len; l += 32) s += a.x[l * a.ix] * a.y[l * a.iy];
    s = warp_sum(s);
    if (lane == 0) store(e, s);
  }
}

// ---- rank-1 chains and BFGS updates ---------------------------------------------------------

enum class Chain { rank1, bfgs };

template <class T>
struct ChainJob {
  MatrixBatch<T> h;
  MatrixBatch<const T> u, y;  // rank1: u (k x n); bfgs: s and y
  int* info;
  bool mirror, skip_rejected;
  T cp, inv_decay;  // rank1: c / a and 1 / a
  T min_curvature;  // bfgs, resolved
  const int* skip_mask;
  int* skipped;
};

// device::rank1_chain's denominator test of vector j (q = c' s u^T v).
template <class T>
__device__ __forceinline__ int rank1_test(T q, index_t j) {
  const T d = T(1) + q;
  if (!device::is_finite(d)) return info::non_finite(j);
  if (!(d > T(8) * device::epsilon<T>() * (T(1) + (q < T(0) ? -q : q))))
    return info::not_positive(j);
  return info::success;
}

// device::bfgs_update's test of pair j; *skip when it is rejected and skipped.
template <class T>
__device__ __forceinline__ int bfgs_test(const ChainJob<T>& job, T sy, T yhy, T ss, T yy, index_t j,
                                         bool* skip) {
  *skip = false;
  if (!device::is_finite(sy) || !device::is_finite(yhy)) return info::non_finite(j);
  if (sy > job.min_curvature * sqrt(ss * yy)) return info::success;
  *skip = job.skip_rejected;
  return job.skip_rejected ? info::success : info::not_positive(j);
}

// Shared elements of one team of tile_chain_kernel: staging of H, 8 staged vectors, w twice,
// partial sums [2][4][<= 16 warps].
template <int NP>
constexpr int tile_team_elems() {
  return NP * (NP + 1) + 10 * NP + 128;
}

template <class T, Chain op, int R, int C, int TR, int TC, int TEAMS>
__global__ void __launch_bounds__(TR* TC* TEAMS) tile_chain_kernel(const ChainJob<T> job) {
  constexpr int NP = R * TR, TT = TR * TC, NW = TT / 32, LD = NP + 1;
  constexpr int kPer = op == Chain::rank1 ? int(device::kRank1Chunk) : 4;  // steps per staging
  constexpr int NV = op == Chain::rank1 ? 1 : 4;                           // sums per step
  static_assert(C * TC == NP && TT % 32 == 0 && 32 % TC == 0, "tile shape");
  extern __shared__ __align__(16) unsigned char smem_raw[];
  const int team = threadIdx.x / TT, t = threadIdx.x % TT, tr = t / TC, tc = t % TC;
  const int lane = threadIdx.x % 32, warp = t / 32;
  T* st = reinterpret_cast<T*>(smem_raw) + team * tile_team_elems<NP>();
  T* sv = st + NP * LD;  // 8 vectors u_j, or 4 pairs s_j, y_j
  T* sw = sv + 8 * NP;   // w, double-buffered so that one barrier per step suffices
  T* red = sw + 2 * NP;
  const int n = int(job.h.rows);
  auto sync = [] {
    if constexpr (TT == 32)
      __syncwarp();
    else
      __syncthreads();
  };
  for (index_t b = index_t(blockIdx.x) * TEAMS + team; b < job.h.batch;
       b += index_t(gridDim.x) * TEAMS) {
    if constexpr (op == Chain::bfgs) {
      if (job.skip_mask && job.skip_mask[b] != 0) {
        if (t == 0) {
          job.info[b] = info::success;
          if (job.skipped) job.skipped[b] = 0;
        }
        continue;
      }
    }
    T* h = job.h.matrix(b);
    const index_t ldh = job.h.ld;
    sync();
    for (int e = t; e < n * n; e += TT) {
      const int i = e / n, c = e % n;
      if (c <= i) st[i * LD + c] = h[i * ldh + c];
    }
    sync();
    T K[R][C];  // element (tr + r TR, tc + q TC) of the symmetric H, zero outside n x n
#pragma unroll
    for (int r = 0; r < R; ++r)
#pragma unroll
      for (int q = 0; q < C; ++q) {
        const int i = tr + r * TR, c = tc + q * TC;
        K[r][q] = i < n && c < n ? (c <= i ? st[i * LD + c] : st[c * LD + i]) : T(0);
      }
    int code = info::success, rejected = 0;
    for (index_t j0 = 0; j0 < job.u.rows && code == info::success; j0 += kPer) {
      const int cnt = int(imin(kPer, job.u.rows - j0));
      sync();
      for (int e = t; e < (op == Chain::rank1 ? cnt : 2 * cnt) * NP; e += TT) {
        const int v = e / NP, c = e % NP;
        const index_t row = j0 + (op == Chain::rank1 ? v : v / 2);
        sv[e] = c < n ? (op == Chain::bfgs && (v & 1) ? job.y : job.u)(b, row, c) : T(0);
      }
      sync();
      T scale = T(1);  // rank1: decay^-j within the chunk, applied to H at its end
      for (int jj = 0; jj < cnt; ++jj) {
        const index_t j = j0 + jj;
        const int buf = int(j & 1);
        const T* x = op == Chain::rank1 ? sv + jj * NP : sv + (2 * jj + 1) * NP;  // u_j or y_j
        const T* sj = sv + 2 * jj * NP;                                           // s_j (bfgs)
        T p[R];  // rows of H x, complete on every lane of the row group after the butterfly
#pragma unroll
        for (int r = 0; r < R; ++r) {
          T a = T(0);
#pragma unroll
          for (int q = 0; q < C; ++q) a += K[r][q] * x[tc + q * TC];
          p[r] = a;
        }
#pragma unroll
        for (int o = TC / 2; o > 0; o /= 2)
#pragma unroll
          for (int r = 0; r < R; ++r) p[r] += __shfl_xor_sync(kFull, p[r], o);
        T part[NV] = {};  // x^T H x; bfgs also s^T y, s^T s, y^T y
        if (tc == 0)
#pragma unroll
          for (int r = 0; r < R; ++r) part[0] += x[tr + r * TR] * p[r];
        // Braces: without them nvcc (13.0) drops the pragma'd loop below along with a
        // discarded if-constexpr branch (seen on an H100, 2026-11-23: no reduction for rank1).
        if constexpr (op == Chain::bfgs) {
          for (int e = t; e < NP; e += TT) {
            part[1] += sj[e] * x[e];
            part[2] += sj[e] * sj[e];
            part[3] += x[e] * x[e];
          }
        }
#pragma unroll
        for (int q = 0; q < NV; ++q) part[q] = warp_sum(part[q]);
        if (tc == 0)
#pragma unroll
          for (int r = 0; r < R; ++r) sw[buf * NP + tr + r * TR] = p[r];
        if constexpr (NW > 1) {
          if (lane == 0)
            for (int q = 0; q < NV; ++q) red[(buf * 4 + q) * NW + warp] = part[q];
        }
        sync();
        if constexpr (NW > 1) {
          for (int q = 0; q < NV; ++q) {
            T a = T(0);
            for (int w = 0; w < NW; ++w) a += red[(buf * 4 + q) * NW + w];
            part[q] = a;
          }
        }
        const T* w = sw + buf * NP;
        if constexpr (op == Chain::rank1) {
          const T qv = job.cp * scale * part[0];
          code = rank1_test(qv, j);
          if (code != info::success) break;
          const T g = job.cp * scale / (T(1) + qv);
          scale *= job.inv_decay;
#pragma unroll
          for (int r = 0; r < R; ++r)
#pragma unroll
            for (int q = 0; q < C; ++q) K[r][q] -= g * mul_rn(p[r], w[tc + q * TC]);
        } else {
          bool skip;
          code = bfgs_test(job, part[1], part[0], part[2], part[3], j, &skip);
          if (code != info::success) break;
          if (skip) {
            ++rejected;
            continue;
          }
          const T rho = T(1) / part[1], coef = rho + rho * rho * part[0];
#pragma unroll
          for (int r = 0; r < R; ++r)
#pragma unroll
            for (int q = 0; q < C; ++q) {
              const T si = sj[tr + r * TR], sc = sj[tc + q * TC], wc = w[tc + q * TC];
              K[r][q] += coef * mul_rn(si, sc) - rho * (mul_rn(si, wc) + mul_rn(p[r], sc));
            }
        }
      }
      if (op == Chain::rank1 && code == info::success && scale != T(1))
#pragma unroll
        for (int r = 0; r < R; ++r)
#pragma unroll
          for (int q = 0; q < C; ++q) K[r][q] *= scale;
    }
#pragma unroll
    for (int r = 0; r < R; ++r)
#pragma unroll
      for (int q = 0; q < C; ++q) {
        const int i = tr + r * TR, c = tc + q * TC;
        if (i < n && c < n && (c <= i || job.mirror))
          h[i * ldh + c] = code == info::success ? K[r][q] : nan_v<T>();
      }
    if (t == 0) {
      job.info[b] = code;
      if (op == Chain::bfgs && job.skipped) job.skipped[b] = rejected;
    }
  }
}

// One chunk of up to kMaxChunk vectors of device::rank1_chain on H (rows), u_j in x, v_j in v.
template <class T>
__device__ int stream_rank1(const ChainJob<T>& job, Rows<T> rows, index_t n, int cnt, index_t j0,
                            const T* x, T* v, T* red) {
  const int tid = threadIdx.x, nt = blockDim.x, lane = tid % 32, warp = tid / 32, nw = nt / 32;
  block_symv(rows, n, cnt, x, v);  // v_j = H_0 u_j
  T gam[kMaxChunk];
  T s = T(1);
  for (int j = 0; j < cnt; ++j) {
    const T* uj = x + j * n;
    T* vj = v + j * n;
    if (j > 0) {  // v_j -= gamma_i (v_i^T u_j) v_i, i < j
      T d[kMaxChunk];
      for (int i = 0; i < j; ++i) d[i] = T(0);
      for (index_t c = tid; c < n; c += nt)
        for (int i = 0; i < j; ++i) d[i] += v[i * n + c] * uj[c];
      block_sum(d, j, red);
      for (index_t c = tid; c < n; c += nt) {
        T a = vj[c];
        for (int i = 0; i < j; ++i) a -= gam[i] * d[i] * v[i * n + c];
        vj[c] = a;
      }
    }
    T t = T(0);
    for (index_t c = tid; c < n; c += nt) t += uj[c] * vj[c];
    block_sum(&t, 1, red);
    const T q = job.cp * s * t;
    if (const int code = rank1_test(q, j0 + j); code != info::success) return code;
    gam[j] = job.cp * s / (T(1) + q);
    s *= job.inv_decay;
  }
  for (index_t i = warp; i < n; i += nw) {  // H = s (H_0 - sum_j gamma_j v_j v_j^T)
    T* r = rows(i);
    for (index_t c = lane; c <= i; c += 32) {
      T a = r[c];
      for (int j = 0; j < cnt; ++j) a -= gam[j] * v[j * n + i] * v[j * n + c];
      r[c] = s != T(1) ? a * s : a;
    }
  }
  return info::success;
}

// One pair of device::bfgs_update: s_j, y_j in x, w in w.
template <class T>
__device__ int stream_bfgs(const ChainJob<T>& job, Rows<T> rows, index_t n, index_t j, const T* x,
                           T* w, T* red, bool* skip) {
  const int tid = threadIdx.x, nt = blockDim.x, lane = tid % 32, warp = tid / 32, nw = nt / 32;
  const T *s = x, *y = x + n;
  block_symv(rows, n, 1, y, w);
  T sum[4] = {};  // s^T y, y^T H y, s^T s, y^T y
  for (index_t c = tid; c < n; c += nt) {
    sum[0] += s[c] * y[c];
    sum[1] += y[c] * w[c];
    sum[2] += s[c] * s[c];
    sum[3] += y[c] * y[c];
  }
  block_sum(sum, 4, red);
  const int code = bfgs_test(job, sum[0], sum[1], sum[2], sum[3], j, skip);
  if (code != info::success || *skip) return code;
  const T rho = T(1) / sum[0], coef = rho + rho * rho * sum[1];
  for (index_t i = warp; i < n; i += nw) {
    T* r = rows(i);
    const T a = coef * s[i] - rho * w[i], bsi = rho * s[i];
    for (index_t c = lane; c <= i; c += 32) r[c] += a * s[c] - bsi * w[c];
  }
  return info::success;
}

template <class T, Chain op>
__global__ void __launch_bounds__(kStreamThreads)
    stream_chain_kernel(const ChainJob<T> job, int kc, bool resident) {
  extern __shared__ __align__(16) unsigned char smem_raw[];
  const index_t n = job.h.rows, ldh = job.h.ld, step = op == Chain::rank1 ? kc : 1;
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, nw = blockDim.x / 32;
  T* hs = reinterpret_cast<T*>(smem_raw);          // packed lower triangle (resident)
  T* x = hs + (resident ? n * (n + 1) / 2 : 0);    // kc vectors u_j, or s_j and y_j
  T* v = x + (op == Chain::rank1 ? kc : 2) * n;    // kc vectors v_j, or w
  T* red = v + (op == Chain::rank1 ? kc : 1) * n;  // 32 kMaxChunk
  for (index_t b = blockIdx.x; b < job.h.batch; b += gridDim.x) {
    if constexpr (op == Chain::bfgs) {
      if (job.skip_mask && job.skip_mask[b] != 0) {
        if (threadIdx.x == 0) {
          job.info[b] = info::success;
          if (job.skipped) job.skipped[b] = 0;
        }
        continue;
      }
    }
    T* hg = job.h.matrix(b);
    __syncthreads();
    if (resident)
      for (index_t i = warp; i < n; i += nw)
        for (index_t c = lane; c <= i; c += 32) hs[i * (i + 1) / 2 + c] = hg[i * ldh + c];
    const Rows<T> rows{resident ? hs : hg, resident ? 0 : ldh};
    int code = info::success, rejected = 0;
    for (index_t j0 = 0; j0 < job.u.rows && code == info::success; j0 += step) {
      const int cnt = int(imin(step, job.u.rows - j0));
      __syncthreads();
      for (index_t e = threadIdx.x; e < (op == Chain::rank1 ? cnt : 2) * n; e += blockDim.x) {
        const index_t vi = e / n, c = e % n;
        if constexpr (op == Chain::rank1)
          x[e] = job.u(b, j0 + vi, c);
        else
          x[e] = (vi ? job.y : job.u)(b, j0, c);
      }
      __syncthreads();
      if constexpr (op == Chain::rank1) {
        code = stream_rank1(job, rows, n, cnt, j0, x, v, red);
      } else {
        bool skip = false;
        code = stream_bfgs(job, rows, n, j0, x, v, red, &skip);
        rejected += skip ? 1 : 0;
      }
    }
    __syncthreads();
    const bool ok = code == info::success;
    for (index_t i = warp; i < n; i += nw) {
      T* hi = hg + i * ldh;
      if (resident) {
        for (index_t c = lane; c < n; c += 32)
          if (c <= i || job.mirror)
            hi[c] = !ok ? nan_v<T>() : c <= i ? hs[i * (i + 1) / 2 + c] : hs[c * (c + 1) / 2 + i];
      } else if (!ok) {
        for (index_t c = lane; c < (job.mirror ? n : i + 1); c += 32) hi[c] = nan_v<T>();
      } else if (job.mirror) {
        for (index_t c = i + 1 + lane; c < n; c += 32) hi[c] = hg[c * ldh + i];
      }
    }
    if (threadIdx.x == 0) {
      job.info[b] = code;
      if (op == Chain::bfgs && job.skipped) job.skipped[b] = rejected;
    }
  }
}

// ---- Woodbury ----------------------------------------------------------------------------------

template <class T>
struct WoodJob {
  MatrixBatch<const T> ut, c, gram;  // gram.data may be null
  MatrixBatch<T> b;
  int* info;
  T lambda, c_scale, inv_lambda;
  WoodburyC form;
  index_t rc;          // fused: right-hand sides per chunk
  index_t nsplit;      // global: ranges of the contraction
  T *g, *p, *cw, *ci;  // global, in the workspace: M and partials, P and partials, C^{-1}
};

// Cholesky of the k x k lower triangle of a (row-major, lda), column by column (a warp per row
// for the dot products, then the pivot).  Returns the info code, the same on every thread.
template <class T>
__device__ int block_potrf(T* a, index_t lda, index_t k, T* piv) {
  const int tid = threadIdx.x, lane = tid % 32, warp = tid / 32, nw = blockDim.x / 32;
  for (index_t j = 0; j < k; ++j) {
    const T* aj = a + j * lda;
    for (index_t i = j + warp; i < k; i += nw) {
      T* ai = a + i * lda;
      T s = T(0);
      for (index_t c = lane; c < j; c += 32) s += ai[c] * aj[c];
      s = warp_sum(s);
      if (lane == 0) {
        const T v = ai[j] - s;
        ai[j] = v;
        if (i == j) *piv = v;
      }
    }
    __syncthreads();
    const T d = *piv;
    if (!device::is_finite(d)) return info::non_finite(j);
    if (!(d > T(0))) return info::not_positive(j);
    const T l = sqrt(d);
    for (index_t i = j + 1 + tid; i < k; i += blockDim.x) a[i * lda + j] /= l;
    if (tid == 0) a[j * lda + j] = l;
    __syncthreads();
  }
  return info::success;
}

// P := (L L^T)^{-1} P for the nr columns of P (k x nr, ldp): a warp per column, lane m % 32
// owning row m, x_i broadcast by a shuffle (no block barrier).
template <class T>
__device__ void block_potrs(const T* l, index_t ldl, index_t k, T* p, index_t ldp, index_t nr) {
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, nw = blockDim.x / 32;
  for (index_t r = warp; r < nr; r += nw) {
    T* pr = p + r;
    for (index_t i = 0; i < k; ++i) {
      T x = T(0);
      if (lane == int(i % 32)) pr[i * ldp] = x = pr[i * ldp] / l[i * ldl + i];
      x = __shfl_sync(kFull, x, int(i % 32));
      for (index_t m = i + 1 + ((lane - i - 1) & 31); m < k; m += 32)
        pr[m * ldp] -= l[m * ldl + i] * x;
    }
    for (index_t i = k - 1; i >= 0; --i) {
      T x = T(0);
      if (lane == int(i % 32)) pr[i * ldp] = x = pr[i * ldp] / l[i * ldl + i];
      x = __shfl_sync(kFull, x, int(i % 32));
      for (index_t m = lane; m < i; m += 32) pr[m * ldp] -= l[i * ldl + m] * x;
    }
  }
}

// M += lambda C^{-1} (lower triangle, ldm) for matrix b; cw, ci (k x k, ldc) are scratch for the
// matrix form.  Returns 0 or the info code of C (k + i), the same on every thread.
template <class T>
__device__ int add_c_inverse(const WoodJob<T>& job, index_t b, T* m, index_t ldm, T* cw, T* ci,
                             index_t ldc, int* flag, T* piv) {
  const index_t k = job.ut.rows;
  const int tid = threadIdx.x, nt = blockDim.x;
  if (job.form == WoodburyC::scalar) {
    for (index_t i = tid; i < k; i += nt) m[i * ldm + i] += job.lambda / job.c_scale;
    __syncthreads();
    return info::success;
  }
  const T* c = job.c.matrix(b);
  if (job.form == WoodburyC::diagonal) {
    if (tid == 0) {  // the first bad entry, in order
      int code = info::success;
      for (index_t i = 0; i < k && code == info::success; ++i)
        code = !device::is_finite(c[i]) ? info::non_finite(k + i)
               : !(c[i] > T(0))         ? info::not_positive(k + i)
                                        : info::success;
      *flag = code;
    }
    __syncthreads();
    const int code = *flag;
    if (code == info::success)
      for (index_t i = tid; i < k; i += nt) m[i * ldm + i] += job.lambda / c[i];
    __syncthreads();
    return code;
  }
  for (index_t e = tid; e < k * k; e += nt) {
    const index_t i = e / k, j = e % k;
    if (j <= i) cw[i * ldc + j] = c[i * job.c.ld + j];
    ci[i * ldc + j] = i == j ? T(1) : T(0);
  }
  __syncthreads();
  const int cc = block_potrf(cw, ldc, k, piv);
  if (cc != info::success) return cc > 0 ? cc + int(k) : cc - int(k);
  block_potrs(cw, ldc, k, ci, ldc, k);  // C^{-1}, full
  __syncthreads();
  for (index_t e = tid; e < k * k; e += nt) {
    const index_t i = e / k, j = e % k;
    if (j <= i) m[i * ldm + j] += job.lambda * ci[i * ldc + j];
  }
  __syncthreads();
  return info::success;
}

template <class T>
__global__ void __launch_bounds__(kThreads) wood_fused_kernel(const WoodJob<T> job) {
  extern __shared__ __align__(16) unsigned char smem_raw[];
  const index_t k = job.ut.rows, n = job.ut.cols, nrhs = job.b.cols, rc = job.rc, ldb = job.b.ld;
  const index_t ldus = n | 1, ldm = k | 1, ldr = rc | 1;  // odd strides: column reads spread banks
  const int tid = threadIdx.x, nt = blockDim.x, lane = tid % 32, warp = tid / 32, nw = nt / 32;
  T* us = reinterpret_cast<T*>(smem_raw);  // U^T, k x n
  T* bs = us + k * ldus;                   // chunk of B, n x rc
  T* m = bs + n * ldr;                     // M, then its factor
  T* p = m + k * ldm;                      // P chunk, k x rc
  T* piv = p + k * ldr;
  int* flag = reinterpret_cast<int*>(piv + 1);
  T* cw = piv + 2;  // matrix form: chol(C), C^{-1}
  T* ci = cw + k * ldm;
  for (index_t bi = blockIdx.x; bi < job.ut.batch; bi += gridDim.x) {
    T* bm = job.b.matrix(bi);
    __syncthreads();
    for (index_t i = warp; i < k; i += nw)
      for (index_t l = lane; l < n; l += 32) us[i * ldus + l] = job.ut(bi, i, l);
    __syncthreads();
    for (index_t e = tid; e < k * k; e += nt) {  // M = U^T U (lower), or the given Gram
      const index_t i = e / k, j = e % k;
      if (j > i) continue;
      T a = T(0);
      if (job.gram.data)
        a = job.gram(bi, i, j);
      else
        for (index_t l = 0; l < n; ++l) a += us[i * ldus + l] * us[j * ldus + l];
      m[i * ldm + j] = a;
    }
    __syncthreads();
    int code = add_c_inverse(job, bi, m, ldm, cw, ci, ldm, flag, piv);
    if (code == info::success) code = block_potrf(m, ldm, k, piv);
    if (code != info::success) {
      for (index_t e = tid; e < n * nrhs; e += nt) bm[e / nrhs * ldb + e % nrhs] = nan_v<T>();
    } else {
      for (index_t c0 = 0; c0 < nrhs; c0 += rc) {
        const index_t nr = imin(rc, nrhs - c0);
        __syncthreads();
        for (index_t e = tid; e < n * nr; e += nt)
          bs[e / nr * ldr + e % nr] = bm[e / nr * ldb + c0 + e % nr];
        __syncthreads();
        warp_dots<T>(
            k * nr, n,
            [&](index_t e) {
              return DotArgs<T>{us + e / nr * ldus, 1, bs + e % nr, ldr};
            },
            [&](index_t e, T v) { p[e / nr * ldr + e % nr] = v; });
        __syncthreads();
        block_potrs(m, ldm, k, p, ldr, nr);
        __syncthreads();
        for (index_t e = tid; e < n * nr; e += nt) {  // X = (B - U P) / lambda
          const index_t l = e / nr, r = e % nr;
          T a = bs[l * ldr + r];
          for (index_t j = 0; j < k; ++j) a -= us[j * ldus + l] * p[j * ldr + r];
          bm[l * ldb + c0 + r] = a * job.inv_lambda;
        }
      }
    }
    if (tid == 0) job.info[bi] = code;
  }
}

// Partial products of the global path: out_s = A B over the s-th range of len columns of the
// contraction, per 32 x 32 tile.  A is U^T (k x n); B is U (rows: B(l, j) = b[j][l], lower tiles
// of the Gram only) or the right-hand sides (B(l, j) = b[l][j]).
template <class T>
struct TnJob {
  MatrixBatch<const T> a, b;  // a: U^T, batch x k x n
  bool rows;
  T* out;  // partial s of matrix bi at out + (s batch + bi) k cols
  index_t cols, len, nsplit, tiles_r, tiles_c;
};

template <class T>
__global__ void __launch_bounds__(256) tn_kernel(const TnJob<T> job) {
  __shared__ T sa[32][33], sb[32][33];
  const int tid = threadIdx.x, tx = tid % 16, ty = tid / 16;
  const index_t tiles = job.rows ? job.tiles_r * (job.tiles_r + 1) / 2 : job.tiles_r * job.tiles_c;
  const index_t nb = job.a.batch, k = job.a.rows, items = job.nsplit * nb * tiles;
  for (index_t it = blockIdx.x; it < items; it += gridDim.x) {
    const index_t t = it % tiles, bi = it / tiles % nb, s = it / tiles / nb;
    index_t I, J;
    if (job.rows) {
      I = tri_row(t);
      J = t - I * (I + 1) / 2;
    } else {
      I = t / job.tiles_c;
      J = t % job.tiles_c;
    }
    const T* A = job.a.matrix(bi);
    const T* B = job.b.matrix(bi);
    const index_t l0 = s * job.len, l1 = imin(job.a.cols, l0 + job.len);
    T acc[2][2] = {};
    for (index_t lc = l0; lc < l1; lc += 32) {
      __syncthreads();
      for (int e = tid; e < 32 * 32; e += 256) {
        const int r = e / 32, q = e % 32;
        const index_t i = I * 32 + r, l = lc + q;
        sa[r][q] = i < k && l < l1 ? A[i * job.a.ld + l] : T(0);
        if (job.rows) {
          const index_t j = J * 32 + r;
          sb[r][q] = j < job.cols && l < l1 ? B[j * job.b.ld + l] : T(0);
        } else {  // lanes along the right-hand sides: coalesced
          const index_t j = J * 32 + q, l2 = lc + r;
          sb[q][r] = j < job.cols && l2 < l1 ? B[l2 * job.b.ld + j] : T(0);
        }
      }
      __syncthreads();
#pragma unroll 8
      for (int q = 0; q < 32; ++q)
#pragma unroll
        for (int a = 0; a < 2; ++a)
#pragma unroll
          for (int c = 0; c < 2; ++c) acc[a][c] += sa[ty + 16 * a][q] * sb[tx + 16 * c][q];
    }
    T* out = job.out + (s * nb + bi) * k * job.cols;
#pragma unroll
    for (int a = 0; a < 2; ++a)
#pragma unroll
      for (int c = 0; c < 2; ++c) {
        const index_t i = I * 32 + ty + 16 * a, j = J * 32 + tx + 16 * c;
        if (i < k && j < job.cols) out[i * job.cols + j] = acc[a][c];
      }
  }
}

template <class T>
__global__ void __launch_bounds__(kThreads) wood_factor_kernel(const WoodJob<T> job) {
  __shared__ T piv[1];
  __shared__ int flag[1];
  const index_t k = job.ut.rows, kk = k * k, nrhs = job.b.cols, kr = k * nrhs, nb = job.ut.batch;
  const int tid = threadIdx.x, nt = blockDim.x;
  for (index_t bi = blockIdx.x; bi < nb; bi += gridDim.x) {
    T* m = job.g + bi * kk;  // partial 0 of the Gram becomes M
    T* p = job.p + bi * kr;  // partial 0 of U^T B becomes P
    __syncthreads();
    for (index_t e = tid; e < kk; e += nt) {
      const index_t i = e / k, j = e % k;
      if (j > i) continue;
      if (job.gram.data) {
        m[e] = job.gram(bi, i, j);
      } else {
        T a = m[e];
        for (index_t s = 1; s < job.nsplit; ++s) a += job.g[(s * nb + bi) * kk + e];
        m[e] = a;
      }
    }
    for (index_t e = tid; e < kr; e += nt) {
      T a = p[e];
      for (index_t s = 1; s < job.nsplit; ++s) a += job.p[(s * nb + bi) * kr + e];
      p[e] = a;
    }
    __syncthreads();
    int code = add_c_inverse(job, bi, m, k, job.cw + bi * kk, job.ci + bi * kk, k, flag, piv);
    if (code == info::success) code = block_potrf(m, k, k, piv);
    if (code == info::success) block_potrs(m, k, k, p, nrhs, nrhs);
    if (tid == 0) job.info[bi] = code;
  }
}

template <class T>
__global__ void __launch_bounds__(kThreads) wood_expand_kernel(const WoodJob<T> job) {
  const index_t k = job.ut.rows, nrhs = job.b.cols, per = job.b.rows * nrhs;
  for (index_t e = index_t(blockIdx.x) * blockDim.x + threadIdx.x; e < job.b.batch * per;
       e += index_t(gridDim.x) * blockDim.x) {
    const index_t bi = e / per, l = e % per / nrhs, r = e % nrhs;
    T& x = job.b(bi, l, r);
    if (job.info[bi] != info::success) {
      x = nan_v<T>();
      continue;
    }
    const T* u = job.ut.matrix(bi) + l;
    const T* p = job.p + bi * k * nrhs + r;
    T a = x;
    for (index_t j = 0; j < k; ++j) a -= u[j * job.ut.ld] * p[j * nrhs];
    x = a * job.inv_lambda;
  }
}

// ---- damping and the Hessian-action pair ------------------------------------------------------

template <class T>
struct DampJob {
  MatrixBatch<const T> h;  // h.data is null when not read
  MatrixBatch<T> s, y;
  int* info;
  T* theta;
  int* skip;
  DampingScheme scheme;
  T mu1, mu2;
  bool skip_test;
};

template <class T>
__global__ void __launch_bounds__(kThreads) damping_kernel(const DampJob<T> job) {
  extern __shared__ __align__(16) unsigned char smem_raw[];
  const index_t n = job.s.cols;
  const int tid = threadIdx.x, nt = blockDim.x;
  T* vs = reinterpret_cast<T*>(smem_raw);
  T* vy = vs + n;
  T* hy = vy + n;
  T* red = hy + n;
  const T mu1 = job.mu1, mu2 = job.mu2;
  for (index_t b = blockIdx.x; b < job.s.batch; b += gridDim.x) {
    T* s = job.s.matrix(b);
    T* y = job.y.matrix(b);
    const Rows<T> rows{const_cast<T*>(job.h.data) + b * job.h.stride, job.h.ld};
    __syncthreads();
    for (index_t c = tid; c < n; c += nt) vs[c] = s[c], vy[c] = y[c];
    __syncthreads();
    if (job.scheme == DampingScheme::powell_identity_lm) {  // H = I / mu2
      for (index_t c = tid; c < n; c += nt) hy[c] = vy[c] / mu2;
    } else if (job.scheme == DampingScheme::powell_lm_hy) {  // h is the vector H y
      for (index_t c = tid; c < n; c += nt) hy[c] = rows(0)[c];
    } else {
      block_symv(rows, n, 1, vy, hy);
    }
    T d1[2] = {};
    for (index_t c = tid; c < n; c += nt) d1[0] += vs[c] * vy[c], d1[1] += vy[c] * hy[c];
    block_sum(d1, 2, red);
    const T sy = d1[0], yhy = d1[1];
    const T theta1 = sy < mu1 * yhy ? (T(1) - mu1) * yhy / (yhy - sy) : T(1);
    for (index_t c = tid; c < n; c += nt) vs[c] = theta1 * vs[c] + (T(1) - theta1) * hy[c];
    T theta2 = T(1);
    if (job.scheme == DampingScheme::double_damping) {  // Powell with B = I
      T d2[2] = {};
      for (index_t c = tid; c < n; c += nt) d2[0] += vs[c] * vs[c], d2[1] += vs[c] * vy[c];
      block_sum(d2, 2, red);
      const T ss = d2[0], sy2 = d2[1];
      theta2 = sy2 < mu2 * ss ? (T(1) - mu2) * ss / (ss - sy2) : T(1);
      for (index_t c = tid; c < n; c += nt) vy[c] = theta2 * vy[c] + (T(1) - theta2) * vs[c];
    } else {  // Levenberg–Marquardt
      for (index_t c = tid; c < n; c += nt) vy[c] += mu2 * vs[c];
    }
    bool fin = true;
    for (index_t c = tid; c < n; c += nt)
      fin = fin && device::is_finite(vs[c]) && device::is_finite(vy[c]);
    const bool ok =
        __syncthreads_and(fin) && device::is_finite(theta1) && device::is_finite(theta2);
    int flag = 0;
    if (ok && job.skip_test) {  // Algorithm 5 on the damped pair, with the real H
      block_symv(rows, n, 1, vy, hy);
      T d3[2] = {};
      for (index_t c = tid; c < n; c += nt) d3[0] += vs[c] * vy[c], d3[1] += vy[c] * hy[c];
      block_sum(d3, 2, red);
      flag = device::below_curvature_bound(d3[0], d3[1], mu1, n) ? 1 : 0;
    }
    for (index_t c = tid; c < n; c += nt) {
      s[c] = ok ? vs[c] : nan_v<T>();
      y[c] = ok ? vy[c] : nan_v<T>();
    }
    if (tid == 0) {
      if (job.theta) {
        job.theta[2 * b] = ok ? theta1 : nan_v<T>();
        job.theta[2 * b + 1] = ok ? theta2 : nan_v<T>();
      }
      if (job.skip) job.skip[b] = flag;
      job.info[b] = ok ? info::success : info::non_finite(0);
    }
  }
}

template <class T>
struct PairJob {
  MatrixBatch<const T> h, abar, x;
  MatrixBatch<T> s, y;
  int* info;
  T lambda, scale;
};

template <class T>
__global__ void __launch_bounds__(kThreads) hessian_action_kernel(const PairJob<T> job) {
  extern __shared__ __align__(16) unsigned char smem_raw[];
  const index_t n = job.h.rows, m = job.x.rows, ldx = job.x.ld;
  const int tid = threadIdx.x, nt = blockDim.x;
  T* ab = reinterpret_cast<T*>(smem_raw);
  T* vs = ab + n;
  T* vy = vs + n;
  T* ts = vy + n;  // scale x_r^T s for a chunk of rows
  for (index_t b = blockIdx.x; b < job.h.batch; b += gridDim.x) {
    const T* x = job.x.matrix(b);
    __syncthreads();
    for (index_t c = tid; c < n; c += nt) ab[c] = job.abar(b, 0, c);
    __syncthreads();
    block_symv(Rows<T>{const_cast<T*>(job.h.matrix(b)), job.h.ld}, n, 1, ab, vs);
    for (index_t c = tid; c < n; c += nt) vy[c] = job.lambda * vs[c];
    for (index_t r0 = 0; r0 < m; r0 += kRowChunk) {
      const index_t cnt = imin(kRowChunk, m - r0);
      warp_dots<T>(
          cnt, n,
          [&](index_t e) {
            return DotArgs<T>{x + (r0 + e) * ldx, 1, vs, 1};
          },
          [&](index_t e, T v) { ts[e] = job.scale * v; });
      __syncthreads();
      for (index_t c = tid; c < n; c += nt) {
        T a = vy[c];
        for (index_t r = 0; r < cnt; ++r) a += ts[r] * x[(r0 + r) * ldx + c];
        vy[c] = a;
      }
      __syncthreads();
    }
    bool fin = true;
    for (index_t c = tid; c < n; c += nt)
      fin = fin && device::is_finite(vs[c]) && device::is_finite(vy[c]);
    const bool ok = __syncthreads_and(fin);
    for (index_t c = tid; c < n; c += nt) {
      job.s(b, 0, c) = ok ? vs[c] : nan_v<T>();
      job.y(b, 0, c) = ok ? vy[c] : nan_v<T>();
    }
    if (tid == 0) job.info[b] = ok ? info::success : info::non_finite(0);
  }
}

// ---- L-BFGS ------------------------------------------------------------------------------------

template <class T>
struct LbfgsJob {
  MatrixBatch<const T> s, y, sty, yty;  // sty.data, yty.data may be null
  MatrixBatch<T> x;
  int* info;
  index_t rc;  // lbfgs_apply: right-hand sides per chunk
  T gamma;
  bool skip_zero_pairs;
};

// nonzero[i] = 1 unless pair i is a zero pair (s_i = y_i = 0 exactly), by the whole block.
template <class T>
__device__ void mark_nonzero_pairs(index_t p, index_t d, const T* S, index_t lds, const T* Y,
                                   index_t ldy, int* nonzero) {
  for (index_t i = threadIdx.x; i < p; i += blockDim.x) nonzero[i] = 0;
  __syncthreads();
  for (index_t e = threadIdx.x; e < p * d; e += blockDim.x) {
    const index_t i = e / d, c = e % d;
    if (S[i * lds + c] != T(0) || Y[i * ldy + c] != T(0)) atomicOr(nonzero + i, 1);
  }
  __syncthreads();
}

// The newest pair that counts (every pair without skip_zero_pairs), or -1.
__device__ inline index_t newest_pair(index_t p, const int* nonzero, bool skip_zero_pairs) {
  index_t i = p - 1;
  if (skip_zero_pairs)
    while (i >= 0 && !nonzero[i]) --i;
  return i;
}

template <class T>
__device__ void nan_fill(T* x, index_t ldx, index_t rows, index_t cols) {
  for (index_t e = threadIdx.x; e < rows * cols; e += blockDim.x)
    x[e / cols * ldx + e % cols] = nan_v<T>();
}

// The p x p products of lbfgs_apply (out has stride p): for i >= j, out(i, j) = x_i^T y_j, or with
// `upper` out(j, i) = x_j^T y_i; read from `given` (same indexing) when it is not null.
template <class T>
__device__ void tri_products(index_t p, index_t d, const T* x, index_t ldx, const T* y, index_t ldy,
                             const T* given, index_t ldg, T* out, bool upper) {
  auto at = [&](index_t e) {
    const index_t i = tri_row(e), j = e - i * (i + 1) / 2;
    return upper ? j * p + i : i * p + j;
  };
  const index_t tri = p * (p + 1) / 2;
  if (given) {
    for (index_t e = threadIdx.x; e < tri; e += blockDim.x) {
      const index_t a = at(e);
      out[a] = given[a / p * ldg + a % p];
    }
    return;
  }
  warp_dots<T>(
      tri, d,
      [&](index_t e) {
        return DotArgs<T>{x + at(e) / p * ldx, 1, y + at(e) % p * ldy, 1};
      },
      [&](index_t e, T v) { out[at(e)] = v; });
}

// device::lbfgs_compact_apply, one block per matrix, the right-hand sides rc at a time.
template <class T>
__global__ void __launch_bounds__(kThreads) lbfgs_apply_kernel(const LbfgsJob<T> job) {
  extern __shared__ __align__(16) unsigned char smem_raw[];
  const index_t p = job.s.rows, d = job.s.cols, rc = job.rc;
  const index_t lds = job.s.ld, ldy = job.y.ld, ldx = job.x.ld, nrhs = job.x.cols;
  const int tid = threadIdx.x;
  T* R = reinterpret_cast<T*>(smem_raw);  // S^T Y, upper
  T* yy = R + p * p;                      // Y^T Y, lower
  T* A = yy + p * p;                      // S^T X, then R^{-1} S^T X   (p x rc)
  T* E = A + p * rc;                      // Y^T X, then R^{-T} (...)   (p x rc)
  int* flag = reinterpret_cast<int*>(E + p * rc);
  int* nonzero = flag + 1;  // p, with skip_zero_pairs
  for (index_t b = blockIdx.x; b < job.s.batch; b += gridDim.x) {
    const T* S = job.s.matrix(b);
    const T* Y = job.y.matrix(b);
    T* X = job.x.matrix(b);
    __syncthreads();
    tri_products(p, d, S, lds, Y, ldy, job.sty.data ? job.sty.matrix(b) : nullptr, job.sty.ld, R,
                 true);
    __syncthreads();
    if (job.skip_zero_pairs) {  // a zero pair's row and column of R are zero: R_ii = 1 drops it
      mark_nonzero_pairs(p, d, S, lds, Y, ldy, nonzero);
      for (index_t i = tid; i < p; i += blockDim.x)
        if (!nonzero[i]) R[i * p + i] = T(1);
      __syncthreads();
    }
    if (tid == 0) *flag = device::lbfgs_check_pairs(p, R, p + 1);
    __syncthreads();
    const int code = *flag;
    if (code != info::success) {
      nan_fill(X, ldx, d, nrhs);
      if (tid == 0) job.info[b] = code;
      continue;
    }
    tri_products(p, d, Y, ldy, Y, ldy, job.yty.data ? job.yty.matrix(b) : nullptr, job.yty.ld, yy,
                 false);
    __syncthreads();
    T g = job.gamma;
    if (!(g > T(0))) {
      const index_t i = newest_pair(p, nonzero, job.skip_zero_pairs);
      g = i >= 0 ? R[i * p + i] / yy[i * p + i] : T(1);
    }
    for (index_t c0 = 0; c0 < nrhs; c0 += rc) {
      const index_t nr = imin(rc, nrhs - c0);
      warp_dots<T>(
          2 * p * nr, d,
          [&](index_t e) {
            const index_t i = e / nr % p;
            return DotArgs<T>{e < p * nr ? S + i * lds : Y + i * ldy, 1, X + c0 + e % nr, ldx};
          },
          [&](index_t e, T v) { (e < p * nr ? A : E)[e / nr % p * rc + e % nr] = v; });
      __syncthreads();
      if (tid < nr) {  // the p x p algebra of one column, in the building block's order
        T* a = A + tid;
        T* f = E + tid;
        for (index_t i = p - 1; i >= 0; --i) {  // a = R^{-1} a
          for (index_t j = i + 1; j < p; ++j) a[i * rc] -= R[i * p + j] * a[j * rc];
          a[i * rc] *= T(1) / R[i * p + i];
        }
        for (index_t i = 0; i < p; ++i) {  // f = D a + gamma Y^T Y a - gamma f
          f[i * rc] = R[i * p + i] * a[i * rc] - g * f[i * rc];
          for (index_t j = 0; j < p; ++j)
            f[i * rc] -= -g * (j <= i ? yy[i * p + j] : yy[j * p + i]) * a[j * rc];
        }
        for (index_t i = 0; i < p; ++i) {  // f = R^{-T} f
          for (index_t j = 0; j < i; ++j) f[i * rc] -= R[j * p + i] * f[j * rc];
          f[i * rc] *= T(1) / R[i * p + i];
        }
      }
      __syncthreads();
      for (index_t e = tid; e < d * nr; e += blockDim.x) {  // X = gamma X + S f - gamma Y a
        const index_t c = e / nr, q = e % nr;
        T* xc = X + c * ldx + c0 + q;
        T v = *xc * g;
        for (index_t i = 0; i < p; ++i)
          v += S[i * lds + c] * E[i * rc + q] - g * Y[i * ldy + c] * A[i * rc + q];
        *xc = v;
      }
      __syncthreads();
    }
    if (tid == 0) job.info[b] = info::success;
  }
}

// One column q (stride ldx, updated in place) of device::lbfgs_two_loop, by the block (kBlock)
// or by one warp.  rho holds 1 / s_i^T y_i; alpha is this team's scratch (p).
template <class T, bool kBlock>
__device__ void two_loop_column(const LbfgsJob<T>& job, const T* S, const T* Y, T* q, const T* rho,
                                T* alpha, T g, T* red) {
  const int me = kBlock ? threadIdx.x : threadIdx.x % 32, step = kBlock ? blockDim.x : 32;
  const index_t p = job.s.rows, d = job.s.cols, ldx = job.x.ld;
  auto sum = [&](T v) -> T {
    if constexpr (kBlock) {
      block_sum(&v, 1, red);
      return v;
    } else {
      return warp_sum(v);
    }
  };
  auto team_sync = [] {
    if constexpr (kBlock)
      __syncthreads();
    else
      __syncwarp();
  };
  team_sync();  // alpha may still be read for the previous column
  for (index_t i = p - 1; i >= 0; --i) {
    const T *si = S + i * job.s.ld, *yi = Y + i * job.y.ld;
    T v = T(0);
    for (index_t c = me; c < d; c += step) v += si[c] * q[c * ldx];
    const T a = rho[i] * sum(v);
    if (me == 0) alpha[i] = a;
    for (index_t c = me; c < d; c += step) q[c * ldx] -= a * yi[c];
  }
  team_sync();
  for (index_t c = me; c < d; c += step) q[c * ldx] *= g;
  for (index_t i = 0; i < p; ++i) {
    const T *si = S + i * job.s.ld, *yi = Y + i * job.y.ld;
    T v = T(0);
    for (index_t c = me; c < d; c += step) v += yi[c] * q[c * ldx];
    const T beta = rho[i] * sum(v);
    for (index_t c = me; c < d; c += step) q[c * ldx] -= (beta - alpha[i]) * si[c];
  }
}

template <class T, bool kBlock>
__global__ void __launch_bounds__(kThreads) lbfgs_two_loop_kernel(const LbfgsJob<T> job) {
  extern __shared__ __align__(16) unsigned char smem_raw[];
  const index_t p = job.s.rows, d = job.s.cols, lds = job.s.ld, ldy = job.y.ld;
  const int tid = threadIdx.x, warp = tid / 32, nw = blockDim.x / 32;
  T* rho = reinterpret_cast<T*>(smem_raw);  // p + 1: s_i^T y_i, then y_p^T y_p
  T* alpha = rho + p + 1;                   // p per team
  T* red = alpha + (kBlock ? 1 : nw) * p;   // 32, then gamma
  int* flag = reinterpret_cast<int*>(red + 33);
  int* nonzero = flag + 1;  // p, with skip_zero_pairs
  const bool need_yy = !(job.gamma > T(0)) && p > 0;
  for (index_t b = blockIdx.x; b < job.s.batch; b += gridDim.x) {
    const T* S = job.s.matrix(b);
    const T* Y = job.y.matrix(b);
    T* X = job.x.matrix(b);
    __syncthreads();
    warp_dots<T>(
        p + (need_yy ? 1 : 0), d,
        [&](index_t e) {
          return e < p ? DotArgs<T>{S + e * lds, 1, Y + e * ldy, 1}
                       : DotArgs<T>{Y + (p - 1) * ldy, 1, Y + (p - 1) * ldy, 1};
        },
        [&](index_t e, T v) { rho[e] = v; });
    __syncthreads();
    index_t newest = p - 1;  // the pair the automatic gamma comes from
    if (job.skip_zero_pairs) {
      mark_nonzero_pairs(p, d, S, lds, Y, ldy, nonzero);
      newest = newest_pair(p, nonzero, true);
      if (need_yy && newest >= 0 && newest != p - 1) {  // y^T y of the newest non-zero pair
        T v = T(0);
        for (index_t c = tid; c < d; c += blockDim.x)
          v += Y[newest * ldy + c] * Y[newest * ldy + c];
        block_sum(&v, 1, red);
        if (tid == 0) rho[p] = v;
      }
      for (index_t i = tid; i < p; i += blockDim.x)
        if (!nonzero[i]) rho[i] = T(1);  // passes the check; rho_i = 0 below
      __syncthreads();
    }
    if (tid == 0) {
      const int code = device::lbfgs_check_pairs(p, rho, 1);
      red[32] = job.gamma > T(0) ? job.gamma : newest >= 0 ? rho[newest] / rho[p] : T(1);
      if (code == info::success)
        for (index_t i = 0; i < p; ++i)
          rho[i] = job.skip_zero_pairs && !nonzero[i] ? T(0) : T(1) / rho[i];
      *flag = code;
    }
    __syncthreads();
    const int code = *flag;
    const T g = red[32];
    if (code != info::success) {
      nan_fill(X, job.x.ld, d, job.x.cols);
    } else if constexpr (kBlock) {
      for (index_t col = 0; col < job.x.cols; ++col)
        two_loop_column<T, true>(job, S, Y, X + col, rho, alpha, g, red);
    } else {
      for (index_t col = warp; col < job.x.cols; col += nw)
        two_loop_column<T, false>(job, S, Y, X + col, rho, alpha + warp * p, g, red);
    }
    if (tid == 0) job.info[b] = code;
  }
}

// ---- host side ---------------------------------------------------------------------------------

unsigned grid_for(index_t blocks) {
  return unsigned(std::clamp<index_t>(blocks, 1, kMaxGrid));
}

Status too_large(const char* op, const char* what) {
  return Status::not_supported(
      op, std::string(what) + " does not fit in this device's shared memory (cuda backend)");
}

// Every pointer the kernels dereference must be device (or managed) memory.
Status check_device(const char* op, std::initializer_list<std::pair<const void*, const char*>> ps) {
  for (const auto& [p, what] : ps) {
    if (p == nullptr) continue;  // optional, or an empty view
    CURVKIT_RETURN_IF_ERROR(check_device_pointer(op, p, what));
  }
  return Status::success();
}

template <class U>
const void* data_of(const MatrixBatch<U>& v) {
  return v.extent() > 0 ? static_cast<const void*>(v.data) : nullptr;
}

// A one-block-per-matrix kernel with `bytes` of dynamic shared memory on ctx's stream.
template <class J>
Status launch_blocks(const char* op, const Context& ctx, void (*kernel)(J), index_t batch,
                     std::size_t bytes, const J& job, const char* what) {
  int limit = 0;
  cudaError_t e = smem_limit(&limit);
  if (e == cudaSuccess && bytes > std::size_t(limit)) return too_large(op, what);
  if (e == cudaSuccess) e = allow_smem(kernel, bytes);
  if (e == cudaSuccess) kernel<<<grid_for(batch), kThreads, bytes, stream_of(ctx)>>>(job);
  return finish(op, e);
}

template <class T, Chain op, int R, int C, int TR, int TC, int TEAMS>
cudaError_t launch_tile(const ChainJob<T>& job, cudaStream_t st, int limit, bool* done) {
  constexpr int NP = R * TR;
  const std::size_t bytes = std::size_t(TEAMS) * tile_team_elems<NP>() * sizeof(T);
  *done = bytes <= std::size_t(limit);
  if (!*done) return cudaSuccess;
  auto* kernel = tile_chain_kernel<T, op, R, C, TR, TC, TEAMS>;
  if (cudaError_t e = allow_smem(kernel, bytes); e != cudaSuccess) return e;
  kernel<<<grid_for((job.h.batch + TEAMS - 1) / TEAMS), TR * TC * TEAMS, bytes, st>>>(job);
  return cudaGetLastError();
}

template <class T, Chain op>
Status run_chain(const char* name, const ChainJob<T>& job, cudaStream_t st) {
  int limit = 0;
  if (cudaError_t e = smem_limit(&limit); e != cudaSuccess) return finish(name, e);
  const index_t n = job.h.rows;
  bool done = false;
  cudaError_t e = cudaSuccess;
  if (n <= 16)
    e = launch_tile<T, op, 2, 4, 8, 4, 4>(job, st, limit, &done);
  else if (n <= 32)
    e = launch_tile<T, op, 4, 8, 8, 4, 4>(job, st, limit, &done);
  else if (n <= 64)
    e = launch_tile<T, op, 4, 8, 16, 8, 1>(job, st, limit, &done);
  else if (n <= 128)
    e = launch_tile<T, op, 4, 8, 32, 16, 1>(job, st, limit, &done);
  if (e != cudaSuccess || done) return finish(name, e);
  // Packed H in shared memory if it fits with some chunk, else H streamed from global memory.
  const int kmax = op == Chain::rank1 ? int(std::clamp<index_t>(job.u.rows, 1, kMaxChunk)) : 1;
  for (int resident = 1; resident >= 0; --resident)
    for (int kc = kmax; kc >= 1; kc /= 2) {
      const index_t vecs = op == Chain::rank1 ? 2 * kc : 3;
      const std::size_t bytes =
          std::size_t((resident ? n * (n + 1) / 2 : 0) + vecs * n + 32 * kMaxChunk) * sizeof(T);
      if (bytes > std::size_t(limit)) continue;
      auto* kernel = stream_chain_kernel<T, op>;
      if ((e = allow_smem(kernel, bytes)) == cudaSuccess)
        kernel<<<grid_for(job.h.batch), kStreamThreads, bytes, st>>>(job, kc, resident == 1);
      return finish(name, e);
    }
  return too_large(name, "n");
}

// The Woodbury path for these shapes (a function of the shapes and the device only, so that the
// workspace query and the op agree whatever C is).
struct WoodPlan {
  bool fused = false;
  index_t rc = 1;
  std::size_t smem = 0, workspace = 0;
  index_t nsplit = 1;
};

template <class T>
WoodPlan wood_plan(index_t batch, index_t k, index_t n, index_t nrhs, int limit, bool c_matrix) {
  WoodPlan w;
  auto fused_bytes = [&](index_t rc, bool cm) {
    const index_t ldm = k | 1, ldr = rc | 1;
    return std::size_t(k * (n | 1) + n * ldr + k * ldm * (cm ? 3 : 1) + k * ldr + 2) * sizeof(T);
  };
  if (fused_bytes(1, true) <= std::size_t(limit)) {
    w.fused = true;
    w.rc = std::clamp<index_t>(nrhs, 1, 32);
    while (w.rc > 1 && fused_bytes(w.rc, true) > std::size_t(limit)) w.rc /= 2;
    w.smem = fused_bytes(w.rc, c_matrix);
    return w;
  }
  // Split the contraction so that about 2048 blocks compute the Gram and U^T B.
  const index_t t = (k + 31) / 32, tiles = batch * (t * (t + 1) / 2 + t * ((nrhs + 31) / 32));
  const index_t want = tiles > 0 ? (2048 + tiles - 1) / tiles : 1;
  w.nsplit = std::clamp<index_t>(want, 1, std::clamp<index_t>(n / 256, 1, 64));
  w.workspace = std::size_t(w.nsplit * batch * (k * k + k * nrhs) + 2 * batch * k * k) * sizeof(T);
  return w;
}

template <class T>
cudaError_t launch_woodbury(WoodJob<T> job, const WoodPlan& w, void* workspace, cudaStream_t st) {
  if (w.fused) {
    job.rc = w.rc;
    if (cudaError_t e = allow_smem(wood_fused_kernel<T>, w.smem); e != cudaSuccess) return e;
    wood_fused_kernel<T><<<grid_for(job.ut.batch), kThreads, w.smem, st>>>(job);
    return cudaGetLastError();
  }
  const index_t nb = job.ut.batch, k = job.ut.rows, n = job.ut.cols, nr = job.b.cols;
  const index_t ns = w.nsplit;
  job.nsplit = ns;
  job.g = static_cast<T*>(workspace);
  job.p = job.g + ns * nb * k * k;
  job.cw = job.p + ns * nb * k * nr;
  job.ci = job.cw + nb * k * k;
  TnJob<T> tn{job.ut, job.ut,        true, job.g, k, ((n + ns - 1) / ns + 31) / 32 * 32,
              ns,     (k + 31) / 32, 0};
  if (job.gram.data == nullptr && k > 0)
    tn_kernel<T><<<grid_for(ns * nb * tn.tiles_r * (tn.tiles_r + 1) / 2), 256, 0, st>>>(tn);
  if (k > 0 && nr > 0) {
    tn.b = job.b, tn.rows = false, tn.out = job.p, tn.cols = nr, tn.tiles_c = (nr + 31) / 32;
    tn_kernel<T><<<grid_for(ns * nb * tn.tiles_r * tn.tiles_c), 256, 0, st>>>(tn);
  }
  wood_factor_kernel<T><<<grid_for(nb), kThreads, 0, st>>>(job);
  if (n * nr > 0)
    wood_expand_kernel<T>
        <<<grid_for((nb * n * nr + kThreads - 1) / kThreads), kThreads, 0, st>>>(job);
  return cudaGetLastError();
}

}  // namespace

// ---- entry points ------------------------------------------------------------------------------

template <class T>
Status rank1_update(const Context& ctx, MatrixBatch<T> h, MatrixBatch<const T> u, int* info,
                    const Rank1Options& o) {
  const char* op = "rank1_update";
  if (h.batch == 0) return Status::success();
  CURVKIT_RETURN_IF_ERROR(
      check_device(op, {{data_of(h), "h.data"}, {data_of(u), "u.data"}, {info, "info"}}));
  const T decay = T(o.decay);
  const ChainJob<T> job{
      h,    u,       {},     info, o.mirror_upper, false, T(o.weight) / decay, T(1) / decay,
      T(0), nullptr, nullptr};
  return run_chain<T, Chain::rank1>(op, job, stream_of(ctx));
}

template <class T>
std::size_t woodbury_solve_workspace_size(const Context&, MatrixBatch<const T> ut,
                                          MatrixBatch<const T> b) {
  int limit = 48 * 1024;
  if (smem_limit(&limit) != cudaSuccess) {
    (void)cudaGetLastError();
    limit = 48 * 1024;  // conservative: a larger device only needs less
  }
  const WoodPlan w = wood_plan<T>(ut.batch, ut.rows, ut.cols, b.cols, limit, true);
  return w.fused ? 0 : w.workspace;
}

template <class T>
Status woodbury_solve(const Context& ctx, MatrixBatch<const T> ut, MatrixBatch<T> b, int* info,
                      const WoodburyOptions& o, MatrixBatch<const T> c, MatrixBatch<const T> gram) {
  const char* op = "woodbury_solve";
  if (ut.batch == 0) return Status::success();
  if (o.c_form == WoodburyC::scalar) c = {};
  int limit = 0;
  if (cudaError_t e = smem_limit(&limit); e != cudaSuccess) return finish(op, e);
  const WoodPlan w =
      wood_plan<T>(ut.batch, ut.rows, ut.cols, b.cols, limit, o.c_form == WoodburyC::matrix);
  void* ws = w.fused || w.workspace == 0 ? nullptr : ctx.workspace().data;
  CURVKIT_RETURN_IF_ERROR(check_device(op, {{data_of(ut), "ut.data"},
                                            {data_of(b), "b.data"},
                                            {data_of(c), "c.data"},
                                            {data_of(gram), "gram.data"},
                                            {info, "info"},
                                            {ws, "the workspace"}}));
  const T lambda = T(o.lambda);
  const WoodJob<T> job{
      ut,       c,    gram,     b,       info,    lambda,  T(o.c_scale), T(1) / lambda,
      o.c_form, w.rc, w.nsplit, nullptr, nullptr, nullptr, nullptr};
  return finish(op, launch_woodbury(job, w, ws, stream_of(ctx)));
}

template <class T>
Status bfgs_update(const Context& ctx, MatrixBatch<T> h, MatrixBatch<const T> s,
                   MatrixBatch<const T> y, int* info, const BfgsOptions& o, const int* skip_mask,
                   int* skipped) {
  const char* op = "bfgs_update";
  if (h.batch == 0) return Status::success();
  CURVKIT_RETURN_IF_ERROR(check_device(op, {{data_of(h), "h.data"},
                                            {data_of(s), "s.data"},
                                            {data_of(y), "y.data"},
                                            {info, "info"},
                                            {skip_mask, "skip_mask"},
                                            {skipped, "skipped"}}));
  const T min_curvature =
      o.min_curvature > 0 ? T(o.min_curvature) : T(h.rows) * device::epsilon<T>();
  const ChainJob<T> job{
      h,         s,      y, info, o.mirror_upper, o.skip_rejected, T(0), T(1), min_curvature,
      skip_mask, skipped};
  return run_chain<T, Chain::bfgs>(op, job, stream_of(ctx));
}

template <class T>
Status bfgs_damping(const Context& ctx, MatrixBatch<const T> h, MatrixBatch<T> s, MatrixBatch<T> y,
                    int* info, const DampingOptions& o, T* theta, int* skip) {
  const char* op = "bfgs_damping";
  if (s.batch == 0) return Status::success();
  if (o.scheme == DampingScheme::powell_identity_lm && !o.skip_test) h = {};
  CURVKIT_RETURN_IF_ERROR(check_device(op, {{data_of(h), "h.data"},
                                            {data_of(s), "s.data"},
                                            {data_of(y), "y.data"},
                                            {info, "info"},
                                            {theta, "theta"},
                                            {skip, "skip"}}));
  const DampJob<T> job{h, s, y, info, theta, skip, o.scheme, T(o.mu1), T(o.mu2), o.skip_test};
  return launch_blocks(op, ctx, damping_kernel<T>, s.batch,
                       std::size_t(3 * s.cols + 64) * sizeof(T), job, "n");
}

template <class T>
Status hessian_action_pair(const Context& ctx, MatrixBatch<const T> h, MatrixBatch<const T> abar,
                           MatrixBatch<const T> x, MatrixBatch<T> s, MatrixBatch<T> y, int* info,
                           const HessianActionOptions& o) {
  const char* op = "hessian_action_pair";
  if (h.batch == 0) return Status::success();
  CURVKIT_RETURN_IF_ERROR(check_device(op, {{data_of(h), "h.data"},
                                            {data_of(abar), "abar.data"},
                                            {data_of(x), "x.data"},
                                            {data_of(s), "s.data"},
                                            {data_of(y), "y.data"},
                                            {info, "info"}}));
  const T scale = o.scale > 0 ? T(o.scale) : (x.rows > 0 ? T(1) / T(x.rows) : T(0));
  const PairJob<T> job{h, abar, x, s, y, info, T(o.lambda), scale};
  return launch_blocks(op, ctx, hessian_action_kernel<T>, h.batch,
                       std::size_t(3 * h.rows + kRowChunk) * sizeof(T), job, "n");
}

template <class T>
Status lbfgs_apply(const Context& ctx, MatrixBatch<const T> s, MatrixBatch<const T> y,
                   MatrixBatch<T> x, int* info, const LbfgsOptions& o, MatrixBatch<const T> sty,
                   MatrixBatch<const T> yty) {
  const char* op = "lbfgs_apply";
  if (s.batch == 0) return Status::success();
  CURVKIT_RETURN_IF_ERROR(check_device(op, {{data_of(s), "s.data"},
                                            {data_of(y), "y.data"},
                                            {data_of(x), "x.data"},
                                            {data_of(sty), "sty.data"},
                                            {data_of(yty), "yty.data"},
                                            {info, "info"}}));
  int limit = 0;
  if (cudaError_t e = smem_limit(&limit); e != cudaSuccess) return finish(op, e);
  const index_t p = s.rows;
  // R, Y^T Y, A, E, then the flag and (skip_zero_pairs) p ints, at most p + 1 elements of T.
  auto bytes = [&](index_t rc) { return std::size_t(2 * p * p + 2 * p * rc + p + 1) * sizeof(T); };
  index_t rc = std::clamp<index_t>(x.cols, 1, 32);
  while (rc > 1 && bytes(rc) > std::size_t(limit)) rc /= 2;
  const LbfgsJob<T> job{s, y, sty, yty, x, info, rc, T(o.gamma), o.skip_zero_pairs};
  return launch_blocks(op, ctx, lbfgs_apply_kernel<T>, s.batch, bytes(rc), job,
                       "the number of pairs p");
}

template <class T>
Status lbfgs_two_loop(const Context& ctx, MatrixBatch<const T> s, MatrixBatch<const T> y,
                      MatrixBatch<T> x, int* info, const LbfgsOptions& o) {
  const char* op = "lbfgs_two_loop";
  if (s.batch == 0) return Status::success();
  CURVKIT_RETURN_IF_ERROR(check_device(
      op,
      {{data_of(s), "s.data"}, {data_of(y), "y.data"}, {data_of(x), "x.data"}, {info, "info"}}));
  const LbfgsJob<T> job{s, y, {}, {}, x, info, 1, T(o.gamma), o.skip_zero_pairs};
  // Several right-hand sides: a warp per column; fewer than 4: the whole block on each.
  const bool block = x.cols < 4;
  const index_t teams = block ? 1 : kThreads / 32;
  return launch_blocks(op, ctx,
                       block ? lbfgs_two_loop_kernel<T, true> : lbfgs_two_loop_kernel<T, false>,
                       s.batch, std::size_t(s.rows + 1 + teams * s.rows + 34 + s.rows) * sizeof(T),
                       job, "the number of pairs p");
}

}  // namespace curvkit::cuda

CURVKIT_INSTANTIATE_SM_BACKEND(cuda)
template std::size_t curvkit::cuda::woodbury_solve_workspace_size<float>(
    const curvkit::Context&, curvkit::MatrixBatch<const float>, curvkit::MatrixBatch<const float>);
template std::size_t curvkit::cuda::woodbury_solve_workspace_size<double>(
    const curvkit::Context&, curvkit::MatrixBatch<const double>,
    curvkit::MatrixBatch<const double>);
