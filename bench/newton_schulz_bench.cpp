// Benchmarks of the Newton–Schulz family (newton_schulz.hpp) against the tools a user would
// pick instead.  CPU cases: one thread (Kokkos Serial, OpenBLAS forced to one thread); GPU cases
// (CUDA builds): one stream, timed with events, cold L2.
//
// Names (DESIGN.md §7):
//   ns_inv_sqrt/<tool>/<scalar>/n:<n>/batch:<b>   A^{-1/2} of SPD matrices, 5 iterations (the
//                                                  papers' count; fixed)
//     CPU
//       kokkos          curvkit newton_schulz_sqrt (inverse square root only), one launch
//       lapacke_syevd   per matrix ?syevd, then Q diag(l^{-1/2}) Q^T by ?gemm: the
//                       eigendecomposition route
//       lapacke_loop    the same 5 coupled iterations as cblas ?gemm calls per matrix (3 per
//                       iteration): a per-iteration GEMM loop
//     GPU
//       cuda            curvkit newton_schulz_sqrt on the cuda backend; cuda_tf32 / cuda_bf16 with
//                       NewtonSchulzOptions::compute = tf32 / bf16 (float)
//       cublas_loop     the 5 coupled iterations as a per-iteration cuBLAS loop over the whole
//                       batch (3 ?gemmStridedBatched per iteration); cublas_loop_tf32 with
//                       CUBLAS_COMPUTE_32F_FAST_TF32: the anchor of "small n in one launch"
//       cusolver_syevj  ?syevjBatched (n <= 32), then V diag(l^{-1/2}) V^T by ?dgmm + a batched
//                       ?gemm
//       cusolver_syevd  the same with one ?syevd per matrix (n > 32; cuSOLVER has no batched
//                       syevd), on a smaller batch
//   ns_polar/<tool>/float/n:<n>                    Muon's orthogonalisation of one n x n
//                                                  matrix, 5 quintic steps
//       kokkos, lapacke_loop (CPU); cuda, cuda_tf32, cuda_bf16, cublas_loop (FP32 sgemm loop),
//       cublas_loop_bf16 (the same loop with CUBLAS_COMPUTE_32F_FAST_16BF) (GPU)
// Counters: GFLOPS (the iteration's 6 n^3 flops per step for the inverse square root; 4 n^3 +
// 2 n^3 for a quintic step on a square matrix) whatever the tool does.  Each case checks its
// result after the timed loop: the inverse square root of the first (and on the GPU the last)
// matrix against the eigendecomposition route (GPU: plus info == 0 for every matrix), the polar
// factor by its Frobenius norm.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <type_traits>
#include <vector>

#include "bench_common.hpp"
#include "bench_gpu.hpp"
#include "curvkit/newton_schulz.hpp"

#if CURVKIT_BENCH_HAVE_LAPACKE
#include <cblas.h>
#include <lapacke.h>
extern "C" void openblas_set_num_threads(int num_threads);
#endif
#if CURVKIT_HAVE_CUDA
#include <cublas_v2.h>
#include <cusolverDn.h>
#endif

namespace curvkit::bench {
namespace {

enum class Tool {
  kokkos,
  lapacke_syevd,
  lapacke_loop,
  cuda,
  cublas_loop,
  cusolver_syevj,
  cusolver_syevd
};

constexpr int kSteps = 5;

// The tool part of a case name: the tool, with the products' arithmetic when not native.
std::string tool_name(Tool tool, NsCompute mode = NsCompute::native) {
  static const char* const names[] = {"kokkos",      "lapacke_syevd",  "lapacke_loop",  "cuda",
                                      "cublas_loop", "cusolver_syevj", "cusolver_syevd"};
  return std::string(names[int(tool)]) + (mode == NsCompute::tf32   ? "_tf32"
                                          : mode == NsCompute::bf16 ? "_bf16"
                                                                    : "");
}

std::string inv_sqrt_name(Tool tool, NsCompute mode, const char* scalar, index_t n, index_t batch) {
  return "ns_inv_sqrt/" + tool_name(tool, mode) + "/" + scalar + "/n:" + std::to_string(n) +
         "/batch:" + std::to_string(batch);
}

std::string polar_name(Tool tool, NsCompute mode, index_t n) {
  return "ns_polar/" + tool_name(tool, mode) + "/float/n:" + std::to_string(n);
}

// Relative Frobenius error a case may have against the eigendecomposition route.  tf32 / bf16
// round every product's operands to 10 / 7 mantissa bits (unit roundoff 2^-11 / 2^-8): a
// simulation of the 5 steps with that rounding and FP32 accumulation (n = 16..256, these SPD
// matrices) gives relative errors of about 6e-4 / 5e-3, so 5e-3 / 3e-2 leave a margin of ~8x / 6x
// without letting a wrong result (error ~1) through.
double tolerance(std::size_t scalar_bytes, NsCompute mode) {
  if (mode == NsCompute::tf32) return 5e-3;
  if (mode == NsCompute::bf16) return 3e-2;
  return scalar_bytes == 4 ? 1e-3 : 1e-8;
}

#if CURVKIT_BENCH_HAVE_LAPACKE
// C = alpha A B + beta C, row-major n x n.
void mm(index_t n, float alpha, const float* a, const float* b, float beta, float* c) {
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, int(n), int(n), int(n), alpha, a, int(n),
              b, int(n), beta, c, int(n));
}
void mm(index_t n, double alpha, const double* a, const double* b, double beta, double* c) {
  cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, int(n), int(n), int(n), alpha, a, int(n),
              b, int(n), beta, c, int(n));
}
// ?syevd through the _work interface with the documented minimum workspace (also the optimal
// one for jobz = 'V' at these sizes): the plain LAPACKE call takes the size from a workspace
// query that returns it as a float, which rounds 1 + 6n + 2n^2 down once it passes 2^24 and then
// fails (ssyevd, n = 4096: info -9).
template <class T>
int syevd(index_t n, T* a, T* w) {
  const lapack_int lwork = lapack_int(1 + 6 * n + 2 * n * n), liwork = lapack_int(3 + 5 * n);
  HostBuffer<T> work(lwork);
  HostBuffer<lapack_int> iwork(liwork);
  if constexpr (std::is_same_v<T, float>)
    return LAPACKE_ssyevd_work(LAPACK_ROW_MAJOR, 'V', 'L', int(n), a, int(n), w, work.data(), lwork,
                               iwork.data(), liwork);
  else
    return LAPACKE_dsyevd_work(LAPACK_ROW_MAJOR, 'V', 'L', int(n), a, int(n), w, work.data(), lwork,
                               iwork.data(), liwork);
}
// Lower triangle of C = G G^T, row-major n x n.
void gram_lower(index_t n, const float* g, float* c) {
  cblas_ssyrk(CblasRowMajor, CblasLower, CblasNoTrans, int(n), int(n), 1, g, int(n), 0, c, int(n));
}
void gram_lower(index_t n, const double* g, double* c) {
  cblas_dsyrk(CblasRowMajor, CblasLower, CblasNoTrans, int(n), int(n), 1, g, int(n), 0, c, int(n));
}
#else
template <class T>
void gram_lower(index_t n, const T* g, T* c) {
  for (index_t i = 0; i < n; ++i)
    for (index_t j = 0; j <= i; ++j) {
      double s = 0;
      for (index_t k = 0; k < n; ++k) s += double(g[i * n + k]) * g[j * n + k];
      c[i * n + j] = T(s);
    }
}
#endif

// SPD test matrices: G G^T / n + I / 2 per matrix (well conditioned, like a damped statistic).
// The Gram by ?syrk where BLAS is linked: at n = 4096 plain loops would take minutes.
template <class T>
void fill_spd(HostBuffer<T>& a, index_t n, index_t batch) {
  HostBuffer<T> g(n * n);
  for (index_t b = 0; b < batch; ++b) {
    fill_gaussian(g, 1.0, std::uint64_t(b + 1));
    T* m = a.data() + b * n * n;
    gram_lower(n, g.data(), m);
    for (index_t i = 0; i < n; ++i)
      for (index_t j = 0; j <= i; ++j)
        m[i * n + j] = m[j * n + i] = T(m[i * n + j] / T(n) + (i == j ? T(0.5) : T(0)));
  }
}

#if CURVKIT_BENCH_HAVE_LAPACKE
// A^{-1/2} by the eigendecomposition: x = Q diag(w^{-1/2}) Q^T (q, w, tmp scratch).  With
// `steps` > 0, instead Q diag(g(w)) Q^T for g the scalar recurrence of that many coupled
// iterations (what the iteration must produce exactly, however far from converged).
template <class T>
void inv_sqrt_eigen(index_t n, const T* a, T* x, T* q, T* w, T* tmp, int steps = 0) {
  std::copy(a, a + n * n, q);
  double fro = 0;
  for (index_t e = 0; e < n * n; ++e) fro += double(a[e]) * a[e];
  fro = std::sqrt(fro);
  (void)syevd(n, q, w);
  for (index_t k = 0; k < n; ++k) {
    double g = 1 / std::sqrt(double(w[k]));
    if (steps > 0) {
      double y = double(w[k]) / fro, z = 1;
      for (int s = 0; s < steps; ++s) {
        const double t = (3 - z * y) / 2;
        y *= t;
        z *= t;
      }
      g = z / std::sqrt(fro);
    }
    for (index_t i = 0; i < n; ++i) tmp[i * n + k] = T(q[i * n + k] * g);
  }
  if constexpr (sizeof(T) == 4)
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, int(n), int(n), int(n), 1, tmp, int(n), q,
                int(n), 0, x, int(n));
  else
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, int(n), int(n), int(n), 1, tmp, int(n), q,
                int(n), 0, x, int(n));
}

// The coupled iteration as a GEMM loop (y, z, w, t, tmp scratch).
template <class T>
void inv_sqrt_loop(index_t n, const T* a, T* x, T* y, T* w, T* t, T* tmp) {
  double fro = 0;
  for (index_t e = 0; e < n * n; ++e) fro += double(a[e]) * a[e];
  fro = std::sqrt(fro);
  for (index_t e = 0; e < n * n; ++e) {
    y[e] = T(a[e] / fro);
    x[e] = (e / n == e % n) ? T(1) : T(0);  // Z
    w[e] = y[e];
  }
  for (int s = 0; s < kSteps; ++s) {
    for (index_t e = 0; e < n * n; ++e) t[e] = T(-0.5) * w[e] + ((e / n == e % n) ? T(1.5) : T(0));
    std::copy(y, y + n * n, tmp);
    mm(n, T(1), tmp, t, T(0), y);
    std::copy(x, x + n * n, tmp);
    mm(n, T(1), t, tmp, T(0), x);
    mm(n, T(1), x, y, T(0), w);
  }
  for (index_t e = 0; e < n * n; ++e) x[e] = T(x[e] / std::sqrt(fro));
}
#endif

// Whether x is A^{-1/2} of one matrix: against the eigendecomposition route, the exact result
// (steps = 0) or what `steps` steps of the scalar recurrence give on each eigenvalue (the
// iterations: far from converged for the small eigenvalues when n is large, MBAG's caveat), to a
// relative Frobenius error below tol.  Without LAPACKE only finiteness can be checked.
template <class T>
bool inv_sqrt_ok(index_t n, const T* a, const T* x, int steps, double tol) {
  const index_t nn = n * n;
#if CURVKIT_BENCH_HAVE_LAPACKE
  HostBuffer<T> ref(nn), q(nn), w(n), tmp(nn);
  inv_sqrt_eigen(n, a, ref.data(), q.data(), w.data(), tmp.data(), steps);
  double num = 0, den = 0;
  for (index_t e = 0; e < nn; ++e) {
    num += (double(x[e]) - ref[e]) * (double(x[e]) - ref[e]);
    den += double(ref[e]) * ref[e];
  }
  return std::sqrt(num / den) < tol;  // false for NaN
#else
  (void)a, (void)steps, (void)tol;
  return std::all_of(x, x + nn, [](T v) { return std::isfinite(v); });
#endif
}

// ||U||_F^2 = the sum of the squared singular values, each in about [0.5, 1.7] after 5 quintic
// steps (the bounds also hold with tf32 / bf16 products: the quintic is insensitive to them).
bool polar_ok(const float* u, index_t n) {
  double s = 0;
  for (index_t e = 0; e < n * n; ++e) s += double(u[e]) * u[e];
  return s > 0.3 * double(n) && s < 2.0 * double(n);
}

void set_inv_sqrt_counters(benchmark::State& st, index_t n, index_t batch, std::size_t bytes) {
  const double nn = double(n) * double(n);
  set_rate_counters(st, double(batch) * kSteps * 6.0 * double(n) * nn,
                    double(bytes) * 2.0 * double(batch) * nn);
}

void set_polar_counters(benchmark::State& st, index_t n) {
  const double nn = double(n) * double(n);
  set_rate_counters(st, kSteps * 6.0 * double(n) * nn, 4.0 * 2.0 * nn);
}

// A Context with a workspace sized for `a` by the family's query, in a Buffer (HostBuffer for
// the kokkos backend on the host, DeviceBuffer for cuda) of bytes.
template <class T, class Buffer>
struct WithWorkspace {
  WithWorkspace(Context c, MatrixBatch<const T> a)
      : ctx(c), ws(newton_schulz_workspace_size<T>(ctx, GroupedBatch<const T>(&a, 1))) {
    ctx.set_workspace(ws.data(), ws.bytes());
  }
  Context ctx;
  Buffer ws;
};

// ---- CPU cases ---------------------------------------------------------------------------------

template <class T>
void bm_inv_sqrt(benchmark::State& st, Tool tool, index_t n, index_t batch) {
  const index_t nn = n * n;
  HostBuffer<T> a(batch * nn), x(batch * nn);
  fill_spd(a, n, batch);
  HostBuffer<T> s1(nn), s2(nn), s3(nn), s4(nn), wv(n);
  HostBuffer<int> info(batch);
  const auto av = make_batch<const T>(a.data(), batch, n, n);
  const WithWorkspace<T, HostBuffer<unsigned char>> k(Context::kokkos(), av);
  NewtonSchulzOptions o;
  o.iterations = kSteps;
  Status status;
  auto call = [&] {
    if (tool == Tool::kokkos) {
      status = newton_schulz_sqrt<T>(k.ctx, av, {}, make_batch(x.data(), batch, n, n),
                                     {info.data(), nullptr, nullptr}, o);
      (void)synchronize(k.ctx);
    }
#if CURVKIT_BENCH_HAVE_LAPACKE
    for (index_t b = 0; tool != Tool::kokkos && b < batch; ++b) {
      if (tool == Tool::lapacke_syevd)
        inv_sqrt_eigen(n, a.data() + b * nn, x.data() + b * nn, s1.data(), wv.data(), s2.data());
      else
        inv_sqrt_loop(n, a.data() + b * nn, x.data() + b * nn, s1.data(), s2.data(), s3.data(),
                      s4.data());
    }
#endif
  };
  for (auto _ : st) call();
  if (!status.ok()) {
    st.SkipWithError(status.to_string().c_str());
    return;
  }
  if (!inv_sqrt_ok(n, a.data(), x.data(), tool == Tool::lapacke_syevd ? 0 : kSteps,
                   tolerance(sizeof(T), NsCompute::native))) {
    st.SkipWithError("result check failed");
    return;
  }
  set_inv_sqrt_counters(st, n, batch, sizeof(T));
}

// Muon: 5 quintic steps on one n x n float matrix.
void bm_polar(benchmark::State& st, Tool tool, index_t n) {
  const index_t nn = n * n;
  HostBuffer<float> a(nn), u(nn), xb(nn), bm(nn), b2(nn), tmp(nn);
  fill_gaussian(a, 1.0, 7);
  HostBuffer<int> info(1);
  const auto av = make_batch<const float>(a.data(), 1, n, n);
  const WithWorkspace<float, HostBuffer<unsigned char>> k(Context::kokkos(), av);
  NewtonSchulzOptions o;
  o.iterations = kSteps;
  Status status;
  auto call = [&] {
    if (tool == Tool::kokkos) {
      status = newton_schulz_polar<float>(k.ctx, av, make_batch(u.data(), 1, n, n),
                                          {info.data(), nullptr, nullptr}, o);
      (void)synchronize(k.ctx);
      return;
    }
#if CURVKIT_BENCH_HAVE_LAPACKE
    double fro = 0;
    for (index_t e = 0; e < nn; ++e) fro += double(a[e]) * a[e];
    for (index_t e = 0; e < nn; ++e) u[e] = float(a[e] / std::sqrt(fro));
    const PolarOptions q;               // the quintic's coefficients
    for (int s = 0; s < kSteps; ++s) {  // B = X^T X; X <- a X + X (b B + c B^2)
      cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, int(n), int(n), int(n), 1, u.data(),
                  int(n), u.data(), int(n), 0, bm.data(), int(n));
      mm(n, float(q.c), bm.data(), bm.data(), 0.0f, b2.data());
      for (index_t e = 0; e < nn; ++e) b2[e] += float(q.b) * bm[e];
      std::copy(u.data(), u.data() + nn, tmp.data());
      mm(n, 1.0f, tmp.data(), b2.data(), 0.0f, u.data());
      for (index_t e = 0; e < nn; ++e) u[e] += float(q.a) * tmp[e];
    }
#endif
  };
  for (auto _ : st) call();
  if (!status.ok()) {
    st.SkipWithError(status.to_string().c_str());
    return;
  }
  if (!polar_ok(u.data(), n)) {
    st.SkipWithError("result check failed");
    return;
  }
  set_polar_counters(st, n);
}

// ---- GPU cases ---------------------------------------------------------------------------------
#if CURVKIT_HAVE_CUDA

// What every GPU case keeps on the device: the input a0 (never overwritten), the output x and the
// per-matrix info, set to -1 so that an info never written fails the check (0 for the cuBLAS
// loops, which write none).
template <class T>
struct DeviceIo {
  DeviceIo(Gpu& gpu, const HostBuffer<T>& a, index_t batch, bool writes_info)
      : a0(a.size()), x(a.size()), info(batch) {
    ready = ((a0.ok() && x.ok() && info.ok()) || gpu.fail("cudaMalloc", "out of device memory")) &&
            gpu.upload(a0.data(), a.data(), a.size()) &&
            gpu.ok(cudaMemsetAsync(info.data(), writes_info ? 0xff : 0, info.bytes(), gpu.stream()),
                   "memset");
  }
  /// Whether every info is 0 (waits for the stream).
  bool info_ok(Gpu& gpu) const {
    std::vector<int> h(info.size());
    return gpu.download(h.data(), info.data(), h.size()) &&
           (std::all_of(h.begin(), h.end(), [](int i) { return i == 0; }) ||
            gpu.fail("check", "info != 0 for some matrix"));
  }
  DeviceBuffer<T> a0, x;
  DeviceBuffer<int> info;
  bool ready = false;
};

// Row-major C_b = alpha op(A_b) B_b + beta C_b (op: transpose when trans_a) for `batch` n x n
// matrices n^2 apart, issued as the column-major C^T = B^T op(A)^T.  native:
// cublas{S,D}gemmStridedBatched (default math mode: no tensor cores for float); tf32 / bf16
// (float only): cublasGemmStridedBatchedEx on the FP32 data with CUBLAS_COMPUTE_32F_FAST_TF32 /
// _FAST_16BF, so cuBLAS rounds the operands itself (a BF16 copy would need a conversion kernel,
// which this host-compiled file cannot hold).  Single matrices go through the same call with
// batch = 1.
template <class T>
cublasStatus_t gemm(cublasHandle_t h, NsCompute mode, bool trans_a, index_t n, index_t batch,
                    T alpha, const T* a, const T* b, T beta, T* c) {
  const int m = int(n), count = int(batch);
  const long long s = static_cast<long long>(n) * n;
  const cublasOperation_t op = trans_a ? CUBLAS_OP_T : CUBLAS_OP_N;
  if constexpr (std::is_same_v<T, float>) {
    if (mode != NsCompute::native)
      return cublasGemmStridedBatchedEx(
          h, CUBLAS_OP_N, op, m, m, m, &alpha, b, CUDA_R_32F, m, s, a, CUDA_R_32F, m, s, &beta, c,
          CUDA_R_32F, m, s, count,
          mode == NsCompute::tf32 ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F_FAST_16BF,
          CUBLAS_GEMM_DEFAULT);
    return cublasSgemmStridedBatched(h, CUBLAS_OP_N, op, m, m, m, &alpha, b, m, s, a, m, s, &beta,
                                     c, m, s, count);
  } else {
    (void)mode;  // double runs native only
    return cublasDgemmStridedBatched(h, CUBLAS_OP_N, op, m, m, m, &alpha, b, m, s, a, m, s, &beta,
                                     c, m, s, count);
  }
}

// Column-major C = A diag(x), A rows x cols (lda = rows).  With rows = the elements of one matrix
// and cols = the batch, it scales every matrix by its own factor in one call.
cublasStatus_t dgmm(cublasHandle_t h, index_t rows, index_t cols, const float* a, const float* x,
                    float* c) {
  return cublasSdgmm(h, CUBLAS_SIDE_RIGHT, int(rows), int(cols), a, int(rows), x, 1, c, int(rows));
}
cublasStatus_t dgmm(cublasHandle_t h, index_t rows, index_t cols, const double* a, const double* x,
                    double* c) {
  return cublasDdgmm(h, CUBLAS_SIDE_RIGHT, int(rows), int(cols), a, int(rows), x, 1, c, int(rows));
}

// cuSOLVER eigensolvers by scalar.  The matrices are stored full (symmetric), so whichever
// triangle cuSOLVER reads, it reads A; the eigenvectors come back as columns (column-major).
constexpr auto kJobz = CUSOLVER_EIG_MODE_VECTOR;
constexpr auto kUplo = CUBLAS_FILL_MODE_LOWER;
cusolverStatus_t syevj_size(cusolverDnHandle_t h, index_t n, const float* a, const float* w,
                            int* lwork, syevjInfo_t p, index_t batch) {
  return cusolverDnSsyevjBatched_bufferSize(h, kJobz, kUplo, int(n), a, int(n), w, lwork, p,
                                            int(batch));
}
cusolverStatus_t syevj_size(cusolverDnHandle_t h, index_t n, const double* a, const double* w,
                            int* lwork, syevjInfo_t p, index_t batch) {
  return cusolverDnDsyevjBatched_bufferSize(h, kJobz, kUplo, int(n), a, int(n), w, lwork, p,
                                            int(batch));
}
cusolverStatus_t syevj(cusolverDnHandle_t h, index_t n, float* a, float* w, float* work, int lwork,
                       int* info, syevjInfo_t p, index_t batch) {
  return cusolverDnSsyevjBatched(h, kJobz, kUplo, int(n), a, int(n), w, work, lwork, info, p,
                                 int(batch));
}
cusolverStatus_t syevj(cusolverDnHandle_t h, index_t n, double* a, double* w, double* work,
                       int lwork, int* info, syevjInfo_t p, index_t batch) {
  return cusolverDnDsyevjBatched(h, kJobz, kUplo, int(n), a, int(n), w, work, lwork, info, p,
                                 int(batch));
}
cusolverStatus_t syevd_size(cusolverDnHandle_t h, index_t n, const float* a, const float* w,
                            int* lwork) {
  return cusolverDnSsyevd_bufferSize(h, kJobz, kUplo, int(n), a, int(n), w, lwork);
}
cusolverStatus_t syevd_size(cusolverDnHandle_t h, index_t n, const double* a, const double* w,
                            int* lwork) {
  return cusolverDnDsyevd_bufferSize(h, kJobz, kUplo, int(n), a, int(n), w, lwork);
}
cusolverStatus_t syevd(cusolverDnHandle_t h, index_t n, float* a, float* w, float* work, int lwork,
                       int* info) {
  return cusolverDnSsyevd(h, kJobz, kUplo, int(n), a, int(n), w, work, lwork, info);
}
cusolverStatus_t syevd(cusolverDnHandle_t h, index_t n, double* a, double* w, double* work,
                       int lwork, int* info) {
  return cusolverDnDsyevd(h, kJobz, kUplo, int(n), a, int(n), w, work, lwork, info);
}

// The coupled iteration as a plain per-iteration cuBLAS loop over the whole batch (the anchor of
// "one launch per call instead of one per product"): Y = A / c with c = ||A||_F per matrix
// (precomputed on the host: the loop's cost is its GEMMs), Z = I, then per step
// T = 1.5 I - 0.5 Z Y (identities copied into T, one GEMM with beta = 1.5), Y <- Y T, Z <- T Z;
// X = Z / sqrt(c).  The per-matrix scalings are one ?dgmm each.
template <class T>
class CublasInvSqrt {
 public:
  CublasInvSqrt(Gpu& gpu, const HostBuffer<T>& a, index_t n, index_t batch, NsCompute mode)
      : gpu_(gpu),
        n_(n),
        batch_(batch),
        mode_(mode),
        ident_(batch * n * n),
        y_(ident_.size()),
        y2_(ident_.size()),
        z_(ident_.size()),
        z2_(ident_.size()),
        t_(ident_.size()),
        in_scale_(batch),
        out_scale_(batch) {
    if (!ident_.ok() || !y_.ok() || !y2_.ok() || !z_.ok() || !z2_.ok() || !t_.ok() ||
        !in_scale_.ok() || !out_scale_.ok()) {
      gpu.fail("cudaMalloc", "out of device memory");
      return;
    }
    const index_t nn = n * n;
    HostBuffer<T> ident(batch * nn), in_scale(batch), out_scale(batch);
    for (index_t b = 0; b < batch; ++b) {
      double fro2 = 0;  // ||A||_F^2
      for (index_t e = 0; e < nn; ++e) fro2 += double(a[b * nn + e]) * a[b * nn + e];
      in_scale[b] = T(1 / std::sqrt(fro2));
      out_scale[b] = T(1 / std::sqrt(std::sqrt(fro2)));
      for (index_t e = 0; e < nn; ++e) ident[b * nn + e] = e / n == e % n ? T(1) : T(0);
    }
    ready_ = gpu.upload(ident_.data(), ident.data(), ident.size()) &&
             gpu.upload(in_scale_.data(), in_scale.data(), batch) &&
             gpu.upload(out_scale_.data(), out_scale.data(), batch) &&
             gpu.ok(cudaStreamSynchronize(gpu.stream()), "upload");  // before the host buffers go
  }
  bool ready() const { return ready_; }

  /// Enqueues x = A^{-1/2} (5 steps) for the batch a.
  bool run(const T* a, T* x) {
    const cublasHandle_t h = gpu_.blas();
    const index_t nn = n_ * n_;
    T *y = y_.data(), *y2 = y2_.data(), *z = z_.data(), *z2 = z2_.data();
    auto mul = [&](T alpha, const T* l, const T* r, T beta, T* out) {
      return gpu_.ok(gemm<T>(h, mode_, false, n_, batch_, alpha, l, r, beta, out), "gemm");
    };
    if (!gpu_.ok(dgmm(h, nn, batch_, a, in_scale_.data(), y), "dgmm") ||
        !gpu_.ok(cudaMemcpyAsync(z, ident_.data(), ident_.bytes(), cudaMemcpyDeviceToDevice,
                                 gpu_.stream()),
                 "copy"))
      return false;
    for (int s = 0; s < kSteps; ++s) {
      if (!gpu_.ok(cudaMemcpyAsync(t_.data(), ident_.data(), ident_.bytes(),
                                   cudaMemcpyDeviceToDevice, gpu_.stream()),
                   "copy") ||
          !mul(T(-0.5), z, y, T(1.5), t_.data()) || !mul(T(1), y, t_.data(), T(0), y2) ||
          !mul(T(1), t_.data(), z, T(0), z2))
        return false;
      std::swap(y, y2);
      std::swap(z, z2);
    }
    return gpu_.ok(dgmm(h, nn, batch_, z, out_scale_.data(), x), "dgmm");
  }

 private:
  Gpu& gpu_;
  index_t n_, batch_;
  NsCompute mode_;
  DeviceBuffer<T> ident_, y_, y2_, z_, z2_, t_, in_scale_, out_scale_;
  bool ready_ = false;
};

// The eigendecomposition route: cuSOLVER eigenpairs, then X = V diag(l^{-1/2}) V^T as one
// ?dgmm over the whole batch (the batch is one n x (n batch) column-major matrix) and one
// batched ?gemm.  Batched: ?syevjBatched (n <= 32); otherwise one ?syevd per matrix.
// l^{-1/2} needs an elementwise kernel this host-compiled file cannot hold, so the eigenvalues
// make a host round trip between two timed segments and only the segments are counted (a kernel
// for it would take microseconds: the anchor is, if anything, favoured).
template <class T>
class EigenRoute {
 public:
  EigenRoute(Gpu& gpu, bool batched, index_t n, index_t batch)
      : gpu_(gpu),
        batched_(batched),
        n_(n),
        batch_(batch),
        v_(batch * n * n),
        vf_(v_.size()),
        w_(batch * n),
        f_(w_.size()),
        hw_(w_.size()) {
    if (!v_.ok() || !vf_.ok() || !w_.ok() || !f_.ok()) {
      gpu.fail("cudaMalloc", "out of device memory");
      return;
    }
    // Workspace query outside the timed region.
    const bool sized =
        batched
            ? gpu.ok(cusolverDnCreateSyevjInfo(&params_), "syevj info") &&
                  gpu.ok(syevj_size(gpu.solver(), n, v_.data(), w_.data(), &lwork_, params_, batch),
                         "syevjBatched_bufferSize")
            : gpu.ok(syevd_size(gpu.solver(), n, v_.data(), w_.data(), &lwork_),
                     "syevd_bufferSize");
    if (!sized) return;
    work_.emplace(std::size_t(lwork_));
    ready_ = work_->ok() || gpu.fail("cudaMalloc", "out of device memory");
  }
  ~EigenRoute() {
    if (params_) cusolverDnDestroySyevjInfo(params_);
  }
  EigenRoute(const EigenRoute&) = delete;
  EigenRoute& operator=(const EigenRoute&) = delete;
  bool ready() const { return ready_; }

  /// The solver overwrites its input: a fresh copy of a before every run (outside the timing).
  void restore(const T* a) {
    gpu_.ok(cudaMemcpyAsync(v_.data(), a, v_.bytes(), cudaMemcpyDeviceToDevice, gpu_.stream()),
            "copy");
  }

  /// GPU seconds of the decomposition and the reconstruction x = V diag(l^{-1/2}) V^T; < 0 on
  /// failure.
  double run(T* x, int* info) {
    const double decompose = gpu_.time([&] {
      if (batched_)
        return gpu_.ok(syevj(gpu_.solver(), n_, v_.data(), w_.data(), work_->data(), lwork_, info,
                             params_, batch_),
                       "syevjBatched");
      for (index_t b = 0; b < batch_; ++b)
        if (!gpu_.ok(syevd(gpu_.solver(), n_, v_.data() + b * n_ * n_, w_.data() + b * n_,
                           work_->data(), lwork_, info + b),
                     "syevd"))
          return false;
      return true;
    });
    if (decompose < 0 || !gpu_.download(hw_.data(), w_.data(), hw_.size())) return -1.0;
    for (std::size_t k = 0; k < hw_.size(); ++k) hw_[k] = T(1 / std::sqrt(hw_[k]));
    if (!gpu_.upload(f_.data(), hw_.data(), hw_.size())) return -1.0;
    // Row-major, the buffer V holds V^T and V diag(f) holds diag(f) V^T: x = (V^T)^T (diag(f) V^T).
    const double reconstruct = gpu_.time([&] {
      return gpu_.ok(dgmm(gpu_.blas(), n_, n_ * batch_, v_.data(), f_.data(), vf_.data()),
                     "dgmm") &&
             gpu_.ok(gemm<T>(gpu_.blas(), NsCompute::native, true, n_, batch_, T(1), v_.data(),
                             vf_.data(), T(0), x),
                     "gemm");
    });
    return reconstruct < 0 ? -1.0 : decompose + reconstruct;
  }

 private:
  Gpu& gpu_;
  bool batched_;
  index_t n_, batch_;
  DeviceBuffer<T> v_, vf_, w_, f_;
  HostBuffer<T> hw_;
  syevjInfo_t params_ = nullptr;
  int lwork_ = 0;
  std::optional<DeviceBuffer<T>> work_;
  bool ready_ = false;
};

template <class T>
void bm_inv_sqrt_gpu(benchmark::State& st, Tool tool, NsCompute mode, index_t n, index_t batch) {
  if (!have_cuda_device()) {
    st.SkipWithError("no CUDA device");
    return;
  }
  const index_t nn = n * n;
  HostBuffer<T> a(batch * nn);
  fill_spd(a, n, batch);
  Gpu gpu;
  DeviceIo<T> io(gpu, a, batch, tool != Tool::cublas_loop);
  if (!gpu.ready() || !io.ready) {
    st.SkipWithError(gpu.error());
    return;
  }

  std::function<void()> prepare = [] {};
  std::function<double()> call;
  std::optional<WithWorkspace<T, DeviceBuffer<unsigned char>>> curvkit;
  std::optional<CublasInvSqrt<T>> loop;
  std::optional<EigenRoute<T>> eigen;
  NewtonSchulzOptions o;
  o.iterations = kSteps;
  o.compute = mode;
  const auto av = make_batch<const T>(io.a0.data(), batch, n, n);
  bool tool_ready = true;
  if (tool == Tool::cuda) {
    curvkit.emplace(Context::cuda(gpu.stream()), av);
    tool_ready = curvkit->ws.ok() || gpu.fail("cudaMalloc", "workspace");
    call = [&] {
      return gpu.time([&] {
        return gpu.ok(
            newton_schulz_sqrt<T>(curvkit->ctx, av, {}, make_batch(io.x.data(), batch, n, n),
                                  {io.info.data(), nullptr, nullptr}, o),
            "newton_schulz_sqrt");
      });
    };
  } else if (tool == Tool::cublas_loop) {
    loop.emplace(gpu, a, n, batch, mode);
    tool_ready = loop->ready();
    call = [&] { return gpu.time([&] { return loop->run(io.a0.data(), io.x.data()); }); };
  } else {
    eigen.emplace(gpu, tool == Tool::cusolver_syevj, n, batch);
    tool_ready = eigen->ready();
    prepare = [&] { eigen->restore(io.a0.data()); };
    call = [&] { return eigen->run(io.x.data(), io.info.data()); };
  }
  if (!tool_ready) {
    st.SkipWithError(gpu.error());
    return;
  }
  if (!device_loop(st, gpu, prepare, call)) return;

  if (!io.info_ok(gpu)) {
    st.SkipWithError(gpu.error());
    return;
  }
  const int steps = tool == Tool::cusolver_syevj || tool == Tool::cusolver_syevd ? 0 : kSteps;
  HostBuffer<T> xk(nn);
  for (index_t k : {index_t{0}, batch - 1}) {
    if (!gpu.download(xk.data(), io.x.data() + k * nn, nn)) {
      st.SkipWithError(gpu.error());
      return;
    }
    if (!inv_sqrt_ok(n, a.data() + k * nn, xk.data(), steps, tolerance(sizeof(T), mode))) {
      st.SkipWithError("result check failed");
      return;
    }
  }
  set_inv_sqrt_counters(st, n, batch, sizeof(T));
}

// Muon's quintic as a plain FP32 cuBLAS loop on one n x n matrix, every product one GEMM (with
// mode = bf16: cuBLAS rounds the operands to BF16): X = A / ||A||_F, then per step B = X^T X,
// Q = c B^2 + b B (GEMM on a copy of B, beta = b), X <- X Q + a X (GEMM on a copy of X,
// beta = a).  The same products as the CPU loop (and curvkit's).
class CublasPolar {
 public:
  CublasPolar(Gpu& gpu, const HostBuffer<float>& a, index_t n, NsCompute mode)
      : gpu_(gpu), n_(n), mode_(mode), b_(n * n), q_(n * n), x2_(n * n), scale_(1) {
    if (!b_.ok() || !q_.ok() || !x2_.ok() || !scale_.ok()) {
      gpu.fail("cudaMalloc", "out of device memory");
      return;
    }
    double fro2 = 0;  // ||A||_F^2
    for (index_t e = 0; e < n * n; ++e) fro2 += double(a[e]) * a[e];
    const float scale = float(1 / std::sqrt(fro2));
    ready_ = gpu.upload(scale_.data(), &scale, 1) &&
             gpu.ok(cudaStreamSynchronize(gpu.stream()), "upload");
  }
  bool ready() const { return ready_; }

  /// Enqueues x = the 5-step quintic polar iterate of a.
  bool run(const float* a, float* x) {
    const cublasHandle_t h = gpu_.blas();
    const index_t nn = n_ * n_;
    auto mul = [&](bool trans_a, float alpha, const float* l, const float* r, float beta,
                   float* out) {
      return gpu_.ok(gemm<float>(h, mode_, trans_a, n_, 1, alpha, l, r, beta, out), "gemm");
    };
    auto copy = [&](float* dst, const float* src) {
      return gpu_.ok(
          cudaMemcpyAsync(dst, src, nn * sizeof(float), cudaMemcpyDeviceToDevice, gpu_.stream()),
          "copy");
    };
    const PolarOptions q;  // the quintic's coefficients
    if (!gpu_.ok(dgmm(h, nn, 1, a, scale_.data(), x), "dgmm")) return false;
    for (int s = 0; s < kSteps; ++s)
      if (!mul(true, 1, x, x, 0, b_.data()) || !copy(q_.data(), b_.data()) ||
          !mul(false, float(q.c), b_.data(), b_.data(), float(q.b), q_.data()) ||
          !copy(x2_.data(), x) || !mul(false, 1, x2_.data(), q_.data(), float(q.a), x))
        return false;
    return true;
  }

 private:
  Gpu& gpu_;
  index_t n_;
  NsCompute mode_;
  DeviceBuffer<float> b_, q_, x2_, scale_;
  bool ready_ = false;
};

void bm_polar_gpu(benchmark::State& st, Tool tool, NsCompute mode, index_t n) {
  if (!have_cuda_device()) {
    st.SkipWithError("no CUDA device");
    return;
  }
  const index_t nn = n * n;
  HostBuffer<float> a(nn), u(nn);
  fill_gaussian(a, 1.0, 7);
  Gpu gpu;
  DeviceIo<float> io(gpu, a, 1, tool != Tool::cublas_loop);
  if (!gpu.ready() || !io.ready) {
    st.SkipWithError(gpu.error());
    return;
  }

  std::function<double()> call;
  std::optional<WithWorkspace<float, DeviceBuffer<unsigned char>>> curvkit;
  std::optional<CublasPolar> loop;
  NewtonSchulzOptions o;
  o.iterations = kSteps;
  o.compute = mode;
  const auto av = make_batch<const float>(io.a0.data(), 1, n, n);
  bool tool_ready = true;
  if (tool == Tool::cuda) {
    curvkit.emplace(Context::cuda(gpu.stream()), av);
    tool_ready = curvkit->ws.ok() || gpu.fail("cudaMalloc", "workspace");
    call = [&] {
      return gpu.time([&] {
        return gpu.ok(newton_schulz_polar<float>(curvkit->ctx, av, make_batch(io.x.data(), 1, n, n),
                                                 {io.info.data(), nullptr, nullptr}, o),
                      "newton_schulz_polar");
      });
    };
  } else {
    loop.emplace(gpu, a, n, mode);
    tool_ready = loop->ready();
    call = [&] { return gpu.time([&] { return loop->run(io.a0.data(), io.x.data()); }); };
  }
  if (!tool_ready) {
    st.SkipWithError(gpu.error());
    return;
  }
  const std::function<void()> nothing_to_restore = [] {};
  if (!device_loop(st, gpu, nothing_to_restore, call)) return;

  if (!io.info_ok(gpu) || !gpu.download(u.data(), io.x.data(), nn)) {
    st.SkipWithError(gpu.error());
    return;
  }
  if (!polar_ok(u.data(), n)) {
    st.SkipWithError("result check failed");
    return;
  }
  set_polar_counters(st, n);
}
#endif  // CURVKIT_HAVE_CUDA

// ---- registration ------------------------------------------------------------------------------

// A CPU case that runs once (n = 4096: ~10 s or more a run on one core).
template <class F>
void add_once(const std::string& name, F f) {
  benchmark::RegisterBenchmark(name.c_str(), f)
      ->Unit(benchmark::kMillisecond)
      ->UseRealTime()
      ->Iterations(1);
}

template <class T>
void register_inv_sqrt() {
  for (index_t n : {16, 32, 64, 128, 256}) {
    const index_t batch =
        std::clamp<index_t>(batch_for_bytes(double(2 * n * n * sizeof(T))), 100, 100000);
    for (Tool tool : {Tool::kokkos, Tool::lapacke_syevd, Tool::lapacke_loop}) {
      if (tool != Tool::kokkos && !CURVKIT_BENCH_HAVE_LAPACKE) continue;
      add(inv_sqrt_name(tool, NsCompute::native, scalar_name<T>(), n, batch),
          [=](benchmark::State& st) { bm_inv_sqrt<T>(st, tool, n, batch); });
    }
  }
}

// Single large matrices on the CPU: n = 1024 timed as usual, n = 4096 once.
void register_cpu_single() {
  for (index_t n : {1024, 4096}) {
    auto reg = [n](const std::string& name, auto f) {
      if (n == 4096)
        add_once(name, f);
      else
        add(name, f);
    };
    for (Tool tool : {Tool::kokkos, Tool::lapacke_syevd, Tool::lapacke_loop}) {
      if (tool != Tool::kokkos && !CURVKIT_BENCH_HAVE_LAPACKE) continue;
      // n = 4096: the eigendecomposition anchor only (a run is 10-20 s on one core; the BLAS rate
      // per product at this size is ns_polar/lapacke_loop's).
      if (tool == Tool::lapacke_loop && n == 4096) continue;
      reg(inv_sqrt_name(tool, NsCompute::native, "float", n, 1),
          [=](benchmark::State& st) { bm_inv_sqrt<float>(st, tool, n, 1); });
    }
    for (Tool tool : {Tool::kokkos, Tool::lapacke_loop}) {
      if (tool != Tool::kokkos && !CURVKIT_BENCH_HAVE_LAPACKE) continue;
      reg(polar_name(tool, NsCompute::native, n),
          [=](benchmark::State& st) { bm_polar(st, tool, n); });
    }
  }
}

#if CURVKIT_HAVE_CUDA
// cuSOLVER's syevd runs one matrix per call: a batch this size keeps a run under a second.
constexpr index_t kSyevdBatch = 100;

template <class T>
void add_inv_sqrt_gpu(Tool tool, NsCompute mode, index_t n, index_t batch) {
  benchmark::RegisterBenchmark(
      inv_sqrt_name(tool, mode, scalar_name<T>(), n, batch).c_str(),
      [=](benchmark::State& st) { bm_inv_sqrt_gpu<T>(st, tool, mode, n, batch); })
      ->Unit(benchmark::kMicrosecond)
      ->UseManualTime();
}

template <class T>
void register_inv_sqrt_gpu() {
  constexpr bool is_float = std::is_same_v<T, float>;
  for (index_t n : {16, 32, 64, 128, 256}) {
    // n = 256: the target shape (1000 x 256^2); otherwise >= 512 MB of operands (well
    // above the L2), within the 1e3..1e5.
    const index_t batch =
        n == 256
            ? 1000
            : std::clamp<index_t>(batch_for_bytes(double(2 * n * n * sizeof(T)), kDeviceMinBytes),
                                  1000, 100000);
    add_inv_sqrt_gpu<T>(Tool::cuda, NsCompute::native, n, batch);
    add_inv_sqrt_gpu<T>(Tool::cublas_loop, NsCompute::native, n, batch);
    if (n <= 32)
      add_inv_sqrt_gpu<T>(Tool::cusolver_syevj, NsCompute::native, n, batch);
    else
      add_inv_sqrt_gpu<T>(Tool::cusolver_syevd, NsCompute::native, n, kSyevdBatch);
    if constexpr (is_float) {
      add_inv_sqrt_gpu<T>(Tool::cuda, NsCompute::tf32, n, batch);
      if (n == 32 || n == 128 || n == 256)
        add_inv_sqrt_gpu<T>(Tool::cuda, NsCompute::bf16, n, batch);
      if (n == 256) add_inv_sqrt_gpu<T>(Tool::cublas_loop, NsCompute::tf32, n, batch);
    }
  }
}

// Single large matrices on the GPU: inverse square roots at n = 1024 and 4096, Muon's polar
// factor at 4096 (the target: cuda_bf16 <= 3.0 ms on H100).
void register_gpu_single() {
  for (index_t n : {1024, 4096}) add_inv_sqrt_gpu<float>(Tool::cuda, NsCompute::native, n, 1);
  struct Variant {
    Tool tool;
    NsCompute mode;
  };
  const index_t n = 4096;
  for (Variant v :
       {Variant{Tool::cuda, NsCompute::native}, Variant{Tool::cuda, NsCompute::tf32},
        Variant{Tool::cuda, NsCompute::bf16}, Variant{Tool::cublas_loop, NsCompute::native},
        Variant{Tool::cublas_loop, NsCompute::bf16}})
    benchmark::RegisterBenchmark(polar_name(v.tool, v.mode, n).c_str(),
                                 [=](benchmark::State& st) { bm_polar_gpu(st, v.tool, v.mode, n); })
        ->Unit(benchmark::kMicrosecond)
        ->UseManualTime();
}
#endif

void register_all() {
#if CURVKIT_BENCH_HAVE_LAPACKE
  openblas_set_num_threads(1);
#endif
  register_inv_sqrt<float>();
  register_inv_sqrt<double>();
  register_cpu_single();
#if CURVKIT_HAVE_CUDA
  register_inv_sqrt_gpu<float>();
  register_inv_sqrt_gpu<double>();
  register_gpu_single();
#endif
}

}  // namespace
}  // namespace curvkit::bench

int main(int argc, char** argv) {
  return curvkit::bench::run_main(argc, argv, curvkit::bench::register_all);
}
