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
// Counters per case: GFLOPS (2 m n k per product; syrk n (n+1) k) and GBps (operands read and
// results written once: the floor).  Each case checks one output element against a double
// sum after the timed loop, so a broken kernel cannot post a time.
#include <algorithm>
#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "bench_common.hpp"
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
  // Check element (n-1, 0) of the last matrix.
  const index_t m = batch - 1, i = n - 1, j = 0;
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
// product Y = X x_only U_only.
void bm_chain(benchmark::State& st, Tool tool, std::vector<index_t> dims, int only = -1) {
  const int order = int(dims.size());
  index_t size = 1;
  for (index_t d : dims) size *= d;
  HostBuffer<float> x(size), y(size), t0(size), t1(size);
  fill_gaussian(x, 1.0, 6);
  std::vector<HostBuffer<float>> u;
  for (int k = 0; k < order; ++k) {
    u.emplace_back(dims[k] * dims[k]);
    fill_gaussian(u.back(), 1.0 / std::sqrt(double(dims[k])), 7 + k);
  }
  Context ctx = Context::kokkos();
  TensorBatch<const float> xv;
  xv.data = x.data();
  xv.batch = 1;
  xv.order = order;
  for (int k = 0; k < order; ++k) xv.dims[k] = dims[k];
  xv.stride = size;
  TensorBatch<float> yv{y.data(), 1, order, xv.dims, size};
  std::vector<MatrixBatch<const float>> uv;
  for (int k = 0; k < order; ++k)
    uv.push_back(make_batch<const float>(only < 0 || k == only ? u[k].data() : nullptr, 1, dims[k],
                                         dims[k]));
  HostBuffer<char> ws(mode_product_chain_workspace_size<float>(ctx, xv, uv));
  ctx.set_workspace(ws.data(), ws.size());
  auto call = [&] {
    if (tool == Tool::curvkit) {
      (void)mode_product_chain<float>(ctx, xv, uv, yv);
      (void)synchronize(ctx);
    }
#if CURVKIT_BENCH_HAVE_LAPACKE
    if (tool == Tool::lapacke) {  // the same products as sgemm calls, mode 0 first
      const float* in = x.data();
      for (int k = only < 0 ? 0 : only; k < (only < 0 ? order : only + 1); ++k) {
        float* out = k == order - 1 || only >= 0 ? y.data() : (k % 2 ? t1.data() : t0.data());
        const index_t d = dims[k], outer = xv.outer(k), inner = xv.inner(k);
        if (inner == 1) {
          cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, outer, d, d, 1.f, in, d, u[k].data(),
                      d, 0.f, out, d);
        } else {
          for (index_t l = 0; l < outer; ++l)
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, d, inner, d, 1.f, u[k].data(), d,
                        in + l * d * inner, inner, 0.f, out + l * d * inner, inner);
        }
        in = out;
      }
    }
#endif
  };
  for (auto _ : st) call();
  // Check y[0] against the Kronecker sum: y_0 = sum_j (prod_k U_k[0, j_k]) x_j.
  double want = 0;
  for (index_t e = 0; e < size; ++e) {
    double w = x[e];
    index_t rest = e;
    for (int k = order - 1; k >= 0; --k) {
      if (only < 0 || k == only)
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
    if (only < 0 || k == only) flops += 2.0 * double(dims[k]) * double(size);
  set_rate_counters(st, flops, 2.0 * double(size) * sizeof(float));
}

// ---- K-FAC apply over the autoencoder
// ------------------------------------------------------------

enum class KronTool { grouped, loop, lapacke };

void bm_kron_apply(benchmark::State& st, KronTool tool, KronFactor form) {
  const std::vector<index_t> widths = {784, 1000, 500, 250, 30, 250, 500, 1000, 784};
  const std::size_t layers = widths.size() - 1;
  std::vector<HostBuffer<float>> g, a, x, out;
  std::vector<MatrixBatch<const float>> gv, av, xv;
  std::vector<MatrixBatch<float>> ov;
  double flops = 0, bytes = 0;
  for (std::size_t l = 0; l < layers; ++l) {
    const index_t d_in = widths[l] + 1, d_out = widths[l + 1];
    g.emplace_back(d_out * d_out);
    a.emplace_back(d_in * d_in);
    x.emplace_back(d_out * d_in);
    out.emplace_back(d_out * d_in);
    // Diagonally dominant factors: valid inverses, and (lower triangle) valid Cholesky factors.
    fill_gaussian(g.back(), 0.01, 10 + l);
    fill_gaussian(a.back(), 0.01, 20 + l);
    for (index_t i = 0; i < d_out; ++i) g.back()[i * d_out + i] += 1.f;
    for (index_t i = 0; i < d_in; ++i) a.back()[i * d_in + i] += 1.f;
    fill_gaussian(x.back(), 1.0, 30 + l);
    gv.push_back(make_batch<const float>(g.back().data(), 1, d_out, d_out));
    av.push_back(make_batch<const float>(a.back().data(), 1, d_in, d_in));
    xv.push_back(make_batch<const float>(x.back().data(), 1, d_out, d_in));
    ov.push_back(make_batch(out.back().data(), 1, d_out, d_in));
    flops += 2.0 * double(d_out) * double(d_in) * double(d_out + d_in);
    bytes += 4.0 * double(d_out * d_out + d_in * d_in + 2 * d_out * d_in);
  }
  const Context ctx = Context::kokkos();
  KronApplyOptions o;
  o.form = form;
  auto call = [&] {
    if (tool == KronTool::grouped) {
      (void)kron_apply<float>(ctx, gv, av, xv, ov, o);
    } else if (tool == KronTool::loop) {
      for (std::size_t l = 0; l < layers; ++l)
        (void)kron_apply<float>(ctx, gv[l], av[l], xv[l], ov[l], o);
    }
#if CURVKIT_BENCH_HAVE_LAPACKE
    else {
      for (std::size_t l = 0; l < layers; ++l) {
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
  if (!std::isfinite(out[3][0])) {
    st.SkipWithError("result check failed");
    return;
  }
  set_rate_counters(st, flops, bytes);
}

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
    for (int k = 0; k < int(dims.size()); ++k) {
      const std::string tail = "/float/dims:" + name + "/mode:" + std::to_string(k);
      add("mode_product/kokkos" + tail,
          [=](benchmark::State& st) { bm_chain(st, Tool::curvkit, dims, k); });
#if CURVKIT_BENCH_HAVE_LAPACKE
      add("mode_product/lapacke" + tail,
          [=](benchmark::State& st) { bm_chain(st, Tool::lapacke, dims, k); });
#endif
    }
  }
  for (KronFactor form : {KronFactor::inverse, KronFactor::cholesky}) {
    const std::string f = form == KronFactor::inverse ? "inverse" : "cholesky";
    add("kron_apply/kokkos/float/" + f + "/net:autoencoder",
        [=](benchmark::State& st) { bm_kron_apply(st, KronTool::grouped, form); });
    add("kron_apply/kokkos_loop/float/" + f + "/net:autoencoder",
        [=](benchmark::State& st) { bm_kron_apply(st, KronTool::loop, form); });
  }
#if CURVKIT_BENCH_HAVE_LAPACKE
  add("kron_apply/lapacke/float/inverse/net:autoencoder",
      [](benchmark::State& st) { bm_kron_apply(st, KronTool::lapacke, KronFactor::inverse); });
#endif
}

}  // namespace
}  // namespace curvkit::bench

int main(int argc, char** argv) {
  return curvkit::bench::run_main(argc, argv, curvkit::bench::register_all);
}
