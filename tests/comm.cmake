# Collectives: the host ones (comm.h) and the MPI device collectives (dcomm.h), every
# one of them, over the world, TP and DP groups of a TP=2 x DP=2 mesh, at 2 ranks
# (TP=2, DP=1) and at one rank (every group of size 1).
dpo_test(NAME test_comm SOURCES test_comm.c LIBS dpo_parallel)
dpo_test_run(NAME test_comm_np2 TARGET test_comm NP 2)
dpo_test_run(NAME test_comm_np4 TARGET test_comm NP 4)
set_tests_properties(test_comm_np4 PROPERTIES PROCESSORS 2)

# The NCCL device collectives on device buffers against the MPI ones on host
# copies, subgroups and deferral included. Needs one GPU per rank: skips (77)
# otherwise. Always built (the CUDA backend is loaded at run time).
dpo_test(NAME test_comm_nccl SOURCES test_comm_nccl.c LIBS dpo_parallel NP 2 LABELS gpu)
