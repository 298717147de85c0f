# Finds Kokkos and provides the interface target `curvkit_kokkos_dep`.
#
# Two kinds of installation are handled:
#  * A standalone Kokkos (3.x CMake build, 4.x, 5.x), e.g. via -DKokkos_ROOT=...: it exports
#    Kokkos::kokkos, which carries include paths, flags and libraries.
#  * Debian's libtrilinos-kokkos-dev (Kokkos 3.4 built inside Trilinos 13.2): its
#    Kokkos::kokkos carries the include directory /usr/lib/include, which does not exist
#    (the headers are in /usr/include/trilinos), and the imported library targets carry
#    none.  We locate Kokkos_Core.hpp ourselves and repair the target's include path.
#  * Any other Trilinos-style config without Kokkos::kokkos: the target is built from the
#    include and library variables the config sets.
# This file is installed next to curvkitConfig.cmake so consumers get the same target.

function(curvkit_find_kokkos)
  if(TARGET curvkit_kokkos_dep)
    return()
  endif()
  find_package(Kokkos CONFIG QUIET)
  if(NOT Kokkos_FOUND)
    return()
  endif()
  add_library(curvkit_kokkos_dep INTERFACE IMPORTED GLOBAL)
  set(_hints ${Kokkos_INCLUDE_DIRS})
  if(Kokkos_INSTALL_DIR)
    list(APPEND _hints "${Kokkos_INSTALL_DIR}/include/trilinos" "${Kokkos_INSTALL_DIR}/include")
  endif()

  if(TARGET Kokkos::kokkos)
    # Repair include directories that do not exist (Debian's Trilinos Kokkos says
    # /usr/lib/include); a healthy Kokkos is left untouched.
    get_target_property(_inc Kokkos::kokkos INTERFACE_INCLUDE_DIRECTORIES)
    set(_broken FALSE)
    foreach(_dir IN LISTS _inc)
      if(_dir AND NOT _dir MATCHES "\\$<" AND NOT EXISTS "${_dir}/Kokkos_Core.hpp")
        set(_broken TRUE)
      endif()
    endforeach()
    if(_broken)
      find_path(_kokkos_inc Kokkos_Core.hpp HINTS ${_hints}
        PATHS /usr/include/trilinos /usr/local/include/trilinos NO_CACHE)
      if(NOT _kokkos_inc)
        message(WARNING "curvkit: Kokkos::kokkos has a broken include path and Kokkos_Core.hpp "
                        "was not found; Kokkos backend off")
        return()
      endif()
      set_target_properties(Kokkos::kokkos PROPERTIES INTERFACE_INCLUDE_DIRECTORIES "${_kokkos_inc}")
      message(STATUS "curvkit: repaired Kokkos::kokkos include path (${_inc} -> ${_kokkos_inc})")
    endif()
    target_link_libraries(curvkit_kokkos_dep INTERFACE Kokkos::kokkos)
    message(STATUS "curvkit: Kokkos ${Kokkos_VERSION} (devices: ${Kokkos_DEVICES})")
    return()
  endif()

  # A Trilinos-style Kokkos without Kokkos::kokkos: build the target from its variables.
  find_path(_kokkos_inc Kokkos_Core.hpp HINTS ${_hints}
    PATHS /usr/include/trilinos /usr/local/include/trilinos NO_CACHE)
  if(NOT _kokkos_inc)
    message(WARNING "curvkit: Kokkos config found but Kokkos_Core.hpp was not; Kokkos backend off")
    return()
  endif()
  set(_libs)
  foreach(_name IN LISTS Kokkos_LIBRARIES)
    if(TARGET ${_name})
      list(APPEND _libs ${_name})
    else()
      find_library(_lib_${_name} NAMES ${_name} HINTS ${Kokkos_LIBRARY_DIRS} NO_CACHE)
      if(_lib_${_name})
        list(APPEND _libs ${_lib_${_name}})
      endif()
    endif()
  endforeach()
  target_include_directories(curvkit_kokkos_dep INTERFACE ${_kokkos_inc})
  target_link_libraries(curvkit_kokkos_dep INTERFACE ${_libs} ${CMAKE_DL_LIBS})
  message(STATUS "curvkit: Trilinos Kokkos (devices: ${Kokkos_DEVICES}), headers in ${_kokkos_inc}")
endfunction()

# A Kokkos built for CUDA compiles its kernels through nvcc: route the given sources through
# Kokkos's own compiler wrapper unless the C++ compiler already is one.
function(curvkit_kokkos_sources)
  if(Kokkos_ENABLE_CUDA AND COMMAND kokkos_compilation AND NOT CMAKE_CXX_COMPILER MATCHES "nvcc_wrapper")
    kokkos_compilation(SOURCE ${ARGN})
  endif()
endfunction()
