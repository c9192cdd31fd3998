# Building and installing: cmake --install with pkg-config and CMake consumers, and
# the CPU backend on another BLAS (a CPU-only configure and build of its own).
dpo_script_test(test_install install.sh)
dpo_script_test(test_blas_fallback blas_fallback.sh)
set_tests_properties(test_install test_blas_fallback PROPERTIES LABELS build)
set_property(TEST test_install test_blas_fallback APPEND PROPERTY ENVIRONMENT
             "CMAKE=${CMAKE_COMMAND}" "DPO_ARCH=${CMAKE_LIBRARY_ARCHITECTURE}")
