#!/usr/bin/env bash
# The test command: installs what is missing, builds curvkit with every backend this machine
# can compile (reference, Kokkos, CUDA when nvcc exists) plus the benchmarks, runs the whole
# test suite and the Python package's (tools/python_test.sh), then rebuilds the host backends
# with AddressSanitizer + UBSan and runs their tests again.  CUDA tests compile everywhere and
# run only where a GPU is present.
set -euo pipefail
cd "$(dirname "$0")/.."
jobs=${JOBS:-$(nproc)}
bash tools/install_deps.sh

cmake --preset release
cmake --build --preset release -j "$jobs"
ctest --preset release
bash tools/python_test.sh

cmake --preset sanitize
cmake --build --preset sanitize -j "$jobs"
ctest --preset sanitize
