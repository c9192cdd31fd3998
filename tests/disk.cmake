# Faults of the disk and of the job (src/io/ckpt.c, src/io/dataset.c, the atomic
# output files of src/base/util.c): every writer on a real full file system (a
# small tmpfs; needs root, else skipped), and kill -9 at random points of
# checkpointing followed by a resume.
dpo_script_test(full_disk full_disk.sh)
set_tests_properties(full_disk PROPERTIES LABELS disk TIMEOUT 600 RUN_SERIAL TRUE)
dpo_script_test(kill_checkpoint kill_checkpoint.sh)
set_tests_properties(kill_checkpoint PROPERTIES LABELS disk TIMEOUT 300)
