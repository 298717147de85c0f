# ctest -R install_consumer: installs this curvkit build into a fresh prefix, then builds
# examples/consumer against it twice, as another project would: with CMake
# (find_package(curvkit) + curvkit::curvkit) and with the flags of pkg-config --static; runs
# both programs.  Variables (-D): BUILD_DIR, SOURCE_DIR, WORK_DIR, BUILD_TYPE, CXX, LIBDIR.
foreach(_var BUILD_DIR SOURCE_DIR WORK_DIR BUILD_TYPE CXX LIBDIR)
  if(NOT DEFINED ${_var})
    message(FATAL_ERROR "install_consumer.cmake: -D${_var}=... is required")
  endif()
endforeach()

function(step)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE _rc OUTPUT_VARIABLE _out ERROR_VARIABLE _out)
  message("$ ${ARGN}\n${_out}")
  if(NOT _rc EQUAL 0)
    message(FATAL_ERROR "exit status ${_rc}")
  endif()
endfunction()

file(REMOVE_RECURSE ${WORK_DIR})
set(_prefix ${WORK_DIR}/prefix)
step(${CMAKE_COMMAND} --install ${BUILD_DIR} --prefix ${_prefix} --config ${BUILD_TYPE})

# CMake consumer.
step(${CMAKE_COMMAND} -S ${SOURCE_DIR}/examples/consumer -B ${WORK_DIR}/cmake-build
  -DCMAKE_PREFIX_PATH=${_prefix} -DCMAKE_BUILD_TYPE=${BUILD_TYPE} -DCMAKE_CXX_COMPILER=${CXX})
step(${CMAKE_COMMAND} --build ${WORK_DIR}/cmake-build)
step(${WORK_DIR}/cmake-build/consumer)
step(${WORK_DIR}/cmake-build/c_consumer)

# pkg-config consumer.
find_program(_pkg_config NAMES pkg-config pkgconf)
if(NOT _pkg_config)
  message("pkg-config not found: the pkg-config build is skipped")
  return()
endif()
set(ENV{PKG_CONFIG_PATH} ${_prefix}/${LIBDIR}/pkgconfig)
execute_process(COMMAND ${_pkg_config} --static --cflags --libs curvkit
  RESULT_VARIABLE _rc OUTPUT_VARIABLE _flags ERROR_VARIABLE _err OUTPUT_STRIP_TRAILING_WHITESPACE)
if(NOT _rc EQUAL 0)
  message(FATAL_ERROR "pkg-config --static --cflags --libs curvkit: ${_err}")
endif()
separate_arguments(_flags UNIX_COMMAND "${_flags}")
step(${CXX} -O2 ${SOURCE_DIR}/examples/consumer/main.cpp -o ${WORK_DIR}/consumer-pkg-config
  ${_flags})
step(${WORK_DIR}/consumer-pkg-config)
# The C program: compiled as C (-x c; the include path is all it needs, the other cflags are
# C++'s), linked by the C++ driver (curvkit is a C++ library).
execute_process(COMMAND ${_pkg_config} --cflags-only-I curvkit OUTPUT_VARIABLE _includes
  OUTPUT_STRIP_TRAILING_WHITESPACE)
separate_arguments(_includes UNIX_COMMAND "${_includes}")
step(${CXX} -x c -std=c11 -O2 -c ${SOURCE_DIR}/examples/consumer/c_consumer.c
  -o ${WORK_DIR}/c_consumer.o ${_includes})
step(${CXX} ${WORK_DIR}/c_consumer.o -o ${WORK_DIR}/c-consumer-pkg-config ${_flags} -lm)
step(${WORK_DIR}/c-consumer-pkg-config)
