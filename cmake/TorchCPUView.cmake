# The CPU half of a CUDA libtorch, for a machine without the CUDA toolkit (issue 28).
#
# PyPI's torch 2.x wheel for x86-64 Linux is a CUDA build: its own share/cmake/Torch/TorchConfig.cmake
# looks for the CUDA toolkit (nvcc, cuBLAS, ...) and stops when it is missing, although
# libtorch_cpu.so and libc10.so need no more than libcudart.so and libcupti.so to load (the
# nvidia-cuda-runtime and nvidia-cuda-cupti wheels, found through libtorch_cpu.so's own RPATH
# $ORIGIN/../../nvidia/cu13/lib). scripts/setup_torch2.sh copies this file into the unpacked wheel as
# torch/share/cmake/TorchCPU/TorchConfig.cmake; `-DTorch_DIR=<that folder>` then gives the targets
# and variables of find_package(Torch) over torch_cpu + c10 alone. On a machine with CUDA (the GPU
# check, scripts/gpu_check.sh) Torch_DIR is the wheel's own config instead.

get_filename_component(TORCH_INSTALL_PREFIX "${CMAKE_CURRENT_LIST_DIR}/../../../" ABSOLUTE)
set(TORCH_INCLUDE_DIRS ${TORCH_INSTALL_PREFIX}/include ${TORCH_INSTALL_PREFIX}/include/torch/csrc/api/include)

find_library(TORCH_CPU_LIBRARY torch_cpu PATHS "${TORCH_INSTALL_PREFIX}/lib" NO_DEFAULT_PATH)
find_library(C10_LIBRARY c10 PATHS "${TORCH_INSTALL_PREFIX}/lib" NO_DEFAULT_PATH)
set(TORCH_LIBRARY ${TORCH_CPU_LIBRARY})

if(TORCH_CPU_LIBRARY AND C10_LIBRARY AND NOT TARGET torch)
  add_library(c10 SHARED IMPORTED)
  set_target_properties(c10 PROPERTIES IMPORTED_LOCATION "${C10_LIBRARY}"
                        INTERFACE_INCLUDE_DIRECTORIES "${TORCH_INSTALL_PREFIX}/include")
  add_library(torch_cpu SHARED IMPORTED)
  set_target_properties(torch_cpu PROPERTIES IMPORTED_LOCATION "${TORCH_CPU_LIBRARY}")
  # The wheel's torch_cpu target carries these: c10d's ProcessGroupGloo is declared under USE_C10D_GLOO.
  add_library(torch INTERFACE IMPORTED)
  set_target_properties(torch PROPERTIES
    INTERFACE_INCLUDE_DIRECTORIES "${TORCH_INCLUDE_DIRS}"
    INTERFACE_COMPILE_DEFINITIONS "USE_DISTRIBUTED;USE_C10D_GLOO"
    # Operators register themselves in static constructors: keep libtorch_cpu.so linked.
    INTERFACE_LINK_LIBRARIES "-Wl,--no-as-needed,${TORCH_CPU_LIBRARY},--as-needed;torch_cpu;c10")
endif()
set(TORCH_LIBRARIES torch)
set(TORCH_CXX_FLAGS "")

include(FindPackageHandleStandardArgs)
find_package_handle_standard_args(Torch DEFAULT_MSG TORCH_LIBRARY C10_LIBRARY TORCH_INCLUDE_DIRS)
