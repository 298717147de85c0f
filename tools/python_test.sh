#!/usr/bin/env bash
# The Python package's tests: installs NumPy, SciPy, pytest and (when it can) PyTorch, builds and
# installs curvkit with `pip install .` (the CUDA backend only where a GPU is present: there is
# nothing to run it on elsewhere, and it is the slow part of the build), then runs pytest on
# python/tests.  PyTorch's tests skip, saying why, where it could not be installed.
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-python3}
pip=("$python" -m pip install -q --disable-pip-version-check)
if ! "$python" -m pip --version > /dev/null 2>&1; then
  echo "curvkit: no pip for $python; installing Debian's python3-pip"
  sudo=""; [[ $(id -u) -ne 0 ]] && sudo="sudo"
  $sudo apt-get install -y -qq --no-install-recommends python3-pip python3-venv
fi
"${pip[@]}" numpy scipy pytest
if ! "$python" -c "import torch" > /dev/null 2>&1; then
  "${pip[@]}" torch || echo "curvkit: PyTorch could not be installed; its tests will be skipped"
fi
cuda=OFF
if command -v nvidia-smi > /dev/null 2>&1 && nvidia-smi -L > /dev/null 2>&1; then cuda=AUTO; fi
"${pip[@]}" -C cmake.define.CURVKIT_ENABLE_CUDA=$cuda .
# From outside the source tree, so that `import curvkit` is the installed package.
cd python/tests
exec "$python" -m pytest -q -p no:cacheprovider -rs .
