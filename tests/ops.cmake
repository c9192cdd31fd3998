# Tests of the backend ops (CPU reference; the GPU test skips without a device).
# attention_ref.c: the scalar attention, the independent reference for the blocked one.
dpo_test(NAME test_ops SOURCES test_ops.c attention_ref.c LIBS dpo_backend)
# With every GPU hidden the device count must be 0 (the lookup checks only).
dpo_test_run(NAME test_ops_hidden_devices TARGET test_ops ARGS --lookup)
set_property(TEST test_ops_hidden_devices APPEND PROPERTY ENVIRONMENT
             "CUDA_VISIBLE_DEVICES=" "DPO_TEST_EXPECT_DEVICES=0")
# Every CUDA op against the CPU backend. Always built: without CUDA (or without a
# visible GPU) it exits 77 = skipped.
dpo_test(NAME test_gpu_ops SOURCES test_gpu_ops.c LIBS dpo_backend LABELS gpu)
