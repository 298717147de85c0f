#!/usr/bin/env bash
# Runs binaries of a tarball made by tools/gpu_bundle.sh on a GPU machine.
#
#   tools/gpu_run_bundle.sh BUNDLE OUTDIR tests NAME GTEST_FILTER
#       every test binary of build NAME with --gtest_filter=GTEST_FILTER; log in
#       OUTDIR/NAME-tests.log, one summary line per binary on stdout
#   tools/gpu_run_bundle.sh BUNDLE OUTDIR bench NAME BINARY BENCH_FILTER [ARGS...]
#       one benchmark binary; JSON in OUTDIR/NAME-BINARY.json, table on stdout
#   tools/gpu_run_bundle.sh BUNDLE OUTDIR run NAME COMMAND [ARGS...]
#       (test binaries and benchmarks are stopped after CURVKIT_TEST_TIMEOUT / CURVKIT_BENCH_TIMEOUT
#       seconds, default 300 / 600)
#       any command with the build's libraries on the loader's path (the data folder, if
#       bundled, is in $CURVKIT_DATA)
#
# The bundle is unpacked once per machine into ${CURVKIT_BUNDLE_DIR:-/tmp/curvkit-bundle}.
set -uo pipefail
bundle=$1 out=$2 mode=$3 name=$4
shift 4
root=${CURVKIT_BUNDLE_DIR:-/tmp/curvkit-bundle}
if [[ ! -d $root/$name ]]; then
  mkdir -p "$root"
  tar -C "$root" -xJf "$bundle" || exit 1
fi
mkdir -p "$out"
here=$(cd "$(dirname "$0")" && pwd)
# The CUDA libraries: the toolkit's, else the ones PyTorch's wheels bring.
cuda_libs=/usr/local/cuda/lib64
for d in $(python3 -c 'import nvidia, os; p = nvidia.__path__[0]; print(" ".join(os.path.join(p, x, "lib") for x in os.listdir(p)))' 2>/dev/null); do
  cuda_libs+=":$d"
done
export LD_LIBRARY_PATH="$root/$name/lib:$root/common/lib:$cuda_libs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export CURVKIT_DATA=$root/data
case $mode in
  tests)
    filter=$1
    log=$out/$name-tests.log
    : >"$log"
    failed=0
    for t in "$root/$name"/tests/*_test; do
      start=$(date +%s%N)
      timeout "${CURVKIT_TEST_TIMEOUT:-300}" "$t" --gtest_filter="$filter" >"$out/tmp.log" 2>&1
      rc=$?
      secs=$(awk -v a="$start" -v b="$(date +%s%N)" 'BEGIN { print (b - a) / 1e9 }')
      cat "$out/tmp.log" >>"$log"
      summary=$(grep -E '^\[  (PASSED|FAILED)  \]|tests? ran|SKIPPED \]' "$out/tmp.log" | tr '\n' ' ')
      printf '%-28s rc=%d %6.1fs %s\n' "$(basename "$t")" "$rc" "$secs" "$summary"
      grep -E '^\[  FAILED  \] .*\(' "$out/tmp.log" | head -20
      ((rc == 0)) || failed=$((failed + 1))
    done
    rm -f "$out/tmp.log"
    echo "$name: $failed test binaries failed"
    ;;
  bench)
    bin=$1 filter=$2
    shift 2
    json=$out/$name-$bin.json
    timeout "${CURVKIT_BENCH_TIMEOUT:-600}" "$root/$name/bench/$bin" --benchmark_filter="$filter" --benchmark_out="$json" \
      --benchmark_out_format=json "$@" >"$out/$name-$bin.log" 2>&1
    echo "$name $bin rc=$?"
    python3 "$here/bench_table.py" "$json" 2>/dev/null || tail -20 "$out/$name-$bin.log"
    ;;
  run)
    "$@"
    ;;
  *)
    echo "unknown mode $mode" >&2
    exit 2
    ;;
esac
