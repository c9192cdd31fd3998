#!/usr/bin/env bash
# --version on every program: "<program> <version>[ (git <commit>)]" on stdout,
# nothing on stderr, exit 0; the version is project(VERSION) of CMakeLists.txt and
# the commit, when there is one, the one build/include/dpo/version.h was made from.
source "$(dirname "$0")/lib.sh"; setup "$@"
header=$BIN/../include/dpo/version.h
[ -f "$header" ] || fail "no generated $header"
want=$(sed -n 's/^#define DPO_VERSION_FULL "\(.*\)"$/\1/p' "$header")
commit=$(sed -n 's/^#define DPO_GIT_COMMIT "\(.*\)"$/\1/p' "$header")
version=$(sed -n 's/^project(dpo_hpc VERSION \([0-9.]*\) .*/\1/p' "$SRC/CMakeLists.txt")
[ -n "$version" ] || fail "no project(VERSION) in CMakeLists.txt"
if [ -n "$commit" ]; then
  [[ $commit =~ ^[0-9a-f]{7,}$ ]] || fail "DPO_GIT_COMMIT '$commit' is not a commit hash"
  [ "$want" = "$version (git $commit)" ] || fail "DPO_VERSION_FULL '$want' != '$version (git $commit)'"
else
  [ "$want" = "$version" ] || fail "DPO_VERSION_FULL '$want' != '$version' (no commit)"
fi
n=0
for prog in dpo_hpc dpo_prep dpo_pairs dpo_convert dpo_demo_data dpo_tokenize_bench dpo_op_bench; do
  [ -x "$BIN/$prog" ] || fail "$prog not built"
  set +e
  out=$("$BIN/$prog" --version 2> err.txt); rc=$?
  set -e
  [ "$rc" = 0 ] || { cat err.txt >&2; fail "$prog --version exited $rc"; }
  [ "$out" = "$prog $want" ] || fail "$prog --version printed '$out', expected '$prog $want'"
  [ ! -s err.txt ] || { cat err.txt >&2; fail "$prog --version wrote to stderr"; }
  n=$((n + 1))
done
# dpo_hpc also takes it after other options, and under mpirun only rank 0 prints.
out=$("$MPIRUN" --oversubscribe --bind-to none -np 2 "$BIN/dpo_hpc" --precompute-reference --version)
[ "$out" = "dpo_hpc $want" ] || fail "mpirun -np 2 dpo_hpc --version printed '$out'"
# The same for the options parsed in a loop: --version after another option.
out=$("$BIN/dpo_prep" --force --version)
[ "$out" = "dpo_prep $want" ] || fail "dpo_prep --force --version printed '$out'"
echo "version: $n programs print '<program> $want'"
