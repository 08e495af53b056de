# Use ccache when present: rebuilds after a clean checkout (CI, fresh clones) reuse earlier objects.
find_program(MECHSCOPE_CCACHE ccache)
if(MECHSCOPE_CCACHE AND NOT CMAKE_CXX_COMPILER_LAUNCHER)
  set(CMAKE_CXX_COMPILER_LAUNCHER ${MECHSCOPE_CCACHE})
  # Precompiled headers and ccache cooperate only with these sloppiness settings.
  set(ENV{CCACHE_SLOPPINESS} "pch_defines,time_macros,include_file_mtime,include_file_ctime")
  message(STATUS "ccache: ${MECHSCOPE_CCACHE}")
endif()
