# The fuzz tree (-DMECHSCOPE_FUZZ=ON, clang only): libFuzzer harnesses over the loaders that read
# untrusted files, built with ASan + UBSan, and ctest label `fuzz` running each harness for
# MECHSCOPE_FUZZ_SECONDS. Only the loader sources the harnesses need are compiled (no GUI, no
# engine, no analyses), so a fuzz build takes minutes. See docs/reliability.md.
#
#   CC=clang CXX=clang++ cmake -S . -B build-fuzz -G Ninja -DMECHSCOPE_FUZZ=ON
#   cmake --build build-fuzz && ctest --test-dir build-fuzz -L fuzz
if(NOT CMAKE_CXX_COMPILER_ID MATCHES "Clang")
  message(FATAL_ERROR "MECHSCOPE_FUZZ needs clang (libFuzzer): configure with CC=clang CXX=clang++ "
                      "(Debian: clang-14 libclang-rt-14-dev)")
endif()
set(MECHSCOPE_GUI OFF CACHE BOOL "" FORCE)
set(MECHSCOPE_TESTS OFF CACHE BOOL "" FORCE)
set(MECHSCOPE_BENCH OFF CACHE BOOL "" FORCE)
set(MECHSCOPE_HDF5 ON CACHE BOOL "" FORCE)
set(MECHSCOPE_FUZZ_SECONDS 60 CACHE STRING "Seconds each harness runs under ctest -L fuzz")

include(Dependencies)
include(ProjectOptions)
configure_file(cmake/version.hpp.in ${CMAKE_CURRENT_BINARY_DIR}/generated/mechscope/version.hpp @ONLY)

# Instrumentation for every object of the fuzz tree (libraries: coverage only; harnesses link libFuzzer).
add_library(mechscope_fuzz_flags INTERFACE)
target_compile_options(mechscope_fuzz_flags INTERFACE -g -O1 -fno-omit-frame-pointer
                       -fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=all)
target_link_options(mechscope_fuzz_flags INTERFACE -fsanitize=address,undefined)
target_link_libraries(mechscope_fuzz_flags INTERFACE mechscope_options)

set(_root ${PROJECT_SOURCE_DIR})
# Plain C++ tokenizer (no LibTorch).
file(GLOB _tok CONFIGURE_DEPENDS ${_root}/core/tokenizer/*.cpp)
add_library(mechscope_fuzz_tokenizer STATIC ${_tok} ${_root}/core/common/json_guard.cpp)
target_link_libraries(mechscope_fuzz_tokenizer PUBLIC mechscope_fuzz_flags mechscope_fmt nlohmann_json::nlohmann_json
                      mechscope_pcre2 mechscope_utf8proc)
# The loaders: safetensors, config.json + family table, HDF5 cache reader, JSONL datasets.
file(GLOB _families CONFIGURE_DEPENDS ${_root}/core/model/families/*.cpp)
add_library(mechscope_fuzz_loaders STATIC
  ${_root}/core/safetensors/mapped_file.cpp ${_root}/core/safetensors/safetensors_file.cpp
  ${_root}/core/model/model_config.cpp ${_root}/core/model/family_registry.cpp ${_root}/core/model/weight_source.cpp
  ${_root}/core/model/activation_cache.cpp ${_families}
  ${_root}/store/cache_reader.cpp ${_root}/store/hdf5_lock.cpp ${_root}/store/storage_dtype.cpp ${_root}/store/slice.cpp
  ${_root}/store/masked_tiles.cpp ${_root}/store/hook_axes.cpp
  ${_root}/store/detail/h5_util.cpp ${_root}/store/detail/h5_basic.cpp ${_root}/store/isolation/isolated_check.cpp
  ${_root}/store/isolation/check_server.cpp ${_root}/store/isolation/manifest.cpp
  ${_root}/analysis/common/datasets.cpp ${_root}/analysis/patching/patch_types.cpp)
target_link_libraries(mechscope_fuzz_loaders PUBLIC mechscope_fuzz_tokenizer mechscope_torch mechscope_hdf5)
target_compile_definitions(mechscope_fuzz_loaders PUBLIC MECHSCOPE_WITH_HDF5=1)
# clang 14 + libstdc++ 12 reject LibTorch 1.13's headers in C++20 (constexpr std::vector of the
# incomplete c10::IValue); the loader sources are C++17-clean, so the fuzz tree compiles them as C++17.
set_target_properties(mechscope_fuzz_loaders PROPERTIES CXX_STANDARD 17)
if(MECHSCOPE_PCH)
  target_precompile_headers(mechscope_fuzz_loaders PRIVATE <ATen/ATen.h> <string> <vector> <map> <memory>
                            <fmt/format.h> <nlohmann/json.hpp>)
endif()

# The isolated cache check the reader runs before opening a cache (ASan-built, never fuzz-instrumented).
include(H5Check)
mechscope_add_h5check(${PROJECT_BINARY_DIR}/bin)
add_dependencies(mechscope_fuzz_loaders mechscope-h5check)

# Batch plans (TOML, no LibTorch).
if(MECHSCOPE_HAS_TOML)
  add_library(mechscope_fuzz_batch STATIC ${_root}/app/batch/plan.cpp ${_root}/app/batch/analysis_table.cpp)
  target_link_libraries(mechscope_fuzz_batch PUBLIC mechscope_fuzz_flags mechscope_fmt nlohmann_json::nlohmann_json
                        tomlplusplus::tomlplusplus)
endif()

enable_testing()
add_subdirectory(fuzz)
