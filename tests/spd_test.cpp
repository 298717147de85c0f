// SPD family tests: every compiled backend against the reference on fresh random SPD inputs
// of controlled condition number, plus the identities L L^T = A, A X = B, A A^{-1} = I (which
// also check the reference itself), the failure policies and the argument checks.
//
// Tolerances are derived, not tuned:
//   forward error vs reference (factor, solution, inverse):  c n kappa eps(T)
//   backward identities (L L^T = A, A X = B):                 c n eps(T)
//   A A^{-1} = I:                                              c n kappa eps(T)
// with c = 8 and kappa the 2-norm condition number the input was built with.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "curvkit/curvkit.hpp"
#include "spd_inputs.hpp"
#include "test_memory.hpp"

namespace curvkit::test {
namespace {

enum class Op { potrf, potrs, posv, potri };
const char* op_name(Op op) {
  switch (op) {
    case Op::potrf:
      return "potrf";
    case Op::potrs:
      return "potrs";
    case Op::posv:
      return "posv";
    case Op::potri:
      return "potri";
  }
  return "?";
}

template <class T>
double eps() {
  return std::numeric_limits<T>::epsilon();
}

std::mt19937_64 fresh_rng(std::uint64_t* seed_out) {
  *seed_out = (std::uint64_t(std::random_device{}()) << 32) ^ std::random_device{}();
  return std::mt19937_64(*seed_out);
}

// One uniform batch: A (lower triangle of random SPD, upper triangle and padding NaN), B.
template <class T>
struct Problem {
  Layout la, lb;
  std::vector<T> a, b;
  double cond = 1;
};

template <class T>
Problem<T> make_problem(index_t n, index_t batch, index_t nrhs, double cond, std::mt19937_64& rng,
                        index_t ld_pad = 0, index_t stride_pad = 0) {
  Problem<T> p;
  p.cond = cond;
  p.la = Layout::make(batch, n, n, ld_pad, stride_pad);
  p.lb = Layout::make(batch, n, nrhs, ld_pad, stride_pad);
  p.a = poisoned<T>(p.la);
  p.b = poisoned<T>(p.lb);
  std::normal_distribution<double> g;
  for (index_t m = 0; m < batch; ++m) {
    const auto full = random_spd(n, cond, rng);
    for (index_t i = 0; i < n; ++i)
      for (index_t j = 0; j <= i; ++j) p.a[p.la.at(m, i, j)] = static_cast<T>(full[i * n + j]);
    for (index_t i = 0; i < n; ++i)
      for (index_t c = 0; c < nrhs; ++c) p.b[p.lb.at(m, i, c)] = static_cast<T>(g(rng));
  }
  return p;
}

// Symmetric matrix m of a batch from its lower triangle, plus lambda on the diagonal.
template <class T>
std::vector<double> symmetric(const std::vector<T>& a, const Layout& l, index_t m, double lambda) {
  const index_t n = l.rows;
  std::vector<double> s(static_cast<std::size_t>(n * n));
  for (index_t i = 0; i < n; ++i)
    for (index_t j = 0; j <= i; ++j) s[i * n + j] = s[j * n + i] = double(a[l.at(m, i, j)]);
  for (index_t i = 0; i < n; ++i) s[i * n + i] += lambda;
  return s;
}

template <class T>
struct RunResult {
  Status status;
  std::vector<T> a, b, shift;
  std::vector<int> info;
};

// Runs `op` on `backend` over copies of the problem's buffers.
template <class T>
RunResult<T> run(Backend backend, Op op, const Problem<T>& p, const SpdOptions& o,
                 bool with_shift = true) {
  Buffer<T> a(backend, p.a), b(backend, p.b);
  Buffer<int> info(backend, std::vector<int>(std::max<index_t>(p.la.batch, 1), -777));
  Buffer<T> shift(backend, std::vector<T>(std::max<index_t>(p.la.batch, 1), T(-1)));
  const Context ctx = context_for(backend);
  const auto va = p.la.view(a.data());
  const auto vb = p.lb.view(b.data());
  T* sh = with_shift ? shift.data() : nullptr;
  RunResult<T> r;
  switch (op) {
    case Op::potrf:
      r.status = potrf(ctx, va, info.data(), o, sh);
      break;
    case Op::potrs:
      r.status = potrs(ctx, MatrixBatch<const T>(va), vb, info.data());
      break;
    case Op::posv:
      r.status = posv(ctx, va, vb, info.data(), o, sh);
      break;
    case Op::potri:
      r.status = potri(ctx, va, info.data(), o, sh);
      break;
  }
  EXPECT_TRUE(synchronize(ctx).ok());
  r.a = a.download();
  r.b = b.download();
  r.info = info.download();
  r.info.resize(p.la.batch);
  r.shift = shift.download();
  r.shift.resize(p.la.batch);
  return r;
}

// Which elements an op writes: the lower triangle of A (potrf, posv), all of A (potri), B.
bool writes_a(Op op, index_t i, index_t j) {
  if (op == Op::potrs) return false;
  return op == Op::potri || j <= i;
}

// Max over matrices (that succeeded) of ||x - y||_F / ||y||_F over the elements selected.
template <class T, class Pred>
double max_rel_err(const std::vector<T>& x, const std::vector<T>& y, const Layout& l,
                   const std::vector<int>& info, Pred selected) {
  double worst = 0;
  for (index_t m = 0; m < l.batch; ++m) {
    if (info[m] != 0) continue;
    double num = 0, den = 0;
    for (index_t i = 0; i < l.rows; ++i)
      for (index_t j = 0; j < l.cols; ++j) {
        if (!selected(i, j)) continue;
        const double d = double(x[l.at(m, i, j)]) - double(y[l.at(m, i, j)]);
        num += d * d;
        den += double(y[l.at(m, i, j)]) * double(y[l.at(m, i, j)]);
      }
    worst = std::max(worst, den > 0 ? std::sqrt(num / den) : std::sqrt(num));
    if (std::isnan(num)) return std::numeric_limits<double>::infinity();
  }
  return worst;
}

// Every element outside what the op writes must still be the NaN poison, and every output
// of a failed matrix must be NaN.
template <class T>
void expect_memory_contract(Op op, const Problem<T>& p, const RunResult<T>& r) {
  for (index_t m = 0; m < p.la.batch; ++m) {
    for (std::size_t e = m * p.la.stride; e < std::size_t((m + 1) * p.la.stride); ++e) {
      const index_t off = index_t(e) - m * p.la.stride;
      const index_t i = off / p.la.ld, j = off % p.la.ld;
      const bool inside = i < p.la.rows && j < p.la.cols;
      if (!inside || !writes_a(op, i, j)) {
        ASSERT_EQ(std::isnan(double(r.a[e])), std::isnan(double(p.a[e])))
            << op_name(op) << ": A element (" << m << "," << i << "," << j << ") changed";
        if (!std::isnan(double(p.a[e]))) {
          ASSERT_EQ(r.a[e], p.a[e]);
        }
      } else if (r.info[m] != 0) {
        ASSERT_TRUE(std::isnan(double(r.a[e]))) << "failed matrix " << m << " has a non-NaN output";
      }
    }
    for (std::size_t e = m * p.lb.stride; e < std::size_t((m + 1) * p.lb.stride); ++e) {
      const index_t off = index_t(e) - m * p.lb.stride;
      const bool inside = off / p.lb.ld < p.lb.rows && off % p.lb.ld < p.lb.cols;
      const bool written = inside && (op == Op::posv || op == Op::potrs);
      if (!written) {
        ASSERT_EQ(std::isnan(double(r.b[e])), std::isnan(double(p.b[e]))) << "B padding changed";
      } else if (r.info[m] != 0) {
        ASSERT_TRUE(std::isnan(double(r.b[e])))
            << "failed matrix " << m << " has a non-NaN solution";
      }
    }
  }
}

// ||L L^T - (A + lambda I)||_F / ||A + lambda I||_F for every matrix.
template <class T>
double factor_residual(const Problem<T>& p, const std::vector<T>& l, double lambda) {
  const index_t n = p.la.rows;
  double worst = 0;
  for (index_t m = 0; m < p.la.batch; ++m) {
    const auto a = symmetric(p.a, p.la, m, lambda);
    double num = 0, den = 0;
    for (index_t i = 0; i < n; ++i)
      for (index_t j = 0; j <= i; ++j) {
        double s = 0;
        for (index_t k = 0; k <= j; ++k)
          s += double(l[p.la.at(m, i, k)]) * double(l[p.la.at(m, j, k)]);
        const double w = i == j ? 1 : 2;  // off-diagonal entries count twice in the full matrix
        num += w * (s - a[i * n + j]) * (s - a[i * n + j]);
        den += w * a[i * n + j] * a[i * n + j];
      }
    worst = std::max(worst, std::sqrt(num / den));
  }
  return worst;
}

// ||(A + lambda I) X - B||_F / (||A + lambda I||_F ||X||_F) for every matrix.
template <class T>
double solve_residual(const Problem<T>& p, const std::vector<T>& x, double lambda) {
  const index_t n = p.la.rows, k = p.lb.cols;
  double worst = 0;
  for (index_t m = 0; m < p.la.batch; ++m) {
    const auto a = symmetric(p.a, p.la, m, lambda);
    double num = 0, na = 0, nx = 0;
    for (double v : a) na += v * v;
    for (index_t i = 0; i < n; ++i)
      for (index_t c = 0; c < k; ++c) {
        double s = 0;
        for (index_t j = 0; j < n; ++j) s += a[i * n + j] * double(x[p.lb.at(m, j, c)]);
        const double r = s - double(p.b[p.lb.at(m, i, c)]);
        num += r * r;
        nx += double(x[p.lb.at(m, i, c)]) * double(x[p.lb.at(m, i, c)]);
      }
    if (nx > 0) worst = std::max(worst, std::sqrt(num / (na * nx)));
  }
  return worst;
}

// ||(A + lambda I) A^{-1} - I||_F / sqrt(n) and the symmetry of the written inverse.
template <class T>
double inverse_residual(const Problem<T>& p, const std::vector<T>& inv, double lambda) {
  const index_t n = p.la.rows;
  double worst = 0;
  for (index_t m = 0; m < p.la.batch; ++m) {
    const auto a = symmetric(p.a, p.la, m, lambda);
    double num = 0;
    for (index_t i = 0; i < n; ++i)
      for (index_t j = 0; j < n; ++j) {
        double s = 0;
        for (index_t k = 0; k < n; ++k) s += a[i * n + k] * double(inv[p.la.at(m, k, j)]);
        const double r = s - (i == j ? 1.0 : 0.0);
        num += r * r;
        EXPECT_EQ(inv[p.la.at(m, i, j)], inv[p.la.at(m, j, i)]) << "inverse not symmetric";
      }
    worst = std::max(worst, std::sqrt(num / double(n)));
  }
  return worst;
}

class SpdTest : public ::testing::TestWithParam<Backend> {
 protected:
  void SetUp() override {
    std::string why;
    if (!backend_usable(GetParam(), &why)) GTEST_SKIP() << why;
    rng_ = fresh_rng(&seed_);
  }
  bool is_reference() const { return GetParam() == Backend::reference; }
  std::string trace() const {
    return "seed " + std::to_string(seed_) + ", backend " + to_string(GetParam());
  }

  // Runs op on the backend and on the reference and checks: status, info equality, forward
  // error vs reference, memory contract and the op's identity.
  template <class T>
  void check_op(Op op, const Problem<T>& p, const SpdOptions& o = {}) {
    const index_t n = p.la.rows;
    SCOPED_TRACE(trace() + ", " + op_name(op) + ", n " + std::to_string(n) + ", batch " +
                 std::to_string(p.la.batch) + ", nrhs " + std::to_string(p.lb.cols) + ", " +
                 (sizeof(T) == 4 ? "float" : "double"));
    const RunResult<T> r = run(GetParam(), op, p, o);
    ASSERT_TRUE(r.status.ok()) << r.status.to_string();
    expect_memory_contract(op, p, r);
    const double fwd_tol = 8.0 * double(std::max<index_t>(n, 1)) * p.cond * eps<T>();
    const double bwd_tol = 8.0 * double(std::max<index_t>(n, 1)) * eps<T>();
    if (!is_reference()) {
      const RunResult<T> ref = run(Backend::reference, op, p, o);
      ASSERT_EQ(r.info, ref.info);
      if (op != Op::potrs) {
        EXPECT_LE(max_rel_err(r.a, ref.a, p.la, r.info,
                              [&](index_t i, index_t j) { return writes_a(op, i, j); }),
                  fwd_tol);
      }
      if (op == Op::posv || op == Op::potrs) {
        EXPECT_LE(max_rel_err(r.b, ref.b, p.lb, r.info, [](index_t, index_t) { return true; }),
                  fwd_tol);
      }
    }
    for (int v : r.info) ASSERT_EQ(v, 0) << "well-conditioned SPD input reported as failed";
    for (T s : r.shift) ASSERT_EQ(s, T(0));
    const double lambda = o.diagonal_shift;
    if (op == Op::potrf) {
      EXPECT_LE(factor_residual(p, r.a, lambda), bwd_tol);
    }
    if (op == Op::posv) {
      EXPECT_LE(factor_residual(p, r.a, lambda), bwd_tol);
      EXPECT_LE(solve_residual(p, r.b, lambda), bwd_tol);
    }
    if (op == Op::potri) {
      EXPECT_LE(inverse_residual(p, r.a, lambda), fwd_tol);
    }
  }

  std::mt19937_64 rng_;
  std::uint64_t seed_ = 0;
};

// Orders covering: 1, the unrolled sizes, the row-block boundary (8), non-multiples of any
// tile or warp width, and the larger blocked sizes.
const std::vector<index_t> kOrders = {1,  2,  3,  4,  5,  7,  8,  9,  12, 15,  16,
                                      17, 24, 31, 32, 33, 48, 63, 64, 65, 100, 128};

template <class T>
double cond_for() {
  return sizeof(T) == 4 ? 1e2 : 1e5;
}

TEST_P(SpdTest, PotrfMatchesReferenceAndFactorsA) {
  for (index_t n : kOrders) {
    const index_t batch = n <= 16 ? 37 : (n <= 64 ? 9 : 3);
    check_op(Op::potrf, make_problem<float>(n, batch, 1, cond_for<float>(), rng_));
    check_op(Op::potrf, make_problem<double>(n, batch, 1, cond_for<double>(), rng_));
  }
}

TEST_P(SpdTest, PotrfWithFusedDiagonalShift) {
  SpdOptions o;
  o.diagonal_shift = 0.37;
  for (index_t n : {1, 4, 13, 40}) {
    check_op(Op::potrf, make_problem<float>(n, 11, 1, 1e3, rng_), o);
    check_op(Op::potrf, make_problem<double>(n, 11, 1, 1e8, rng_), o);
  }
}

TEST_P(SpdTest, PosvManyRightHandSides) {
  for (index_t n : kOrders) {
    for (index_t nrhs : {1, 3, 16}) {
      const index_t batch = n <= 16 ? 19 : (n <= 64 ? 5 : 2);
      check_op(Op::posv, make_problem<float>(n, batch, nrhs, cond_for<float>(), rng_));
      check_op(Op::posv, make_problem<double>(n, batch, nrhs, cond_for<double>(), rng_));
    }
  }
  SpdOptions o;
  o.diagonal_shift = 1e-3;
  check_op(Op::posv, make_problem<double>(20, 7, 5, 1e6, rng_), o);
}

// potrs from the reference's factor (so every backend solves the same L).
TEST_P(SpdTest, PotrsFromFactor) {
  auto body = [&](auto zero, index_t n, index_t nrhs) {
    using T = decltype(zero);
    Problem<T> p = make_problem<T>(n, 6, nrhs, cond_for<T>(), rng_);
    const RunResult<T> f = run(Backend::reference, Op::potrf, p, {});
    ASSERT_TRUE(f.status.ok());
    Problem<T> q = p;
    q.a = f.a;  // factor in the lower triangle, NaN above
    const RunResult<T> r = run(GetParam(), Op::potrs, q, {});
    ASSERT_TRUE(r.status.ok()) << r.status.to_string();
    expect_memory_contract(Op::potrs, q, r);
    for (int v : r.info) ASSERT_EQ(v, 0);
    // Solve residual against the original A.
    EXPECT_LE(solve_residual(p, r.b, 0.0), 8.0 * double(n) * eps<T>());
    if (!is_reference()) {
      const RunResult<T> ref = run(Backend::reference, Op::potrs, q, {});
      EXPECT_LE(max_rel_err(r.b, ref.b, q.lb, r.info, [](index_t, index_t) { return true; }),
                8.0 * double(n) * p.cond * eps<T>());
    }
  };
  for (index_t n : {1, 5, 8, 16, 33, 70})
    for (index_t nrhs : {1, 2, 17}) {
      SCOPED_TRACE(trace() + ", n " + std::to_string(n) + ", nrhs " + std::to_string(nrhs));
      body(float{}, n, nrhs);
      body(double{}, n, nrhs);
    }
}

TEST_P(SpdTest, PotriMatchesReferenceAndInverts) {
  for (index_t n : kOrders) {
    const index_t batch = n <= 16 ? 13 : 3;
    check_op(Op::potri, make_problem<float>(n, batch, 1, cond_for<float>(), rng_));
    check_op(Op::potri, make_problem<double>(n, batch, 1, cond_for<double>(), rng_));
  }
  SpdOptions o;
  o.diagonal_shift = 0.5;
  check_op(Op::potri, make_problem<float>(9, 5, 1, 1e3, rng_), o);
}

// ld > cols and stride > rows * ld: padding is NaN and must stay untouched and unread.
TEST_P(SpdTest, PaddedLeadingDimensionAndStride) {
  for (Op op : {Op::potrf, Op::posv, Op::potri}) {
    for (index_t n : {1, 6, 16, 29}) {
      check_op(op, make_problem<float>(n, 7, 3, cond_for<float>(), rng_, 3, 5));
      check_op(op, make_problem<double>(n, 7, 3, cond_for<double>(), rng_, 1, 17));
    }
  }
}

TEST_P(SpdTest, LargeBatchAndLargeOrder) {
  check_op(Op::posv, make_problem<float>(4, is_reference() ? 2000 : 40000, 1, 1e2, rng_));
  check_op(Op::potrf, make_problem<double>(8, is_reference() ? 2000 : 20000, 1, 1e5, rng_));
  // Larger than any small-size path and several row blocks: the blocked code.
  check_op(Op::posv, make_problem<double>(300, 1, 4, 1e4, rng_));
  check_op(Op::potri, make_problem<float>(257, 1, 1, 1e2, rng_));
}

// Orders past every small-size path of every backend (CUDA's shared-memory block path ends
// at 192 (double) / 288 (float)), with many right-hand sides.
TEST_P(SpdTest, LargeOrdersAllOps) {
  check_op(Op::potrf, make_problem<double>(200, 2, 1, 1e4, rng_));
  check_op(Op::posv, make_problem<double>(200, 1, 33, 1e4, rng_));
  check_op(Op::potri, make_problem<double>(193, 1, 1, 1e4, rng_));
  check_op(Op::posv, make_problem<float>(290, 1, 40, 1e2, rng_));
  check_op(Op::potri, make_problem<float>(289, 1, 1, 1e2, rng_));
  Problem<double> p = make_problem<double>(230, 1, 35, 1e4, rng_);
  const RunResult<double> f = run(Backend::reference, Op::potrf, p, {});
  Problem<double> q = p;
  q.a = f.a;
  const RunResult<double> r = run(GetParam(), Op::potrs, q, {});
  ASSERT_TRUE(r.status.ok()) << r.status.to_string();
  EXPECT_EQ(r.info, std::vector<int>{0});
  EXPECT_LE(solve_residual(p, r.b, 0.0), 8.0 * 230 * eps<double>());
}

TEST_P(SpdTest, EmptyBatchesAndOrderZero) {
  for (Op op : {Op::potrf, Op::posv, Op::potri}) {
    check_op(op, make_problem<double>(5, 0, 1, 10, rng_));               // batch 0
    const Problem<float> p = make_problem<float>(0, 3, 2, 10, rng_, 1);  // n 0 (ld 1)
    const RunResult<float> r = run(GetParam(), op, p, {});
    ASSERT_TRUE(r.status.ok()) << r.status.to_string();
    EXPECT_EQ(r.info, std::vector<int>(3, 0));
  }
}

// Three groups of different orders in one call; info and shift are one flat array.
TEST_P(SpdTest, GroupedBatches) {
  auto body = [&](auto zero) {
    using T = decltype(zero);
    std::vector<Problem<T>> ps = {make_problem<T>(3, 5, 2, cond_for<T>(), rng_),
                                  make_problem<T>(17, 2, 2, cond_for<T>(), rng_),
                                  make_problem<T>(1, 4, 2, cond_for<T>(), rng_),
                                  make_problem<T>(40, 1, 2, cond_for<T>(), rng_, 2, 3)};
    for (Op op : {Op::potrf, Op::posv, Op::potri}) {
      SCOPED_TRACE(trace() + ", grouped " + op_name(op));
      std::vector<std::unique_ptr<Buffer<T>>> abuf, bbuf;
      std::vector<MatrixBatch<T>> av, bv;
      index_t total = 0;
      for (auto& p : ps) {
        abuf.push_back(std::make_unique<Buffer<T>>(GetParam(), p.a));
        bbuf.push_back(std::make_unique<Buffer<T>>(GetParam(), p.b));
        av.push_back(p.la.view(abuf.back()->data()));
        bv.push_back(p.lb.view(bbuf.back()->data()));
        total += p.la.batch;
      }
      Buffer<int> info(GetParam(), std::vector<int>(total, -5));
      Buffer<T> shift(GetParam(), std::vector<T>(total, T(-1)));
      const Context ctx = context_for(GetParam());
      SpdOptions o;
      o.policy = NonSpdPolicy::shift;  // all inputs are SPD: no shift may be applied
      Status s;
      if (op == Op::potrf) s = potrf(ctx, GroupedBatch<T>(av), info.data(), o, shift.data());
      if (op == Op::posv)
        s = posv(ctx, GroupedBatch<T>(av), GroupedBatch<T>(bv), info.data(), o, shift.data());
      if (op == Op::potri) s = potri(ctx, GroupedBatch<T>(av), info.data(), o, shift.data());
      ASSERT_TRUE(s.ok()) << s.to_string();
      ASSERT_TRUE(synchronize(ctx).ok());
      EXPECT_EQ(info.download(), std::vector<int>(total, 0));
      EXPECT_EQ(shift.download(), std::vector<T>(total, T(0)));
      // Each group must equal the uniform call on that group.
      for (std::size_t g = 0; g < ps.size(); ++g) {
        const RunResult<T> u = run(GetParam(), op, ps[g], o);
        const auto a = abuf[g]->download();
        const auto b = bbuf[g]->download();
        EXPECT_EQ(std::memcmp(a.data(), u.a.data(), a.size() * sizeof(T)), 0) << "group " << g;
        if (op == Op::posv) {
          EXPECT_EQ(std::memcmp(b.data(), u.b.data(), b.size() * sizeof(T)), 0) << "group " << g;
        }
      }
    }
  };
  body(float{});
  body(double{});
}

// Matrix `m` of the problem replaced by an indefinite one whose first non-positive pivot is
// at (0-based) `pivot`: the identity with entry `pivot` of the diagonal set to -1.
template <class T>
void make_indefinite(Problem<T>& p, index_t m, index_t pivot, double value = -1.0,
                     double off = 0.1) {
  for (index_t i = 0; i < p.la.rows; ++i)
    for (index_t j = 0; j <= i; ++j)
      p.a[p.la.at(m, i, j)] = T(i == j ? (i == pivot ? value : 2.0) : off);
}

TEST_P(SpdTest, NonSpdIsReportedPerMatrixWithNaNOutputs) {
  auto body = [&](auto zero, Op op) {
    using T = decltype(zero);
    Problem<T> p = make_problem<T>(11, 6, 2, cond_for<T>(), rng_);
    make_indefinite(p, 1, 0);  // first pivot negative
    make_indefinite(p, 4, 7);  // pivot 8 (1-based)
    const RunResult<T> r = run(GetParam(), op, p, {});
    ASSERT_TRUE(r.status.ok());
    // Note the off-diagonal 0.1 entries lower later pivots only slightly: pivot 8 stays the first
    // failure.
    EXPECT_EQ(r.info, (std::vector<int>{0, 1, 0, 0, 8, 0}));
    for (T s : r.shift) EXPECT_TRUE(s == T(0) || std::isnan(double(s)));
    expect_memory_contract(op, p, r);
  };
  for (Op op : {Op::potrf, Op::posv, Op::potri}) {
    SCOPED_TRACE(trace() + ", " + op_name(op));
    body(float{}, op);
    body(double{}, op);
  }
}

TEST_P(SpdTest, NonFiniteInputIsReported) {
  auto body = [&](auto zero, Op op) {
    using T = decltype(zero);
    Problem<T> p = make_problem<T>(9, 5, 1, cond_for<T>(), rng_);
    p.a[p.la.at(0, 5, 2)] = std::numeric_limits<T>::quiet_NaN();  // off-diagonal NaN: pivot 6
    p.a[p.la.at(2, 3, 3)] = std::numeric_limits<T>::infinity();   // diagonal Inf: pivot 4
    p.a[p.la.at(3, 8, 0)] = -std::numeric_limits<T>::infinity();  // off-diagonal -Inf: pivot 9
    SpdOptions o;
    o.policy = NonSpdPolicy::shift;  // a shift cannot fix NaN: no retry, still reported
    const RunResult<T> r = run(GetParam(), op, p, o);
    ASSERT_TRUE(r.status.ok());
    EXPECT_EQ(r.info, (std::vector<int>{-6, 0, -4, -9, 0}));
    expect_memory_contract(op, p, r);
    EXPECT_TRUE(std::isnan(double(r.shift[0])));
  };
  for (Op op : {Op::potrf, Op::posv, Op::potri}) {
    SCOPED_TRACE(trace() + ", " + op_name(op));
    body(float{}, op);
    body(double{}, op);
  }
}

TEST_P(SpdTest, PotrsReportsABadFactor) {
  Problem<double> p = make_problem<double>(6, 3, 2, 10, rng_);
  const RunResult<double> f = run(Backend::reference, Op::potrf, p, {});
  Problem<double> q = p;
  q.a = f.a;
  q.a[q.la.at(1, 4, 4)] = 0.0;
  q.a[q.la.at(2, 2, 2)] = std::numeric_limits<double>::quiet_NaN();
  const RunResult<double> r = run(GetParam(), Op::potrs, q, {});
  ASSERT_TRUE(r.status.ok());
  EXPECT_EQ(r.info, (std::vector<int>{0, 5, -3}));
  expect_memory_contract(Op::potrs, q, r);
}

// The shift policy: failing matrices are retried with an escalating shift; the factor must
// be that of A + (lambda + delta) I with the recorded delta; SPD matrices get delta = 0.
TEST_P(SpdTest, ShiftPolicyRetriesAndRecordsTheShift) {
  auto body = [&](auto zero, Op op, double lambda) {
    using T = decltype(zero);
    Problem<T> p = make_problem<T>(10, 5, 2, cond_for<T>(), rng_);
    make_indefinite(p, 0, 3, -0.05);     // needs delta > ~0.05: several rungs of the ladder
    make_indefinite(p, 3, 9, 0.0, 0.0);  // diagonal with a zero: the smallest rung suffices
    SpdOptions o;
    o.policy = NonSpdPolicy::shift;
    o.diagonal_shift = lambda;
    o.shift_start = 1e-4;
    o.shift_growth = 4.0;
    const RunResult<T> r = run(GetParam(), op, p, o);
    ASSERT_TRUE(r.status.ok());
    EXPECT_EQ(r.info, std::vector<int>(5, 0));
    // The ladder is start * growth^r * max|a_ii| = 1e-4 * 4^r * 2 (the diagonal is 2).
    const double first = 2e-4;
    auto rung = [&](double d) { return std::log(d / first) / std::log(4.0); };
    EXPECT_NEAR(rung(double(r.shift[0])), std::round(rung(double(r.shift[0]))), 1e-3);
    EXPECT_GT(double(r.shift[0]), 0.05 - lambda);
    EXPECT_LT(double(r.shift[0]), 0.4);
    // The zero pivot of matrix 3 needs the first rung, unless lambda > 0 already fixes it.
    EXPECT_NEAR(double(r.shift[3]), lambda > 0 ? 0.0 : first, first * 1e-5);
    for (index_t m : {1, 2, 4}) EXPECT_EQ(r.shift[m], T(0));
    // The factor is that of the shifted matrix: check with each matrix's own shift.
    if (op == Op::potrf || op == Op::posv) {
      for (index_t m = 0; m < 5; ++m) {
        Problem<T> one = p;
        one.la.batch = one.lb.batch = 1;
        one.a.assign(p.a.begin() + m * p.la.stride, p.a.begin() + (m + 1) * p.la.stride);
        one.b.assign(p.b.begin() + m * p.lb.stride, p.b.begin() + (m + 1) * p.lb.stride);
        std::vector<T> l(r.a.begin() + m * p.la.stride, r.a.begin() + (m + 1) * p.la.stride);
        EXPECT_LE(factor_residual(one, l, lambda + double(r.shift[m])), 8.0 * 10 * eps<T>())
            << "matrix " << m;
      }
    }
    if (!is_reference()) {
      const RunResult<T> ref = run(Backend::reference, op, p, o);
      for (index_t m = 0; m < 5; ++m)
        EXPECT_NEAR(double(r.shift[m]), double(ref.shift[m]), 1e-5 * double(ref.shift[m]));
    }
  };
  for (Op op : {Op::potrf, Op::posv, Op::potri}) {
    SCOPED_TRACE(trace() + ", " + op_name(op));
    body(float{}, op, 0.0);
    body(double{}, op, 0.0);
    body(double{}, op, 0.01);
  }
}

// Orders past the blocked-algorithm threshold: failure in a later panel, restore, retry.
TEST_P(SpdTest, ShiftPolicyOnLargeMatrices) {
  for (index_t n : {97, 150, 210}) {
    SCOPED_TRACE(trace() + ", n " + std::to_string(n));
    Problem<double> p = make_problem<double>(n, 2, 1, 1e3, rng_);
    make_indefinite(p, 1, n - 40, -0.03, 0.01);
    SpdOptions o;
    o.policy = NonSpdPolicy::shift;
    o.shift_start = 1e-3;
    o.shift_growth = 3.0;
    const RunResult<double> r = run(GetParam(), Op::potrf, p, o);
    ASSERT_TRUE(r.status.ok());
    EXPECT_EQ(r.info, (std::vector<int>{0, 0}));
    EXPECT_EQ(r.shift[0], 0.0);
    EXPECT_GT(r.shift[1], 0.03);
    Problem<double> one = p;
    one.la.batch = one.lb.batch = 1;
    one.a.assign(p.a.begin() + p.la.stride, p.a.end());
    std::vector<double> l(r.a.begin() + p.la.stride, r.a.end());
    EXPECT_LE(factor_residual(one, l, r.shift[1]), 8.0 * double(n) * eps<double>());
    if (!is_reference()) {
      const RunResult<double> ref = run(Backend::reference, Op::potrf, p, o);
      EXPECT_NEAR(r.shift[1], ref.shift[1], 1e-9 * ref.shift[1]);
    }
    // Report policy on the same input: the first failing pivot, NaN outputs.
    const RunResult<double> rep = run(GetParam(), Op::potrf, p, {});
    EXPECT_EQ(rep.info[1], int(n - 40 + 1));
    expect_memory_contract(Op::potrf, p, rep);
  }
}

TEST_P(SpdTest, ShiftPolicyGivesUpAfterMaxRetries) {
  Problem<double> p = make_problem<double>(5, 2, 1, 10, rng_);
  make_indefinite(p, 1, 2, -100.0);
  SpdOptions o;
  o.policy = NonSpdPolicy::shift;
  o.shift_start = 1e-6;
  o.max_shift_retries = 2;  // 2e-6, 2e-5: far too small
  const RunResult<double> r = run(GetParam(), Op::posv, p, o);
  ASSERT_TRUE(r.status.ok());
  EXPECT_EQ(r.info, (std::vector<int>{0, 3}));
  EXPECT_EQ(r.shift[0], 0.0);
  EXPECT_TRUE(std::isnan(r.shift[1]));
  expect_memory_contract(Op::posv, p, r);
}

// Every documented argument error: a clear Status naming the argument, nothing written.
TEST_P(SpdTest, BadArgumentsAreRejectedWithoutSideEffects) {
  Problem<double> p = make_problem<double>(4, 3, 2, 10, rng_);
  Buffer<double> a(GetParam(), p.a), b(GetParam(), p.b);
  Buffer<int> info(GetParam(), std::vector<int>(3, 42));
  const Context ctx = context_for(GetParam());
  const auto va = p.la.view(a.data());
  const auto vb = p.lb.view(b.data());
  auto expect_invalid = [&](Status s, const std::string& needle) {
    EXPECT_EQ(s.code(), StatusCode::invalid_argument) << s.to_string();
    EXPECT_NE(s.message().find(needle), std::string::npos) << s.message();
  };
  auto bad = va;
  bad.ld = 3;
  expect_invalid(potrf(ctx, bad, info.data()), "a.ld");
  bad = va;
  bad.cols = 5;
  bad.ld = 5;
  bad.stride = 100;
  expect_invalid(potrf(ctx, bad, info.data()), "square");
  bad = va;
  bad.stride = 10;
  expect_invalid(potri(ctx, bad, info.data()), "a.stride");
  bad = va;
  bad.batch = -1;
  expect_invalid(potrf(ctx, bad, info.data()), "a.batch");
  bad = va;
  bad.data = nullptr;
  expect_invalid(potrf(ctx, bad, info.data()), "a.data");
  expect_invalid(potrf(ctx, va, nullptr), "info");
  auto badb = vb;
  badb.rows = 3;
  expect_invalid(posv(ctx, va, badb, info.data()), "b.rows");
  badb = vb;
  badb.batch = 2;
  expect_invalid(posv(ctx, va, badb, info.data()), "b.batch");
  badb = vb;
  badb.data = va.data;  // aliasing A
  expect_invalid(posv(ctx, va, badb, info.data()), "overlaps");
  expect_invalid(potrs(ctx, MatrixBatch<const double>(va), badb, info.data()), "overlaps");
  SpdOptions o;
  o.diagonal_shift = std::nan("");
  expect_invalid(potrf(ctx, va, info.data(), o), "diagonal_shift");
  o = {};
  o.policy = NonSpdPolicy::shift;
  o.shift_growth = 1.0;
  expect_invalid(posv(ctx, va, vb, info.data(), o), "shift_growth");
  o.shift_growth = 2.0;
  o.max_shift_retries = 0;
  expect_invalid(potri(ctx, va, info.data(), o), "max_shift_retries");
  // Grouped: the group index is named; overlapping groups are rejected.
  std::vector<MatrixBatch<double>> groups = {va, va};
  expect_invalid(potrf(ctx, GroupedBatch<double>(groups), info.data()), "overlap");
  groups[1].ld = 1;
  expect_invalid(potrf(ctx, GroupedBatch<double>(groups), info.data()), "a[1].ld");
  std::vector<MatrixBatch<double>> agroups = {va};
  std::vector<MatrixBatch<double>> bgroups = {vb, vb};
  expect_invalid(
      posv(ctx, GroupedBatch<double>(agroups), GroupedBatch<double>(bgroups), info.data()),
      "groups");
  ASSERT_TRUE(synchronize(ctx).ok());
  // Nothing was touched.
  const auto a_after = a.download();
  const auto b_after = b.download();
  EXPECT_EQ(std::memcmp(a_after.data(), p.a.data(), p.a.size() * sizeof(double)), 0);
  EXPECT_EQ(std::memcmp(b_after.data(), p.b.data(), p.b.size() * sizeof(double)), 0);
  EXPECT_EQ(info.download(), std::vector<int>(3, 42));
}

INSTANTIATE_TEST_SUITE_P(Backends, SpdTest,
                         ::testing::Values(Backend::reference, Backend::kokkos, Backend::cuda),
                         [](const ::testing::TestParamInfo<Backend>& i) {
                           return std::string(to_string(i.param));
                         });

}  // namespace
}  // namespace curvkit::test
