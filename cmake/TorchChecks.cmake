# Checks on the LibTorch that find_package(Torch) found, and the one adaptation it needs next to Debian's
# libraries (docs/DEVELOPING.md, "LibTorch"). Included right after find_package(Torch).
#
# The supported LibTorch is 2.x: the PyPI torch wheel (torch==2.11.0, CUDA 13.0) that scripts/setup-deps.sh
# installs into .venv/, the same build the GPU machines carry.

if(Torch_VERSION VERSION_LESS 2.1)
  message(FATAL_ERROR "m2sa needs LibTorch >= 2.1 (found ${Torch_VERSION} at ${TORCH_INSTALL_PREFIX}). Run "
    "scripts/setup-deps.sh, which installs torch==2.11.0 into .venv/, and configure with "
    "-DCMAKE_PREFIX_PATH=$(.venv/bin/python -c 'import torch;print(torch.utils.cmake_prefix_path)').")
endif()

# ---- C++ ABI: LibTorch against the system libraries (OpenCV, spdlog, fmt, GoogleTest) ----
# LibTorch says its ABI through TORCH_CXX_FLAGS (-D_GLIBCXX_USE_CXX11_ABI=0|1). Since 2.7 the wheels are built
# with the new ABI only and leave the flag out, which then means 1. Debian builds every library with GCC's
# default, which the probe below reads.
set(M2SA_TORCH_CXX11_ABI 1)
if(TORCH_CXX_FLAGS MATCHES "_GLIBCXX_USE_CXX11_ABI=([01])")
  set(M2SA_TORCH_CXX11_ABI ${CMAKE_MATCH_1})
endif()
include(CheckCXXSourceCompiles)
check_cxx_source_compiles("#include <string>
#if !_GLIBCXX_USE_CXX11_ABI
#error old ABI
#endif
int main() { return 0; }" M2SA_SYSTEM_CXX11_ABI)
if(M2SA_SYSTEM_CXX11_ABI)
  set(_m2sa_system_abi 1)
else()
  set(_m2sa_system_abi 0)
endif()
if(NOT M2SA_TORCH_CXX11_ABI EQUAL _m2sa_system_abi)
  message(FATAL_ERROR "C++ ABI mismatch: LibTorch at ${TORCH_INSTALL_PREFIX} uses _GLIBCXX_USE_CXX11_ABI="
    "${M2SA_TORCH_CXX11_ABI} (TORCH_CXX_FLAGS='${TORCH_CXX_FLAGS}'), but this compiler and the system libraries "
    "(OpenCV, spdlog, fmt, GoogleTest) use ${_m2sa_system_abi}. std::string and std::list would differ across "
    "the boundary. Use a LibTorch built with _GLIBCXX_USE_CXX11_ABI=${_m2sa_system_abi} (the PyPI wheels >= 2.7 are).")
endif()
message(STATUS "m2sa: LibTorch ${Torch_VERSION} at ${TORCH_INSTALL_PREFIX}, C++11 ABI ${M2SA_TORCH_CXX11_ABI} "
  "(system ${_m2sa_system_abi}), CUDA ${CAFFE2_USE_CUDA}")

# ---- fmt: the wheel's bundled headers against Debian's spdlog ----
# The wheel ships fmt 12 headers in its own include folder, which comes first on the include path; Debian's
# spdlog 1.10 only compiles against fmt <= 9 (`fmt::basic_runtime`). Every m2sa target therefore sees Debian's
# fmt 9 through a folder that holds only a link to it, placed before LibTorch's. This is safe at link time:
# fmt keeps everything in a versioned inline namespace (fmt::v9 vs fmt::v12), and LibTorch's own fmt calls stay
# inside LibTorch. The few LibTorch headers that include fmt (c10d logging/error) compile against fmt 9.
find_package(fmt REQUIRED)  # Debian's libfmt-dev, which spdlog depends on
set(M2SA_FMT_OVERRIDE_DIR "")
foreach(_dir ${TORCH_INCLUDE_DIRS})
  if(EXISTS "${_dir}/fmt/base.h" OR EXISTS "${_dir}/fmt/core.h")
    get_target_property(_fmt_inc fmt::fmt INTERFACE_INCLUDE_DIRECTORIES)
    list(GET _fmt_inc 0 _fmt_inc)
    set(M2SA_FMT_OVERRIDE_DIR "${CMAKE_BINARY_DIR}/system-fmt")
    file(MAKE_DIRECTORY "${M2SA_FMT_OVERRIDE_DIR}")
    file(CREATE_LINK "${_fmt_inc}/fmt" "${M2SA_FMT_OVERRIDE_DIR}/fmt" SYMBOLIC)
    message(STATUS "m2sa: LibTorch bundles fmt headers (${_dir}/fmt); using the system fmt ${fmt_VERSION} "
      "(${_fmt_inc}/fmt) for spdlog")
    break()
  endif()
endforeach()

# ---- std::filesystem: the system libstdc++ ahead of LibTorch ----
# The wheel's libtorch_cpu.so and libtorch.so define and export std::filesystem (remove_all, directory iterators, ...:
# 142 symbols, from the static libstdc++fs of the toolchain it was built with). Linked in CMake's order, libtorch comes
# before libstdc++.so.6 in the executable's DT_NEEDED list, so the dynamic linker binds our std::filesystem calls to
# that copy, which disagrees with GCC 12's headers: `std::filesystem::remove_all` crashes (every test's TempDir,
# the CLI's cleanup). Every executable therefore names libstdc++ first, so that its definitions win.
function(m2sa_libstdcxx_first target)
  if(CMAKE_CXX_COMPILER_ID STREQUAL "GNU")
    target_link_options(${target} INTERFACE "LINKER:--push-state,--no-as-needed,-lstdc++,--pop-state")
  endif()
endfunction()

# ---- NCCL ----
# CUDA builds of LibTorch export USE_C10D_NCCL on the torch_cuda target; without it ProcessGroupNCCL.hpp is empty.
set(M2SA_TORCH_HAS_NCCL OFF)
if(TARGET torch_cuda)
  get_target_property(_defs torch_cuda INTERFACE_COMPILE_DEFINITIONS)
  if(_defs MATCHES "USE_C10D_NCCL")
    set(M2SA_TORCH_HAS_NCCL ON)
  endif()
endif()
option(M2SA_WITH_NCCL "Use the c10d NCCL process group (CUDA LibTorch only)" ${M2SA_TORCH_HAS_NCCL})
if(M2SA_WITH_NCCL AND NOT M2SA_TORCH_HAS_NCCL)
  message(FATAL_ERROR "M2SA_WITH_NCCL=ON, but the LibTorch at ${TORCH_INSTALL_PREFIX} has no c10d NCCL process "
    "group (its torch_cuda target does not define USE_C10D_NCCL; a CPU build has no torch_cuda at all). Use a "
    "CUDA LibTorch or configure with -DM2SA_WITH_NCCL=OFF.")
endif()
# ProcessGroupNCCL.hpp includes <nccl.h>, which the torch wheel keeps in its nvidia-nccl wheel (site-packages/
# nvidia/nccl/include), off the include path that TorchConfig exports.
unset(M2SA_NCCL_INCLUDE_DIR)
if(M2SA_WITH_NCCL)
  find_path(M2SA_NCCL_INCLUDE_DIR nccl.h
    HINTS "${TORCH_INSTALL_PREFIX}/../nvidia/nccl/include" ${CUDA_TOOLKIT_ROOT_DIR}/include ${CUDAToolkit_INCLUDE_DIRS}
    NO_CACHE)
  if(NOT M2SA_NCCL_INCLUDE_DIR)
    message(FATAL_ERROR "M2SA_WITH_NCCL=ON, but nccl.h was not found (looked beside the torch wheel in "
      "${TORCH_INSTALL_PREFIX}/../nvidia/nccl/include and in the CUDA toolkit). Install the nvidia-nccl wheel that "
      "torch depends on, or configure with -DM2SA_WITH_NCCL=OFF.")
  endif()
endif()
set(M2SA_WITH_CUDA ${CAFFE2_USE_CUDA})
