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
  # AddressSanitizer checks every access (overflows, use after free, double free)
  # and UBSan stops at the first undefined behaviour. Leak detection is off: Open
  # MPI's plugins (dlclose'd at finalize) and the OpenMP / OpenBLAS thread pools
  # keep allocations until exit that LeakSanitizer cannot attribute to a library,
  # so no suppression list can separate them from ours.
  export ASAN_OPTIONS="detect_leaks=0:abort_on_error=0:strict_string_checks=1"
  export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
  BUILD_DIR=build-asan BUILD_TYPE=Debug scripts/build.sh -DDPO_SANITIZE=ON -DDPO_CUDA=OFF
  (cd build-asan && ctest --output-on-failure -j "$(nproc)" -LE "gpu|demo")
fi
