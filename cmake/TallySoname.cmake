# tly_soname(<var> <name> <paths...>): the SONAME of the shared library
# <name>.so among <paths> (a pkg-config module's <PREFIX>_LINK_LIBRARIES),
# read with objdump -p. The rooms that open a library when first needed
# (schemas/tly_dl.h) are given the soname of the library found here, so the
# headers they were built against and the library they load agree.
function(tly_soname var name)
  foreach(path ${ARGN})
    get_filename_component(file "${path}" NAME)
    string(FIND "${file}" "${name}.so" at)
    if(at EQUAL 0)
      execute_process(COMMAND "${CMAKE_OBJDUMP}" -p "${path}" OUTPUT_VARIABLE out
                      RESULT_VARIABLE rc ERROR_QUIET)
      if(rc EQUAL 0 AND out MATCHES "SONAME +([^\n ]+)")
        set(${var} "${CMAKE_MATCH_1}" PARENT_SCOPE)
        return()
      endif()
    endif()
  endforeach()
  message(FATAL_ERROR "no SONAME of ${name} in: ${ARGN}")
endfunction()
