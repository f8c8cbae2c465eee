# The rooms, lowest first, and the rooms each may use: read by CMakeLists.txt (which gives each
# room's library one include directory per room it may use) and by cmake/check_rooms.cmake.
set(LLAVA_ROOMS common kernels data model infer eval train app)
set(LLAVA_ROOM_USES_common "")
set(LLAVA_ROOM_USES_kernels common)
set(LLAVA_ROOM_USES_data common)
set(LLAVA_ROOM_USES_model data kernels common)
set(LLAVA_ROOM_USES_infer model data kernels common)
set(LLAVA_ROOM_USES_eval data common)
set(LLAVA_ROOM_USES_train eval infer model data kernels common)
set(LLAVA_ROOM_USES_app train eval infer model data kernels common)
# kernels/ shows these headers to the rooms above it; cpu/, cuda/ and the rest stay its own.
set(LLAVA_KERNELS_PUBLIC_HEADERS ops.h backend.h device.h opcheck.h)
