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
# A rank killed by SIGKILL ends the job within 10 s; the run resumes afterwards.
dpo_script_test(test_rank_killed rank_killed.sh)
set_tests_properties(test_rank_killed PROPERTIES PROCESSORS 2)
# ZeRO-1 (sharded optimizer state) against zero_stage 0 and against 1 rank, and
# checkpoints written with ZeRO-1 resumed at other layouts (and the reverse).
dpo_script_test(test_zero zero.sh)
set_tests_properties(test_zero PROPERTIES PROCESSORS 2)
dpo_script_test(test_reshard reshard.sh)
set_tests_properties(test_reshard PROPERTIES PROCESSORS 2)
dpo_script_test(test_signal_checkpoint signal_checkpoint.sh)
set_tests_properties(test_signal_checkpoint PROPERTIES PROCESSORS 2)
# cluster.backend = "cuda" where it cannot run (no CUDA in the build, or no device
# visible): one clear error, exit 1, nothing written. Runs on any machine.
dpo_script_test(test_cuda_unavailable cuda_unavailable.sh)
set_tests_properties(test_cuda_unavailable PROPERTIES PROCESSORS 2)
# The CUDA backend against the CPU backend over 4 steps (1 rank; DP = 2 and TP = 2
# with 2 GPUs). Skips without a GPU.
dpo_script_test(test_gpu_step gpu_step.sh)
set_tests_properties(test_gpu_step PROPERTIES LABELS gpu)
dpo_script_test(test_evaluate evaluate.sh)
dpo_script_test(test_recompute recompute.sh)
set_tests_properties(test_recompute PROPERTIES PROCESSORS 2)
dpo_script_test(test_op_profile op_profile.sh)
set_tests_properties(test_op_profile PROPERTIES PROCESSORS 2)
