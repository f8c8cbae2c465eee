// The CUDA backend's entry points in a build without nvcc: opening it names why it is not there.
#include <stdio.h>

#include "common/util.h"
#include "kernels/backend.h"
#include "kernels/backend_impl.h"

int llava_backend_cuda_available(char *why, size_t cap) {
    snprintf(why, cap, "this build has no CUDA backend (nvcc was not found)");
    return 0;
}

llava_backend *llava_backend_open_cuda(const llava_backend_options *o) {
    (void)o;
    llava_fail("this build has no CUDA backend (nvcc was not found)");
    return NULL;
}
