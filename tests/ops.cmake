# Tests of the backend ops (CPU reference; the GPU test skips without a device).
# attention_ref.c: the scalar attention, the independent reference for the blocked one.
dpo_test(NAME test_ops SOURCES test_ops.c attention_ref.c LIBS dpo_backend)
# Every CUDA op against the CPU backend. Always built: without CUDA (or without a
# visible GPU) it exits 77 = skipped.
dpo_test(NAME test_gpu_ops SOURCES test_gpu_ops.c LIBS dpo_backend LABELS gpu)
