# The generated version header, build/include/dpo/version.h (from version.h.in):
# project(VERSION) plus the commit the sources are checked out at, read here, at
# configure time. Outside a git checkout (or without git) the commit is left empty
# and the version is just PROJECT_VERSION; -DDPO_GIT_COMMIT=<hash> sets it by hand
# (e.g. when packaging an exported tree).
set(DPO_GIT_DESCRIBE "")
if(NOT DEFINED DPO_GIT_COMMIT)
  set(DPO_GIT_COMMIT "")
  find_package(Git QUIET)
  if(GIT_FOUND)
    # Only this project's own checkout counts, not a repository that happens to
    # contain the unpacked sources.
    execute_process(COMMAND ${GIT_EXECUTABLE} rev-parse --show-toplevel
                    WORKING_DIRECTORY ${PROJECT_SOURCE_DIR} RESULT_VARIABLE _dpo_rc
                    OUTPUT_VARIABLE _dpo_top OUTPUT_STRIP_TRAILING_WHITESPACE ERROR_QUIET)
    if(_dpo_rc EQUAL 0)
      file(REAL_PATH "${_dpo_top}" _dpo_top)
      file(REAL_PATH "${PROJECT_SOURCE_DIR}" _dpo_src)
    endif()
    if(_dpo_rc EQUAL 0 AND _dpo_top STREQUAL _dpo_src)
      execute_process(COMMAND ${GIT_EXECUTABLE} rev-parse --short=7 HEAD
                      WORKING_DIRECTORY ${PROJECT_SOURCE_DIR} RESULT_VARIABLE _dpo_rc
                      OUTPUT_VARIABLE _dpo_commit OUTPUT_STRIP_TRAILING_WHITESPACE ERROR_QUIET)
      if(_dpo_rc EQUAL 0)
        set(DPO_GIT_COMMIT "${_dpo_commit}")
        execute_process(COMMAND ${GIT_EXECUTABLE} describe --tags --always
                        WORKING_DIRECTORY ${PROJECT_SOURCE_DIR}
                        OUTPUT_VARIABLE DPO_GIT_DESCRIBE OUTPUT_STRIP_TRAILING_WHITESPACE ERROR_QUIET)
        # Configure again when HEAD moves (a commit, a checkout), so the header
        # names the commit that is built.
        set(_dpo_refs HEAD packed-refs)
        execute_process(COMMAND ${GIT_EXECUTABLE} symbolic-ref -q HEAD
                        WORKING_DIRECTORY ${PROJECT_SOURCE_DIR}
                        OUTPUT_VARIABLE _dpo_branch OUTPUT_STRIP_TRAILING_WHITESPACE ERROR_QUIET)
        if(_dpo_branch)
          list(APPEND _dpo_refs ${_dpo_branch})
        endif()
        foreach(_dpo_ref IN LISTS _dpo_refs)
          execute_process(COMMAND ${GIT_EXECUTABLE} rev-parse --git-path ${_dpo_ref}
                          WORKING_DIRECTORY ${PROJECT_SOURCE_DIR}
                          OUTPUT_VARIABLE _dpo_path OUTPUT_STRIP_TRAILING_WHITESPACE ERROR_QUIET)
          get_filename_component(_dpo_path "${_dpo_path}" ABSOLUTE BASE_DIR ${PROJECT_SOURCE_DIR})
          if(EXISTS "${_dpo_path}")
            set_property(DIRECTORY APPEND PROPERTY CMAKE_CONFIGURE_DEPENDS "${_dpo_path}")
          endif()
        endforeach()
      endif()
    endif()
  endif()
endif()
if(DPO_GIT_COMMIT)
  set(DPO_VERSION_FULL "${PROJECT_VERSION} (git ${DPO_GIT_COMMIT})")
else()
  set(DPO_VERSION_FULL "${PROJECT_VERSION}")
endif()
set(DPO_GENERATED_INCLUDE_DIR ${PROJECT_BINARY_DIR}/include)
configure_file(${CMAKE_CURRENT_LIST_DIR}/version.h.in ${DPO_GENERATED_INCLUDE_DIR}/dpo/version.h @ONLY)
message(STATUS "dpo_hpc: version ${DPO_VERSION_FULL}")
