// Must not compile: common/ sits below every room.
#include "kernels/ops.h"
