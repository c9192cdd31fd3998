# Dataset and checkpoint I/O (src/io/dataset.c, src/io/ckpt.c) and the demo data
# generator (src/tools/dpo_demo_data.c). Files are written under build/tests with a
# per-test prefix, so these tests may run in parallel.
dpo_test(NAME test_dataset SOURCES test_dataset.c LIBS dpo_io LABELS io)

# The same program on two ranks: the reader's collective open, the token check
# shared over ranks and independent batch reads (rank 0 writes the files).
dpo_test_run(NAME test_dataset_np2 TARGET test_dataset NP 2 LABELS io)

# dpo_demo_data: every pair checked (arithmetic, near misses, held-out problems
# never in training), bad arguments exit 2, same seed gives the same data.
dpo_test_run(NAME test_demo_data TARGET test_dataset LABELS io
             ARGS --demo $<TARGET_FILE:dpo_demo_data>)
add_dependencies(test_dataset dpo_demo_data)

# Checkpoints: save / load bit for bit, find_latest, prune, architecture mismatch;
# on two ranks also across layouts (written at TP 2, read at TP 1 and DP 2).
dpo_test(NAME test_ckpt SOURCES test_ckpt.c LIBS dpo_io LABELS io)
dpo_test_run(NAME test_ckpt_np2 TARGET test_ckpt NP 2 LABELS io)
