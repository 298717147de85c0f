// Benchmarks of the Kronecker family (gemm.hpp, kron.hpp) against the tools a user would pick
// instead.  One CPU thread throughout (Serial Kokkos, OpenBLAS forced to one thread).
//
// Names (DESIGN.md §7):
//   gemm/<backend>/<scalar>/n:<n>/batch:<b>    C = A B, n x n x n, backends kokkos (curvkit),
//                                              lapacke (a loop of cblas ?gemm), eigen (a loop
//                                              of Map<RowMajor> products)
//   syrk/<backend>/<scalar>/n:<n>/batch:<b>    C = A A^T (lower), kokkos, lapacke (?syrk), eigen
//                                              (selfadjointView rankUpdate)
//   gemm_rate/<backend>/<scalar>/n:1024        one large product: curvkit (kokkos) and the
//                                              OpenBLAS rate (lapacke) the chain target is
//                                              stated against
//   mode_chain/<backend>/float/dims:<d0xd1x..> X x_0 U_0 x_1 U_1 ... (square U_k): kokkos
//                                              (curvkit mode_product_chain), lapacke (the same
//                                              mode products as sgemm calls on slabs)
//   mode_product/<backend>/float/dims:<..>/mode:<k>
//                                              one mode product of the chain, same tools
//   kron_apply/<backend>/float/<form>/net:autoencoder
//                                              K-FAC step for the 8 layers of the
//                                              784-1000-500-250-30-250-500-1000-784
//                                              autoencoder (d_in + 1 for the bias):
//                                              kokkos (one grouped call), kokkos_loop (one call
//                                              per layer), lapacke (two sgemm per layer; the
//                                              inverse form only)
// GPU cases (CUDA builds; one stream, event timing, L2 flushed before each call): backends cuda
// (curvkit) and cublas (the anchor) for gemm / syrk (cublas: ?gemmStridedBatched, for syrk the
// full A A^T: cuBLAS has no batched syrk), mode_chain / mode_product (cublas: one sgemm or
// strided-batched sgemm per mode), kron_apply (cuda, cuda_loop; cublas: two sgemm per layer).
// Counters per case: GFLOPS (2 m n k per product; syrk n (n+1) k) and GBps (operands read and
// results written once: the floor).  Each case checks one output element against a double
// sum after the timed loop, so a broken kernel cannot post a time.
#include <algorithm>
#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "bench_common.hpp"
#include "bench_gpu.hpp"
#include "curvkit/gemm.hpp"
#include "curvkit/kron.hpp"

#if CURVKIT_BENCH_HAVE_LAPACKE
#include <cblas.h>
extern "C" void openblas_set_num_threads(int num_threads);
#endif
#if CURVKIT_BENCH_HAVE_EIGEN
#include <Eigen/Dense>
#endif

namespace curvkit::bench {
namespace {

// Batch for the small-product cases: the range 1e3..1e5, at least 64 MB of operands
// where that stays inside it.
index_t small_batch(index_t n) {
  return std::clamp<index_t>(batch_for_bytes(double(3 * n * n * 4)), 1000, 100000);
}

enum class Tool { curvkit, lapacke, eigen };

// Checks element (n-1, 0) of the last C of a small-product case and sets its counters.
template <class T>
void check_small(benchmark::State& st, bool is_syrk, index_t n, index_t batch,
                 const HostBuffer<T>& a, const HostBuffer<T>& b, const HostBuffer<T>& c) {
  const index_t nn = n * n, m = batch - 1, i = n - 1, j = 0;
  double want = 0;
  for (index_t q = 0; q < n; ++q)
    want +=
        double(a[m * nn + i * n + q]) * (is_syrk ? a[m * nn + j * n + q] : b[m * nn + q * n + j]);
  if (std::fabs(want - c[m * nn + i * n + j]) >
      1e-3 * std::sqrt(double(n)) * (1 + std::fabs(want))) {
    st.SkipWithError("result check failed");
    return;
  }
  const double bb = double(batch), s = sizeof(T), d = double(n);
  const double flops = is_syrk ? d * (d + 1) * d : 2 * d * d * d;
  const double bytes = is_syrk ? (d * d + d * (d + 1) / 2) * s : 3 * d * d * s;
  set_rate_counters(st, bb * flops, bb * bytes);
}

// C = A B (gemm) or C = A A^T (syrk, lower) for `batch` n x n matrices.
template <class T>
void bm_small(benchmark::State& st, Tool tool, bool is_syrk, index_t n, index_t batch) {
  const index_t nn = n * n;
  HostBuffer<T> a(batch * nn), b(batch * nn), c(batch * nn);
  fill_gaussian(a, 1.0, 1);
  fill_gaussian(b, 1.0, 2);
  fill_gaussian(c, 1.0, 3);
  const Context ctx = Context::kokkos();
  auto call = [&] {
    if (tool == Tool::curvkit) {
      const auto av = make_batch<const T>(a.data(), batch, n, n);
      const auto bv = make_batch<const T>(b.data(), batch, n, n);
      const auto cv = make_batch(c.data(), batch, n, n);
      if (is_syrk)
        (void)syrk<T>(ctx, Op::none, T(1), av, T(0), cv);
      else
        (void)gemm<T>(ctx, Op::none, Op::none, T(1), av, bv, T(0), cv);
      (void)synchronize(ctx);
    }
#if CURVKIT_BENCH_HAVE_LAPACKE
    if (tool == Tool::lapacke) {
      for (index_t m = 0; m < batch; ++m) {
        const T* am = a.data() + m * nn;
        const T* bm = b.data() + m * nn;
        T* cm = c.data() + m * nn;
        if constexpr (std::is_same_v<T, float>) {
          if (is_syrk)
            cblas_ssyrk(CblasRowMajor, CblasLower, CblasNoTrans, n, n, 1.f, am, n, 0.f, cm, n);
          else
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.f, am, n, bm, n, 0.f,
                        cm, n);
        } else {
          if (is_syrk)
            cblas_dsyrk(CblasRowMajor, CblasLower, CblasNoTrans, n, n, 1.0, am, n, 0.0, cm, n);
          else
            cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.0, am, n, bm, n, 0.0,
                        cm, n);
        }
      }
    }
#endif
#if CURVKIT_BENCH_HAVE_EIGEN
    if (tool == Tool::eigen) {
      using M = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
      for (index_t m = 0; m < batch; ++m) {
        Eigen::Map<const M> am(a.data() + m * nn, n, n), bm(b.data() + m * nn, n, n);
        Eigen::Map<M> cm(c.data() + m * nn, n, n);
        if (is_syrk) {
          cm.template triangularView<Eigen::Lower>().setZero();
          cm.template selfadjointView<Eigen::Lower>().rankUpdate(am);
        } else {
          cm.noalias() = am * bm;
        }
      }
    }
#endif
  };
  for (auto _ : st) call();
  check_small(st, is_syrk, n, batch, a, b, c);
}

// One large n x n x n product: curvkit's large-GEMM rate and the OpenBLAS rate the chain target
// is stated against.
template <class T>
void bm_gemm_rate(benchmark::State& st, Tool tool, index_t n) {
  HostBuffer<T> a(n * n), b(n * n), c(n * n);
  fill_gaussian(a, 1.0, 4);
  fill_gaussian(b, 1.0, 5);
  const Context ctx = Context::kokkos();
  for (auto _ : st) {
    if (tool == Tool::curvkit) {
      (void)gemm<T>(ctx, Op::none, Op::none, T(1), make_batch<const T>(a.data(), 1, n, n),
                    make_batch<const T>(b.data(), 1, n, n), T(0), make_batch(c.data(), 1, n, n));
      (void)synchronize(ctx);
    }
#if CURVKIT_BENCH_HAVE_LAPACKE
    if (tool == Tool::lapacke) {
      if constexpr (std::is_same_v<T, float>)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.f, a.data(), n, b.data(),
                    n, 0.f, c.data(), n);
      else
        cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.0, a.data(), n, b.data(),
                    n, 0.0, c.data(), n);
    }
#endif
    benchmark::ClobberMemory();
  }
  double want = 0;  // c(n-1, n-1)
  for (index_t q = 0; q < n; ++q) want += double(a[(n - 1) * n + q]) * double(b[q * n + n - 1]);
  if (std::fabs(want - c[n * n - 1]) > 1e-3 * (1 + std::fabs(want))) {
    st.SkipWithError("result check failed");
    return;
  }
  const double d = double(n);
  set_rate_counters(st, 2 * d * d * d, 3 * d * d * sizeof(T));
}

// ---- multi-mode chain ---------------------------------------------------------------------------

// Y = X x_0 U_0 ... x_{K-1} U_{K-1}, U_k square d_k x d_k; with only >= 0, the single mode
// product Y = X x_only U_only.  The data, the views (on host or device copies) and the check.
struct ChainData {
  std::vector<index_t> dims;
  int order, only;
  index_t size = 1;
  HostBuffer<float> x, y;
  std::vector<HostBuffer<float>> u;
  ChainData(std::vector<index_t> d, int only_)
      : dims(std::move(d)), order(int(dims.size())), only(only_) {
    for (index_t v : dims) size *= v;
    x = HostBuffer<float>(size);
    y = HostBuffer<float>(size);
    fill_gaussian(x, 1.0, 6);
    for (int k = 0; k < order; ++k) {
      u.emplace_back(dims[k] * dims[k]);
      fill_gaussian(u.back(), 1.0 / std::sqrt(double(dims[k])), 7 + k);
    }
  }
  bool used(int k) const { return only < 0 || k == only; }
  TensorBatch<const float> xview(const float* xp) const {
    TensorBatch<const float> v;
    v.data = xp;
    v.batch = 1;
    v.order = order;
    for (int k = 0; k < order; ++k) v.dims[k] = dims[k];
    v.stride = size;
    return v;
  }
  TensorBatch<float> yview(float* yp) const {
    const TensorBatch<const float> v = xview(nullptr);
    return {yp, 1, order, v.dims, size};
  }
  // uk[k]: factor k's data (host or device); unused modes get a null view (identity).
  std::vector<MatrixBatch<const float>> uviews(const std::vector<const float*>& uk) const {
    std::vector<MatrixBatch<const float>> v;
    for (int k = 0; k < order; ++k)
      v.push_back(make_batch<const float>(used(k) ? uk[k] : nullptr, 1, dims[k], dims[k]));
    return v;
  }
  // y[0] against the Kronecker sum y_0 = sum_j (prod_k U_k[0, j_k]) x_j; sets the counters.
  void check(benchmark::State& st) const {
    double want = 0;
    for (index_t e = 0; e < size; ++e) {
      double w = x[e];
      index_t rest = e;
      for (int k = order - 1; k >= 0; --k) {
        if (used(k))
          w *= u[k][rest % dims[k]];
        else if (rest % dims[k] != 0)
          w = 0;  // an identity factor: only index 0 reaches y_0
        rest /= dims[k];
      }
      want += w;
    }
    if (std::fabs(want - y[0]) > 1e-3 * (1 + std::fabs(want))) {
      st.SkipWithError("result check failed");
      return;
    }
    double flops = 0;
    for (int k = 0; k < order; ++k)
      if (used(k)) flops += 2.0 * double(dims[k]) * double(size);
    set_rate_counters(st, flops, 2.0 * double(size) * sizeof(float));
  }
};

void bm_chain(benchmark::State& st, Tool tool, std::vector<index_t> dims, int only = -1) {
  ChainData d(std::move(dims), only);
  HostBuffer<float> t0(d.size), t1(d.size);
  std::vector<const float*> uk;
  for (const auto& f : d.u) uk.push_back(f.data());
  Context ctx = Context::kokkos();
  const TensorBatch<const float> xv = d.xview(d.x.data());
  const TensorBatch<float> yv = d.yview(d.y.data());
  const std::vector<MatrixBatch<const float>> uv = d.uviews(uk);
  HostBuffer<char> ws(mode_product_chain_workspace_size<float>(ctx, xv, uv));
  ctx.set_workspace(ws.data(), ws.size());
  auto call = [&] {
    if (tool == Tool::curvkit) {
      (void)mode_product_chain<float>(ctx, xv, uv, yv);
      (void)synchronize(ctx);
    }
#if CURVKIT_BENCH_HAVE_LAPACKE
    if (tool == Tool::lapacke) {  // the same products as sgemm calls, mode 0 first
      const float* in = d.x.data();
      for (int k = 0; k < d.order; ++k) {
        if (!d.used(k)) continue;
        float* out = k == d.order - 1 || only >= 0 ? d.y.data() : (k % 2 ? t1.data() : t0.data());
        const index_t dk = d.dims[k], outer = xv.outer(k), inner = xv.inner(k);
        if (inner == 1) {
          cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, outer, dk, dk, 1.f, in, dk, uk[k],
                      dk, 0.f, out, dk);
        } else {
          for (index_t l = 0; l < outer; ++l)
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, dk, inner, dk, 1.f, uk[k], dk,
                        in + l * dk * inner, inner, 0.f, out + l * dk * inner, inner);
        }
        in = out;
      }
    }
#endif
  };
  for (auto _ : st) call();
  d.check(st);
}

// ---- K-FAC apply over the autoencoder
// ------------------------------------------------------------

enum class KronTool { grouped, loop, lapacke, cublas };

// The 8 layers' factors, gradients and outputs (host), with the floor counts.
struct KronData {
  static constexpr std::size_t layers = 8;
  std::vector<index_t> d_in, d_out;
  std::vector<HostBuffer<float>> g, a, x, out;
  double flops = 0, bytes = 0;
  KronData() {
    const index_t widths[layers + 1] = {784, 1000, 500, 250, 30, 250, 500, 1000, 784};
    for (std::size_t l = 0; l < layers; ++l) {
      const index_t di = widths[l] + 1, dout = widths[l + 1];
      d_in.push_back(di);
      d_out.push_back(dout);
      g.emplace_back(dout * dout);
      a.emplace_back(di * di);
      x.emplace_back(dout * di);
      out.emplace_back(dout * di);
      // Diagonally dominant factors: valid inverses, and (lower triangle) valid Cholesky factors.
      fill_gaussian(g.back(), 0.01, 10 + l);
      fill_gaussian(a.back(), 0.01, 20 + l);
      for (index_t i = 0; i < dout; ++i) g.back()[i * dout + i] += 1.f;
      for (index_t i = 0; i < di; ++i) a.back()[i * di + i] += 1.f;
      fill_gaussian(x.back(), 1.0, 30 + l);
      flops += 2.0 * double(dout) * double(di) * double(dout + di);
      bytes += 4.0 * double(dout * dout + di * di + 2 * dout * di);
    }
  }
  // Per-layer views rows[l] x cols[l] of the pointers p (host or device).
  static std::vector<MatrixBatch<const float>> views(const std::vector<const float*>& p,
                                                     const std::vector<index_t>& rows,
                                                     const std::vector<index_t>& cols) {
    std::vector<MatrixBatch<const float>> v;
    for (std::size_t l = 0; l < layers; ++l)
      v.push_back(make_batch<const float>(p[l], 1, rows[l], cols[l]));
    return v;
  }
  void check(benchmark::State& st) const {
    if (!std::isfinite(out[3][0])) {
      st.SkipWithError("result check failed");
      return;
    }
    set_rate_counters(st, flops, bytes);
  }
};

template <class Buf>
std::vector<const float*> ptrs(const std::vector<Buf>& b) {
  std::vector<const float*> p;
  for (const auto& x : b) p.push_back(x.data());
  return p;
}

void bm_kron_apply(benchmark::State& st, KronTool tool, KronFactor form) {
  KronData d;
  const auto gv = d.views(ptrs(d.g), d.d_out, d.d_out), av = d.views(ptrs(d.a), d.d_in, d.d_in),
             xv = d.views(ptrs(d.x), d.d_out, d.d_in);
  std::vector<MatrixBatch<float>> ov;
  for (std::size_t l = 0; l < d.layers; ++l)
    ov.push_back(make_batch(d.out[l].data(), 1, d.d_out[l], d.d_in[l]));
  const Context ctx = Context::kokkos();
  KronApplyOptions o;
  o.form = form;
  auto call = [&] {
    if (tool == KronTool::grouped) {
      (void)kron_apply<float>(ctx, gv, av, xv, ov, o);
    } else if (tool == KronTool::loop) {
      for (std::size_t l = 0; l < d.layers; ++l)
        (void)kron_apply<float>(ctx, gv[l], av[l], xv[l], ov[l], o);
    }
#if CURVKIT_BENCH_HAVE_LAPACKE
    else {
      for (std::size_t l = 0; l < d.layers; ++l) {
        const index_t d_out = xv[l].rows, d_in = xv[l].cols;
        static thread_local std::vector<float> tmp;
        tmp.resize(static_cast<std::size_t>(d_out * d_in));
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, d_out, d_in, d_out, 1.f, gv[l].data,
                    d_out, xv[l].data, d_in, 0.f, tmp.data(), d_in);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, d_out, d_in, d_in, 1.f, tmp.data(),
                    d_in, av[l].data, d_in, 0.f, ov[l].data, d_in);
      }
    }
#endif
    (void)synchronize(ctx);
  };
  for (auto _ : st) call();
  d.check(st);
}

// ---- GPU cases ----------------------------------------------------------------------------------
#if CURVKIT_HAVE_CUDA

// Row-major C_b = A_b B_b (gemm) or A_b A_b^T (syrk; cuBLAS has no batched syrk, so the anchor
// is the full product by gemmStridedBatched), issued column-major as C^T = B^T A^T.
template <class T>
void bm_small_cuda(benchmark::State& st, bool anchor, bool is_syrk, index_t n, index_t batch) {
  Gpu gpu;
  const index_t nn = n * n;
  HostBuffer<T> a(batch * nn), b(batch * nn), c(batch * nn);
  fill_gaussian(a, 1.0, 1);
  fill_gaussian(b, 1.0, 2);
  DeviceBuffer<T> da(a.size()), db(b.size()), dc(c.size());
  if (!(gpu.ready() && to_device(gpu, da, a) && to_device(gpu, db, b) && gpu.allocated(dc.ok()))) {
    st.SkipWithError(gpu.error());
    return;
  }
  const Context ctx = Context::cuda(gpu.stream());
  const int in = int(n), ib = int(batch);
  const T one = 1, zero = 0;
  auto call = [&] {
    if (!anchor) {
      const auto av = make_batch<const T>(da.data(), batch, n, n);
      const auto bv = make_batch<const T>(db.data(), batch, n, n);
      const auto cv = make_batch(dc.data(), batch, n, n);
      return gpu.ok(is_syrk ? syrk<T>(ctx, Op::none, T(1), av, T(0), cv)
                            : gemm<T>(ctx, Op::none, Op::none, T(1), av, bv, T(0), cv),
                    "curvkit");
    }
    const T* left = is_syrk ? da.data() : db.data();
    const cublasOperation_t opl = is_syrk ? CUBLAS_OP_T : CUBLAS_OP_N;
    if constexpr (std::is_same_v<T, float>)
      return gpu.ok(
          cublasSgemmStridedBatched(gpu.blas(), opl, CUBLAS_OP_N, in, in, in, &one, left, in, nn,
                                    da.data(), in, nn, &zero, dc.data(), in, nn, ib),
          "gemmStridedBatched");
    else
      return gpu.ok(
          cublasDgemmStridedBatched(gpu.blas(), opl, CUBLAS_OP_N, in, in, in, &one, left, in, nn,
                                    da.data(), in, nn, &zero, dc.data(), in, nn, ib),
          "gemmStridedBatched");
  };
  if (device_loop(
          st, gpu, [] {}, [&] { return gpu.time(call); })) {
    if (gpu.download(c.data(), dc.data(), c.size()))
      check_small(st, is_syrk, n, batch, a, b, c);
    else
      st.SkipWithError(gpu.error());
  }
}

// The chain on the device: curvkit's mode_product_chain, or the same mode products as cuBLAS
// sgemm calls (one per mode: a strided batch over the slabs, U shared by stride 0).
void bm_chain_cuda(benchmark::State& st, bool anchor, std::vector<index_t> dims, int only = -1) {
  Gpu gpu;
  ChainData d(std::move(dims), only);
  // t0, t1: the cuBLAS chain's intermediates (only the anchor needs them).
  const index_t scratch = anchor && only < 0 ? d.size : 0;
  DeviceBuffer<float> x(d.size), y(d.size), t0(scratch), t1(scratch);
  std::vector<DeviceBuffer<float>> u;
  bool ready = gpu.ready() && to_device(gpu, x, d.x) && gpu.allocated(y.ok() && t0.ok() && t1.ok());
  for (int k = 0; k < d.order && ready; ++k) {
    u.emplace_back(d.u[k].size());
    ready = to_device(gpu, u.back(), d.u[k]);
  }
  std::vector<const float*> uk;
  for (const auto& f : u) uk.push_back(f.data());
  Context ctx = Context::cuda(gpu.stream());
  const TensorBatch<const float> xv = d.xview(x.data());
  const TensorBatch<float> yv = d.yview(y.data());
  const std::vector<MatrixBatch<const float>> uv = ready ? d.uviews(uk) : decltype(d.uviews(uk)){};
  DeviceBuffer<char> ws(ready ? mode_product_chain_workspace_size<float>(ctx, xv, uv) : 0);
  if (!ready || !ws.ok()) {
    st.SkipWithError(ready ? "cudaMalloc of the workspace failed" : gpu.error());
    return;
  }
  ctx.set_workspace(ws.data(), ws.size());
  const float one = 1, zero = 0;
  auto call = [&] {
    if (!anchor) return gpu.ok(mode_product_chain<float>(ctx, xv, uv, yv), "mode_product_chain");
    const float* in = x.data();
    for (int k = 0; k < d.order; ++k) {
      if (!d.used(k)) continue;
      float* out = k == d.order - 1 || only >= 0 ? y.data() : (k % 2 ? t1.data() : t0.data());
      const int dk = int(d.dims[k]), outer = int(xv.outer(k)), inner = int(xv.inner(k));
      // Row-major out_l (dk x inner) = U in_l, i.e. column-major out_l^T = in_l^T U^T.
      const cublasStatus_t s =
          inner == 1
              ? cublasSgemm(gpu.blas(), CUBLAS_OP_T, CUBLAS_OP_N, dk, outer, dk, &one, uk[k], dk,
                            in, dk, &zero, out, dk)
              : cublasSgemmStridedBatched(gpu.blas(), CUBLAS_OP_N, CUBLAS_OP_N, inner, dk, dk, &one,
                                          in, inner, (long long)dk * inner, uk[k], dk, 0, &zero,
                                          out, inner, (long long)dk * inner, outer);
      if (!gpu.ok(s, "sgemm")) return false;
      in = out;
    }
    return true;
  };
  if (device_loop(
          st, gpu, [] {}, [&] { return gpu.time(call); })) {
    if (gpu.download(d.y.data(), y.data(), 1))
      d.check(st);
    else
      st.SkipWithError(gpu.error());
  }
}

// The autoencoder's K-FAC step on the device: curvkit grouped / per-layer, or two cuBLAS sgemm
// per layer (the inverse form).
void bm_kron_apply_cuda(benchmark::State& st, KronTool tool, KronFactor form) {
  Gpu gpu;
  KronData d;
  std::vector<DeviceBuffer<float>> g, a, x, out, tmp;
  bool ready = gpu.ready();
  for (std::size_t l = 0; l < d.layers && ready; ++l) {
    g.emplace_back(d.g[l].size());
    a.emplace_back(d.a[l].size());
    x.emplace_back(d.x[l].size());
    out.emplace_back(d.out[l].size());
    tmp.emplace_back(tool == KronTool::cublas ? d.out[l].size() : 0);  // G X, cuBLAS only
    ready = to_device(gpu, g.back(), d.g[l]) && to_device(gpu, a.back(), d.a[l]) &&
            to_device(gpu, x.back(), d.x[l]) && gpu.allocated(out.back().ok() && tmp.back().ok());
  }
  if (!set_up(st, gpu, ready)) return;
  const auto gv = d.views(ptrs(g), d.d_out, d.d_out), av = d.views(ptrs(a), d.d_in, d.d_in),
             xv = d.views(ptrs(x), d.d_out, d.d_in);
  std::vector<MatrixBatch<float>> ov;
  for (std::size_t l = 0; l < d.layers; ++l)
    ov.push_back(make_batch(out[l].data(), 1, d.d_out[l], d.d_in[l]));
  Context ctx = Context::cuda(gpu.stream());
  KronApplyOptions o;
  o.form = form;
  DeviceBuffer<char> ws(kron_apply_workspace_size<float>(ctx, xv, o));
  if (!ws.ok()) {
    st.SkipWithError("cudaMalloc of the workspace failed");
    return;
  }
  ctx.set_workspace(ws.data(), ws.size());
  const float one = 1, zero = 0;
  auto call = [&] {
    if (tool == KronTool::grouped) return gpu.ok(kron_apply<float>(ctx, gv, av, xv, ov, o), "kron");
    for (std::size_t l = 0; l < d.layers; ++l) {
      if (tool == KronTool::loop) {
        if (!gpu.ok(kron_apply<float>(ctx, gv[l], av[l], xv[l], ov[l], o), "kron")) return false;
        continue;
      }
      // Row-major tmp = G X, out = tmp A: column-major tmp^T = X^T G^T, out^T = A^T tmp^T.
      const int di = int(d.d_in[l]), dout = int(d.d_out[l]);
      if (!gpu.ok(cublasSgemm(gpu.blas(), CUBLAS_OP_N, CUBLAS_OP_N, di, dout, dout, &one,
                              x[l].data(), di, g[l].data(), dout, &zero, tmp[l].data(), di),
                  "sgemm") ||
          !gpu.ok(cublasSgemm(gpu.blas(), CUBLAS_OP_N, CUBLAS_OP_N, di, dout, di, &one, a[l].data(),
                              di, tmp[l].data(), di, &zero, out[l].data(), di),
                  "sgemm"))
        return false;
    }
    return true;
  };
  if (device_loop(
          st, gpu, [] {}, [&] { return gpu.time(call); })) {
    if (gpu.download(d.out[3].data(), out[3].data(), d.out[3].size()))
      d.check(st);
    else
      st.SkipWithError(gpu.error());
  }
}
#endif  // CURVKIT_HAVE_CUDA

// ---- registration -------------------------------------------------------------------------------

template <class T>
void register_small() {
  const std::string sc = scalar_name<T>();
  for (const char* op : {"gemm", "syrk"})
    for (index_t n : {8, 16, 32, 64, 128}) {
      const index_t batch = small_batch(n);
      const bool is_syrk = std::string(op) == "syrk";
      const std::string tail =
          "/" + sc + "/n:" + std::to_string(n) + "/batch:" + std::to_string(batch);
      add(std::string(op) + "/kokkos" + tail,
          [=](benchmark::State& st) { bm_small<T>(st, Tool::curvkit, is_syrk, n, batch); });
#if CURVKIT_BENCH_HAVE_LAPACKE
      add(std::string(op) + "/lapacke" + tail,
          [=](benchmark::State& st) { bm_small<T>(st, Tool::lapacke, is_syrk, n, batch); });
#endif
#if CURVKIT_BENCH_HAVE_EIGEN
      add(std::string(op) + "/eigen" + tail,
          [=](benchmark::State& st) { bm_small<T>(st, Tool::eigen, is_syrk, n, batch); });
#endif
#if CURVKIT_HAVE_CUDA
      add_gpu(std::string(op) + "/cuda" + tail,
              [=](benchmark::State& st) { bm_small_cuda<T>(st, false, is_syrk, n, batch); });
      add_gpu(std::string(op) + "/cublas" + tail,
              [=](benchmark::State& st) { bm_small_cuda<T>(st, true, is_syrk, n, batch); });
#endif
    }
  add("gemm_rate/kokkos/" + sc + "/n:1024",
      [](benchmark::State& st) { bm_gemm_rate<T>(st, Tool::curvkit, 1024); });
#if CURVKIT_BENCH_HAVE_LAPACKE
  add("gemm_rate/lapacke/" + sc + "/n:1024",
      [](benchmark::State& st) { bm_gemm_rate<T>(st, Tool::lapacke, 1024); });
#endif
}

void register_all() {
#if CURVKIT_BENCH_HAVE_LAPACKE
  openblas_set_num_threads(1);
#endif
  register_small<float>();
  register_small<double>();
  for (const std::vector<index_t>& dims :
       {std::vector<index_t>{64, 64, 64, 64}, std::vector<index_t>{512, 512, 3, 3}}) {
    std::string name;
    for (index_t d : dims) {
      if (!name.empty()) name += 'x';
      name += std::to_string(d);
    }
    add("mode_chain/kokkos/float/dims:" + name,
        [=](benchmark::State& st) { bm_chain(st, Tool::curvkit, dims); });
#if CURVKIT_BENCH_HAVE_LAPACKE
    add("mode_chain/lapacke/float/dims:" + name,
        [=](benchmark::State& st) { bm_chain(st, Tool::lapacke, dims); });
#endif
#if CURVKIT_HAVE_CUDA
    add_gpu("mode_chain/cuda/float/dims:" + name,
            [=](benchmark::State& st) { bm_chain_cuda(st, false, dims); });
    add_gpu("mode_chain/cublas/float/dims:" + name,
            [=](benchmark::State& st) { bm_chain_cuda(st, true, dims); });
#endif
    for (int k = 0; k < int(dims.size()); ++k) {
      const std::string tail = "/float/dims:" + name + "/mode:" + std::to_string(k);
      add("mode_product/kokkos" + tail,
          [=](benchmark::State& st) { bm_chain(st, Tool::curvkit, dims, k); });
#if CURVKIT_BENCH_HAVE_LAPACKE
      add("mode_product/lapacke" + tail,
          [=](benchmark::State& st) { bm_chain(st, Tool::lapacke, dims, k); });
#endif
#if CURVKIT_HAVE_CUDA
      add_gpu("mode_product/cuda" + tail,
              [=](benchmark::State& st) { bm_chain_cuda(st, false, dims, k); });
      add_gpu("mode_product/cublas" + tail,
              [=](benchmark::State& st) { bm_chain_cuda(st, true, dims, k); });
#endif
    }
  }
  for (KronFactor form : {KronFactor::inverse, KronFactor::cholesky}) {
    const std::string f = form == KronFactor::inverse ? "inverse" : "cholesky";
    add("kron_apply/kokkos/float/" + f + "/net:autoencoder",
        [=](benchmark::State& st) { bm_kron_apply(st, KronTool::grouped, form); });
    add("kron_apply/kokkos_loop/float/" + f + "/net:autoencoder",
        [=](benchmark::State& st) { bm_kron_apply(st, KronTool::loop, form); });
#if CURVKIT_HAVE_CUDA
    add_gpu("kron_apply/cuda/float/" + f + "/net:autoencoder",
            [=](benchmark::State& st) { bm_kron_apply_cuda(st, KronTool::grouped, form); });
    add_gpu("kron_apply/cuda_loop/float/" + f + "/net:autoencoder",
            [=](benchmark::State& st) { bm_kron_apply_cuda(st, KronTool::loop, form); });
#endif
  }
#if CURVKIT_BENCH_HAVE_LAPACKE
  add("kron_apply/lapacke/float/inverse/net:autoencoder",
      [](benchmark::State& st) { bm_kron_apply(st, KronTool::lapacke, KronFactor::inverse); });
#endif
#if CURVKIT_HAVE_CUDA
  add_gpu("kron_apply/cublas/float/inverse/net:autoencoder", [](benchmark::State& st) {
    bm_kron_apply_cuda(st, KronTool::cublas, KronFactor::inverse);
  });
#endif
}

}  // namespace
}  // namespace curvkit::bench

int main(int argc, char** argv) {
  return curvkit::bench::run_main(argc, argv, curvkit::bench::register_all);
}
