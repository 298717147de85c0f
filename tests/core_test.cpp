// Core tests: Status messages, info codes, views, backend availability, the not_compiled path.
#include <gtest/gtest.h>

#include <vector>

#include "curvkit/curvkit.hpp"

namespace curvkit {
namespace {

TEST(Core, StatusCarriesCodeAndReadableMessage) {
  const Status ok;
  EXPECT_TRUE(ok.ok());
  EXPECT_EQ(ok.to_string(), "ok");
  const Status bad = Status::invalid_argument("potrf", "a.ld (3) must be >= 4");
  EXPECT_FALSE(bad.ok());
  EXPECT_EQ(bad.code(), StatusCode::invalid_argument);
  EXPECT_EQ(bad.to_string(), "invalid_argument: potrf: a.ld (3) must be >= 4");
  EXPECT_EQ(Status::not_compiled("posv", "cuda").code(), StatusCode::not_compiled);
  EXPECT_NE(Status::not_compiled("posv", "cuda").message().find("cuda"), std::string::npos);
}

TEST(Core, InfoCodesDescribeThemselves) {
  EXPECT_EQ(info::describe(0), "ok");
  EXPECT_EQ(info::not_positive(2), 3);
  EXPECT_EQ(info::non_finite(2), -3);
  EXPECT_NE(info::describe(3).find("leading minor 3"), std::string::npos);
  EXPECT_NE(info::describe(-3).find("NaN or Inf"), std::string::npos);
}

TEST(Core, MatrixBatchIndexingAndExtent) {
  std::vector<double> buf(100);
  for (std::size_t i = 0; i < buf.size(); ++i) buf[i] = double(i);
  const auto v = make_batch(buf.data(), 3, 2, 3, 4, 11);
  EXPECT_EQ(v(1, 1, 2), 11 + 4 + 2);
  EXPECT_EQ(v.extent(), 2 * 11 + 1 * 4 + 3);
  const auto c = make_batch(buf.data(), 5, 3, 3);
  EXPECT_EQ(c.ld, 3);
  EXPECT_EQ(c.stride, 9);
  const MatrixBatch<const double> cv = c;
  EXPECT_EQ(cv(4, 2, 2), 44);
  EXPECT_EQ(make_batch(buf.data(), 0, 3, 3).extent(), 0);
}

TEST(Core, GroupedBatchCountsAllMatrices) {
  std::vector<MatrixBatch<float>> g = {make_batch<float>(nullptr, 3, 2, 2),
                                       make_batch<float>(nullptr, 4, 5, 5)};
  EXPECT_EQ(total_batch(GroupedBatch<float>(g)), 7);
}

TEST(Core, BackendsReportAvailability) {
  EXPECT_TRUE(backend_available(Backend::reference));
  EXPECT_EQ(backend_available(Backend::kokkos), bool(CURVKIT_HAVE_KOKKOS));
  EXPECT_EQ(backend_available(Backend::cuda), bool(CURVKIT_HAVE_CUDA));
  EXPECT_STREQ(to_string(Backend::kokkos), "kokkos");
  EXPECT_STREQ(version(), "0.1.0");
}

TEST(Core, MissingBackendAnswersNotCompiled) {
  std::vector<double> a = {4.0};
  int info = 0;
  for (Backend b : {Backend::kokkos, Backend::cuda}) {
    if (backend_available(b)) continue;
    const Status s = potrf(Context(b), make_batch(a.data(), 1, 1, 1), &info);
    EXPECT_EQ(s.code(), StatusCode::not_compiled) << s.to_string();
    EXPECT_EQ(synchronize(Context(b)).code(), StatusCode::not_compiled);
  }
  EXPECT_EQ(a[0], 4.0);
}

TEST(Core, ContextCarriesStreamAndWorkspace) {
  int dummy = 0;
  Context c = Context::cuda(&dummy);
  EXPECT_EQ(c.backend(), Backend::cuda);
  EXPECT_EQ(c.cuda_stream(), &dummy);
  c.set_workspace(&dummy, 4);
  EXPECT_EQ(c.workspace().bytes, 4u);
  EXPECT_EQ(Context::kokkos().backend(), Backend::kokkos);
  EXPECT_TRUE(synchronize(Context::reference()).ok());
}

}  // namespace
}  // namespace curvkit
