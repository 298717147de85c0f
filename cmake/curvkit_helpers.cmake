# Helper functions for curvkit's targets.

# Host optimisation flags for a target's C++ sources.
function(curvkit_host_flags target)
  if(CURVKIT_NATIVE AND CMAKE_CXX_COMPILER_ID MATCHES "GNU|Clang")
    target_compile_options(${target} PRIVATE $<$<COMPILE_LANGUAGE:CXX>:-march=native>)
  endif()
  if(CMAKE_CXX_COMPILER_ID MATCHES "GNU|Clang")
    # OpenMP SIMD pragmas only (no OpenMP runtime) lets reductions vectorise; no errno from
    # sqrt lets the SIMD-across-matrices kernels vectorise their square roots.
    target_compile_options(${target} PRIVATE $<$<COMPILE_LANGUAGE:CXX>:-fopenmp-simd -fno-math-errno -Wall -Wextra>)
  endif()
endfunction()

# curvkit_add_test(NAME <name> SOURCES <src...> [LIBS <lib...>] [HOST_ONLY])
# Builds one GoogleTest binary and registers one CTest entry per compiled backend, labelled
# reference / kokkos / cuda, each running the tests of that backend (GoogleTest filter on the
# backend name in the test parameters).
function(curvkit_add_test)
  cmake_parse_arguments(T "HOST_ONLY" "NAME" "SOURCES;LIBS" ${ARGN})
  add_executable(${T_NAME} ${T_SOURCES} ${PROJECT_SOURCE_DIR}/tests/test_main.cpp)
  target_link_libraries(${T_NAME} PRIVATE curvkit::curvkit GTest::gtest ${T_LIBS})
  target_include_directories(${T_NAME} PRIVATE ${PROJECT_SOURCE_DIR}/tests)
  curvkit_host_flags(${T_NAME})
  if(T_HOST_ONLY)  # backend-independent tests: one entry, labelled reference
    add_test(NAME ${T_NAME} COMMAND ${T_NAME})
    set_tests_properties(${T_NAME} PROPERTIES LABELS reference)
    return()
  endif()
  add_test(NAME ${T_NAME}.reference COMMAND ${T_NAME} --gtest_filter=*reference*)
  set_tests_properties(${T_NAME}.reference PROPERTIES LABELS reference)
  if(CURVKIT_HAVE_KOKKOS)
    add_test(NAME ${T_NAME}.kokkos COMMAND ${T_NAME} --gtest_filter=*kokkos*)
    set_tests_properties(${T_NAME}.kokkos PROPERTIES LABELS kokkos)
  endif()
  if(CURVKIT_HAVE_CUDA)
    add_test(NAME ${T_NAME}.cuda COMMAND ${T_NAME} --gtest_filter=*cuda*)
    # Without a GPU every CUDA test skips itself; CTest then reports the entry as skipped.
    set_tests_properties(${T_NAME}.cuda PROPERTIES LABELS cuda
      SKIP_REGULAR_EXPRESSION "no CUDA device")
  endif()
endfunction()
