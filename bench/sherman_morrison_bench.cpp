// Benchmarks of the Sherman–Morrison / Woodbury family (sherman_morrison.hpp,
// quasi_newton.hpp) against the tools a user would pick instead.
//
// Names (DESIGN.md §7):
//   rank1_update/<backend>/<scalar>/n:<n>/k:<k>/batch:<b>
//       backend kokkos (curvkit): the k-vector chain on explicit inverses
//   rank1_recompute/<backend>/<scalar>/n:<n>/k:<k>/batch:<b>
//       the alternative: keep G, add the k outer products, re-invert
//       backend kokkos (G update loop + curvkit::potri), lapacke (cblas ?syrk + ?potrf + ?potri)
//   woodbury_solve/kokkos/<scalar>/n:<n>/k:<k>/batch:1      x = (lambda I + U U^T)^{-1} b
//   woodbury_dense/lapacke/<scalar>/n:<n>/k:<k>/batch:1     form lambda I + U U^T (?syrk), ?posv
//   lbfgs_apply/kokkos/<scalar>/d:<d>/p:<p>/nrhs:<r>/batch:1          compact form, S^T Y and
//                                                                    Y^T Y recomputed
//   lbfgs_apply_cached/kokkos/...                                     S^T Y, Y^T Y given
//   lbfgs_two_loop/kokkos/...                                         two-loop recursion
// Counters per matrix (bench_common.hpp turns them into rates):
//   rank1_update    flops 3 n^2 k (symmetric matvec from the lower triangle + lower-triangle
//                   update); bytes: the floor, H read and written once (2 n^2 s) + u (k n s)
//   rank1_recompute flops n^2 k (lower syrk) + n^3 (potri), bytes 4 n^2 s (G and H, read and
//                   written) + k n s
//   woodbury        flops k^2 n + 4 k n + k^3 / 3; bytes (k n + 2 n) s
//   woodbury_dense  flops n^2 k + n^3 / 3 + 2 n^2; bytes (k n + n^2 + 2 n) s
//   lbfgs           flops 8 p d r (+ 2 p^2 d unless cached; two-loop: 4 p d r);
//                   bytes (2 p d + 2 d r) s
// Every case checks its output after the timed loop (info == 0 and a sampled residual),
// so a broken kernel cannot post a time.  One CPU thread throughout (Serial Kokkos, OpenBLAS
// forced to one thread).
//
// GPU cases (CUDA builds; one stream, event timing, L2 flushed, inputs restored untimed):
//   rank1_update/cuda/...                          curvkit's chain on the device
//   rank1_recompute/cublas/...                     what a GPU user writes instead:
//       cublas ?gemmStridedBatched (G += U^T U, full) + ?getrfBatched + ?getriBatched
//       (cuBLAS has no batched syrk, potri or Cholesky inverse); flops as rank1_recompute
//       (syrk half + potri), bytes as rank1_recompute
//   woodbury_solve/cuda/...                        curvkit, batch 1
//   woodbury_dense/cusolver/...                    cublas ?syrk + cusolverDn ?potrf + ?potrs
//   lbfgs_apply/cuda, lbfgs_apply_cached/cuda, lbfgs_two_loop/cuda   curvkit (no anchor: the
//       counters compare them with the device's bandwidth, roofline/cuda_copy)
#include <algorithm>
#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "bench_common.hpp"
#include "bench_gpu.hpp"
#include "curvkit/quasi_newton.hpp"
#include "curvkit/sherman_morrison.hpp"
#include "curvkit/spd.hpp"

#if CURVKIT_BENCH_HAVE_LAPACKE
#include <cblas.h>
#include <lapacke.h>
extern "C" void openblas_set_num_threads(int num_threads);
#endif

namespace curvkit::bench {
namespace {

// ---- rank-1 chains ----------------------------------------------------------------------------

// Batch so that the H's alone occupy >= 64 MB (the chain streams them once).
index_t rank1_batch(index_t n, std::size_t s) {
  return batch_for_bytes(double(n * n * s));
}

// H_b = I / lambda (the MBAG start) and G_b = lambda I for all b; u Gaussian / sqrt(n).
template <class T>
struct Rank1Data {
  index_t n, k, batch;
  HostBuffer<T> h, g, u, pristine_h, pristine_g;
  Rank1Data(index_t n_, index_t k_, index_t batch_)
      : n(n_),
        k(k_),
        batch(batch_),
        h(n * n * batch),
        g(n * n * batch),
        u(k * n * batch),
        pristine_h(n * n * batch),
        pristine_g(n * n * batch) {
    const double lambda = 0.1;
    for (index_t b = 0; b < batch; ++b)
      for (index_t i = 0; i < n; ++i)
        for (index_t j = 0; j < n; ++j) {
          pristine_h[(b * n + i) * n + j] = i == j ? T(1 / lambda) : T(0);
          pristine_g[(b * n + i) * n + j] = i == j ? T(lambda) : T(0);
        }
    fill_gaussian(u, 1.0 / std::sqrt(double(n)), 7);
  }
  // |G_0 H_0 - I| for matrix b after an update: H and G must both hold the new state.
  double residual(index_t b) const {
    double worst = 0;
    std::vector<double> gg(n * n);
    for (index_t i = 0; i < n; ++i)
      for (index_t j = 0; j < n; ++j) {
        double v = i == j ? 0.1 : 0.0;
        for (index_t q = 0; q < k; ++q)
          v += double(u[(b * k + q) * n + i]) * u[(b * k + q) * n + j];
        gg[i * n + j] = v;
      }
    for (index_t i = 0; i < n; ++i)
      for (index_t j = 0; j < n; ++j) {
        double v = 0;
        for (index_t q = 0; q < n; ++q)
          v += gg[i * n + q] * double(h[(b * n + std::max(q, j)) * n + std::min(q, j)]);
        worst = std::max(worst, std::fabs(v - (i == j ? 1.0 : 0.0)));
      }
    return worst;
  }
};

template <class T>
bool check_rank1(benchmark::State& st, const Rank1Data<T>& d, const std::vector<int>& info) {
  for (int v : info)
    if (v != 0) {
      st.SkipWithError("info != 0");
      return false;
    }
  for (index_t b : {index_t(0), d.batch / 2, d.batch - 1})
    if (!(d.residual(b) < 1e3 * d.n * std::numeric_limits<T>::epsilon() * (1 + d.k))) {
      st.SkipWithError("residual check failed");
      return false;
    }
  return true;
}

template <class T>
void rank1_counters(benchmark::State& st, const Rank1Data<T>& d, bool recompute) {
  const double n = double(d.n), k = double(d.k), s = sizeof(T), b = double(d.batch);
  const double flops = recompute ? n * n * k + n * n * n : 3 * n * n * k;
  const double bytes = (recompute ? 4 : 2) * n * n * s + k * n * s;
  set_rate_counters(st, flops * b, bytes * b);
}

template <class T>
void bm_rank1_update(benchmark::State& st, index_t n, index_t k) {
  Rank1Data<T> d(n, k, rank1_batch(n, sizeof(T)));
  std::vector<int> info(d.batch);
  const Context ctx = Context::kokkos();
  timed_loop(
      st, [&] { d.h.copy_from(d.pristine_h); },
      [&] {
        (void)rank1_update(ctx, make_batch(d.h.data(), d.batch, n, n),
                           make_batch<const T>(d.u.data(), d.batch, k, n), info.data());
        (void)synchronize(ctx);
      });
  if (check_rank1(st, d, info)) rank1_counters(st, d, false);
}

// G += sum u u^T (lower triangle, vectorised loop), H = G, H = inverse (curvkit potri).
template <class T>
void bm_rank1_recompute_curvkit(benchmark::State& st, index_t n, index_t k) {
  Rank1Data<T> d(n, k, rank1_batch(n, sizeof(T)));
  std::vector<int> info(d.batch);
  const Context ctx = Context::kokkos();
  timed_loop(
      st, [&] { d.g.copy_from(d.pristine_g); },
      [&] {
        for (index_t b = 0; b < d.batch; ++b) {
          T* g = d.g.data() + b * n * n;
          T* h = d.h.data() + b * n * n;
          const T* u = d.u.data() + b * k * n;
          for (index_t q = 0; q < k; ++q)
            for (index_t i = 0; i < n; ++i) {
              const T ui = u[q * n + i];
              CURVKIT_SIMD
              for (index_t j = 0; j <= i; ++j) g[i * n + j] += ui * u[q * n + j];
            }
          std::copy(g, g + n * n, h);
        }
        (void)potri(ctx, make_batch(d.h.data(), d.batch, n, n), info.data());
        (void)synchronize(ctx);
      });
  if (check_rank1(st, d, info)) rank1_counters(st, d, true);
}

#if CURVKIT_BENCH_HAVE_LAPACKE
template <class T>
void bm_rank1_recompute_lapacke(benchmark::State& st, index_t n, index_t k) {
  openblas_set_num_threads(1);
  Rank1Data<T> d(n, k, rank1_batch(n, sizeof(T)));
  std::vector<int> info(d.batch);
  timed_loop(
      st, [&] { d.g.copy_from(d.pristine_g); },
      [&] {
        for (index_t b = 0; b < d.batch; ++b) {
          T* g = d.g.data() + b * n * n;
          T* h = d.h.data() + b * n * n;
          const T* u = d.u.data() + b * k * n;
          int r;
          if constexpr (std::is_same_v<T, float>) {
            cblas_ssyrk(CblasRowMajor, CblasLower, CblasTrans, int(n), int(k), 1.0f, u, int(n),
                        1.0f, g, int(n));
            std::copy(g, g + n * n, h);
            r = LAPACKE_spotrf(LAPACK_ROW_MAJOR, 'L', int(n), h, int(n));
            if (r == 0) r = LAPACKE_spotri(LAPACK_ROW_MAJOR, 'L', int(n), h, int(n));
          } else {
            cblas_dsyrk(CblasRowMajor, CblasLower, CblasTrans, int(n), int(k), 1.0, u, int(n), 1.0,
                        g, int(n));
            std::copy(g, g + n * n, h);
            r = LAPACKE_dpotrf(LAPACK_ROW_MAJOR, 'L', int(n), h, int(n));
            if (r == 0) r = LAPACKE_dpotri(LAPACK_ROW_MAJOR, 'L', int(n), h, int(n));
          }
          info[b] = r;
        }
      });
  if (check_rank1(st, d, info)) rank1_counters(st, d, true);
}
#endif

// ---- Woodbury -----------------------------------------------------------------------------------

template <class T>
struct WoodburyData {
  index_t n, k;
  double lambda = 0.5;
  HostBuffer<T> ut, x, b, gmat;
  WoodburyData(index_t n_, index_t k_) : n(n_), k(k_), ut(k * n), x(n), b(n) {
    fill_gaussian(ut, 1.0 / std::sqrt(double(n)), 11);
    fill_gaussian(b, 1.0, 12);
  }
  // |(lambda I + U U^T) x - b| / |b| (in double).
  double residual() const {
    std::vector<double> p(k, 0.0);
    for (index_t j = 0; j < k; ++j)
      for (index_t i = 0; i < n; ++i) p[j] += double(ut[j * n + i]) * x[i];
    double num = 0, den = 0;
    for (index_t i = 0; i < n; ++i) {
      double v = lambda * x[i] - double(b[i]);
      for (index_t j = 0; j < k; ++j) v += double(ut[j * n + i]) * p[j];
      num += v * v;
      den += double(b[i]) * b[i];
    }
    return std::sqrt(num / den);
  }
};

template <class T>
void woodbury_counters(benchmark::State& st, const WoodburyData<T>& d, bool dense) {
  const double n = double(d.n), k = double(d.k), s = sizeof(T);
  const double flops =
      dense ? n * n * k + n * n * n / 3 + 2 * n * n : k * k * n + 4 * k * n + k * k * k / 3;
  const double bytes = dense ? (k * n + n * n + 2 * n) * s : (k * n + 2 * n) * s;
  set_rate_counters(st, flops, bytes);
}

template <class T>
bool check_woodbury(benchmark::State& st, const WoodburyData<T>& d, int info) {
  if (info != 0 || !(d.residual() < 1e3 * std::numeric_limits<T>::epsilon() * (d.n + d.k))) {
    st.SkipWithError("woodbury check failed");
    return false;
  }
  return true;
}

template <class T>
void bm_woodbury(benchmark::State& st, index_t n, index_t k) {
  WoodburyData<T> d(n, k);
  int info = -1;
  const Context ctx = Context::kokkos();
  WoodburyOptions o;
  o.lambda = d.lambda;
  timed_loop(
      st, [&] { d.x.copy_from(d.b); },
      [&] {
        (void)woodbury_solve(ctx, make_batch<const T>(d.ut.data(), 1, k, n),
                             make_batch(d.x.data(), 1, n, 1), &info, o);
        (void)synchronize(ctx);
      });
  if (check_woodbury(st, d, info)) woodbury_counters(st, d, false);
}

#if CURVKIT_BENCH_HAVE_LAPACKE
template <class T>
void bm_woodbury_dense(benchmark::State& st, index_t n, index_t k) {
  openblas_set_num_threads(1);
  WoodburyData<T> d(n, k);
  HostBuffer<T> g(n * n);
  int info = -1;
  timed_loop(
      st,
      [&] {
        d.x.copy_from(d.b);
        for (index_t i = 0; i < n * n; ++i) g[i] = T(0);
        for (index_t i = 0; i < n; ++i) g[i * n + i] = T(d.lambda);
      },
      [&] {
        if constexpr (std::is_same_v<T, float>) {
          cblas_ssyrk(CblasRowMajor, CblasLower, CblasTrans, int(n), int(k), 1.0f, d.ut.data(),
                      int(n), 1.0f, g.data(), int(n));
          info = LAPACKE_sposv(LAPACK_ROW_MAJOR, 'L', int(n), 1, g.data(), int(n), d.x.data(), 1);
        } else {
          cblas_dsyrk(CblasRowMajor, CblasLower, CblasTrans, int(n), int(k), 1.0, d.ut.data(),
                      int(n), 1.0, g.data(), int(n));
          info = LAPACKE_dposv(LAPACK_ROW_MAJOR, 'L', int(n), 1, g.data(), int(n), d.x.data(), 1);
        }
      });
  if (check_woodbury(st, d, info)) woodbury_counters(st, d, true);
}
#endif

// ---- L-BFGS -------------------------------------------------------------------------------------

enum class LbfgsKind { compact, cached, two_loop };

// Pairs y = s + 0.5 * noise (curvature ~1, s^T y > 0), their S^T Y and Y^T Y, and x0.
template <class T>
struct LbfgsData {
  index_t d, p, nrhs;
  HostBuffer<T> s, y, x, x0, sty, yty;
  LbfgsData(index_t d_, index_t p_, index_t nrhs_)
      : d(d_),
        p(p_),
        nrhs(nrhs_),
        s(p * d),
        y(p * d),
        x(d * nrhs),
        x0(d * nrhs),
        sty(p * p),
        yty(p * p) {
    fill_gaussian(s, 1.0, 21);
    fill_gaussian(y, 0.5, 22);
    for (std::size_t i = 0; i < y.size(); ++i) y[i] += s[i];
    fill_gaussian(x0, 1.0, 23);
    for (index_t i = 0; i < p; ++i)
      for (index_t j = 0; j < p; ++j) {
        double a = 0, c = 0;
        for (index_t q = 0; q < d; ++q) {
          a += double(s[i * d + q]) * y[j * d + q];
          c += double(y[i * d + q]) * y[j * d + q];
        }
        sty[i * p + j] = T(a);
        yty[i * p + j] = T(c);
      }
  }
  // The op on views of s, y, x (host or device memory, as ctx's backend wants).
  Status apply(const Context& ctx, LbfgsKind kind, const T* sp, const T* yp, T* xp, const T* styp,
               const T* ytyp, int* info) const {
    const auto sv = make_batch<const T>(sp, 1, p, d);
    const auto yv = make_batch<const T>(yp, 1, p, d);
    const auto xv = make_batch(xp, 1, d, nrhs);
    LbfgsOptions o;
    o.gamma = 0;
    if (kind == LbfgsKind::two_loop) return lbfgs_two_loop(ctx, sv, yv, xv, info, o);
    if (kind == LbfgsKind::compact) return lbfgs_apply(ctx, sv, yv, xv, info, o);
    return lbfgs_apply(ctx, sv, yv, xv, info, o, make_batch<const T>(styp, 1, p, p),
                       make_batch<const T>(ytyp, 1, p, p));
  }
  // The result is finite and H_p is positive definite on x0: x0^T (H x0) > 0; sets counters.
  void check_and_count(benchmark::State& st, LbfgsKind kind, int info) const {
    double xhx = 0;
    for (index_t i = 0; i < d * nrhs; ++i) xhx += double(x0[i]) * x[i];
    if (info != 0 || !(xhx > 0) || !std::isfinite(xhx)) {
      st.SkipWithError("lbfgs check failed");
      return;
    }
    const double dd = double(d), pp = double(p), r = double(nrhs), sz = sizeof(T);
    const double flops =
        kind == LbfgsKind::two_loop
            ? 4 * pp * dd * r
            : 8 * pp * dd * r + (kind == LbfgsKind::compact ? 2 * pp * pp * dd : 0);
    set_rate_counters(st, flops, (2 * pp * dd + 2 * dd * r) * sz);
  }
};

template <class T>
void bm_lbfgs(benchmark::State& st, LbfgsKind kind, index_t d, index_t p, index_t nrhs) {
  LbfgsData<T> data(d, p, nrhs);
  int info = -1;
  const Context ctx = Context::kokkos();
  timed_loop(
      st, [&] { data.x.copy_from(data.x0); },
      [&] {
        (void)data.apply(ctx, kind, data.s.data(), data.y.data(), data.x.data(), data.sty.data(),
                         data.yty.data(), &info);
        (void)synchronize(ctx);
      });
  data.check_and_count(st, kind, info);
}

// ---- GPU cases ----------------------------------------------------------------------------------
#if CURVKIT_HAVE_CUDA

template <class T>
void bm_rank1_update_cuda(benchmark::State& st, index_t n, index_t k) {
  Gpu gpu;
  Rank1Data<T> d(n, k, rank1_batch(n, sizeof(T)));
  DeviceBuffer<T> h(d.h.size()), h0(d.h.size()), u(d.u.size());
  DeviceBuffer<int> info(d.batch);
  std::vector<int> hinfo(d.batch);
  const bool ready = gpu.ready() && to_device(gpu, h0, d.pristine_h) && to_device(gpu, u, d.u) &&
                     gpu.allocated(h.ok() && info.ok()) && gpu.fill_bytes(info, 0xff);
  if (!set_up(st, gpu, ready)) return;
  const Context ctx = Context::cuda(gpu.stream());
  const bool ran = device_loop(
      st, gpu, [&] { gpu.copy(h.data(), h0.data(), h.size()); },
      [&] {
        return gpu.time([&] {
          return gpu.ok(rank1_update(ctx, make_batch(h.data(), d.batch, n, n),
                                     make_batch<const T>(u.data(), d.batch, k, n), info.data()),
                        "rank1_update");
        });
      });
  if (ran && gpu.download(d.h.data(), h.data(), d.h.size()) &&
      gpu.download(hinfo.data(), info.data(), hinfo.size()) && check_rank1(st, d, hinfo))
    rank1_counters(st, d, false);
  else if (ran)
    st.SkipWithError(gpu.error());
}

template <class T>
void bm_rank1_recompute_cublas(benchmark::State& st, index_t n, index_t k) {
  Gpu gpu;
  Rank1Data<T> d(n, k, rank1_batch(n, sizeof(T)));
  const index_t nn = n * n;
  DeviceBuffer<T> g(d.g.size()), g0(d.g.size()), h(d.h.size()), u(d.u.size());
  DeviceBuffer<int> info(d.batch), pivots(d.batch * n);
  DeviceBuffer<T*> gp(d.batch), hp(d.batch);
  std::vector<int> hinfo(d.batch);
  const bool ready = gpu.ready() && to_device(gpu, g0, d.pristine_g) && to_device(gpu, u, d.u) &&
                     gpu.allocated(g.ok() && h.ok() && info.ok() && pivots.ok()) &&
                     pointer_array(gpu, gp, g.data(), nn, d.batch) &&
                     pointer_array(gpu, hp, h.data(), nn, d.batch) && gpu.fill_bytes(info, 0xff);
  if (!set_up(st, gpu, ready)) return;
  const int in = int(n), ik = int(k), ib = int(d.batch);
  const T one = 1;
  // u_b is k x n row-major = n x k column-major (ld n): G_b += u_b u_b^T, column-major, full.
  auto call = [&] {
    cublasStatus_t s;
    if constexpr (std::is_same_v<T, float>) {
      s = cublasSgemmStridedBatched(gpu.blas(), CUBLAS_OP_N, CUBLAS_OP_T, in, in, ik, &one,
                                    u.data(), in, k * n, u.data(), in, k * n, &one, g.data(), in,
                                    nn, ib);
      if (s == CUBLAS_STATUS_SUCCESS)
        s = cublasSgetrfBatched(gpu.blas(), in, gp.data(), in, pivots.data(), info.data(), ib);
      if (s == CUBLAS_STATUS_SUCCESS)
        s = cublasSgetriBatched(gpu.blas(), in, gp.data(), in, pivots.data(), hp.data(), in,
                                info.data(), ib);
    } else {
      s = cublasDgemmStridedBatched(gpu.blas(), CUBLAS_OP_N, CUBLAS_OP_T, in, in, ik, &one,
                                    u.data(), in, k * n, u.data(), in, k * n, &one, g.data(), in,
                                    nn, ib);
      if (s == CUBLAS_STATUS_SUCCESS)
        s = cublasDgetrfBatched(gpu.blas(), in, gp.data(), in, pivots.data(), info.data(), ib);
      if (s == CUBLAS_STATUS_SUCCESS)
        s = cublasDgetriBatched(gpu.blas(), in, gp.data(), in, pivots.data(), hp.data(), in,
                                info.data(), ib);
    }
    return gpu.ok(s, "gemm / getrf / getri");
  };
  const bool ran = device_loop(
      st, gpu, [&] { gpu.copy(g.data(), g0.data(), g.size()); }, [&] { return gpu.time(call); });
  if (ran && gpu.download(d.h.data(), h.data(), d.h.size()) &&
      gpu.download(hinfo.data(), info.data(), hinfo.size()) && check_rank1(st, d, hinfo))
    rank1_counters(st, d, true);
  else if (ran)
    st.SkipWithError(gpu.error());
}

template <class T>
void bm_woodbury_cuda(benchmark::State& st, index_t n, index_t k, bool dense) {
  Gpu gpu;
  WoodburyData<T> d(n, k);
  DeviceBuffer<T> ut(d.ut.size()), x(d.x.size()), b(d.b.size()), g(dense ? n * n : 0);
  DeviceBuffer<int> info(1);
  const Context probe = Context::cuda(gpu.stream());
  const std::size_t ws =
      dense ? 0
            : woodbury_solve_workspace_size<T>(probe, make_batch<const T>(ut.data(), 1, k, n),
                                               make_batch<const T>(x.data(), 1, n, 1));
  // cuSOLVER's potrf workspace (elements), queried once.
  int lwork = 0;
  bool ready = gpu.ready() && to_device(gpu, ut, d.ut) && to_device(gpu, b, d.b) &&
               gpu.allocated(x.ok() && g.ok() && info.ok()) && gpu.fill_bytes(info, 0xff);
  if (ready && dense) {
    if constexpr (std::is_same_v<T, float>)
      ready = gpu.ok(cusolverDnSpotrf_bufferSize(gpu.solver(), CUBLAS_FILL_MODE_LOWER, int(n),
                                                 g.data(), int(n), &lwork),
                     "potrf_bufferSize");
    else
      ready = gpu.ok(cusolverDnDpotrf_bufferSize(gpu.solver(), CUBLAS_FILL_MODE_LOWER, int(n),
                                                 g.data(), int(n), &lwork),
                     "potrf_bufferSize");
  }
  DeviceBuffer<unsigned char> work(dense ? std::size_t(lwork) * sizeof(T) : ws);
  if (!ready || !work.ok()) {
    st.SkipWithError(ready ? "cudaMalloc of the workspace failed" : gpu.error());
    return;
  }
  Context ctx = Context::cuda(gpu.stream());
  if (ws) ctx.set_workspace(work.data(), ws);
  WoodburyOptions o;
  o.lambda = d.lambda;
  // The dense tool's pristine G = lambda I.
  std::vector<T> diag(dense ? n * n : 0, T(0));
  for (index_t i = 0; dense && i < n; ++i) diag[i * n + i] = T(d.lambda);
  DeviceBuffer<T> g0(diag.size());
  if (dense && !(g0.ok() && gpu.upload(g0.data(), diag.data(), diag.size()))) {
    st.SkipWithError(gpu.error());
    return;
  }
  // U^T is k x n row-major = U, n x k column-major (ld n): G = lambda I + U U^T by syrk.
  auto dense_solve = [&] {
    const int in = int(n), ik = int(k);
    T* w = reinterpret_cast<T*>(work.data());
    const T one = 1;
    if constexpr (std::is_same_v<T, float>)
      return gpu.ok(cublasSsyrk(gpu.blas(), CUBLAS_FILL_MODE_LOWER, CUBLAS_OP_N, in, ik, &one,
                                ut.data(), in, &one, g.data(), in),
                    "syrk") &&
             gpu.ok(cusolverDnSpotrf(gpu.solver(), CUBLAS_FILL_MODE_LOWER, in, g.data(), in, w,
                                     lwork, info.data()),
                    "potrf") &&
             gpu.ok(cusolverDnSpotrs(gpu.solver(), CUBLAS_FILL_MODE_LOWER, in, 1, g.data(), in,
                                     x.data(), in, info.data()),
                    "potrs");
    else
      return gpu.ok(cublasDsyrk(gpu.blas(), CUBLAS_FILL_MODE_LOWER, CUBLAS_OP_N, in, ik, &one,
                                ut.data(), in, &one, g.data(), in),
                    "syrk") &&
             gpu.ok(cusolverDnDpotrf(gpu.solver(), CUBLAS_FILL_MODE_LOWER, in, g.data(), in, w,
                                     lwork, info.data()),
                    "potrf") &&
             gpu.ok(cusolverDnDpotrs(gpu.solver(), CUBLAS_FILL_MODE_LOWER, in, 1, g.data(), in,
                                     x.data(), in, info.data()),
                    "potrs");
  };
  const bool ran = device_loop(
      st, gpu,
      [&] {
        gpu.copy(x.data(), b.data(), x.size());
        if (dense) gpu.copy(g.data(), g0.data(), g.size());
      },
      [&] {
        return gpu.time([&] {
          if (dense) return dense_solve();
          return gpu.ok(woodbury_solve(ctx, make_batch<const T>(ut.data(), 1, k, n),
                                       make_batch(x.data(), 1, n, 1), info.data(), o),
                        "woodbury_solve");
        });
      });
  int hinfo = -1;
  if (!ran) return;
  if (!gpu.download(d.x.data(), x.data(), d.x.size()) || !gpu.download(&hinfo, info.data(), 1)) {
    st.SkipWithError(gpu.error());
    return;
  }
  if (check_woodbury(st, d, hinfo)) woodbury_counters(st, d, dense);
}

template <class T>
void bm_lbfgs_cuda(benchmark::State& st, LbfgsKind kind, index_t dim, index_t p, index_t nrhs) {
  Gpu gpu;
  LbfgsData<T> d(dim, p, nrhs);
  DeviceBuffer<T> s(d.s.size()), y(d.y.size()), x(d.x.size()), x0(d.x0.size()), sty(d.sty.size()),
      yty(d.yty.size());
  DeviceBuffer<int> info(1);
  const bool ready = gpu.ready() && to_device(gpu, s, d.s) && to_device(gpu, y, d.y) &&
                     to_device(gpu, x0, d.x0) && to_device(gpu, sty, d.sty) &&
                     to_device(gpu, yty, d.yty) && gpu.allocated(x.ok() && info.ok()) &&
                     gpu.fill_bytes(info, 0xff);
  if (!set_up(st, gpu, ready)) return;
  const Context ctx = Context::cuda(gpu.stream());
  const bool ran = device_loop(
      st, gpu, [&] { gpu.copy(x.data(), x0.data(), x.size()); },
      [&] {
        return gpu.time([&] {
          return gpu.ok(
              d.apply(ctx, kind, s.data(), y.data(), x.data(), sty.data(), yty.data(), info.data()),
              "lbfgs");
        });
      });
  int hinfo = -1;
  if (!ran) return;
  if (!gpu.download(d.x.data(), x.data(), d.x.size()) || !gpu.download(&hinfo, info.data(), 1)) {
    st.SkipWithError(gpu.error());
    return;
  }
  d.check_and_count(st, kind, hinfo);
}

#endif  // CURVKIT_HAVE_CUDA

// ---- registration -------------------------------------------------------------------------------

template <class T>
void register_scalar() {
  const std::string sc = scalar_name<T>();
  for (index_t n : {16, 32, 64})
    for (index_t k : {1, 8, 32}) {
      const std::string tail = "/" + sc + "/n:" + std::to_string(n) + "/k:" + std::to_string(k) +
                               "/batch:" + std::to_string(rank1_batch(n, sizeof(T)));
      add("rank1_update/kokkos" + tail,
          [=](benchmark::State& st) { bm_rank1_update<T>(st, n, k); });
      add("rank1_recompute/kokkos" + tail,
          [=](benchmark::State& st) { bm_rank1_recompute_curvkit<T>(st, n, k); });
#if CURVKIT_BENCH_HAVE_LAPACKE
      add("rank1_recompute/lapacke" + tail,
          [=](benchmark::State& st) { bm_rank1_recompute_lapacke<T>(st, n, k); });
#endif
#if CURVKIT_HAVE_CUDA
      add_gpu("rank1_update/cuda" + tail,
              [=](benchmark::State& st) { bm_rank1_update_cuda<T>(st, n, k); });
      add_gpu("rank1_recompute/cublas" + tail,
              [=](benchmark::State& st) { bm_rank1_recompute_cublas<T>(st, n, k); });
#endif
    }
  const index_t n = 4096;
  for (index_t k : {32, 128, 256}) {
    const std::string tail =
        "/" + sc + "/n:" + std::to_string(n) + "/k:" + std::to_string(k) + "/batch:1";
    add("woodbury_solve/kokkos" + tail, [=](benchmark::State& st) { bm_woodbury<T>(st, n, k); });
#if CURVKIT_BENCH_HAVE_LAPACKE
    add("woodbury_dense/lapacke" + tail,
        [=](benchmark::State& st) { bm_woodbury_dense<T>(st, n, k); });
#endif
#if CURVKIT_HAVE_CUDA
    add_gpu("woodbury_solve/cuda" + tail,
            [=](benchmark::State& st) { bm_woodbury_cuda<T>(st, n, k, false); });
    add_gpu("woodbury_dense/cusolver" + tail,
            [=](benchmark::State& st) { bm_woodbury_cuda<T>(st, n, k, true); });
#endif
  }
  const index_t p = 100;
  for (index_t d : {1024, 4096})
    for (index_t nrhs : {1, 10, 100, 1000}) {
      const std::string tail = "/" + sc + "/d:" + std::to_string(d) + "/p:" + std::to_string(p) +
                               "/nrhs:" + std::to_string(nrhs) + "/batch:1";
      add("lbfgs_apply/kokkos" + tail,
          [=](benchmark::State& st) { bm_lbfgs<T>(st, LbfgsKind::compact, d, p, nrhs); });
      add("lbfgs_apply_cached/kokkos" + tail,
          [=](benchmark::State& st) { bm_lbfgs<T>(st, LbfgsKind::cached, d, p, nrhs); });
      add("lbfgs_two_loop/kokkos" + tail,
          [=](benchmark::State& st) { bm_lbfgs<T>(st, LbfgsKind::two_loop, d, p, nrhs); });
#if CURVKIT_HAVE_CUDA
      add_gpu("lbfgs_apply/cuda" + tail,
              [=](benchmark::State& st) { bm_lbfgs_cuda<T>(st, LbfgsKind::compact, d, p, nrhs); });
      add_gpu("lbfgs_apply_cached/cuda" + tail,
              [=](benchmark::State& st) { bm_lbfgs_cuda<T>(st, LbfgsKind::cached, d, p, nrhs); });
      add_gpu("lbfgs_two_loop/cuda" + tail,
              [=](benchmark::State& st) { bm_lbfgs_cuda<T>(st, LbfgsKind::two_loop, d, p, nrhs); });
#endif
    }
}

}  // namespace
}  // namespace curvkit::bench

int main(int argc, char** argv) {
  return curvkit::bench::run_main(argc, argv, [] {
    curvkit::bench::register_scalar<float>();
    curvkit::bench::register_scalar<double>();
  });
}
