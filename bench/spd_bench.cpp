// Benchmarks of the batched SPD family (include/curvkit/spd.hpp) against its anchors.
//
// Names: <op>/<backend>/<scalar>/n:<n>/batch:<b>   (potrs adds /nrhs:<r>)
//   op       posv (1 right-hand side), potrf, potri; potrs at n = 16, 64 with nrhs = 1, 16
//   backend  kokkos, reference (curvkit, CPU)        lapacke, eigen (anchors, one thread)
//            cuda (curvkit)                           cusolver (anchor; posv and potrf only:
//                                                     cuSOLVER has no batched potri)
// Batch: the smallest power of two with which one case moves >= 64 MB on the CPU (>= 512 MB
// on the GPU, 10x the H100's L2), counted as below; the reference backend runs 1/16 of it.
//
// Counters, per matrix (bench_common.hpp turns them into rates over the timed region):
//   flops  potrf n^3/3 + n^2/2 + n/6    potrs 2 n^2 nrhs    posv potrf + potrs(1)
//          potri n^3 + n^2/2 + n/6      (the counts of spd.hpp; potri = potrf + trtri + lauum)
//   bytes  full-matrix convention of anchors-performance.md: A read in full (n^2) and, where
//          the op writes it, written in full (n^2); plus b read and x written (n nrhs each).
//          potrf, potri 2 n^2 s; posv 2 n^2 s + 2 n s; potrs n^2 s + 2 n nrhs s.
// GFLOPS and GBps are those totals over the timed time; tools/bench_table.py divides them by
// roofline/fma/<scalar> and roofline/copy (same binary, same run) to get the floor fraction.
//
// Every op works in place, so each iteration restores the input from a pristine copy and
// evicts the caches outside the timed region (PauseTiming on the CPU; on the GPU a
// device-to-device copy and an L2 flush before the start event).  After the timed loop the
// case fails (SkipWithError) unless every info is 0 and three sampled matrices (first,
// middle, last) pass a residual check against the pristine input: a broken kernel cannot
// post a time.
//
// Inputs: 32 distinct random SPD matrices A = B B^T / n + I (B uniform in [-1, 1], fixed
// seed; eigenvalues in about [1, 2.4]) tiled over the batch, each copy in its own memory.
// They are stored in FULL (both triangles): curvkit reads the lower triangle, and the
// anchors are free to use whichever triangle is faster for them (same data, same bytes).
//
// All CPU backends run on one thread: Debian's Kokkos is Serial, OpenBLAS is forced to one
// thread, Eigen is not parallel here.  The kokkos backend here assumes a host execution space.
#include <algorithm>
#include <cstdio>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "bench_common.hpp"
#include "bench_gpu.hpp"

#if CURVKIT_BENCH_HAVE_EIGEN
#include <Eigen/Cholesky>
#include <Eigen/Core>
#endif
#if CURVKIT_BENCH_HAVE_LAPACKE
#include <cblas.h>
#include <lapacke.h>
// OpenBLAS's own entry point (also in its cblas.h, but not in every cblas.h).
extern "C" void openblas_set_num_threads(int num_threads);
#endif
#if CURVKIT_HAVE_CUDA
#include <cusolverDn.h>
#endif

namespace curvkit::bench {
namespace {

enum class Op { posv, potrf, potri, potrs };
enum class Impl { kokkos, reference, lapacke, eigen, cuda, cusolver };

const char* op_name(Op op) {
  switch (op) {
    case Op::posv:
      return "posv";
    case Op::potrf:
      return "potrf";
    case Op::potri:
      return "potri";
    case Op::potrs:
      return "potrs";
  }
  return "?";
}

const char* impl_name(Impl impl) {
  switch (impl) {
    case Impl::kokkos:
      return "kokkos";
    case Impl::reference:
      return "reference";
    case Impl::lapacke:
      return "lapacke";
    case Impl::eigen:
      return "eigen";
    case Impl::cuda:
      return "cuda";
    case Impl::cusolver:
      return "cusolver";
  }
  return "?";
}

struct Case {
  Op op;
  Impl impl;
  int n;
  index_t batch;
  int nrhs;  // posv: 1; potrs: 1 or 16; potrf, potri: 0
};

double flops_per_matrix(Op op, double n, double nrhs) {
  const double potrf = n * n * n / 3 + n * n / 2 + n / 6;
  switch (op) {
    case Op::potrf:
      return potrf;
    case Op::potrs:
      return 2 * n * n * nrhs;
    case Op::posv:
      return potrf + 2 * n * n * nrhs;
    case Op::potri:
      return n * n * n + n * n / 2 + n / 6;
  }
  return 0;
}

double bytes_per_matrix(Op op, double n, double nrhs, double s) {
  switch (op) {
    case Op::potrf:
    case Op::potri:
      return 2 * n * n * s;
    case Op::posv:
      return (2 * n * n + 2 * n * nrhs) * s;
    case Op::potrs:
      return (n * n + 2 * n * nrhs) * s;
  }
  return 0;
}

bool has_rhs(Op op) {
  return op == Op::posv || op == Op::potrs;
}

// ---- inputs ----------------------------------------------------------------------------------

constexpr int kDistinct = 32;  // distinct matrices, tiled over the batch
constexpr int kMaxRhs = 16;

template <class T>
struct Inputs {
  int n = 0;
  std::vector<T> a;    // kDistinct full symmetric n x n matrices, row-major
  std::vector<T> l;    // their Cholesky factors, L in the lower and L^T in the upper triangle,
                       // so lower-row-major and lower-column-major readers see the same L
  std::vector<T> rhs;  // kDistinct n x kMaxRhs right-hand sides, row-major
};

template <class T>
Inputs<T> make_inputs(int n) {
  Inputs<T> in;
  in.n = n;
  const std::size_t nn = static_cast<std::size_t>(n) * n;
  in.a.resize(kDistinct * nn);
  in.l.resize(kDistinct * nn);
  in.rhs.resize(static_cast<std::size_t>(kDistinct) * n * kMaxRhs);
  std::mt19937_64 rng(0x5eed0000u + static_cast<unsigned>(n));
  std::uniform_real_distribution<double> uni(-1.0, 1.0);
  std::vector<double> bm(nn), l(nn);
  for (int m = 0; m < kDistinct; ++m) {
    for (auto& x : bm) x = uni(rng);
    T* a = in.a.data() + m * nn;
    for (int i = 0; i < n; ++i)
      for (int j = 0; j <= i; ++j) {
        double s = 0;
#pragma omp simd reduction(+ : s)
        for (int k = 0; k < n; ++k) s += bm[i * n + k] * bm[j * n + k];
        const T v = static_cast<T>(s / n + (i == j ? 1.0 : 0.0));
        a[i * n + j] = v;
        a[j * n + i] = v;
      }
    // Factor of the T-valued matrix, in double (setup only; plain loops).
    for (int j = 0; j < n; ++j) {
      double d = a[j * n + j];
      for (int k = 0; k < j; ++k) d -= l[j * n + k] * l[j * n + k];
      l[j * n + j] = std::sqrt(d);
      for (int i = j + 1; i < n; ++i) {
        double s = a[i * n + j];
        for (int k = 0; k < j; ++k) s -= l[i * n + k] * l[j * n + k];
        l[i * n + j] = s / l[j * n + j];
      }
    }
    T* lt = in.l.data() + m * nn;
    for (int i = 0; i < n; ++i)
      for (int j = 0; j <= i; ++j) {
        lt[i * n + j] = static_cast<T>(l[i * n + j]);
        lt[j * n + i] = static_cast<T>(l[i * n + j]);
      }
  }
  for (auto& x : in.rhs) x = static_cast<T>(uni(rng));
  return in;
}

// Cases are registered grouped by n, so one cached entry per scalar suffices.
template <class T>
const Inputs<T>& inputs(int n) {
  static Inputs<T> cache;
  if (cache.n != n) cache = make_inputs<T>(n);
  return cache;
}

// Tiles the distinct inputs over a batch: matrices (A or L) into `a`, right-hand sides
// (n x nrhs, row-major) into `b` when nrhs > 0.
template <class T>
void fill_batch(const Inputs<T>& in, Op op, index_t batch, int nrhs, T* a, T* b) {
  const index_t n = in.n, nn = n * n;
  const T* src = op == Op::potrs ? in.l.data() : in.a.data();
  for (index_t k = 0; k < batch; ++k)
    std::memcpy(a + k * nn, src + (k % kDistinct) * nn, nn * sizeof(T));
  if (nrhs == 0 || b == nullptr) return;
  for (index_t k = 0; k < batch; ++k) {
    const T* r = in.rhs.data() + (k % kDistinct) * n * kMaxRhs;
    for (index_t i = 0; i < n; ++i)
      for (index_t c = 0; c < nrhs; ++c) b[(k * n + i) * nrhs + c] = r[i * kMaxRhs + c];
  }
}

// ---- checks ----------------------------------------------------------------------------------

/// Residual check of matrix k of a finished case.  `a` / `b` point at that matrix's outputs.
/// factor_upper: the factor was written to the upper triangle (column-major-lower anchors).
/// Returns "" if it passes.  Tolerances: 50 n eps on normwise backward errors (kappa <= 2.4).
template <class T>
std::string verify(const Inputs<T>& in, Op op, index_t k, int nrhs, const T* a, const T* b,
                   bool factor_upper) {
  const int n = in.n;
  const std::size_t nn = static_cast<std::size_t>(n) * n;
  const T* a0 = in.a.data() + (k % kDistinct) * nn;
  const T* l0 = in.l.data() + (k % kDistinct) * nn;
  const T* r0 = in.rhs.data() + (k % kDistinct) * n * kMaxRhs;
  const double tol = 50.0 * n * std::numeric_limits<T>::epsilon();
  char msg[160];
  double err = 0;
  if (op == Op::potrf) {
    auto lij = [&](int i, int j) -> double { return factor_upper ? a[j * n + i] : a[i * n + j]; };
    double amax = 0;
    for (int i = 0; i < n; ++i)
      for (int j = 0; j <= i; ++j) {
        double s = 0;
        for (int p = 0; p <= j; ++p) s += lij(i, p) * lij(j, p);
        err = std::max(err, std::abs(s - a0[i * n + j]));
        amax = std::max(amax, std::abs(static_cast<double>(a0[i * n + j])));
      }
    err /= amax;
  } else if (op == Op::potri) {
    for (int i = 0; i < n; ++i)
      for (int j = 0; j < n; ++j) {
        double s = 0;
        for (int p = 0; p < n; ++p) s += static_cast<double>(a0[i * n + p]) * a[p * n + j];
        err = std::max(err, std::abs(s - (i == j ? 1.0 : 0.0)));
      }
    err /= 2.4;  // ||A X - I|| <= kappa * backward error
  } else {       // posv, potrs: || M x - rhs ||_inf / (||M||_inf ||x||_inf + ||rhs||_inf)
    std::vector<double> m(nn);
    for (int i = 0; i < n; ++i)
      for (int j = 0; j < n; ++j) {
        if (op == Op::posv) {
          m[i * n + j] = a0[i * n + j];
        } else {
          double s = 0;
          for (int p = 0; p <= std::min(i, j); ++p)
            s += static_cast<double>(l0[i * n + p]) * l0[j * n + p];
          m[i * n + j] = s;
        }
      }
    double mnorm = 0;
    for (int i = 0; i < n; ++i) {
      double s = 0;
      for (int j = 0; j < n; ++j) s += std::abs(m[i * n + j]);
      mnorm = std::max(mnorm, s);
    }
    for (int c = 0; c < nrhs; ++c) {
      double rmax = 0, xmax = 0, bmax = 0;
      for (int i = 0; i < n; ++i) {
        double s = 0;
        for (int j = 0; j < n; ++j) s += m[i * n + j] * b[j * nrhs + c];
        rmax = std::max(rmax, std::abs(s - r0[i * kMaxRhs + c]));
        xmax = std::max(xmax, std::abs(static_cast<double>(b[i * nrhs + c])));
        bmax = std::max(bmax, std::abs(static_cast<double>(r0[i * kMaxRhs + c])));
      }
      err = std::max(err, rmax / (mnorm * xmax + bmax));
    }
  }
  if (err <= tol) return {};  // also false for NaN
  std::snprintf(msg, sizeof msg, "wrong result: matrix %lld residual %.3g > tolerance %.3g",
                static_cast<long long>(k), err, tol);
  return msg;
}

std::string check_info(const std::vector<int>& info) {
  index_t bad = 0, first = -1;
  for (std::size_t k = 0; k < info.size(); ++k)
    if (info[k] != 0) {
      if (first < 0) first = static_cast<index_t>(k);
      ++bad;
    }
  if (bad == 0) return {};
  return "info != 0 for " + std::to_string(bad) + " matrices (first: matrix " +
         std::to_string(first) + ", info " + std::to_string(info[first]) + ")";
}

void set_case_counters(benchmark::State& st, const Case& c, double scalar_bytes) {
  const double b = static_cast<double>(c.batch);
  set_rate_counters(st, b * flops_per_matrix(c.op, c.n, c.nrhs),
                    b * bytes_per_matrix(c.op, c.n, c.nrhs, scalar_bytes));
}

// ---- anchors: LAPACKE (OpenBLAS) ---------------------------------------------------------------
#if CURVKIT_BENCH_HAVE_LAPACKE
// The inputs are full symmetric row-major matrices, i.e. the same bytes as their column-major
// transposes.  We call LAPACKE with LAPACK_COL_MAJOR on the caller's buffer, which avoids the
// transposition copies (and allocations) LAPACKE makes for LAPACK_ROW_MAJOR, and with 'L':
// OpenBLAS 0.3.21 factors in lower mode ~20% faster than in upper mode on this machine
// (n = 4..256; row-major 'L' is 1.1-2x slower still).  The factor then sits in the row-major
// upper triangle, which is where potrs / potri read it.
lapack_int lapack_potrf(int n, float* a) {
  return LAPACKE_spotrf_work(LAPACK_COL_MAJOR, 'L', n, a, n);
}
lapack_int lapack_potrf(int n, double* a) {
  return LAPACKE_dpotrf_work(LAPACK_COL_MAJOR, 'L', n, a, n);
}
lapack_int lapack_potrs1(int n, const float* l, float* b) {
  return LAPACKE_spotrs_work(LAPACK_COL_MAJOR, 'L', n, 1, l, n, b, n);
}
lapack_int lapack_potrs1(int n, const double* l, double* b) {
  return LAPACKE_dpotrs_work(LAPACK_COL_MAJOR, 'L', n, 1, l, n, b, n);
}
lapack_int lapack_potri(int n, float* a) {
  return LAPACKE_spotri_work(LAPACK_COL_MAJOR, 'L', n, a, n);
}
lapack_int lapack_potri(int n, double* a) {
  return LAPACKE_dpotri_work(LAPACK_COL_MAJOR, 'L', n, a, n);
}
// Several right-hand sides in row-major n x nrhs storage: a column-major potrs would need
// transposed copies of B, so call the two triangular solves potrs is made of through CBLAS's
// row-major interface (no copies): L Y = B, then L^T X = Y.
void cblas_potrs(int n, int nrhs, const float* l, float* b) {
  cblas_strsm(CblasRowMajor, CblasLeft, CblasLower, CblasNoTrans, CblasNonUnit, n, nrhs, 1.0f, l, n,
              b, nrhs);
  cblas_strsm(CblasRowMajor, CblasLeft, CblasLower, CblasTrans, CblasNonUnit, n, nrhs, 1.0f, l, n,
              b, nrhs);
}
void cblas_potrs(int n, int nrhs, const double* l, double* b) {
  cblas_dtrsm(CblasRowMajor, CblasLeft, CblasLower, CblasNoTrans, CblasNonUnit, n, nrhs, 1.0, l, n,
              b, nrhs);
  cblas_dtrsm(CblasRowMajor, CblasLeft, CblasLower, CblasTrans, CblasNonUnit, n, nrhs, 1.0, l, n, b,
              nrhs);
}

template <class T>
void lapacke_batch(const Case& c, T* a, T* b, int* info) {
  const int n = c.n;
  const index_t nn = index_t{n} * n;
  for (index_t k = 0; k < c.batch; ++k) {
    T* ak = a + k * nn;
    T* bk = b ? b + k * n * c.nrhs : nullptr;
    lapack_int i = 0;
    switch (c.op) {
      case Op::potrf:
        i = lapack_potrf(n, ak);
        break;
      case Op::posv:
        i = lapack_potrf(n, ak);
        if (i == 0) i = lapack_potrs1(n, ak, bk);
        break;
      case Op::potrs:
        if (c.nrhs == 1)
          i = lapack_potrs1(n, ak, bk);
        else
          cblas_potrs(n, c.nrhs, ak, bk);
        break;
      case Op::potri:
        i = lapack_potrf(n, ak);
        if (i == 0) i = lapack_potri(n, ak);
        // ?potri writes one triangle; curvkit's potri writes the full inverse: mirror it.
        for (int r = 1; r < n; ++r)
          for (int s = 0; s < r; ++s) ak[r * n + s] = ak[s * n + r];
        break;
    }
    info[k] = static_cast<int>(i);
  }
}
#endif

// ---- anchors: Eigen ----------------------------------------------------------------------------
#if CURVKIT_BENCH_HAVE_EIGEN
// N > 0: fixed-size types (n = 4, 8, 16); the matrix is factored in an LLT<Matrix> held on the
// stack and L is written back to A's lower triangle (curvkit's output).  N = Dynamic: LLT on
// an Eigen::Ref of the mapped matrix, i.e. Eigen's in-place decomposition (no allocation).
template <class T, int N>
void eigen_batch(const Case& c, T* a, T* b, int* info) {
  using Mat = Eigen::Matrix<T, N, N, Eigen::RowMajor>;
  using Vec = Eigen::Matrix<T, N, 1>;
  const int n = c.n;
  const index_t nn = index_t{n} * n;
  Mat tmp(n, n);
  for (index_t k = 0; k < c.batch; ++k) {
    Eigen::Map<Mat> A(a + k * nn, n, n);
    if constexpr (N != Eigen::Dynamic) {
      Eigen::LLT<Mat> llt(A);
      info[k] = llt.info() == Eigen::Success ? 0 : 1;
      if (c.op == Op::posv) {
        Eigen::Map<Vec> x(b + k * n, n);
        llt.solveInPlace(x);
      }
      if (c.op == Op::potri) {
        A = llt.solve(Mat::Identity());
      } else {
        A.template triangularView<Eigen::Lower>() = llt.matrixL();
      }
    } else {
      Eigen::LLT<Eigen::Ref<Mat>> llt(A);  // factors in place: L in A's lower triangle
      info[k] = llt.info() == Eigen::Success ? 0 : 1;
      if (c.op == Op::posv) {
        Eigen::Map<Vec> x(b + k * n, n);
        llt.solveInPlace(x);
      }
      if (c.op == Op::potri) {
        tmp.setIdentity();
        llt.solveInPlace(tmp);
        A = tmp;
      }
    }
  }
}

template <class T>
void eigen_dispatch(const Case& c, T* a, T* b, int* info) {
  switch (c.n) {
    case 4:
      return eigen_batch<T, 4>(c, a, b, info);
    case 8:
      return eigen_batch<T, 8>(c, a, b, info);
    case 16:
      return eigen_batch<T, 16>(c, a, b, info);
    default:
      return eigen_batch<T, Eigen::Dynamic>(c, a, b, info);
  }
}
#endif

// ---- host cases --------------------------------------------------------------------------------

template <class T>
Status curvkit_call(const Context& ctx, const Case& c, T* a, T* b, int* info) {
  const auto av = make_batch(a, c.batch, c.n, c.n);
  const auto bv = make_batch(b, c.batch, c.n, std::max(c.nrhs, 1));
  Status s;
  switch (c.op) {
    case Op::potrf:
      s = curvkit::potrf<T>(ctx, av, info);
      break;
    case Op::posv:
      s = curvkit::posv<T>(ctx, av, bv, info);
      break;
    case Op::potrs:
      s = curvkit::potrs<T>(ctx, av, bv, info);
      break;
    case Op::potri:
      s = curvkit::potri<T>(ctx, av, info);
      break;
  }
  if (!s.ok()) return s;
  return curvkit::synchronize(ctx);  // part of the timed work on asynchronous backends
}

template <class T>
void host_case(benchmark::State& st, Case c) {
  const Inputs<T>& in = inputs<T>(c.n);
  const std::size_t nn = static_cast<std::size_t>(c.n) * c.n;
  HostBuffer<T> a(c.batch * nn), a0(c.batch * nn), b, b0;
  if (has_rhs(c.op)) {
    b = HostBuffer<T>(c.batch * c.n * c.nrhs);
    b0 = HostBuffer<T>(c.batch * c.n * c.nrhs);
  }
  fill_batch(in, c.op, c.batch, c.nrhs, a0.data(), b0.data());
  a.copy_from(a0);
  b.copy_from(b0);
  std::vector<int> info(c.batch, -1);

  for (auto _ : st) {
    st.PauseTiming();
    if (c.op != Op::potrs) a.copy_from(a0);  // potrs only reads its factor
    b.copy_from(b0);
    evict_host_caches();
    st.ResumeTiming();
    switch (c.impl) {
      case Impl::kokkos:
      case Impl::reference: {
        const Context ctx = c.impl == Impl::kokkos ? Context::kokkos() : Context::reference();
        if (Status s = curvkit_call<T>(ctx, c, a.data(), b.data(), info.data()); !s.ok()) {
          st.SkipWithError(s.to_string().c_str());
          return;
        }
        break;
      }
#if CURVKIT_BENCH_HAVE_LAPACKE
      case Impl::lapacke:
        lapacke_batch<T>(c, a.data(), b.data(), info.data());
        break;
#endif
#if CURVKIT_BENCH_HAVE_EIGEN
      case Impl::eigen:
        eigen_dispatch<T>(c, a.data(), b.data(), info.data());
        break;
#endif
      default:
        st.SkipWithError("backend not compiled into this benchmark");
        return;
    }
  }

  if (std::string e = check_info(info); !e.empty()) {
    st.SkipWithError(e.c_str());
    return;
  }
  const bool factor_upper = c.impl == Impl::lapacke;
  for (index_t k : {index_t{0}, c.batch / 2, c.batch - 1}) {
    const std::string e = verify(in, c.op, k, c.nrhs, a.data() + k * nn,
                                 b.data() ? b.data() + k * c.n * c.nrhs : nullptr, factor_upper);
    if (!e.empty()) {
      st.SkipWithError(e.c_str());
      return;
    }
  }
  set_case_counters(st, c, sizeof(T));
}

// ---- GPU cases ---------------------------------------------------------------------------------
#if CURVKIT_HAVE_CUDA
// cuSOLVER is column-major: our row-major lower triangle is its upper triangle.  The inputs
// are full symmetric, so either fill mode sees the same matrix; we use CUBLAS_FILL_MODE_LOWER
// because cuSOLVER's lower path is the faster one (anchors-performance.md §1a, MLX PR 4208).
// The factor then lands in the row-major upper triangle.  cusolverDn<t>potrsBatched supports
// only nrhs = 1, which is what posv uses here.
cusolverStatus_t cusolver_potrf(cusolverDnHandle_t h, int n, float** a, int* info, int batch) {
  return cusolverDnSpotrfBatched(h, CUBLAS_FILL_MODE_LOWER, n, a, n, info, batch);
}
cusolverStatus_t cusolver_potrf(cusolverDnHandle_t h, int n, double** a, int* info, int batch) {
  return cusolverDnDpotrfBatched(h, CUBLAS_FILL_MODE_LOWER, n, a, n, info, batch);
}
cusolverStatus_t cusolver_potrs(cusolverDnHandle_t h, int n, float** a, float** b, int* info,
                                int batch) {
  return cusolverDnSpotrsBatched(h, CUBLAS_FILL_MODE_LOWER, n, 1, a, n, b, n, info, batch);
}
cusolverStatus_t cusolver_potrs(cusolverDnHandle_t h, int n, double** a, double** b, int* info,
                                int batch) {
  return cusolverDnDpotrsBatched(h, CUBLAS_FILL_MODE_LOWER, n, 1, a, n, b, n, info, batch);
}

template <class T>
void device_case(benchmark::State& st, Case c) {
  if (!have_cuda_device()) {
    st.SkipWithError("no CUDA device");
    return;
  }
  const Inputs<T>& in = inputs<T>(c.n);
  const std::size_t nn = static_cast<std::size_t>(c.n) * c.n;
  const std::size_t nb = has_rhs(c.op) ? c.batch * c.n * c.nrhs : 0;
  std::vector<T> ha(c.batch * nn), hb(nb);
  fill_batch(in, c.op, c.batch, c.nrhs, ha.data(), nb ? hb.data() : nullptr);
  DeviceBuffer<T> a(ha.size()), a0(ha.size()), b(nb), b0(nb);
  DeviceBuffer<int> info(c.batch), info_rs(1);
  Gpu gpu;  // the stream, its cuSOLVER handle and the timing events
  if (!a.ok() || !a0.ok() || !b.ok() || !b0.ok() || !info.ok() || !info_rs.ok() || !gpu.ready()) {
    st.SkipWithError("cudaMalloc / stream creation failed");
    return;
  }
  cudaMemcpy(a0.data(), ha.data(), a0.bytes(), cudaMemcpyHostToDevice);
  if (nb) cudaMemcpy(b0.data(), hb.data(), b0.bytes(), cudaMemcpyHostToDevice);
  cudaMemset(info.data(), 0xff, info.bytes());  // -1: an info never written fails the check

  // cuSOLVER's pointer arrays, built once outside the timed region.
  DeviceBuffer<T*> aptr(c.impl == Impl::cusolver ? c.batch : 0);
  DeviceBuffer<T*> bptr(c.impl == Impl::cusolver && nb ? c.batch : 0);
  if (c.impl == Impl::cusolver &&
      !(pointer_array(gpu, aptr, a.data(), index_t(nn), c.batch) &&
        (!nb || pointer_array(gpu, bptr, b.data(), c.n * c.nrhs, c.batch)))) {
    st.SkipWithError(gpu.error());
    return;
  }
  if (cudaError_t e = cudaDeviceSynchronize(); e != cudaSuccess) {
    st.SkipWithError(cudaGetErrorString(e));
    return;
  }
  const Context ctx = Context::cuda(gpu.stream());
  const int ibatch = static_cast<int>(c.batch);

  // One call of the tool; false (the failure recorded in gpu) if it fails.
  auto call = [&]() -> bool {
    if (c.impl == Impl::cuda) {
      const auto av = make_batch(a.data(), c.batch, c.n, c.n);
      const auto bv = make_batch(b.data(), c.batch, c.n, std::max(c.nrhs, 1));
      Status s;
      switch (c.op) {
        case Op::potrf:
          s = curvkit::potrf<T>(ctx, av, info.data());
          break;
        case Op::posv:
          s = curvkit::posv<T>(ctx, av, bv, info.data());
          break;
        case Op::potrs:
          s = curvkit::potrs<T>(ctx, av, bv, info.data());
          break;
        case Op::potri:
          s = curvkit::potri<T>(ctx, av, info.data());
          break;
      }
      return gpu.ok(s, op_name(c.op));
    }
    cusolverStatus_t s = cusolver_potrf(gpu.solver(), c.n, aptr.data(), info.data(), ibatch);
    if (s == CUSOLVER_STATUS_SUCCESS && c.op == Op::posv)
      s = cusolver_potrs(gpu.solver(), c.n, aptr.data(), bptr.data(), info_rs.data(), ibatch);
    return gpu.ok(s, "cuSOLVER");
  };
  // device_loop's untimed first call takes the lazy loading of the kernels and cuSOLVER's
  // set-up (tens of ms, which a one-iteration run would report) out of the timings.
  const bool ran = device_loop(
      st, gpu,
      [&] {
        gpu.copy(a.data(), a0.data(), a.size());
        if (nb) gpu.copy(b.data(), b0.data(), b.size());
      },
      [&] { return gpu.time(call); });
  if (!ran) return;

  std::vector<int> hinfo(c.batch);
  if (cudaMemcpy(hinfo.data(), info.data(), info.bytes(), cudaMemcpyDeviceToHost) != cudaSuccess) {
    st.SkipWithError("copying info back failed");
    return;
  }
  if (std::string e = check_info(hinfo); !e.empty()) {
    st.SkipWithError(e.c_str());
    return;
  }
  std::vector<T> ma(nn), mb(c.n * std::max(c.nrhs, 1));
  for (index_t k : {index_t{0}, c.batch / 2, c.batch - 1}) {
    cudaMemcpy(ma.data(), a.data() + k * nn, nn * sizeof(T), cudaMemcpyDeviceToHost);
    if (nb)
      cudaMemcpy(mb.data(), b.data() + k * c.n * c.nrhs, mb.size() * sizeof(T),
                 cudaMemcpyDeviceToHost);
    const std::string e =
        verify(in, c.op, k, c.nrhs, ma.data(), mb.data(), c.impl == Impl::cusolver);
    if (!e.empty()) {
      st.SkipWithError(e.c_str());
      return;
    }
  }
  set_case_counters(st, c, sizeof(T));
}
#endif

// ---- registration ------------------------------------------------------------------------------

// The reference backend (long-double loops, the oracle) runs this fraction of the batch.
constexpr index_t kReferenceDivisor = 16;

std::string case_name(const Case& c, const char* scalar) {
  std::string s = std::string(op_name(c.op)) + "/" + impl_name(c.impl) + "/" + scalar +
                  "/n:" + std::to_string(c.n) + "/batch:" + std::to_string(c.batch);
  if (c.op == Op::potrs) s += "/nrhs:" + std::to_string(c.nrhs);
  return s;
}

template <class T>
void add_case(const Case& c) {
  const std::string name = case_name(c, scalar_name<T>());
  if (c.impl == Impl::cuda || c.impl == Impl::cusolver) {
#if CURVKIT_HAVE_CUDA
    add_gpu(name, [c](benchmark::State& st) { device_case<T>(st, c); });
#endif
    return;
  }
  benchmark::RegisterBenchmark(name.c_str(), [c](benchmark::State& st) { host_case<T>(st, c); })
      ->Unit(benchmark::kMillisecond)
      ->UseRealTime();
}

template <class T>
void register_scalar() {
  for (int n : {4, 8, 16, 32, 64, 128, 256}) {
    for (Op op : {Op::posv, Op::potrf, Op::potri}) {
      const int nrhs = op == Op::posv ? 1 : 0;
      const double bytes = bytes_per_matrix(op, n, nrhs, sizeof(T));
      const index_t batch = batch_for_bytes(bytes);
      if (CURVKIT_HAVE_KOKKOS) add_case<T>({op, Impl::kokkos, n, batch, nrhs});
      if (n <= 32)
        add_case<T>(
            {op, Impl::reference, n, std::max<index_t>(1, batch / kReferenceDivisor), nrhs});
      if (CURVKIT_BENCH_HAVE_LAPACKE) add_case<T>({op, Impl::lapacke, n, batch, nrhs});
      if (CURVKIT_BENCH_HAVE_EIGEN) add_case<T>({op, Impl::eigen, n, batch, nrhs});
      if (CURVKIT_HAVE_CUDA) {
        const index_t gbatch = batch_for_bytes(bytes, kDeviceMinBytes);
        add_case<T>({op, Impl::cuda, n, gbatch, nrhs});
        if (op != Op::potri) add_case<T>({op, Impl::cusolver, n, gbatch, nrhs});
      }
    }
  }
}

template <class T>
void register_potrs() {
  for (int n : {16, 64})
    for (int nrhs : {1, 16}) {
      const index_t batch = batch_for_bytes(bytes_per_matrix(Op::potrs, n, nrhs, sizeof(T)));
      if (CURVKIT_HAVE_KOKKOS) add_case<T>({Op::potrs, Impl::kokkos, n, batch, nrhs});
      if (CURVKIT_BENCH_HAVE_LAPACKE) add_case<T>({Op::potrs, Impl::lapacke, n, batch, nrhs});
    }
}

void register_spd() {
#if CURVKIT_BENCH_HAVE_LAPACKE
  openblas_set_num_threads(1);  // single-threaded anchor, like Kokkos Serial
#endif
  register_scalar<float>();
  register_scalar<double>();
  register_potrs<float>();
  register_potrs<double>();
}

}  // namespace
}  // namespace curvkit::bench

int main(int argc, char** argv) {
  return curvkit::bench::run_main(argc, argv, curvkit::bench::register_spd);
}
