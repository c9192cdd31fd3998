# Helper scripts for users: the NeMo RL config translator and the metrics plotter.
dpo_script_test(test_migration_tools migration_tools.sh)
# --version of every program.
dpo_script_test(test_version version.sh)
# The producer attribute of the files they write; h5_strip_attr makes old-style files.
add_executable(h5_strip_attr h5_strip_attr.c)
target_include_directories(h5_strip_attr PRIVATE ${HDF5_INCLUDE_DIRS})
target_compile_definitions(h5_strip_attr PRIVATE ${HDF5_DEFINITIONS})
target_link_libraries(h5_strip_attr PRIVATE ${HDF5_C_LIBRARIES} MPI::MPI_C)
set_target_properties(h5_strip_attr PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR}/tests)
dpo_script_test(test_producer producer.sh)
