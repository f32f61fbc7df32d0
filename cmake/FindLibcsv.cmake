# FindLibcsv: libcsv, the RFC 4180 parser `tally send --csv` reads with
# (Debian: libcsv-dev). It ships no pkg-config file, so its header and
# library are found by name and the header's CSV_MAJOR/CSV_MINOR/CSV_RELEASE
# give the version (csv.h is a common name: a csv.h without them is not
# libcsv's).
#
# Defines Libcsv_FOUND, Libcsv_VERSION and the imported target Libcsv::csv.
find_path(Libcsv_INCLUDE_DIR NAMES csv.h)
find_library(Libcsv_LIBRARY NAMES csv)

if(Libcsv_INCLUDE_DIR AND EXISTS "${Libcsv_INCLUDE_DIR}/csv.h")
  foreach(part MAJOR MINOR RELEASE)
    file(STRINGS "${Libcsv_INCLUDE_DIR}/csv.h" line REGEX "^#define CSV_${part} +[0-9]+")
    string(REGEX REPLACE "^#define CSV_${part} +([0-9]+).*" "\\1" Libcsv_${part} "${line}")
  endforeach()
  if(Libcsv_MAJOR MATCHES "^[0-9]+$")
    set(Libcsv_VERSION "${Libcsv_MAJOR}.${Libcsv_MINOR}.${Libcsv_RELEASE}")
  endif()
endif()

include(FindPackageHandleStandardArgs)
find_package_handle_standard_args(Libcsv
  REQUIRED_VARS Libcsv_LIBRARY Libcsv_INCLUDE_DIR Libcsv_VERSION
  VERSION_VAR Libcsv_VERSION
  REASON_FAILURE_MESSAGE "install libcsv-dev (scripts/deps.sh)")

if(Libcsv_FOUND AND NOT TARGET Libcsv::csv)
  add_library(Libcsv::csv UNKNOWN IMPORTED)
  set_target_properties(Libcsv::csv PROPERTIES
    IMPORTED_LOCATION "${Libcsv_LIBRARY}"
    INTERFACE_INCLUDE_DIRECTORIES "${Libcsv_INCLUDE_DIR}")
endif()
mark_as_advanced(Libcsv_INCLUDE_DIR Libcsv_LIBRARY)
