// Benchmarks of the Khatri–Rao family (khatri_rao.hpp) against the tools a user would pick
// instead.  One CPU thread (Serial Kokkos, OpenBLAS forced to one thread).
//
// Names (DESIGN.md §7):
//   khatri_rao_gram/<tool>/<scalar>/m:<m>/d:<d>   K = (A A^T) o (G G^T), A, G m x d (d_in = d_out)
//       kokkos        curvkit's fused tiles (lower half)
//       lapacke       two cblas ?gemm (full products) and a Hadamard loop: the anchor
//       lapacke_syrk  two cblas ?syrk (lower) and a Hadamard loop over the lower triangle
//       per_sample    the per-sample gradients g_i a_i^T formed (m d^2 elements) and their
//                     Gram by ?syrk: what the family avoids; only where they fit 1 GiB
//       cuda, cublas  the same on the GPU (cuBLAS: two ?gemm + a Hadamard by ?dgmm)
//   conv_gram/<path>/float/m:<m>/S:<S>/in:<F>/out:<c>
//       fused, direct curvkit (kokkos) forced onto one path; the cost model's choice is the
//                     counter `model_direct` (1 = direct)
//   khatri_rao_jv|jtu/<tool>/float/m:<m>/d:<d>    J v and J^T u: kokkos vs lapacke (?gemm plus
//                     a row-dot / a row-scaled copy)
// Counters: GFLOPS (the family's flops: m (m+1) (d_in + d_out) for the Gram, its lower half,
// whatever the tool computes) and GBps (inputs read once, output written once: the floor).
// Each case checks one output element against a double sum after the timed loop.
#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "bench_common.hpp"
#include "curvkit/khatri_rao.hpp"

#if CURVKIT_BENCH_HAVE_LAPACKE
#include <cblas.h>
extern "C" void openblas_set_num_threads(int num_threads);
#endif
#if CURVKIT_HAVE_CUDA
#include <cublas_v2.h>
#endif

namespace curvkit::bench {
namespace {

enum class Tool { kokkos, lapacke, lapacke_syrk, per_sample, cuda, cublas };

// sum_{t,t'} (a_{i,t}.a_{j,t'}) (g_{i,t}.g_{j,t'}) in double, rows of length d_in / d_out.
template <class T>
double gram_entry(const T* a, const T* g, index_t s, index_t d_in, index_t d_out, index_t i,
                  index_t j) {
  double sum = 0;
  for (index_t t = 0; t < s; ++t)
    for (index_t u = 0; u < s; ++u) {
      double x = 0, y = 0;
      for (index_t c = 0; c < d_in; ++c)
        x += double(a[(i * s + t) * d_in + c]) * a[(j * s + u) * d_in + c];
      for (index_t c = 0; c < d_out; ++c)
        y += double(g[(i * s + t) * d_out + c]) * g[(j * s + u) * d_out + c];
      sum += x * y;
    }
  return sum;
}

bool close(double got, double want) {
  return std::abs(got - want) <= 1e-3 * std::max(1.0, std::abs(want));
}

template <class T>
void bm_gram(benchmark::State& st, Tool tool, index_t m, index_t d) {
  const index_t n = m * d;
  HostBuffer<T> a(n), g(n), k(m * m),
      k2(tool == Tool::lapacke || tool == Tool::lapacke_syrk ? m * m : 0);
  fill_gaussian(a, 1.0, 1);
  fill_gaussian(g, 1.0, 2);
  const double flops = double(m) * double(m + 1) * double(2 * d);
  const double bytes = sizeof(T) * (2.0 * double(n) + double(m) * double(m));
  const index_t ci = m - 1, cj = m / 3;  // the checked element (lower triangle)
  double got = std::nan("");

  if (tool == Tool::cuda || tool == Tool::cublas) {
#if CURVKIT_HAVE_CUDA
    if (!have_cuda_device()) {
      st.SkipWithError("no CUDA device");
      return;
    }
    DeviceBuffer<T> da(n), dg(n), dk(m * m), dk2(m * m);
    CudaTimer timer;
    cublasHandle_t h = nullptr;
    if (!da.ok() || !dg.ok() || !dk.ok() || !dk2.ok() || !timer.ok() ||
        cublasCreate(&h) != CUBLAS_STATUS_SUCCESS) {
      st.SkipWithError("CUDA setup failed");
      return;
    }
    cublasSetStream(h, timer.stream());
    cudaMemcpy(da.data(), a.data(), a.size() * sizeof(T), cudaMemcpyHostToDevice);
    cudaMemcpy(dg.data(), g.data(), g.size() * sizeof(T), cudaMemcpyHostToDevice);
    Context ctx = Context::cuda(timer.stream());
    auto call = [&] {
      if (tool == Tool::cuda) {
        (void)khatri_rao_gram<T>(ctx, make_batch<const T>(da.data(), 1, m, d),
                                 make_batch<const T>(dg.data(), 1, m, d),
                                 make_batch(dk.data(), 1, m, m));
      } else {  // row-major A A^T = column-major (A^T)^T A^T: C = X^T X with X = A^T (d x m)
        const T one = 1, zero = 0;
        if constexpr (sizeof(T) == 4) {
          cublasSgemm(h, CUBLAS_OP_T, CUBLAS_OP_N, int(m), int(m), int(d), &one, da.data(), int(d),
                      da.data(), int(d), &zero, dk.data(), int(m));
          cublasSgemm(h, CUBLAS_OP_T, CUBLAS_OP_N, int(m), int(m), int(d), &one, dg.data(), int(d),
                      dg.data(), int(d), &zero, dk2.data(), int(m));
          cublasSdgmm(h, CUBLAS_SIDE_RIGHT, 1, int(m * m), dk.data(), 1, dk2.data(), 1, dk.data(),
                      1);
        } else {
          cublasDgemm(h, CUBLAS_OP_T, CUBLAS_OP_N, int(m), int(m), int(d), &one, da.data(), int(d),
                      da.data(), int(d), &zero, dk.data(), int(m));
          cublasDgemm(h, CUBLAS_OP_T, CUBLAS_OP_N, int(m), int(m), int(d), &one, dg.data(), int(d),
                      dg.data(), int(d), &zero, dk2.data(), int(m));
          cublasDdgmm(h, CUBLAS_SIDE_RIGHT, 1, int(m * m), dk.data(), 1, dk2.data(), 1, dk.data(),
                      1);
        }
      }
    };
    call();  // warm-up (cuBLAS heuristics, first-launch costs)
    for (auto _ : st) {
      (void)flush_device_l2(timer.stream());
      timer.start();
      call();
      st.SetIterationTime(timer.stop());
    }
    T out = 0;
    cudaMemcpy(&out, dk.data() + ci * m + cj, sizeof(T), cudaMemcpyDeviceToHost);
    got = double(out);
    cublasDestroy(h);
#endif
  } else {
    HostBuffer<T> per(tool == Tool::per_sample ? m * d * d : 0);
    const Context ctx = Context::kokkos();
    auto call = [&] {
      if (tool == Tool::kokkos) {
        (void)khatri_rao_gram<T>(ctx, make_batch<const T>(a.data(), 1, m, d),
                                 make_batch<const T>(g.data(), 1, m, d),
                                 make_batch(k.data(), 1, m, m));
        (void)synchronize(ctx);
      }
#if CURVKIT_BENCH_HAVE_LAPACKE
      const auto order = CblasRowMajor;
      if (tool == Tool::lapacke) {
        if constexpr (sizeof(T) == 4) {
          cblas_sgemm(order, CblasNoTrans, CblasTrans, int(m), int(m), int(d), 1, a.data(), int(d),
                      a.data(), int(d), 0, k.data(), int(m));
          cblas_sgemm(order, CblasNoTrans, CblasTrans, int(m), int(m), int(d), 1, g.data(), int(d),
                      g.data(), int(d), 0, k2.data(), int(m));
        } else {
          cblas_dgemm(order, CblasNoTrans, CblasTrans, int(m), int(m), int(d), 1, a.data(), int(d),
                      a.data(), int(d), 0, k.data(), int(m));
          cblas_dgemm(order, CblasNoTrans, CblasTrans, int(m), int(m), int(d), 1, g.data(), int(d),
                      g.data(), int(d), 0, k2.data(), int(m));
        }
        for (index_t e = 0; e < m * m; ++e) k[e] *= k2[e];
      }
      if (tool == Tool::lapacke_syrk) {
        if constexpr (sizeof(T) == 4) {
          cblas_ssyrk(order, CblasLower, CblasNoTrans, int(m), int(d), 1, a.data(), int(d), 0,
                      k.data(), int(m));
          cblas_ssyrk(order, CblasLower, CblasNoTrans, int(m), int(d), 1, g.data(), int(d), 0,
                      k2.data(), int(m));
        } else {
          cblas_dsyrk(order, CblasLower, CblasNoTrans, int(m), int(d), 1, a.data(), int(d), 0,
                      k.data(), int(m));
          cblas_dsyrk(order, CblasLower, CblasNoTrans, int(m), int(d), 1, g.data(), int(d), 0,
                      k2.data(), int(m));
        }
        for (index_t i = 0; i < m; ++i)
          for (index_t j = 0; j <= i; ++j) k[i * m + j] *= k2[i * m + j];
      }
      if (tool == Tool::per_sample) {  // P_i = g_i a_i^T (row-major d x d), then P P^T
        for (index_t i = 0; i < m; ++i) {
          T* p = per.data() + i * d * d;
          for (index_t r = 0; r < d; ++r) {
            const T gr = g[i * d + r];
            for (index_t c = 0; c < d; ++c) p[r * d + c] = gr * a[i * d + c];
          }
        }
        if constexpr (sizeof(T) == 4)
          cblas_ssyrk(order, CblasLower, CblasNoTrans, int(m), int(d * d), 1, per.data(),
                      int(d * d), 0, k.data(), int(m));
        else
          cblas_dsyrk(order, CblasLower, CblasNoTrans, int(m), int(d * d), 1, per.data(),
                      int(d * d), 0, k.data(), int(m));
      }
#endif
    };
    for (auto _ : st) call();
    got = double(k[ci * m + cj]);
  }
  if (!close(got, gram_entry(a.data(), g.data(), 1, d, d, ci, cj))) {
    st.SkipWithError("result check failed");
    return;
  }
  set_rate_counters(st, flops, bytes);
}

// Convolution Gram on one path (kokkos backend).
void bm_conv_gram(benchmark::State& st, GramPath path, index_t m, index_t s, index_t f, index_t c) {
  HostBuffer<float> a(m * s * f), g(m * s * c), k(m * m);
  fill_gaussian(a, 1.0, 1);
  fill_gaussian(g, 1.0, 2);
  Context ctx = Context::kokkos();
  const auto av = make_batch<const float>(a.data(), 1, m * s, f);
  const auto gv = make_batch<const float>(g.data(), 1, m * s, c);
  auto kv = make_batch(k.data(), 1, m, m);
  KhatriRaoOptions o;
  o.path = path;
  const std::size_t ws = khatri_rao_gram_workspace_size<float>(
      ctx, GroupedBatch<const float>(&av, 1), GroupedBatch<const float>(&gv, 1),
      GroupedBatch<float>(&kv, 1), o);
  HostBuffer<unsigned char> wbuf(std::max<std::size_t>(ws, 1));
  ctx.set_workspace(wbuf.data(), ws);
  for (auto _ : st) {
    (void)khatri_rao_gram<float>(ctx, av, gv, kv, o);
    (void)synchronize(ctx);
  }
  const index_t ci = m - 1, cj = m / 2;
  if (!close(double(k[ci * m + cj]), gram_entry(a.data(), g.data(), s, f, c, ci, cj))) {
    st.SkipWithError("result check failed");
    return;
  }
  const double mm = double(m), dd = double(f) * double(c);
  const double flops = path == GramPath::fused
                           ? mm * (mm + 1) * double(s) * double(s) * double(f + c)
                           : 2 * mm * double(s) * dd + mm * (mm + 1) * dd;
  set_rate_counters(st, flops, 4.0 * (mm * double(s) * double(f + c) + mm * mm));
  st.counters["model_direct"] = khatri_rao_gram_path(m, s, f, c) == GramPath::direct ? 1 : 0;
}

// J v (jv) or J^T u (jtu), linear layer, float.
void bm_jacobian(benchmark::State& st, bool transpose, bool curvkit, index_t m, index_t d) {
  HostBuffer<float> a(m * d), g(m * d), v(d * d), u(m), tmp(curvkit ? 0 : m * d);
  fill_gaussian(a, 1.0, 1);
  fill_gaussian(g, 1.0, 2);
  fill_gaussian(v, 1.0, 3);
  fill_gaussian(u, 1.0, 4);
  const Context ctx = Context::kokkos();
  const auto av = make_batch<const float>(a.data(), 1, m, d);
  const auto gv = make_batch<const float>(g.data(), 1, m, d);
  auto call = [&] {
    if (curvkit) {
      if (transpose)
        (void)khatri_rao_jtu<float>(ctx, av, gv, make_batch<const float>(u.data(), 1, m, 1),
                                    make_batch(v.data(), 1, d, d));
      else
        (void)khatri_rao_jv<float>(ctx, av, gv, make_batch<const float>(v.data(), 1, d, d),
                                   make_batch(u.data(), 1, m, 1));
      (void)synchronize(ctx);
      return;
    }
#if CURVKIT_BENCH_HAVE_LAPACKE
    if (transpose) {  // V = (diag(u) G)^T A
      for (index_t i = 0; i < m; ++i)
        for (index_t c = 0; c < d; ++c) tmp[i * d + c] = g[i * d + c] * u[i];
      cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, int(d), int(d), int(m), 1, tmp.data(),
                  int(d), a.data(), int(d), 0, v.data(), int(d));
    } else {  // P = A V^T, u_i = P_i . G_i
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, int(m), int(d), int(d), 1, a.data(),
                  int(d), v.data(), int(d), 0, tmp.data(), int(d));
      for (index_t i = 0; i < m; ++i) {
        float s = 0;
        for (index_t c = 0; c < d; ++c) s += tmp[i * d + c] * g[i * d + c];
        u[i] = s;
      }
    }
#endif
  };
  for (auto _ : st) call();
  // Check u_0 (jv) or V(1, 2) (jtu) against a double sum.
  double want = 0, got = 0;
  if (transpose) {
    for (index_t i = 0; i < m; ++i) want += double(u[i]) * g[i * d + 1] * a[i * d + 2];
    got = v[1 * d + 2];
  } else {
    for (index_t p = 0; p < d; ++p)
      for (index_t c = 0; c < d; ++c) want += double(g[p]) * v[p * d + c] * a[c];
    got = u[0];
  }
  if (!close(got, want)) {
    st.SkipWithError("result check failed");
    return;
  }
  set_rate_counters(st, 2.0 * double(m) * double(d) * double(d),
                    4.0 * (2.0 * double(m * d) + double(d * d) + double(m)));
}

// ---- registration -------------------------------------------------------------------------------

template <class T>
void register_gram(index_t m, index_t d) {
  const std::string tail =
      std::string("/") + scalar_name<T>() + "/m:" + std::to_string(m) + "/d:" + std::to_string(d);
  add("khatri_rao_gram/kokkos" + tail,
      [=](benchmark::State& st) { bm_gram<T>(st, Tool::kokkos, m, d); });
#if CURVKIT_BENCH_HAVE_LAPACKE
  add("khatri_rao_gram/lapacke" + tail,
      [=](benchmark::State& st) { bm_gram<T>(st, Tool::lapacke, m, d); });
  add("khatri_rao_gram/lapacke_syrk" + tail,
      [=](benchmark::State& st) { bm_gram<T>(st, Tool::lapacke_syrk, m, d); });
  if (double(m) * double(d) * double(d) * sizeof(T) <= double(1 << 30))
    add("khatri_rao_gram/per_sample" + tail,
        [=](benchmark::State& st) { bm_gram<T>(st, Tool::per_sample, m, d); });
#endif
#if CURVKIT_HAVE_CUDA
  for (Tool t : {Tool::cuda, Tool::cublas})
    benchmark::RegisterBenchmark(
        ("khatri_rao_gram/" + std::string(t == Tool::cuda ? "cuda" : "cublas") + tail).c_str(),
        [=](benchmark::State& st) { bm_gram<T>(st, t, m, d); })
        ->Unit(benchmark::kMicrosecond)
        ->UseManualTime();
#endif
}

void register_all() {
#if CURVKIT_BENCH_HAVE_LAPACKE
  openblas_set_num_threads(1);
#endif
  for (index_t m : {128, 512, 1024})
    for (index_t d : {256, 1024, 4096}) register_gram<float>(m, d);
  register_gram<double>(512, 1024);
  // A CIFAR ResNet layer, 3 x 3 convolution with 64 channels in and out (F = 576), m = 128,
  // at 2 x 2, 8 x 8 and 32 x 32 output maps.  The fused form at S = 1024 costs ~2e13 flops
  // (minutes): it runs once.
  for (index_t s : {4, 64, 1024})
    for (GramPath path : {GramPath::fused, GramPath::direct}) {
      const std::string name = std::string("conv_gram/") +
                               (path == GramPath::fused ? "fused" : "direct") +
                               "/float/m:128/S:" + std::to_string(s) + "/in:576/out:64";
      auto* b = benchmark::RegisterBenchmark(
          name.c_str(), [=](benchmark::State& st) { bm_conv_gram(st, path, 128, s, 576, 64); });
      b->Unit(benchmark::kMillisecond)->UseRealTime();
      if (path == GramPath::fused && s == 1024) b->Iterations(1);
    }
  for (bool transpose : {false, true})
    for (bool curvkit : {true, false}) {
#if !CURVKIT_BENCH_HAVE_LAPACKE
      if (!curvkit) continue;
#endif
      add(std::string(transpose ? "khatri_rao_jtu/" : "khatri_rao_jv/") +
              (curvkit ? "kokkos" : "lapacke") + "/float/m:512/d:1024",
          [=](benchmark::State& st) { bm_jacobian(st, transpose, curvkit, 512, 1024); });
    }
}

}  // namespace
}  // namespace curvkit::bench

int main(int argc, char** argv) {
  return curvkit::bench::run_main(argc, argv, curvkit::bench::register_all);
}
