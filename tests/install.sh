#!/usr/bin/env bash
# cmake --install into a fresh prefix: the programs, the static libraries, every
# public header and the generated version.h, dpo_hpc.pc and the CMake package;
# then a small C program of "another project" is compiled against the installed
# files with pkg-config, and again with find_package(dpo_hpc), and runs.
source "$(dirname "$0")/lib.sh"; setup "$@"
CMAKE=${CMAKE:-cmake}
BUILD=$(cd "$BIN/.." && pwd)
P=$WORK/prefix
"$CMAKE" --install "$BUILD" --prefix "$P" > install.log 2>&1 || { cat install.log; fail "cmake --install"; }
pc=$(find "$P" -name dpo_hpc.pc)
[ -n "$pc" ] || fail "no dpo_hpc.pc installed"
# shellcheck disable=SC2016
libdir=$(sed -n 's/^libdir=${prefix}\///p' "$pc")
for prog in dpo_hpc dpo_prep dpo_pairs dpo_convert dpo_demo_data; do
  [ -x "$P/bin/$prog" ] || fail "bin/$prog not installed"
done
for lib in base backend parallel config model optim io hf train text prep_lib pairs_lib gen_run; do
  [ -f "$P/$libdir/libdpo_$lib.a" ] || fail "$libdir/libdpo_$lib.a not installed"
done
n=0
for h in "$SRC"/include/dpo/*.h; do
  cmp -s "$h" "$P/include/dpo/$(basename "$h")" || fail "include/dpo/$(basename "$h") not installed"
  n=$((n + 1))
done
cmp -s "$BUILD/include/dpo/version.h" "$P/include/dpo/version.h" || fail "the generated version.h not installed"
for f in dpo_hpcConfig.cmake dpo_hpcConfigVersion.cmake dpo_hpcTargets.cmake; do
  [ -f "$P/$libdir/cmake/dpo_hpc/$f" ] || fail "$libdir/cmake/dpo_hpc/$f not installed"
done
want=$("$BIN/dpo_hpc" --version)
[ "$("$P/bin/dpo_hpc" --version)" = "$want" ] || fail "installed dpo_hpc --version differs"
version=${want#dpo_hpc }

# pkg-config: compile, link and run.
export PKG_CONFIG_PATH=$P/$libdir/pkgconfig${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}
[ "$(pkg-config --modversion dpo_hpc)" = "${version%% *}" ] || fail "pkg-config --modversion"
# shellcheck disable=SC2046
cc -std=c11 -o consumer_pc "$SRC/tests/install/consumer.c" $(pkg-config --cflags --libs dpo_hpc) \
    > cc.log 2>&1 || { cat cc.log; fail "compiling against the installed headers with pkg-config"; }
out=$("$MPIRUN" -np 1 ./consumer_pc pc.h5) || fail "consumer (pkg-config) failed"
[ "$out" = "consumer $version (header ${version%% *})" ] || fail "consumer printed '$out'"
got=$(h5dump -a /producer pc.h5 | sed -n 's/^ *(0): "\(.*\)"$/\1/p')
[ "$got" = "consumer $version" ] || fail "producer of the consumer's file is '$got'"

# The CMake package: find_package(dpo_hpc), target dpo::dpo_io.
"$CMAKE" -S "$SRC/tests/install" -B cm -DCMAKE_PREFIX_PATH="$P" > cm.log 2>&1 ||
  { cat cm.log; fail "find_package(dpo_hpc) in another project"; }
"$CMAKE" --build cm > cmb.log 2>&1 || { cat cmb.log; fail "building against dpo::dpo_io"; }
"$MPIRUN" -np 1 cm/consumer cm.h5 > /dev/null || fail "consumer (CMake package) failed"
echo "install: $(find "$P" -type f | wc -l) files, $(du -sh "$P" | cut -f1) ($n public headers + version.h);" \
     "pkg-config and find_package consumers build and run"
