# Collectives (src/parallel/comm.c): all-reduce, reduce-scatter and all-gather (in place and
# out of place) over the world, TP and DP groups of a TP=2 x DP=2 mesh, and at one
# rank (every group of size 1).
dpo_test(NAME test_comm SOURCES test_comm.c LIBS dpo_parallel)
dpo_test_run(NAME test_comm_np4 TARGET test_comm NP 4)
set_tests_properties(test_comm_np4 PROPERTIES PROCESSORS 2)

# The same collectives through NCCL on device buffers against MPI on host copies
# (and the KV-head subgroup sum). Needs one GPU per rank: skips (77) otherwise.
if(DPO_HAVE_NCCL)
  dpo_test(NAME test_comm_nccl SOURCES test_comm_nccl.c LIBS dpo_parallel NP 2 LABELS gpu)
endif()
