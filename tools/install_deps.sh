#!/usr/bin/env bash
# Installs the Debian packages curvkit builds, tests and benchmarks with, if any is missing.
# The CUDA toolkit is not installed here: the CUDA backend is built when nvcc is found.
set -euo pipefail
# zlib1g-dev and dataset-fashion-mnist: examples/train_fashion_mnist (.gz reader, data set).
packages=(cmake g++ make python3 libgtest-dev libbenchmark-dev libtrilinos-kokkos-dev
          libeigen3-dev liblapacke-dev libopenblas-dev zlib1g-dev dataset-fashion-mnist)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "curvkit: installing ${missing[*]}"
  sudo=""; [[ $(id -u) -ne 0 ]] && sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
