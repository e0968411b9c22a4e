# Finds the ONNX Runtime C/C++ API headers and shared library; defines the imported target
# ONNXRuntime::ONNXRuntime and ONNXRuntime_HEADERS_API (the headers' ORT_API_VERSION).
#
# Looks under ONNXRUNTIME_ROOT (CMake or environment variable): an official release folder
# (include/onnxruntime_cxx_api.h, lib/libonnxruntime.so*), or the folder runtime/cpp/scripts/fetch_deps.sh
# fills (third_party/onnxruntime: Debian trixie's libonnxruntime-dev headers + the Python wheel's library).
# The headers may be older than the library (the C API is versioned), never newer.

if(NOT ONNXRUNTIME_ROOT AND DEFINED ENV{ONNXRUNTIME_ROOT})
  set(ONNXRUNTIME_ROOT "$ENV{ONNXRUNTIME_ROOT}")
endif()

find_path(ONNXRuntime_INCLUDE_DIR onnxruntime_cxx_api.h
  HINTS "${ONNXRUNTIME_ROOT}/include" "${ONNXRUNTIME_ROOT}/include/onnxruntime"
  NO_DEFAULT_PATH)
find_library(ONNXRuntime_LIBRARY NAMES onnxruntime libonnxruntime.so.1
  HINTS "${ONNXRUNTIME_ROOT}/lib" "${ONNXRUNTIME_ROOT}/lib64"
  NO_DEFAULT_PATH)

if(ONNXRuntime_INCLUDE_DIR)
  file(STRINGS "${ONNXRuntime_INCLUDE_DIR}/onnxruntime_c_api.h" _ort_api_line
       REGEX "^#define ORT_API_VERSION [0-9]+")
  string(REGEX REPLACE "^#define ORT_API_VERSION ([0-9]+).*" "\\1" ONNXRuntime_HEADERS_API "${_ort_api_line}")
endif()
if(ONNXRuntime_LIBRARY)
  get_filename_component(_ort_real "${ONNXRuntime_LIBRARY}" REALPATH)
  if(_ort_real MATCHES "libonnxruntime\\.so\\.1\\.([0-9]+)\\.[0-9]+$")
    set(ONNXRuntime_LIBRARY_MINOR "${CMAKE_MATCH_1}")
  endif()
endif()

include(FindPackageHandleStandardArgs)
find_package_handle_standard_args(ONNXRuntime
  REQUIRED_VARS ONNXRuntime_LIBRARY ONNXRuntime_INCLUDE_DIR
  REASON_FAILURE_MESSAGE
    "run runtime/cpp/scripts/fetch_deps.sh, or pass -DONNXRUNTIME_ROOT=<an ONNX Runtime release folder> (looked in '${ONNXRUNTIME_ROOT}')")

if(ONNXRuntime_FOUND)
  if(ONNXRuntime_LIBRARY_MINOR AND ONNXRuntime_HEADERS_API AND
     ONNXRuntime_HEADERS_API GREATER ONNXRuntime_LIBRARY_MINOR)
    message(FATAL_ERROR "ONNX Runtime headers (API ${ONNXRuntime_HEADERS_API}) are newer than the library "
                        "${_ort_real} (1.${ONNXRuntime_LIBRARY_MINOR}); use headers no newer than the library")
  endif()
  message(STATUS "ONNX Runtime: headers ${ONNXRuntime_INCLUDE_DIR} (API ${ONNXRuntime_HEADERS_API}), "
                 "library ${_ort_real}")
  if(NOT TARGET ONNXRuntime::ONNXRuntime)
    add_library(ONNXRuntime::ONNXRuntime SHARED IMPORTED)
    set_target_properties(ONNXRuntime::ONNXRuntime PROPERTIES
      IMPORTED_LOCATION "${ONNXRuntime_LIBRARY}"
      INTERFACE_SYSTEM_INCLUDE_DIRECTORIES "${ONNXRuntime_INCLUDE_DIR}"
      INTERFACE_INCLUDE_DIRECTORIES "${ONNXRuntime_INCLUDE_DIR}")
  endif()
endif()
mark_as_advanced(ONNXRuntime_INCLUDE_DIR ONNXRuntime_LIBRARY)
