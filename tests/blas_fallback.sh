#!/usr/bin/env bash
# Another BLAS than the OpenMP OpenBLAS: the reference BLAS with CBLAS (Debian
# libblas-dev) through find_package(BLAS). Configures a CPU-only build with it
# (-Werror), which must leave out OpenBLAS's thread calls, builds the backend's
# test and passes it. Skips (77) where no reference BLAS is installed.
source "$(dirname "$0")/lib.sh"; setup "$@"
CMAKE=${CMAKE:-cmake}
ref=/usr/lib/${DPO_ARCH:-x86_64-linux-gnu}/blas/libblas.so
[ -e "$ref" ] || { echo "no reference BLAS at $ref: skipped"; exit 77; }
"$CMAKE" -S "$SRC" -B bld -DDPO_CUDA=OFF -DDPO_WERROR=ON -DBLA_VENDOR=Generic \
    -DBLAS_LIBRARIES="$ref" > configure.log 2>&1 || { cat configure.log; fail "configure"; }
grep -q "dpo_hpc: BLAS $ref .*OpenBLAS thread control OFF" configure.log ||
  { cat configure.log; fail "the reference BLAS was not taken, or OpenBLAS's calls were kept"; }
"$CMAKE" --build bld -j 2 --target test_ops > build.log 2>&1 || { cat build.log; fail "build"; }
ldd bld/tests/test_ops | grep -q "blas/libblas.so" || { ldd bld/tests/test_ops; fail "not linked to $ref"; }
"$MPIRUN" -np 1 bld/tests/test_ops > ops.log 2>&1 || { tail -20 ops.log; fail "test_ops on the reference BLAS"; }
tail -1 ops.log
echo "blas_fallback: the CPU backend builds and passes test_ops on the reference BLAS"
