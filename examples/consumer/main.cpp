// Solves a batch of small SPD systems with curvkit::posv on every host backend the installed
// curvkit was built with and checks the residuals: the smallest complete use of the library
// from another project (examples/consumer/CMakeLists.txt).  Exit status 0 when every solve is
// accurate.
#include <cmath>
#include <cstdio>
#include <random>
#include <vector>

#include "curvkit/curvkit.hpp"

namespace {

// A = M M^T / n + I (SPD) and B random, for `batch` n x n systems; returns the largest relative
// residual |A x - b| / |b| after posv on ctx.
double solve_batch(const curvkit::Context& ctx, int n, int batch, std::mt19937& rng) {
  std::normal_distribution<double> gauss;
  std::vector<double> a(std::size_t(batch) * n * n), b(std::size_t(batch) * n);
  for (int k = 0; k < batch; ++k) {
    std::vector<double> m(std::size_t(n) * n);
    for (double& v : m) v = gauss(rng);
    for (int i = 0; i < n; ++i)
      for (int j = 0; j < n; ++j) {
        double s = i == j ? 1.0 : 0.0;
        for (int q = 0; q < n; ++q) s += m[i * n + q] * m[j * n + q] / n;
        a[(std::size_t(k) * n + i) * n + j] = s;
      }
    for (int i = 0; i < n; ++i) b[std::size_t(k) * n + i] = gauss(rng);
  }
  const std::vector<double> a0 = a, b0 = b;
  std::vector<int> info(batch, -1);
  const curvkit::Status s =
      curvkit::posv<double>(ctx, curvkit::make_batch(a.data(), batch, n, n),
                            curvkit::make_batch(b.data(), batch, n, 1), info.data());
  if (!s.ok() || !curvkit::synchronize(ctx).ok()) {
    std::printf("posv failed: %s\n", s.to_string().c_str());
    return INFINITY;
  }
  double worst = 0;
  for (int k = 0; k < batch; ++k) {
    if (info[k] != 0) return INFINITY;
    double num = 0, den = 0;
    for (int i = 0; i < n; ++i) {
      double r = -b0[std::size_t(k) * n + i];
      for (int j = 0; j < n; ++j)
        r += a0[(std::size_t(k) * n + i) * n + j] * b[std::size_t(k) * n + j];
      num += r * r;
      den += b0[std::size_t(k) * n + i] * b0[std::size_t(k) * n + i];
    }
    worst = std::fmax(worst, std::sqrt(num / den));
  }
  return worst;
}

}  // namespace

int main() {
  curvkit::ScopeGuard runtimes;  // initialises Kokkos when curvkit was built with it
  std::mt19937 rng(std::random_device{}());
  int failures = 0;
  auto run = [&](const char* name, const curvkit::Context& ctx) {
    const double r = solve_batch(ctx, 12, 100, rng);
    const bool ok = r < 1e-12;
    std::printf("%-9s posv, 100 systems of 12: max relative residual %.2e %s\n", name, r,
                ok ? "ok" : "FAILED");
    failures += ok ? 0 : 1;
  };
  run("reference", curvkit::Context::reference());
  if (curvkit::backend_available(curvkit::Backend::kokkos))
    run("kokkos", curvkit::Context::kokkos());
  return failures == 0 ? 0 : 1;
}
