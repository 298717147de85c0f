// Batched GEMM / SYRK tests (curvkit/gemm.hpp): every compiled backend against the reference
// on fresh random inputs, for every transpose, alpha/beta (beta = 0 with a NaN-filled C that
// must not leak), broadcast operands, padded layouts, sizes that cross the micro-kernel tile
// and the cache blocks, grouped calls of mixed shapes, and bad input; and the embedded blocks of
// curvkit/device/gemm.hpp called directly.
//
// Tolerance (derived): each element of a product of depth k carries at most ~k eps(T) times
// (|alpha| |op(A)| |op(B)| + |beta| |C|) of rounding; the test bounds |C - C_ref| elementwise by
// 2 (k + 2) eps(T) times that quantity.
#include <array>
#include <limits>

#include "curvkit/device/gemm.hpp"
#include "family_test_util.hpp"

namespace curvkit::test {
namespace {

// Element (i, j) of op(x) for matrix b (batch 1 broadcasts).
template <class T>
double op_at(const Operand<T>& x, index_t b, Op op, index_t i, index_t j) {
  const index_t bb = x.l.batch == 1 ? 0 : b;
  return op == Op::none ? double(x(bb, i, j)) : double(x(bb, j, i));
}

struct Shape {
  index_t m, n, k, batch;
};

template <class T>
Operand<T> stored(index_t batch, index_t rows, index_t cols, Op op, std::mt19937_64& rng,
                  index_t pad) {
  return op == Op::none ? gaussian<T>(batch, rows, cols, rng, 1.0, pad, 3 * pad)
                        : gaussian<T>(batch, cols, rows, rng, 1.0, pad, 3 * pad);
}

// |C - ref| <= 2 (k + 2) eps (|alpha| |A||B| + |beta| |C0|), elementwise over `selected`.
template <class T, class AbsProduct>
void expect_within_bound(const Operand<T>& c, const Operand<T>& ref, const Operand<T>& c0,
                         index_t k, double alpha, double beta, const AbsProduct& abs_product,
                         const std::function<bool(index_t, index_t)>& selected) {
  for (index_t b = 0; b < c.l.batch; ++b)
    for (index_t i = 0; i < c.l.rows; ++i)
      for (index_t j = 0; j < c.l.cols; ++j) {
        if (!selected(i, j)) continue;
        const double c_old = beta == 0 ? 0.0 : std::fabs(double(c0(b, i, j)));
        const double bound = 2.0 * double(k + 2) * eps<T>() *
                             (std::fabs(alpha) * abs_product(b, i, j) + std::fabs(beta) * c_old);
        ASSERT_LE(std::fabs(double(c(b, i, j)) - double(ref(b, i, j))), bound)
            << "matrix " << b << " (" << i << ", " << j << ")";
      }
}

class GemmTest : public BackendTest {
 protected:
  template <class T>
  void check_gemm(Shape s, Op op_a, Op op_b, double alpha, double beta, bool broadcast_a,
                  bool broadcast_b, index_t pad) {
    SCOPED_TRACE(trace() + ", m " + std::to_string(s.m) + ", n " + std::to_string(s.n) + ", k " +
                 std::to_string(s.k) + ", batch " + std::to_string(s.batch) + ", op_a " +
                 std::to_string(int(op_a)) + ", op_b " + std::to_string(int(op_b)) + ", alpha " +
                 std::to_string(alpha) + ", beta " + std::to_string(beta) +
                 (sizeof(T) == 4 ? ", float" : ", double"));
    const auto a = stored<T>(broadcast_a ? 1 : s.batch, s.m, s.k, op_a, rng_, pad);
    const auto b = stored<T>(broadcast_b ? 1 : s.batch, s.k, s.n, op_b, rng_, 0);
    // beta == 0: C is all NaN and must not be read.
    auto c0 = beta == 0 ? Operand<T>(s.batch, s.m, s.n, pad, pad)
                        : gaussian<T>(s.batch, s.m, s.n, rng_, 1.0, pad, pad);
    auto run = [&](Backend be) {
      OnBackend<T> aa(be, a), bb(be, b), cc(be, c0);
      const Context ctx = context_for(be);
      const Status st =
          gemm<T>(ctx, op_a, op_b, T(alpha), aa.cview(), bb.cview(), T(beta), cc.view());
      EXPECT_TRUE(st.ok()) << st.to_string();
      EXPECT_TRUE(synchronize(ctx).ok());
      return cc.get();
    };
    const auto c = run(backend());
    const auto all = [](index_t, index_t) { return true; };
    expect_untouched_outside(c0, c, all, "gemm");
    // The op receives alpha and beta as T: the direct sums use those values (0.9 is not a float).
    if (backend() == Backend::reference) {  // the reference against a double sum
      Operand<T> direct = c0;
      for (index_t m = 0; m < s.batch; ++m)
        for (index_t i = 0; i < s.m; ++i)
          for (index_t j = 0; j < s.n; ++j) {
            double acc = 0;
            for (index_t q = 0; q < s.k; ++q)
              acc += op_at(a, m, op_a, i, q) * op_at(b, m, op_b, q, j);
            direct(m, i, j) = T(double(T(alpha)) * acc +
                                (beta == 0 ? 0.0 : double(T(beta)) * double(c0(m, i, j))));
          }
      EXPECT_LE(max_rel_err(c, direct), 4 * eps<T>());
      return;
    }
    const auto ref = run(Backend::reference);
    const auto abs_product = [&](index_t m, index_t i, index_t j) {
      double acc = 0;
      for (index_t q = 0; q < s.k; ++q)
        acc += std::fabs(op_at(a, m, op_a, i, q) * op_at(b, m, op_b, q, j));
      return acc;
    };
    expect_within_bound(c, ref, c0, s.k, alpha, beta, abs_product, all);
  }

  template <class T>
  void check_syrk(index_t n, index_t k, index_t batch, Op op_a, double alpha, double beta,
                  Fill fill, bool broadcast, index_t pad) {
    SCOPED_TRACE(trace() + ", syrk n " + std::to_string(n) + ", k " + std::to_string(k) +
                 ", batch " + std::to_string(batch) + ", op " + std::to_string(int(op_a)) +
                 ", beta " + std::to_string(beta) + ", fill " + std::to_string(int(fill)) +
                 (sizeof(T) == 4 ? ", float" : ", double"));
    const auto a = stored<T>(broadcast ? 1 : batch, n, k, op_a, rng_, pad);
    auto c0 = beta == 0 ? Operand<T>(batch, n, n, pad, pad)
                        : gaussian<T>(batch, n, n, rng_, 1.0, pad, pad);
    auto run = [&](Backend be) {
      OnBackend<T> aa(be, a), cc(be, c0);
      const Context ctx = context_for(be);
      const Status st = syrk<T>(ctx, op_a, T(alpha), aa.cview(), T(beta), cc.view(), fill);
      EXPECT_TRUE(st.ok()) << st.to_string();
      EXPECT_TRUE(synchronize(ctx).ok());
      return cc.get();
    };
    const auto c = run(backend());
    const auto written = [&](index_t i, index_t j) { return fill == Fill::full || j <= i; };
    expect_untouched_outside(c0, c, written, "syrk");
    if (fill == Fill::full) {
      for (index_t m = 0; m < batch; ++m)
        for (index_t i = 0; i < n; ++i)
          for (index_t j = 0; j < i; ++j) ASSERT_EQ(c(m, i, j), c(m, j, i));
    }
    const auto lower = [](index_t i, index_t j) { return j <= i; };
    const auto abs_product = [&](index_t m, index_t i, index_t j) {
      double acc = 0;
      for (index_t q = 0; q < k; ++q)
        acc += std::fabs(op_at(a, m, op_a, i, q) * op_at(a, m, op_a, j, q));
      return acc;
    };
    if (backend() == Backend::reference) {
      Operand<T> direct = c;
      for (index_t m = 0; m < batch; ++m)
        for (index_t i = 0; i < n; ++i)
          for (index_t j = 0; j <= i; ++j) {
            double acc = 0;
            for (index_t q = 0; q < k; ++q)
              acc += op_at(a, m, op_a, i, q) * op_at(a, m, op_a, j, q);
            direct(m, i, j) = T(double(T(alpha)) * acc +
                                (beta == 0 ? 0.0 : double(T(beta)) * double(c0(m, i, j))));
          }
      EXPECT_LE(max_rel_err(c, direct, lower), 4 * eps<T>());
      return;
    }
    expect_within_bound(c, run(Backend::reference), c0, k, alpha, beta, abs_product, lower);
  }
};

TEST_P(GemmTest, AllTransposesMatchReference) {
  const std::vector<Shape> shapes = {
      {1, 1, 1, 3},    {5, 7, 3, 4},   {8, 8, 8, 9}, {17, 16, 5, 2}, {6, 33, 19, 1},
      {32, 32, 32, 3}, {40, 9, 70, 2}, {0, 4, 4, 2}, {4, 4, 0, 2},   {3, 3, 3, 0}};
  for (const Shape& s : shapes)
    for (Op op_a : {Op::none, Op::trans})
      for (Op op_b : {Op::none, Op::trans}) {
        check_gemm<double>(s, op_a, op_b, 1.0, 0.0, false, false, 0);
        check_gemm<float>(s, op_a, op_b, -0.5, 2.0, false, false, 1);
      }
}

TEST_P(GemmTest, AlphaBetaBroadcastAndPadding) {
  for (double beta : {0.0, 1.0, -0.75})
    for (double alpha : {1.0, 0.0, 2.5}) {
      check_gemm<float>({13, 21, 11, 5}, Op::none, Op::trans, alpha, beta, true, false, 2);
      check_gemm<double>({13, 21, 11, 5}, Op::trans, Op::none, alpha, beta, false, true, 3);
    }
}

TEST_P(GemmTest, LargeBlocksMatchReference) {
  // Crosses every cache block of the Kokkos backend: m > 384 rows per work item, n > the
  // packed B block (1024 float / 512 double columns with AVX-512), k > 256.
  check_gemm<float>({400, 1100, 270, 1}, Op::none, Op::none, 1.0, 0.5, false, false, 1);
  check_gemm<double>({390, 530, 258, 1}, Op::trans, Op::trans, -1.0, 0.0, false, false, 0);
}

TEST_P(GemmTest, SyrkMatchesReference) {
  for (index_t n : {1, 5, 16, 17, 40})
    for (index_t k : {1, 7, 33})
      for (Op op : {Op::none, Op::trans}) {
        check_syrk<double>(n, k, 3, op, 1.0, 0.0, Fill::lower, false, 0);
        check_syrk<float>(n, k, 2, op, 0.5, 0.9, Fill::full, false, 1);
        check_syrk<float>(n, k, 4, op, 1.0, 0.0, Fill::full, true, 2);
      }
  check_syrk<float>(200, 300, 1, Op::none, 1.0, 0.0, Fill::full, false, 0);
  check_syrk<double>(130, 20, 1, Op::trans, 1.0, 1.0, Fill::lower, false, 1);
}

TEST_P(GemmTest, GroupedMixedShapes) {
  const std::vector<Shape> shapes = {{3, 4, 5, 2}, {20, 1, 9, 1}, {0, 2, 2, 1}, {33, 17, 40, 3}};
  std::vector<Operand<double>> a, b, c0;
  for (const Shape& s : shapes) {
    a.push_back(gaussian<double>(s.batch, s.k, s.m, rng_));  // transposed storage
    b.push_back(gaussian<double>(s.batch, s.k, s.n, rng_));
    c0.push_back(Operand<double>(s.batch, s.m, s.n, 1, 1));
  }
  auto run = [&](Backend be) {
    std::vector<std::unique_ptr<OnBackend<double>>> store;
    std::vector<MatrixBatch<const double>> av, bv;
    std::vector<MatrixBatch<double>> cv;
    for (std::size_t g = 0; g < shapes.size(); ++g) {
      store.push_back(std::make_unique<OnBackend<double>>(be, a[g]));
      av.push_back(store.back()->cview());
      store.push_back(std::make_unique<OnBackend<double>>(be, b[g]));
      bv.push_back(store.back()->cview());
      store.push_back(std::make_unique<OnBackend<double>>(be, c0[g]));
      cv.push_back(store.back()->view());
    }
    const Context ctx = context_for(be);
    const Status st = gemm<double>(ctx, Op::trans, Op::none, 1.5, av, bv, 0.0, cv);
    EXPECT_TRUE(st.ok()) << st.to_string();
    EXPECT_TRUE(synchronize(ctx).ok());
    std::vector<Operand<double>> out;
    for (std::size_t g = 0; g < shapes.size(); ++g) out.push_back(store[3 * g + 2]->get());
    return out;
  };
  const auto c = run(backend()), ref = run(Backend::reference);
  for (std::size_t g = 0; g < shapes.size(); ++g) {
    SCOPED_TRACE(trace() + ", group " + std::to_string(g));
    expect_untouched_outside(
        c0[g], c[g], [](index_t, index_t) { return true; }, "grouped gemm");
    EXPECT_LE(max_rel_err(c[g], ref[g]), 4.0 * double(shapes[g].k + 2) * eps<double>());
  }
}

TEST_P(GemmTest, BadInputIsRejected) {
  const Context c = ctx();
  auto a = gaussian<float>(2, 3, 4, rng_), b = gaussian<float>(2, 4, 5, rng_);
  auto c0 = gaussian<float>(2, 3, 5, rng_);
  OnBackend<float> aa(backend(), a), bb(backend(), b), cc(backend(), c0);
  auto expect_invalid = [&](Status st, const char* needle) {
    EXPECT_EQ(st.code(), StatusCode::invalid_argument) << st.to_string();
    EXPECT_NE(st.message().find(needle), std::string::npos) << st.message();
  };
  // Inner dimensions disagree: op(A) is 3 x 4 but op(B) = B^T is 5 x 4.
  expect_invalid(gemm<float>(c, Op::none, Op::trans, 1.f, aa.cview(), bb.cview(), 0.f, cc.view()),
                 "the transpose of b");
  // Batch 3 is neither 2 nor 1.
  MatrixBatch<const float> a3 = aa.cview();
  a3.batch = 3;
  a3.stride = 12;
  expect_invalid(gemm<float>(c, Op::none, Op::none, 1.f, a3, bb.cview(), 0.f, cc.view()),
                 "a.batch");
  // C aliases A.
  MatrixBatch<float> c_on_a{const_cast<float*>(aa.cview().data), 2, 3, 5, 5, 15};
  expect_invalid(gemm<float>(c, Op::none, Op::none, 1.f, aa.cview(), bb.cview(), 0.f, c_on_a),
                 "overlaps");
  // Group counts differ.
  std::vector<MatrixBatch<const float>> ga = {aa.cview(), aa.cview()}, gb = {bb.cview()};
  std::vector<MatrixBatch<float>> gc = {cc.view()};
  expect_invalid(gemm<float>(c, Op::none, Op::none, 1.f, ga, gb, 0.f, gc), "groups");
  // Null data with nonzero size; a non-square SYRK output.
  MatrixBatch<const float> null_a{nullptr, 2, 3, 4, 4, 12};
  expect_invalid(gemm<float>(c, Op::none, Op::none, 1.f, null_a, bb.cview(), 0.f, cc.view()),
                 "null");
  expect_invalid(syrk<float>(c, Op::none, 1.f, aa.cview(), 0.f, cc.view()), "square");
  expect_invalid(syrk<float>(c, static_cast<Op>(7), 1.f, aa.cview(), 0.f, cc.view()), "Op");
  EXPECT_EQ(max_rel_err(cc.get(), c0), 0.0);
}

// The embedded blocks called directly on the host (device/gemm.hpp): gemm_block with strided
// operands, a column-strided C and the lower mask, gemm_small, gemm_fixed; every element checked
// against a long double sum, masked elements and C's gaps left untouched.
template <class T>
void check_embedded_blocks(std::mt19937_64& rng) {
  std::normal_distribution<double> nd;
  const T poison = std::numeric_limits<T>::quiet_NaN();
  for (auto [m, n, k] : {std::array<index_t, 3>{37, 45, 300}, {13, 7, 5}, {40, 32, 32}}) {
    for (int variant = 0; variant < 3; ++variant) {  // 0 gemm_block, 1 lower mask, 2 gemm_small
      if (variant == 2 && (n > device::kGemmSmall || k > device::kGemmSmall)) continue;
      SCOPED_TRACE("m " + std::to_string(m) + " n " + std::to_string(n) + " k " +
                   std::to_string(k) + " variant " + std::to_string(variant));
      // op(A) = A^T stored k x m with ld m + 3; op(B) stored n x k (ld k + 1), read transposed.
      std::vector<T> a(k * (m + 3)), b(n * (k + 1)), c(m * n * 2 + 5, poison);
      for (auto& v : a) v = T(nd(rng));
      for (auto& v : b) v = T(nd(rng));
      const device::Strided<const T> av{a.data(), 1, m + 3}, bv{b.data(), 1, k + 1};
      const device::Strided<T> cv{c.data(), 2 * n, 2};  // column stride 2: gaps stay NaN
      const index_t diag = 3;
      std::vector<T> pack(std::max<index_t>(device::gemm_pack_elements<T>(n, k), 32 * 32));
      const T alpha = T(0.75);
      if (variant == 2)
        device::gemm_small(m, n, k, alpha, av, bv, T(0), cv, pack.data());
      else
        device::gemm_block(m, n, k, alpha, av, bv, T(0), cv, pack.data(), variant == 1, diag);
      for (index_t i = 0; i < m; ++i)
        for (index_t j = 0; j < n; ++j) {
          const T got = c[i * 2 * n + 2 * j];
          EXPECT_TRUE(std::isnan(c[i * 2 * n + 2 * j + 1]));
          if (variant == 1 && i + diag < j) {
            EXPECT_TRUE(std::isnan(got)) << i << ", " << j;
            continue;
          }
          long double want = 0, mag = 0;
          for (index_t q = 0; q < k; ++q) {
            want += (long double)a[q * (m + 3) + i] * b[j * (k + 1) + q];
            mag += std::fabs((long double)a[q * (m + 3) + i] * b[j * (k + 1) + q]);
          }
          want *= alpha;
          const double bound =
              2.0 * double(k + 2) * double(std::numeric_limits<T>::epsilon()) * double(mag);
          EXPECT_LE(std::fabs(double(got) - double(want)), bound) << i << ", " << j;
        }
    }
  }
  // gemm_fixed<3, 5, 4> with beta = 0.5 over a random C.
  std::vector<T> a(3 * 4), b(4 * 5), c(3 * 5), c0;
  for (auto& v : a) v = T(nd(rng));
  for (auto& v : b) v = T(nd(rng));
  for (auto& v : c) v = T(nd(rng));
  c0 = c;
  device::gemm_fixed<3, 5, 4>(T(2), a.data(), 4, b.data(), 5, T(0.5), c.data(), 5);
  for (index_t i = 0; i < 3; ++i)
    for (index_t j = 0; j < 5; ++j) {
      long double want = 0.5L * c0[i * 5 + j];
      for (index_t q = 0; q < 4; ++q) want += 2.0L * a[i * 4 + q] * b[q * 5 + j];
      EXPECT_NEAR(double(c[i * 5 + j]), double(want),
                  32 * double(std::numeric_limits<T>::epsilon()) * (1 + std::fabs(double(want))));
    }
}

TEST(GemmEmbedded, BlocksMatchLongDoubleSums) {
  std::mt19937_64 rng(std::random_device{}());
  check_embedded_blocks<float>(rng);
  check_embedded_blocks<double>(rng);
}

INSTANTIATE_TEST_SUITE_P(Backends, GemmTest,
                         ::testing::Values(Backend::reference, Backend::kokkos, Backend::cuda),
                         backend_test_name);

}  // namespace
}  // namespace curvkit::test
