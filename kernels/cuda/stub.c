// The CUDA backend's entry points in a build without nvcc.
#include "cuda.h"

#include "../../common/util.h"

int llava_cuda_device_count(void) { return 0; }
const char *llava_cuda_describe(void) { return "this build has no CUDA backend (nvcc was not found)"; }

int llava_cuda_f32_to_bf16(const float *src, uint16_t *dst, size_t n) {
    (void)src, (void)dst, (void)n;
    return llava_fail("CUDA backend not built");
}

int llava_cuda_bf16_to_f32(const uint16_t *src, float *dst, size_t n) {
    (void)src, (void)dst, (void)n;
    return llava_fail("CUDA backend not built");
}

#include "../ops.h"

const llava_ops *ops_cuda(void) { return NULL; }
