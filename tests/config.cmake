# Tests of the configuration (src/config/config.c).
dpo_test(NAME test_config SOURCES test_config.c LIBS dpo_config)
# test_config reads doc/config.md to check that every key is documented.
target_compile_definitions(test_config PRIVATE DPO_SOURCE_DIR="${PROJECT_SOURCE_DIR}")

# config_load_bcast at 2 ranks: rank 1 receives rank 0's configuration (and never
# opens the file: it is given a path that does not exist).
dpo_test_run(NAME test_config_bcast TARGET test_config NP 2 ARGS --bcast)

# A failing load at 2 ranks: rank 0 prints "dpo_hpc: error: ..." and every rank exits
# with status 1 after MPI_Finalize (no MPI_Abort, no rank returning).
dpo_test_run(NAME test_config_bcast_fail TARGET test_config NP 2 ARGS --bcast-fail)
set_tests_properties(test_config_bcast_fail PROPERTIES
  PASS_REGULAR_EXPRESSION "dpo_hpc: error: cannot open config file 'no_such_dir/missing.cfg'"
  FAIL_REGULAR_EXPRESSION "UNREACHABLE|MPI_ABORT|MPI_Abort")
