// Must not compile: kernels/cuda/ is private to kernels/ (train reaches the device through
// kernels/device.h).
#include "kernels/cuda/cuda_ops.h"
