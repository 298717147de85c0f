// Benchmarks of the Newton–Schulz family (newton_schulz.hpp) against the tools a user would
// pick instead.  One CPU thread (Kokkos Serial, OpenBLAS forced to one thread).
//
// Names (DESIGN.md §7):
//   ns_inv_sqrt/<tool>/<scalar>/n:<n>/batch:<b>   A^{-1/2} of SPD matrices, 5 iterations (the
//                                                  papers' count; fixed)
//       kokkos         curvkit newton_schulz_sqrt (inverse square root only), one launch
//       lapacke_syevd  per matrix ?syevd, then Q diag(l^{-1/2}) Q^T by ?gemm: the
//                      eigendecomposition route
//       lapacke_loop   the same 5 coupled iterations as cblas ?gemm calls per matrix (3 per
//                      iteration): a per-iteration GEMM loop
//   ns_polar/<tool>/float/n:<n>                    Muon's orthogonalisation of one n x n
//                                                  matrix, 5 quintic steps: kokkos, lapacke_loop
// Counters: GFLOPS (the iteration's 6 n^3 flops per step for the inverse square root; 4 n^3 +
// 2 n^3 for a quintic step on a square matrix) whatever the tool does.  Each case checks the
// result of one matrix against the eigendecomposition route's after the timed loop.
#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "bench_common.hpp"
#include "curvkit/newton_schulz.hpp"

#if CURVKIT_BENCH_HAVE_LAPACKE
#include <cblas.h>
#include <lapacke.h>
extern "C" void openblas_set_num_threads(int num_threads);
#endif

namespace curvkit::bench {
namespace {

enum class Tool { kokkos, lapacke_syevd, lapacke_loop };

constexpr int kSteps = 5;

// SPD test matrices: B B^T / n + I / 2 per matrix (well conditioned, like a damped statistic).
template <class T>
void fill_spd(HostBuffer<T>& a, index_t n, index_t batch) {
  HostBuffer<T> g(n * n);
  for (index_t b = 0; b < batch; ++b) {
    fill_gaussian(g, 1.0, std::uint64_t(b + 1));
    T* m = a.data() + b * n * n;
    for (index_t i = 0; i < n; ++i)
      for (index_t j = 0; j <= i; ++j) {
        double s = 0;
        for (index_t k = 0; k < n; ++k) s += double(g[i * n + k]) * g[j * n + k];
        m[i * n + j] = m[j * n + i] = T(s / double(n) + (i == j ? 0.5 : 0.0));
      }
  }
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
int syevd(index_t n, float* a, float* w) {
  return LAPACKE_ssyevd(LAPACK_ROW_MAJOR, 'V', 'L', int(n), a, int(n), w);
}
int syevd(index_t n, double* a, double* w) {
  return LAPACKE_dsyevd(LAPACK_ROW_MAJOR, 'V', 'L', int(n), a, int(n), w);
}

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

template <class T>
void bm_inv_sqrt(benchmark::State& st, Tool tool, index_t n, index_t batch) {
  const index_t nn = n * n;
  HostBuffer<T> a(batch * nn), x(batch * nn);
  fill_spd(a, n, batch);
  HostBuffer<T> s1(nn), s2(nn), s3(nn), s4(nn), wv(n);
  HostBuffer<int> info(batch);
  const Context ctx = Context::kokkos();
  NewtonSchulzOptions o;
  o.iterations = kSteps;
  auto call = [&] {
    if (tool == Tool::kokkos) {
      (void)newton_schulz_sqrt<T>(ctx, make_batch<const T>(a.data(), batch, n, n), {},
                                  make_batch(x.data(), batch, n, n),
                                  {info.data(), nullptr, nullptr}, o);
      (void)synchronize(ctx);
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
#if CURVKIT_BENCH_HAVE_LAPACKE
  // Check matrix 0 against the eigendecomposition: the exact result (syevd) or what 5 steps of
  // the scalar recurrence give on each eigenvalue (the iterations: far from converged for the
  // small eigenvalues when n is large, MBAG's caveat).
  HostBuffer<T> ref(nn);
  inv_sqrt_eigen(n, a.data(), ref.data(), s1.data(), wv.data(), s2.data(),
                 tool == Tool::lapacke_syevd ? 0 : kSteps);
  double num = 0, den = 0;
  for (index_t e = 0; e < nn; ++e) {
    num += (double(x[e]) - ref[e]) * (double(x[e]) - ref[e]);
    den += double(ref[e]) * ref[e];
  }
  if (!(std::sqrt(num / den) < (sizeof(T) == 4 ? 1e-3 : 1e-8))) {
    st.SkipWithError("result check failed");
    return;
  }
#endif
  set_rate_counters(st, double(batch) * kSteps * 6.0 * double(n) * double(nn),
                    double(sizeof(T)) * 2.0 * double(batch * nn));
}

// Muon: 5 quintic steps on one n x n float matrix.
void bm_polar(benchmark::State& st, Tool tool, index_t n) {
  const index_t nn = n * n;
  HostBuffer<float> a(nn), u(nn), xb(nn), bm(nn), b2(nn), tmp(nn);
  fill_gaussian(a, 1.0, 7);
  HostBuffer<int> info(1);
  const Context ctx = Context::kokkos();
  NewtonSchulzOptions o;
  o.iterations = kSteps;
  const float qa = 3.4445f, qb = -4.7750f, qc = 2.0315f;
  auto call = [&] {
    if (tool == Tool::kokkos) {
      (void)newton_schulz_polar<float>(ctx, make_batch<const float>(a.data(), 1, n, n),
                                       make_batch(u.data(), 1, n, n),
                                       {info.data(), nullptr, nullptr}, o);
      (void)synchronize(ctx);
      return;
    }
#if CURVKIT_BENCH_HAVE_LAPACKE
    double fro = 0;
    for (index_t e = 0; e < nn; ++e) fro += double(a[e]) * a[e];
    for (index_t e = 0; e < nn; ++e) u[e] = float(a[e] / std::sqrt(fro));
    for (int s = 0; s < kSteps; ++s) {  // B = X^T X; X <- a X + X (b B + c B^2)
      cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, int(n), int(n), int(n), 1, u.data(),
                  int(n), u.data(), int(n), 0, bm.data(), int(n));
      mm(n, qc, bm.data(), bm.data(), 0.0f, b2.data());
      for (index_t e = 0; e < nn; ++e) b2[e] += qb * bm[e];
      std::copy(u.data(), u.data() + nn, tmp.data());
      mm(n, 1.0f, tmp.data(), b2.data(), 0.0f, u.data());
      for (index_t e = 0; e < nn; ++e) u[e] += qa * tmp[e];
    }
#endif
  };
  for (auto _ : st) call();
  double s = 0;
  for (index_t e = 0; e < nn; ++e) s += double(u[e]) * u[e];
  // ||U||_F^2 = sum of squared singular values, each in about [0.5, 1.7] after 5 steps.
  if (!(s > 0.3 * double(n) && s < 2.0 * double(n))) {
    st.SkipWithError("result check failed");
    return;
  }
  set_rate_counters(st, kSteps * 6.0 * double(n) * double(nn), 4.0 * 2.0 * double(nn));
}

template <class T>
void register_inv_sqrt() {
  for (index_t n : {16, 32, 64, 128, 256}) {
    const index_t batch =
        std::clamp<index_t>(batch_for_bytes(double(2 * n * n * sizeof(T))), 100, 100000);
    const std::string tail = std::string("/") + scalar_name<T>() + "/n:" + std::to_string(n) +
                             "/batch:" + std::to_string(batch);
    add("ns_inv_sqrt/kokkos" + tail,
        [=](benchmark::State& st) { bm_inv_sqrt<T>(st, Tool::kokkos, n, batch); });
#if CURVKIT_BENCH_HAVE_LAPACKE
    add("ns_inv_sqrt/lapacke_syevd" + tail,
        [=](benchmark::State& st) { bm_inv_sqrt<T>(st, Tool::lapacke_syevd, n, batch); });
    add("ns_inv_sqrt/lapacke_loop" + tail,
        [=](benchmark::State& st) { bm_inv_sqrt<T>(st, Tool::lapacke_loop, n, batch); });
#endif
  }
}

void register_all() {
#if CURVKIT_BENCH_HAVE_LAPACKE
  openblas_set_num_threads(1);
#endif
  register_inv_sqrt<float>();
  register_inv_sqrt<double>();
  for (index_t n : {1024}) {
    add("ns_inv_sqrt/kokkos/float/n:" + std::to_string(n) + "/batch:1",
        [=](benchmark::State& st) { bm_inv_sqrt<float>(st, Tool::kokkos, n, 1); });
#if CURVKIT_BENCH_HAVE_LAPACKE
    add("ns_inv_sqrt/lapacke_syevd/float/n:" + std::to_string(n) + "/batch:1",
        [=](benchmark::State& st) { bm_inv_sqrt<float>(st, Tool::lapacke_syevd, n, 1); });
    add("ns_inv_sqrt/lapacke_loop/float/n:" + std::to_string(n) + "/batch:1",
        [=](benchmark::State& st) { bm_inv_sqrt<float>(st, Tool::lapacke_loop, n, 1); });
    add("ns_polar/lapacke_loop/float/n:" + std::to_string(n),
        [=](benchmark::State& st) { bm_polar(st, Tool::lapacke_loop, n); });
#endif
    add("ns_polar/kokkos/float/n:" + std::to_string(n),
        [=](benchmark::State& st) { bm_polar(st, Tool::kokkos, n); });
  }
}

}  // namespace
}  // namespace curvkit::bench

int main(int argc, char** argv) {
  return curvkit::bench::run_main(argc, argv, curvkit::bench::register_all);
}
