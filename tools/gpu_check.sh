#!/usr/bin/env bash
# GPU check: on a machine with an NVIDIA GPU, build the CUDA backend (Release, sm_90 unless
# CMAKE_CUDA_ARCHITECTURES says otherwise), run the reference- and cuda-labelled tests and the
# GPU cases of every benchmark binary, and write a log and the benchmark JSON.
#
#   tools/gpu_check.sh [OUTDIR]        (default OUTDIR: build-cuda/gpu_check)
#
# Needs CMake, nvcc, GoogleTest and Google Benchmark (pass e.g. -DGTest_ROOT=... through
# CURVKIT_CMAKE_ARGS when they are not installed system-wide). Kokkos is optional.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-build-cuda/gpu_check}
mkdir -p "$out"
log="$out/gpu_check.log"
jobs=${JOBS:-$(nproc)}
{
  echo "# curvkit GPU check, $(date -u +%Y-%m-%dT%H:%MZ)"
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || true
  nvcc --version | tail -1
  # shellcheck disable=SC2086
  cmake --preset cuda ${CURVKIT_CMAKE_ARGS:-}
  cmake --build --preset cuda -j "$jobs"
  ctest --test-dir build-cuda -L "reference|cuda" --output-on-failure
} 2>&1 | tee "$log"
# Every benchmark binary's GPU cases (tool names cuda*, cusolver*, cublas*) and the rooflines.
filter=${CURVKIT_BENCH_FILTER:-/(cuda|cusolver|cublas)[a-z0-9_]*/|^roofline/}
for bench in spd sherman_morrison kron khatri_rao newton_schulz; do
  ./build-cuda/bench/${bench}_bench --benchmark_filter="$filter" \
    --benchmark_out="$out/${bench}_bench_cuda.json" --benchmark_out_format=json 2>&1 | tee -a "$log"
  python3 tools/bench_table.py "$out/${bench}_bench_cuda.json" | tee "$out/${bench}_bench_cuda.md"
done
echo "wrote $log and $out/*_bench_cuda.{json,md}"
