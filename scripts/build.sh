#!/usr/bin/env bash
# Configures and builds into build/ (CUDA on whenever nvcc is found, warnings as
# errors). Extra arguments go to cmake, e.g. scripts/build.sh -DDPO_CUDA=OFF
set -euo pipefail
cd "$(dirname "$0")/.."
# nvcc lives outside PATH in the CUDA toolkit's default install.
if ! command -v nvcc > /dev/null && [ -x /usr/local/cuda/bin/nvcc ]; then
  export PATH=/usr/local/cuda/bin:$PATH
fi
BUILD_DIR=${BUILD_DIR:-build}
cmake -S . -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=${BUILD_TYPE:-Release} -DDPO_WERROR=ON "$@" > "$BUILD_DIR.cmake.log" 2>&1 ||
  { cat "$BUILD_DIR.cmake.log"; exit 1; }
grep -E "dpo_hpc:|WARNING" "$BUILD_DIR.cmake.log" || true
cmake --build "$BUILD_DIR" -j "$(nproc)"
