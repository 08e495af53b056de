# Warnings, sanitizers and helpers shared by every mechscope target (targets only, no global flags).
add_library(mechscope_options INTERFACE)
target_compile_options(mechscope_options INTERFACE -Wall -Wextra -Wpedantic -Wno-unused-parameter)
# One code model everywhere: Qt forces -fPIC on whatever links it, and a precompiled header is only
# valid for TUs compiled with the same -fpic/-fpie setting as the one that made it.
target_compile_options(mechscope_options INTERFACE -fPIC)
if(MECHSCOPE_WERROR)
  target_compile_options(mechscope_options INTERFACE -Werror)
endif()
target_include_directories(mechscope_options INTERFACE ${PROJECT_SOURCE_DIR} ${PROJECT_BINARY_DIR}/generated)
if(MECHSCOPE_SANITIZE)
  target_compile_options(mechscope_options INTERFACE -fsanitize=${MECHSCOPE_SANITIZE} -fno-omit-frame-pointer
                                                     -fno-sanitize-recover=all)
  target_link_options(mechscope_options INTERFACE -fsanitize=${MECHSCOPE_SANITIZE})
endif()
target_compile_definitions(mechscope_options INTERFACE MECHSCOPE_SOURCE_DIR="${PROJECT_SOURCE_DIR}")

# mechscope_library(NAME DIR [DEPS ...]): a static library from every .cpp under DIR.
# Globbing (with CONFIGURE_DEPENDS) keeps parallel work from colliding in CMakeLists files.
function(mechscope_library name dir)
  cmake_parse_arguments(ARG "" "" "DEPS;EXCLUDE" ${ARGN})
  file(GLOB_RECURSE _srcs CONFIGURE_DEPENDS ${dir}/*.cpp)
  foreach(_ex ${ARG_EXCLUDE})
    list(FILTER _srcs EXCLUDE REGEX "${_ex}")
  endforeach()
  add_library(${name} STATIC ${_srcs})
  target_link_libraries(${name} PUBLIC mechscope_options ${ARG_DEPS})
endfunction()

# Unity batches for targets whose files share heavy headers (Qt widgets, CLI11, gtest + ATen): each
# batch pays the header parse and the 300 MB PCH load once. Files that cannot share a batch carry
# SKIP_UNITY_BUILD_INCLUSION.
function(mechscope_unity target)
  if(MECHSCOPE_UNITY)
    set_target_properties(${target} PROPERTIES UNITY_BUILD ON UNITY_BUILD_BATCH_SIZE ${MECHSCOPE_UNITY_BATCH}
                                               UNITY_BUILD_MODE BATCH)
  endif()
endfunction()

# The precompiled header for targets that include ATen: the single biggest compile cost.
function(mechscope_torch_pch target)
  if(MECHSCOPE_PCH)
    if(TARGET mechscope_core AND NOT target STREQUAL mechscope_core)
      target_precompile_headers(${target} REUSE_FROM mechscope_core)
    else()
      target_precompile_headers(${target} PRIVATE <ATen/ATen.h> <string> <vector> <map> <memory>
                                                  <stdexcept> <fmt/format.h> <fmt/ranges.h> <nlohmann/json.hpp>)
    endif()
  endif()
endfunction()
