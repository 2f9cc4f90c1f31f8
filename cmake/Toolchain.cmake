# Build-speed and hygiene settings shared by every target (see ../shared/spec/TOOLCHAIN.md section 2).

find_program(M2SA_CCACHE ccache)
if(M2SA_CCACHE AND NOT CMAKE_CXX_COMPILER_LAUNCHER)
  set(CMAKE_CXX_COMPILER_LAUNCHER ${M2SA_CCACHE})
endif()

# lld links the test binary in 0.2 s instead of 1.3 s with GNU ld.
find_program(M2SA_LLD ld.lld)
if(M2SA_LLD AND CMAKE_CXX_COMPILER_ID MATCHES "GNU|Clang")
  add_link_options(-fuse-ld=lld)
endif()

# The sanitizer build (scripts/test.sh runs the parser and I/O tests in it, build-asan/): any UB report fails the
# test (no recovery); vptr checks are off for the reason given for fuzzing below.
if(M2SA_SANITIZE)
  add_compile_options(-fsanitize=address,undefined -fno-sanitize=vptr -fno-sanitize-recover=all
                      -fno-omit-frame-pointer -g)
  add_link_options(-fsanitize=address,undefined -fno-sanitize=vptr)
endif()

# Fuzzing (scripts/fuzz.sh): every object gets libFuzzer's coverage instrumentation and ASan + UBSan, so the
# fuzzer is guided through the readers and any UB aborts; the fuzz_<name> binaries add libFuzzer's main
# (-fsanitize=fuzzer, CMakeLists.txt). vptr checks are off: they need RTTI-compatible type info from every
# LibTorch object, which the wheel's build does not promise.
if(M2SA_FUZZ)
  if(NOT CMAKE_CXX_COMPILER_ID MATCHES "Clang")
    message(FATAL_ERROR "M2SA_FUZZ=ON needs clang (libFuzzer), e.g. CXX=clang++-14; this is ${CMAKE_CXX_COMPILER_ID}")
  endif()
  add_compile_options(-fsanitize=fuzzer-no-link,address,undefined -fno-sanitize=vptr -fno-sanitize-recover=all
                      -fno-omit-frame-pointer -g)
  add_link_options(-fsanitize=address,undefined -fno-sanitize=vptr)
endif()

# Unity builds. LibTorch 2.x's <ATen/ATen.h> and <torch/nn/module.h> take 15-40 s of CPU to parse in every
# translation unit, most of a 2-core build; compiling sources in batches parses them once per batch (a clean build of
# everything, ccache off, takes 10 minutes on 2 cores). Precompiled headers were measured and lose here: GCC 12
# takes 20+ s to load the 550 MB header in each unit. -DM2SA_UNITY=OFF compiles file by file (faster rebuilds of one
# file, and it checks that every source includes what it uses).
option(M2SA_UNITY "Compile sources in unity batches" ON)
set(M2SA_UNITY_BATCH 16 CACHE STRING "Sources per unity batch")
function(m2sa_target_unity target)
  if(M2SA_UNITY)
    set_target_properties(${target} PROPERTIES UNITY_BUILD ON UNITY_BUILD_BATCH_SIZE ${M2SA_UNITY_BATCH})
  endif()
endfunction()

# scripts/test.sh (CI) turns it on: a warning fails the build there, while users with another compiler still build.
option(M2SA_WERROR "Treat compiler warnings as errors" OFF)
function(m2sa_target_defaults target)
  if(CMAKE_CXX_COMPILER_ID MATCHES "GNU|Clang")
    # LibTorch comes in through -isystem, so its headers add no warnings.
    target_compile_options(${target} PRIVATE -Wall -Wextra -Wno-unused-parameter)
    if(M2SA_WERROR)
      target_compile_options(${target} PRIVATE -Werror)
    endif()
  endif()
endfunction()

# A static library for one layer; an interface target while the layer has no sources yet.
function(m2sa_add_layer name sources)
  if(sources)
    add_library(${name} STATIC ${sources})
    target_link_libraries(${name} PUBLIC ${ARGN})
    m2sa_target_defaults(${name})
    m2sa_target_unity(${name})
  else()
    add_library(${name} INTERFACE)
    target_link_libraries(${name} INTERFACE ${ARGN})
  endif()
endfunction()
