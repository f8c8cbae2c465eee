// QLoRA's NF4 weights back to numbers (ops.h nf4_dequantize) into bf16, one thread per pair of weights
// (one packed byte). The fp32 steps are bitsandbytes' with their two roundings kept apart (__fmul_rn,
// __fadd_rn: no fused multiply-add), so the bf16 result is the CPU backend's with round_bf16.
#include <float.h>

#include "common.cuh"

__device__ __forceinline__ float ftz_f(float x) { return fabsf(x) < FLT_MIN ? x * 0.0f : x; }

__global__ void nf4_dequantize_kernel(uint16_t *out, const uint8_t *packed, const uint8_t *absmax_q,
                                      const float *absmax2, const float *tables, float offset, size_t n) {
    size_t j = (size_t)blockIdx.x * blockDim.x + threadIdx.x;  // byte j: weights 2j and 2j + 1
    size_t i = 2 * j;
    if (i >= n) return;
    size_t b = i / 64;  // both weights of a byte are in one block (64 is even)
    float a = __fadd_rn(ftz_f(__fmul_rn(tables[16 + absmax_q[b]], absmax2[b / 256])), offset);
    uint8_t byte = packed[j];
    out[i] = f_to_bf16(ftz_f(__fmul_rn(tables[byte >> 4], a)));
    if (i + 1 < n) out[i + 1] = f_to_bf16(ftz_f(__fmul_rn(tables[byte & 15u], a)));
}

extern "C" void cuda_nf4_dequantize(llava_backend *be, void *out, const uint8_t *packed, const uint8_t *absmax_q,
                                    const float *absmax2, const float *tables, float offset, size_t n, int round_bf16) {
    (void)round_bf16;  // the output is bf16
    req_elementwise(be, "nf4_dequantize", n, "out packed absmax_q absmax2 tables", out, packed, absmax_q, absmax2,
                    tables);
    if (n == 0) return;
    size_t bytes = (n + 1) / 2;
    unsigned blocks = (unsigned)((bytes + 255) / 256);
    nf4_dequantize_kernel<<<blocks, 256, 0, cuda_stream_of(be)>>>((uint16_t *)out, packed, absmax_q, absmax2, tables,
                                                                  offset, n);
    CUDA_CHECK_LAUNCH();
}
