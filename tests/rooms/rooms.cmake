# The rooms hold (docs/architecture.md): for each room, an include of a room above it, or of a
# private header of kernels/, fails to compile with that room's include directories, while the
# rooms below it compile (down_train.c, the control). Each probe is an object library built on its
# own by the test; the tests take turns (one build tree).
function(llava_room_probe name room source expect)
  add_library(${name} OBJECT EXCLUDE_FROM_ALL ${CMAKE_SOURCE_DIR}/tests/rooms/${source})
  target_link_libraries(${name} PRIVATE llava_${room})
  add_test(NAME ${name} COMMAND ${CMAKE_COMMAND} --build ${CMAKE_BINARY_DIR} --target ${name})
  set_tests_properties(${name} PROPERTIES LABELS "cpu;rooms" RESOURCE_LOCK build_tree)
  if(expect)
    set_tests_properties(${name} PROPERTIES PASS_REGULAR_EXPRESSION "${expect}")
  endif()
endfunction()

llava_room_probe(rooms_data_cannot_see_model data up_data_model.c "model/llava.h: No such file")
llava_room_probe(rooms_kernels_cannot_see_data kernels up_kernels_data.c "data/batch.h: No such file")
llava_room_probe(rooms_common_cannot_see_kernels common up_common_kernels.c "kernels/ops.h: No such file")
llava_room_probe(rooms_model_cannot_see_train model up_model_train.c "train/optim.h: No such file")
llava_room_probe(rooms_infer_cannot_see_train infer up_infer_train.c "train/trainer.h: No such file")
llava_room_probe(rooms_train_cannot_see_app train up_train_app.c "app/demo.h: No such file")
llava_room_probe(rooms_train_cannot_see_kernels_cuda train private_cuda.c "kernels/cuda/cuda_ops.h: No such file")
llava_room_probe(rooms_app_cannot_see_kernels_cpu app private_cpu.c "kernels/cpu/cpu.h: No such file")
llava_room_probe(rooms_train_sees_below train down_train.c "")

# The include check itself refuses a ".." include (which the compiler would follow).
add_test(NAME rooms_check_refuses_climb
         COMMAND ${CMAKE_COMMAND} -DLLAVA_CHECK_FILE=${CMAKE_SOURCE_DIR}/tests/rooms/climb.c -DLLAVA_CHECK_ROOM=data
                 -P ${CMAKE_SOURCE_DIR}/cmake/check_rooms.cmake)
set_tests_properties(rooms_check_refuses_climb PROPERTIES LABELS "cpu;rooms"
                     PASS_REGULAR_EXPRESSION "reaches around the rooms")
# ... and passes the tree as it is (the same check runs before every build).
add_test(NAME rooms_check_tree COMMAND ${CMAKE_COMMAND} -DLLAVA_SOURCE_DIR=${CMAKE_SOURCE_DIR}
                                       -P ${CMAKE_SOURCE_DIR}/cmake/check_rooms.cmake)
set_tests_properties(rooms_check_tree PROPERTIES LABELS "cpu;rooms")
