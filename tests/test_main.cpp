// GoogleTest main that initialises the compiled runtimes (Kokkos) for the whole test binary.
#include <gtest/gtest.h>

#include "curvkit/core/context.hpp"

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  curvkit::ScopeGuard guard;
  return RUN_ALL_TESTS();
}
