#!/usr/bin/env bash
# The main command: installs what is missing, builds curvkit (Release) and runs the main job,
# the SPD benchmark against its anchors (posv, one thread, float and double), printing a short
# table.  The full JSON lands in build/spd_bench.json.
set -euo pipefail
cd "$(dirname "$0")/.."
jobs=${JOBS:-$(nproc)}
bash tools/install_deps.sh
cmake --preset release
cmake --build --preset release -j "$jobs" --target spd_bench
./build/bench/spd_bench --benchmark_filter="${CURVKIT_BENCH_FILTER:-^posv/(kokkos|lapacke|eigen)/|^roofline/}" \
  --benchmark_out=build/spd_bench.json --benchmark_out_format=json
python3 tools/bench_table.py --short build/spd_bench.json
