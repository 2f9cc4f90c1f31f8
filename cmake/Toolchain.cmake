# Build-speed and hygiene settings shared by every target (see ../shared/spec/TOOLCHAIN.md section 2).

find_program(M2SA_CCACHE ccache)
if(M2SA_CCACHE AND NOT CMAKE_CXX_COMPILER_LAUNCHER)
  # ccache caches the units that use a precompiled header only with this sloppiness (ccache manual, "Precompiled
  # headers"); ccache 4.7 takes it from the environment only.
  set(CMAKE_CXX_COMPILER_LAUNCHER ${CMAKE_COMMAND} -E env
      "CCACHE_SLOPPINESS=pch_defines,time_macros,include_file_mtime,include_file_ctime" ${M2SA_CCACHE})
endif()

# lld links the test binary in 0.2 s instead of 1.3 s with GNU ld.
find_program(M2SA_LLD ld.lld)
if(M2SA_LLD AND CMAKE_CXX_COMPILER_ID MATCHES "GNU|Clang")
  add_link_options(-fuse-ld=lld)
endif()

if(M2SA_SANITIZE)
  add_compile_options(-fsanitize=address,undefined -fno-omit-frame-pointer -g)
  add_link_options(-fsanitize=address,undefined)
endif()

# Precompiled headers. LibTorch 2.x's <ATen/ATen.h> and <torch/nn/module.h> take 15-20 s of CPU to parse in every
# translation unit, most of a 2-core build; one precompiled header per family of targets parses them once.
# Sources still include the narrow headers they need (configure with -DM2SA_PCH=OFF to check that they do).
option(M2SA_PCH "Precompile the LibTorch, JSON and logging headers" ON)
set(M2SA_PCH_HEADERS <ATen/ATen.h> <torch/nn/module.h> <torch/nn/pimpl.h> <nlohmann/json.hpp> <spdlog/spdlog.h>)

# Gives `target` the precompiled header: its own (FROM empty) or the one of target FROM, whose compile definitions
# and options must be the same (GCC otherwise ignores the header, with -Winvalid-pch saying so).
function(m2sa_target_pch target from)
  if(NOT M2SA_PCH)
    return()
  endif()
  if(from)
    target_precompile_headers(${target} REUSE_FROM ${from})
  else()
    target_precompile_headers(${target} PRIVATE ${M2SA_PCH_HEADERS} ${ARGN})
  endif()
endfunction()

function(m2sa_target_defaults target)
  if(CMAKE_CXX_COMPILER_ID MATCHES "GNU|Clang")
    # LibTorch comes in through -isystem, so its headers add no warnings.
    target_compile_options(${target} PRIVATE -Wall -Wextra -Wno-unused-parameter)
  endif()
endfunction()

# A static library for one layer; an interface target while the layer has no sources yet.
function(m2sa_add_layer name sources)
  if(sources)
    add_library(${name} STATIC ${sources})
    target_link_libraries(${name} PUBLIC ${ARGN})
    m2sa_target_defaults(${name})
    m2sa_target_pch(${name} m2sa_core)
  else()
    add_library(${name} INTERFACE)
    target_link_libraries(${name} INTERFACE ${ARGN})
  endif()
endfunction()
