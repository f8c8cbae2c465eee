// Must be refused by cmake/check_rooms.cmake as room data: a ".." include walks around the
// include directories that keep the rooms apart.
#include "../model/llava.h"
