# Tests of the CUDA backend against the CPU backend. Always built: without CUDA
# (or without a visible GPU) they exit 77 = skipped.
dpo_test(NAME test_gpu_attention SOURCES test_gpu_attention.c LIBS dpo_backend LABELS gpu)
