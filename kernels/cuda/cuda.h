// Host-callable entry points of the CUDA backend. Without a CUDA build (stub.c) every function
// reports that no device exists, so callers and tests behave the same everywhere.
#ifndef LLAVA_KERNELS_CUDA_H
#define LLAVA_KERNELS_CUDA_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

// Number of usable CUDA devices: 0 without a CUDA build, a driver or a GPU.
int llava_cuda_device_count(void);
// "NVIDIA H100 80GB HBM3, sm_90, 132 SMs" or an explanation of why there is none.
const char *llava_cuda_describe(void);

// fp32 -> bf16 (round to nearest even) and back, on the device: the conversion every weight
// upload uses. Host buffers in, host buffers out. Return 0 or -1 (llava_errmsg()).
int llava_cuda_f32_to_bf16(const float *src, uint16_t *dst, size_t n);
int llava_cuda_bf16_to_f32(const uint16_t *src, float *dst, size_t n);

#ifdef __cplusplus
}
#endif

#endif
