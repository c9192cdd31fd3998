# cmake --install: the programs, the static libraries, the public headers (with
# the generated dpo/version.h), a pkg-config file (dpo_hpc.pc) and a CMake package
# (find_package(dpo_hpc) -> dpo::dpo_train, dpo::dpo_io, ...), so other projects
# can link the libraries. Directories follow GNUInstallDirs.
include(CMakePackageConfigHelpers)
set(DPO_INSTALL_PROGRAMS dpo_hpc dpo_prep dpo_pairs dpo_convert dpo_demo_data)
# Top of the layer graph first: the order a static link line needs.
set(DPO_INSTALL_LIBRARIES dpo_gen_run dpo_train dpo_prep_lib dpo_pairs_lib dpo_hf dpo_io dpo_text
    dpo_optim dpo_model dpo_config dpo_backend dpo_parallel dpo_base)
set(DPO_CMAKE_DIR ${CMAKE_INSTALL_LIBDIR}/cmake/dpo_hpc)

install(TARGETS ${DPO_INSTALL_PROGRAMS} RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
install(TARGETS ${DPO_INSTALL_LIBRARIES} EXPORT dpo_hpcTargets
        ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
        INCLUDES DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
install(DIRECTORY ${PROJECT_SOURCE_DIR}/include/dpo DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}
        FILES_MATCHING PATTERN "*.h")
install(FILES ${DPO_GENERATED_INCLUDE_DIR}/dpo/version.h
        DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/dpo)

# A sanitizer build's libraries need the sanitizer runtimes in whatever links them.
if(DPO_SANITIZE)
  set(DPO_SANITIZE_LINK -fsanitize=address,undefined)
  target_link_options(dpo_base INTERFACE $<INSTALL_INTERFACE:${DPO_SANITIZE_LINK}>)
endif()

# ---- CMake package ----
install(EXPORT dpo_hpcTargets NAMESPACE dpo:: DESTINATION ${DPO_CMAKE_DIR})
configure_package_config_file(${CMAKE_CURRENT_LIST_DIR}/dpo_hpcConfig.cmake.in
                              ${PROJECT_BINARY_DIR}/dpo_hpcConfig.cmake
                              INSTALL_DESTINATION ${DPO_CMAKE_DIR})
write_basic_package_version_file(${PROJECT_BINARY_DIR}/dpo_hpcConfigVersion.cmake
                                 COMPATIBILITY SameMinorVersion)
install(FILES ${PROJECT_BINARY_DIR}/dpo_hpcConfig.cmake
              ${PROJECT_BINARY_DIR}/dpo_hpcConfigVersion.cmake
        DESTINATION ${DPO_CMAKE_DIR})

# ---- pkg-config ----
# Static libraries: Libs carries every dependency, so a plain `pkg-config --libs`
# link works. The prefix is found from the file's own place (${pcfiledir}), so
# `cmake --install --prefix DIR` gives a working file in any DIR.
function(dpo_pc_libs out)
  set(r "")
  foreach(l IN LISTS ARGN)
    if(l MATCHES "^-" OR IS_ABSOLUTE "${l}")
      list(APPEND r "${l}")
    elseif(l)
      list(APPEND r "-l${l}")
    endif()
  endforeach()
  list(JOIN r " " r)
  set(${out} "${r}" PARENT_SCOPE)
endfunction()
# (No public header includes cblas.h: the BLAS needs no -I.)
set(_dpo_pc_cflags ${HDF5_INCLUDE_DIRS} ${MPI_C_INCLUDE_DIRS})
set(_dpo_pc_libs ${HDF5_C_LIBRARIES} ${DPO_BLAS_LIBRARIES} ${MPI_C_LIBRARIES})
set(_dpo_pc_defs ${HDF5_DEFINITIONS})
if(DPO_HAVE_CUDA)
  list(APPEND _dpo_pc_defs -DDPO_HAVE_CUDA=1)
  list(APPEND _dpo_pc_cflags ${CUDAToolkit_INCLUDE_DIRS})
  list(APPEND _dpo_pc_libs -L${CUDAToolkit_LIBRARY_DIR} cublasLt cublas cudart)
endif()
if(DPO_HAVE_NCCL)
  list(APPEND _dpo_pc_defs -DDPO_HAVE_NCCL=1)
  list(APPEND _dpo_pc_cflags ${NCCL_INCLUDE_DIR})
  list(APPEND _dpo_pc_libs ${NCCL_LIBRARY})
endif()
if(DPO_HAVE_CUDA)
  list(APPEND _dpo_pc_libs stdc++)   # the CUDA backend is C++ compiled by nvcc
endif()
list(APPEND _dpo_pc_libs ${OpenMP_C_FLAGS} ${DPO_SANITIZE_LINK} m)
list(REMOVE_DUPLICATES _dpo_pc_cflags)
set(DPO_PC_CFLAGS "")
foreach(d IN LISTS _dpo_pc_cflags)
  string(APPEND DPO_PC_CFLAGS " -I${d}")
endforeach()
list(JOIN _dpo_pc_defs " " _dpo_pc_defs)
string(APPEND DPO_PC_CFLAGS " ${_dpo_pc_defs} ${OpenMP_C_FLAGS}")
string(STRIP "${DPO_PC_CFLAGS}" DPO_PC_CFLAGS)
dpo_pc_libs(DPO_PC_LIBS ${_dpo_pc_libs})
set(DPO_PC_LIBS_OWN "")
foreach(t IN LISTS DPO_INSTALL_LIBRARIES)
  string(APPEND DPO_PC_LIBS_OWN " -l${t}")
endforeach()
file(RELATIVE_PATH DPO_PC_PREFIX_REL /root/${CMAKE_INSTALL_LIBDIR}/pkgconfig /root)
string(REGEX REPLACE "/$" "" DPO_PC_PREFIX_REL "${DPO_PC_PREFIX_REL}")
configure_file(${CMAKE_CURRENT_LIST_DIR}/dpo_hpc.pc.in ${PROJECT_BINARY_DIR}/dpo_hpc.pc @ONLY)
install(FILES ${PROJECT_BINARY_DIR}/dpo_hpc.pc DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig)
