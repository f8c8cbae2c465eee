# Fails the build when a room's source includes a file of a room above it, a private header of
# kernels/ (cpu/, cuda/) from outside kernels/, or any path with "..", which would reach around the
# per-room include directories that CMakeLists.txt sets up.
#
#   cmake -DLLAVA_SOURCE_DIR=<root> -P cmake/check_rooms.cmake
#   cmake -DLLAVA_CHECK_FILE=<file> -DLLAVA_CHECK_ROOM=<room> -P cmake/check_rooms.cmake   (one file, for tests)
#
cmake_policy(SET CMP0057 NEW)  # if(IN_LIST)
include(${CMAKE_CURRENT_LIST_DIR}/rooms.cmake)

set(bad 0)
function(check_file file room)
  file(STRINGS ${file} lines REGEX "^[ \t]*#[ \t]*include[ \t]*\"")
  foreach(line IN LISTS lines)
    string(REGEX REPLACE "^[ \t]*#[ \t]*include[ \t]*\"([^\"]*)\".*$" "\\1" inc "${line}")
    set(why "")
    if(inc MATCHES "\\.\\.")
      set(why "an include with \"..\" reaches around the rooms; write it from the room (\"model/llava.h\")")
    elseif(inc MATCHES "^([a-z]+)/")
      set(target ${CMAKE_MATCH_1})
      if(target STREQUAL room)
        # its own room
      elseif(NOT target IN_LIST LLAVA_ROOM_USES_${room})
        set(why "room ${room} may use only: ${LLAVA_ROOM_USES_${room}}")
      elseif(target STREQUAL "kernels" AND inc MATCHES "^kernels/(cpu|cuda)/")
        set(why "kernels/cpu/ and kernels/cuda/ are private to kernels/; use kernels/ops.h, backend.h, device.h or opcheck.h")
      endif()
    endif()
    if(why)
      message(SEND_ERROR "${file}: #include \"${inc}\": ${why}")
      set(bad 1 PARENT_SCOPE)
    endif()
  endforeach()
endfunction()

if(LLAVA_CHECK_FILE)
  check_file(${LLAVA_CHECK_FILE} ${LLAVA_CHECK_ROOM})
else()
  foreach(room ${LLAVA_ROOMS})
    file(GLOB_RECURSE srcs ${LLAVA_SOURCE_DIR}/${room}/*.c ${LLAVA_SOURCE_DIR}/${room}/*.h
         ${LLAVA_SOURCE_DIR}/${room}/*.cu ${LLAVA_SOURCE_DIR}/${room}/*.cuh)
    foreach(f ${srcs})
      check_file(${f} ${room})
    endforeach()
  endforeach()
endif()
if(bad)
  message(FATAL_ERROR "rooms: includes that cross a room upward (docs/architecture.md)")
endif()
