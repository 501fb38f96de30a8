# CUTLASS/CuTe headers, pinned to the nvidia-cutlass PyPI package (headers under
# cutlass_library/source/include). Give FLASH_MLA_CUTLASS_INCLUDE_DIR to use another copy.
# The portable kernel does not need them; the Hopper kernel will.
set(FLASH_MLA_CUTLASS_PIP_VERSION "4.2.0.0")
set(FLASH_MLA_CUTLASS_INCLUDE_DIR "" CACHE PATH "CUTLASS include dir (holds cute/ and cutlass/)")

if(NOT FLASH_MLA_CUTLASS_INCLUDE_DIR)
  find_package(Python3 COMPONENTS Interpreter QUIET)
  if(Python3_Interpreter_FOUND)
    # find_spec locates the package without importing it (its import pulls optional deps).
    execute_process(
      COMMAND ${Python3_EXECUTABLE} -c
        "import importlib.util as u, os; s = u.find_spec('cutlass_library'); print(os.path.join(s.submodule_search_locations[0], 'source', 'include') if s else '')"
      OUTPUT_VARIABLE _cutlass_dir OUTPUT_STRIP_TRAILING_WHITESPACE ERROR_QUIET)
    if(_cutlass_dir AND EXISTS "${_cutlass_dir}/cute/tensor.hpp")
      set(FLASH_MLA_CUTLASS_INCLUDE_DIR "${_cutlass_dir}" CACHE PATH "" FORCE)
    endif()
  endif()
endif()
if(NOT FLASH_MLA_CUTLASS_INCLUDE_DIR AND EXISTS "${PROJECT_SOURCE_DIR}/.deps/cutlass/include/cute/tensor.hpp")
  set(FLASH_MLA_CUTLASS_INCLUDE_DIR "${PROJECT_SOURCE_DIR}/.deps/cutlass/include" CACHE PATH "" FORCE)
endif()

if(FLASH_MLA_CUTLASS_INCLUDE_DIR)
  message(STATUS "flash_mla: CUTLASS/CuTe headers: ${FLASH_MLA_CUTLASS_INCLUDE_DIR}")
else()
  message(WARNING "flash_mla: CUTLASS headers not found (pip install --no-deps "
                  "nvidia-cutlass==${FLASH_MLA_CUTLASS_PIP_VERSION}, or set "
                  "FLASH_MLA_CUTLASS_INCLUDE_DIR); building without them (no kernel needs them yet).")
endif()
