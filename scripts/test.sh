#!/usr/bin/env bash
# Installs the packages, builds (CUDA on where nvcc exists, -Werror), runs the whole
# test suite; then, with SANITIZE=1 (as CI does), builds and runs it again under
# AddressSanitizer + UBSan.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/build.sh
(cd build && ctest --output-on-failure -j "$(nproc)")
if [ "${SANITIZE:-0}" = 1 ]; then
  # Open MPI keeps some allocations until exit; leaks inside it are suppressed by name.
  export LSAN_OPTIONS="suppressions=$PWD/tests/lsan.supp:print_suppressions=0"
  export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
  BUILD_DIR=build-asan BUILD_TYPE=Debug scripts/build.sh -DDPO_SANITIZE=ON -DDPO_CUDA=OFF
  (cd build-asan && ctest --output-on-failure -j "$(nproc)" -LE gpu)
fi
