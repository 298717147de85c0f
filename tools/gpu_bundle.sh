#!/usr/bin/env bash
# Packs the test, benchmark and trainer binaries of one or more curvkit build directories, with
# the shared libraries they need that a bare CUDA machine lacks, into one tarball that
# tools/gpu_run_bundle.sh runs on a GPU machine where nothing can be installed (no GoogleTest,
# Google Benchmark, OpenBLAS there). Build with -DBUILD_SHARED_LIBS=ON (one libcurvkit.so, not
# one copy of the library per binary) and -DCURVKIT_NATIVE=OFF (the GPU machine's CPU may lack
# this one's instructions).
#
#   tools/gpu_bundle.sh OUT.tar.xz NAME=BUILD_DIR [NAME=BUILD_DIR ...]
#
# Layout: NAME/{tests,bench,examples,lib} per build directory (lib: its libcurvkit.so and any
# Kokkos libraries it links), common/lib for the other non-system libraries, and data/ with the
# Fashion-MNIST files when CURVKIT_BUNDLE_DATA names their folder.
set -euo pipefail
out=$1
shift
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage/common/lib"
# Libraries every CUDA machine has (the C and C++ runtimes, the driver, the CUDA toolkit's).
system='^(linux-vdso|ld-linux|libc|libm|libdl|librt|libpthread|libstdc\+\+|libgcc_s|libcuda|libcudart|libcublas|libcublasLt|libcusolver|libcusparse|libnvJitLink|libz)\.so'
for spec in "$@"; do
  name=${spec%%=*}
  dir=${spec#*=}
  mkdir -p "$stage/$name"/{tests,bench,examples,lib}
  bins=()
  for f in "$dir"/tests/*_test "$dir"/bench/*_bench "$dir"/examples/*/train_*; do
    [[ -x $f && -f $f ]] || continue
    sub=$(basename "$(dirname "$f")")
    [[ $sub == tests || $sub == bench ]] || sub=examples
    cp "$f" "$stage/$name/$sub/"
    bins+=("$f")
  done
  cp -P "$dir"/libcurvkit.so* "$stage/$name/lib/"
  # The libraries the binaries load, found where this machine's loader finds them.
  ldd "${bins[@]}" "$dir"/libcurvkit.so | awk '/=> \// {print $1, $3}' | sort -u |
    while read -r soname path; do
      [[ $soname =~ $system ]] && continue
      case $soname in
        libcurvkit*) ;;
        libkokkos*) cp -L "$path" "$stage/$name/lib/$soname" ;;
        *) cp -L "$path" "$stage/common/lib/$soname" ;;
      esac
    done
done
if [[ -n ${CURVKIT_BUNDLE_DATA:-} ]]; then
  mkdir -p "$stage/data"
  cp "$CURVKIT_BUNDLE_DATA"/*.gz "$stage/data/"
fi
strip --strip-unneeded "$stage"/*/{tests,bench,examples}/* 2>/dev/null || true
tar -C "$stage" -cJf "$out" .
ls -l "$out"
