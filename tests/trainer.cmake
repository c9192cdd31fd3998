dpo_script_test(test_cli_errors cli_errors.sh)
dpo_script_test(test_train_basics train_basics.sh)
dpo_script_test(test_resume resume.sh)
dpo_script_test(test_accumulation accumulation.sh)
dpo_script_test(test_overfit overfit.sh)
dpo_script_test(test_precompute_reference precompute_reference.sh)
dpo_script_test(test_from_checkpoint from_checkpoint.sh)
dpo_script_test(test_layouts layouts.sh)
# The demo end to end (about 80 s); left out of the sanitizer pass (-LE demo).
dpo_script_test(test_demo demo.sh)
set_tests_properties(test_demo PROPERTIES LABELS demo PROCESSORS 2)
# Failure behaviour (test-only fault injection through DPO_TEST_* variables).
dpo_script_test(test_nonfinite nonfinite.sh)
set_tests_properties(test_nonfinite PROPERTIES PROCESSORS 2)
dpo_script_test(test_rank_failure rank_failure.sh)
set_tests_properties(test_rank_failure PROPERTIES PROCESSORS 2)
# ZeRO-1 (sharded optimizer state) against zero_stage 0 and against 1 rank, and
# checkpoints written with ZeRO-1 resumed at other layouts (and the reverse).
dpo_script_test(test_zero zero.sh)
set_tests_properties(test_zero PROPERTIES PROCESSORS 2)
dpo_script_test(test_reshard reshard.sh)
set_tests_properties(test_reshard PROPERTIES PROCESSORS 2)
