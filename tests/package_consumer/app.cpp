// Out-of-tree consumer: solves one 2 x 2 SPD system through the installed package.
#include <cstdio>
#include <curvkit/curvkit.hpp>
int main() {
  curvkit::ScopeGuard g;
  double a[4] = {4, 0, 2, 5}, b[2] = {1, 2};
  int info = -1;
  const auto ctx = curvkit::backend_available(curvkit::Backend::kokkos)
                       ? curvkit::Context::kokkos()
                       : curvkit::Context::reference();
  auto s =
      curvkit::posv(ctx, curvkit::make_batch(a, 1, 2, 2), curvkit::make_batch(b, 1, 2, 1), &info);
  std::printf("%s info=%d x=(%g, %g)\n", s.to_string().c_str(), info, b[0], b[1]);
  return s.ok() && info == 0 && b[0] == 0.0625 && b[1] == 0.375 ? 0 : 1;
}
