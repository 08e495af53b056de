# All third-party dependencies come from Debian packages (or, on a GPU box, from the LibTorch inside
# PyTorch plus Debian packages unpacked under a prefix given in CMAKE_PREFIX_PATH).

# ---- LibTorch -------------------------------------------------------------------------------
find_package(Torch REQUIRED)
# Torch's config adds its flags globally through TORCH_CXX_FLAGS; we keep them on an interface target.
add_library(mechscope_torch INTERFACE)
target_link_libraries(mechscope_torch INTERFACE ${TORCH_LIBRARIES})
target_include_directories(mechscope_torch SYSTEM INTERFACE ${TORCH_INCLUDE_DIRS})
if(TORCH_CXX_FLAGS)
  separate_arguments(_torch_flags UNIX_COMMAND "${TORCH_CXX_FLAGS}")
  target_compile_options(mechscope_torch INTERFACE ${_torch_flags})
endif()
set(MECHSCOPE_HAS_CUDA OFF)
if(MECHSCOPE_CUDA STREQUAL "AUTO")
  if(TARGET torch_cuda OR CUDA_FOUND OR TORCH_CUDA_LIBRARIES)
    set(MECHSCOPE_HAS_CUDA ON)
  endif()
elseif(MECHSCOPE_CUDA)
  set(MECHSCOPE_HAS_CUDA ON)
endif()
if(MECHSCOPE_HAS_CUDA)
  target_compile_definitions(mechscope_torch INTERFACE MECHSCOPE_WITH_CUDA=1)
  # The CUDA runtime itself (free device memory for pre-run memory checks), where Torch's config found it.
  if(NOT TARGET CUDA::cudart)
    find_package(CUDAToolkit QUIET)
  endif()
  if(TARGET CUDA::cudart)
    target_link_libraries(mechscope_torch INTERFACE CUDA::cudart)
    target_compile_definitions(mechscope_torch INTERFACE MECHSCOPE_WITH_CUDART=1)
  endif()
endif()
# The probe's own CUDA kernels (core/probe/*.cu) need nvcc and the CUDA runtime; without them the probe runs its
# LibTorch passes (the same results, slower). mma.sync on bf16 needs compute capability 8.0 or later.
set(MECHSCOPE_CUDA_KERNEL_ARCHS "80;90" CACHE STRING "CUDA architectures of the probe's kernels")
set(MECHSCOPE_HAS_CUDA_KERNELS OFF)
if(MECHSCOPE_HAS_CUDA AND TARGET CUDA::cudart)
  include(CheckLanguage)
  check_language(CUDA)
  if(CMAKE_CUDA_COMPILER)
    enable_language(CUDA)
    set(MECHSCOPE_HAS_CUDA_KERNELS ON)
  endif()
endif()

# ---- small libraries ------------------------------------------------------------------------
find_package(fmt REQUIRED)
# Header-only fmt on GPU boxes: the fmt headers inside PyTorch's include folder differ from the
# Debian libfmt, so we compile fmt into our own objects there rather than link a mismatched .so.
option(MECHSCOPE_FMT_HEADER_ONLY "Use fmt header-only (GPU boxes with PyTorch's LibTorch)" OFF)
add_library(mechscope_fmt INTERFACE)
if(MECHSCOPE_FMT_HEADER_ONLY)
  target_link_libraries(mechscope_fmt INTERFACE fmt::fmt-header-only)
else()
  target_link_libraries(mechscope_fmt INTERFACE fmt::fmt)
endif()
find_package(nlohmann_json 3.10 REQUIRED)
find_package(CLI11 REQUIRED)

# PCRE2 and utf8proc ship pkg-config files on Debian; fall back to a plain search (GPU box prefix).
function(mechscope_find_c_library target header libname)
  find_path(${target}_INCLUDE_DIR ${header})
  find_library(${target}_LIBRARY NAMES ${libname})
  if(NOT ${target}_INCLUDE_DIR OR NOT ${target}_LIBRARY)
    message(FATAL_ERROR "${target}: ${header} / lib${libname} not found (install the Debian -dev package, "
                        "or add its prefix to CMAKE_PREFIX_PATH)")
  endif()
  add_library(${target} INTERFACE)
  target_include_directories(${target} SYSTEM INTERFACE ${${target}_INCLUDE_DIR})
  target_link_libraries(${target} INTERFACE ${${target}_LIBRARY})
endfunction()
mechscope_find_c_library(mechscope_pcre2 pcre2.h pcre2-8)
target_compile_definitions(mechscope_pcre2 INTERFACE PCRE2_CODE_UNIT_WIDTH=8)
mechscope_find_c_library(mechscope_utf8proc utf8proc.h utf8proc)

find_package(tomlplusplus QUIET)
set(MECHSCOPE_HAS_TOML ${tomlplusplus_FOUND})

# ---- HDF5 -----------------------------------------------------------------------------------
if(MECHSCOPE_HDF5)
  find_package(HDF5 REQUIRED COMPONENTS C)
  add_library(mechscope_hdf5 INTERFACE)
  target_include_directories(mechscope_hdf5 SYSTEM INTERFACE ${HDF5_INCLUDE_DIRS})
  target_link_libraries(mechscope_hdf5 INTERFACE ${HDF5_LIBRARIES})
  target_compile_definitions(mechscope_hdf5 INTERFACE ${HDF5_DEFINITIONS})
endif()

# ---- Qt -------------------------------------------------------------------------------------
if(MECHSCOPE_GUI)
  find_package(Qt6 REQUIRED COMPONENTS Widgets Concurrent PrintSupport Svg Test)
  find_package(QCustomPlotQt6 REQUIRED)
endif()

# ---- tests and benchmarks -------------------------------------------------------------------
if(MECHSCOPE_TESTS)
  find_package(GTest REQUIRED)
  include(GoogleTest)
endif()
if(MECHSCOPE_BENCH)
  find_package(benchmark QUIET)
  if(NOT benchmark_FOUND)
    message(STATUS "Google Benchmark not found: benchmarks are not built")
    set(MECHSCOPE_BENCH OFF)
  endif()
endif()

foreach(_v GUI HDF5)
  if(MECHSCOPE_${_v})
    set(MECHSCOPE_${_v}_VALUE true)
  else()
    set(MECHSCOPE_${_v}_VALUE false)
  endif()
endforeach()
if(MECHSCOPE_HAS_CUDA)
  set(MECHSCOPE_CUDA_VALUE true)
else()
  set(MECHSCOPE_CUDA_VALUE false)
endif()
