// Device management and dtype conversion kernels.
#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <stdio.h>

#include "cuda.h"

extern "C" int llava_fail(const char *fmt, ...);

#define CUDA_TRY(call)                                                                       \
    do {                                                                                     \
        cudaError_t err_ = (call);                                                           \
        if (err_ != cudaSuccess)                                                             \
            return llava_fail("%s:%d: %s: %s", __FILE__, __LINE__, #call, cudaGetErrorString(err_)); \
    } while (0)

extern "C" int llava_cuda_device_count(void) {
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess) {
        cudaGetLastError();  // clear the sticky "no device / no driver" error
        return 0;
    }
    return n;
}

extern "C" const char *llava_cuda_describe(void) {
    static char buf[256];
    int n = 0;
    cudaError_t err = cudaGetDeviceCount(&n);
    if (err != cudaSuccess) {
        snprintf(buf, sizeof buf, "no CUDA device: %s", cudaGetErrorString(err));
        cudaGetLastError();
        return buf;
    }
    if (n == 0) return "no CUDA device";
    cudaDeviceProp p;
    if (cudaGetDeviceProperties(&p, 0) != cudaSuccess) return "CUDA device 0: properties unavailable";
    snprintf(buf, sizeof buf, "%s, sm_%d%d, %d SMs, %.1f GiB (%d device%s)", p.name, p.major, p.minor,
             p.multiProcessorCount, (double)p.totalGlobalMem / (1024.0 * 1024.0 * 1024.0), n, n == 1 ? "" : "s");
    return buf;
}

// Grid-stride loops: one launch covers any n.
__global__ void f32_to_bf16_kernel(const float *__restrict__ src, __nv_bfloat16 *__restrict__ dst, size_t n) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
        dst[i] = __float2bfloat16_rn(src[i]);
}

__global__ void bf16_to_f32_kernel(const __nv_bfloat16 *__restrict__ src, float *__restrict__ dst, size_t n) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
        dst[i] = __bfloat162float(src[i]);
}

static unsigned blocks_for(size_t n) {
    size_t b = (n + 255) / 256;
    return (unsigned)(b > 65535 ? 65535 : (b ? b : 1));
}

extern "C" int llava_cuda_f32_to_bf16(const float *src, uint16_t *dst, size_t n) {
    float *d_src = NULL;
    __nv_bfloat16 *d_dst = NULL;
    CUDA_TRY(cudaMalloc(&d_src, n * sizeof(float)));
    CUDA_TRY(cudaMalloc(&d_dst, n * sizeof(__nv_bfloat16)));
    CUDA_TRY(cudaMemcpy(d_src, src, n * sizeof(float), cudaMemcpyHostToDevice));
    f32_to_bf16_kernel<<<blocks_for(n), 256>>>(d_src, d_dst, n);
    CUDA_TRY(cudaGetLastError());
    CUDA_TRY(cudaMemcpy(dst, d_dst, n * sizeof(uint16_t), cudaMemcpyDeviceToHost));
    CUDA_TRY(cudaFree(d_src));
    CUDA_TRY(cudaFree(d_dst));
    return 0;
}

extern "C" int llava_cuda_bf16_to_f32(const uint16_t *src, float *dst, size_t n) {
    __nv_bfloat16 *d_src = NULL;
    float *d_dst = NULL;
    CUDA_TRY(cudaMalloc(&d_src, n * sizeof(__nv_bfloat16)));
    CUDA_TRY(cudaMalloc(&d_dst, n * sizeof(float)));
    CUDA_TRY(cudaMemcpy(d_src, src, n * sizeof(uint16_t), cudaMemcpyHostToDevice));
    bf16_to_f32_kernel<<<blocks_for(n), 256>>>(d_src, d_dst, n);
    CUDA_TRY(cudaGetLastError());
    CUDA_TRY(cudaMemcpy(dst, d_dst, n * sizeof(float), cudaMemcpyDeviceToHost));
    CUDA_TRY(cudaFree(d_src));
    CUDA_TRY(cudaFree(d_dst));
    return 0;
}
