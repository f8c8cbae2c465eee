// Shared by the CUDA backend's op files (not part of the ops interface): the context's state, error
// checking, the scratch workspace, bf16 packs of 8 and the deterministic block reductions.
//
// bf16 values are handled as their raw 16 bits (uint16_t) in kernels: widening is a shift
// (exact), narrowing is __float2bfloat16_rn (round to nearest even, the same bits as
// common/dtype.c's f32_to_bf16, which tests/gpu/test_cuda_convert.c checks). That keeps device
// code free of __nv_bfloat16's C++ operator overloads and makes 16-byte packs plain uint4s.
#ifndef LLAVA_KERNELS_CUDA_COMMON_CUH
#define LLAVA_KERNELS_CUDA_COMMON_CUH

#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "common/util.h"
#include "cuda_ops.h"
#include "kernels/backend.h"
#include "kernels/op_require.h"

// Prints "file:line: what: why" and exits: after a device fault the training loop cannot go on
// (memory.cu).
__attribute__((noreturn)) void cuda_fatal(const char *file, int line, const char *what, const char *why);

#define CUDA_CHECK(call)                                                                                               \
    do {                                                                                                               \
        cudaError_t err_ = (call);                                                                                     \
        if (err_ != cudaSuccess) cuda_fatal(__FILE__, __LINE__, #call, cudaGetErrorString(err_));                      \
    } while (0)
// After every kernel launch: catches bad launch configurations at once (asynchronous faults
// surface at the next synchronising call, which is checked too).
#define CUDA_CHECK_LAUNCH() CUDA_CHECK(cudaGetLastError())
// An op's precondition (common/util.h's LLAVA_REQUIRE: checked on every build, aborts with the op
// and the condition). The preconditions both backends share are kernels/op_require.h's, called first
// in every op; CUDA_REQUIRE holds the limits of this backend's kernels.
#define CUDA_REQUIRE(cond, msg) LLAVA_REQUIRE(cond, "%s", (msg))

// A block of device memory the allocator handed out or keeps for reuse (memory.cu).
typedef struct {
    void *p;
    size_t bytes;
} cuda_block;

struct cuda_gemm_cache;  // linear.cu: the cuBLASLt handle, its workspace and the plans

// Everything one CUDA context holds (backend.h): nothing of the backend lives in globals, so two
// contexts (on one device or two) never share a stream, a cache or a buffer.
typedef struct {
    int device;           // the device ordinal this context runs on
    int n_sms;            // its multiprocessors (attention_decode splits a row's keys by them)
    cudaStream_t stream;  // every op of the context, in order
    void *scratch;        // cuda_scratch's buffer, and its size
    size_t scratch_bytes;
    float *stage;             // the fp32 staging buffer of converting transfers (memory.cu)
    cuda_block *live, *pool;  // the caching allocator: blocks handed out, and freed ones kept
    int n_live, cap_live, n_pool, cap_pool;
    struct cuda_gemm_cache *gemm;  // created on the first GEMM
    char *pinned;                  // stage(): two pinned halves of CUDA_PIN_HALF bytes, used in turn
    cudaEvent_t pin_done[2];       // recorded after the last copy out of each half
    size_t pin_used[2];
    int pin_cur;
} cuda_ctx;

#define CUDA_PIN_HALF ((size_t)32 << 20)

static inline cuda_ctx *cuda_cx(llava_backend *be) { return (cuda_ctx *)be->impl; }
static inline cudaStream_t cuda_stream_of(llava_backend *be) { return cuda_cx(be)->stream; }

// A device buffer of at least `bytes`, reused by every op of the context that needs temporary
// space (partial sums of the column reductions). Valid until the next call: all ops run in order
// on the context's stream, so one op's kernels are done with it before the next op's start.
void *cuda_scratch(llava_backend *be, size_t bytes);
// Frees what memory.cu and linear.cu keep in the context (backend_cuda.cu's close).
void cuda_memory_release(llava_backend *be);
void cuda_gemm_release(llava_backend *be);

// Deterministic column sums over the N rows of a (N, C) bf16 matrix g, accumulated (+=) into fp32
// GRAD vectors (norm.cu): COLSUM_PLAIN: dst0 += sum of g (bias gradients); COLSUM_RMS_DW: dst0 +=
// sum of g * x * rstd[row]; COLSUM_LN_DW_DB: dst0 += sum of g * (x - mean[row]) * rstd[row] and
// dst1 += sum of g. dst0 or dst1 may be NULL (that sum is skipped).
enum { COLSUM_PLAIN = 0, COLSUM_RMS_DW = 1, COLSUM_LN_DW_DB = 2 };
void cuda_colsum(llava_backend *be, int mode, float *dst0, float *dst1, const void *g, const void *x, const float *mean,
                 const float *rstd, int N, int C);

// Element size of a buffer kind on this backend.
static inline size_t cuda_kind_bytes(int kind) { return (kind == BUF_ACT || kind == BUF_PARAM) ? 2 : 4; }

static inline int is_aligned16(const void *p) { return ((uintptr_t)p & 15u) == 0; }

// Blocks of `threads` covering `work` items (at least 1; callers return early on empty work).
static inline unsigned grid_for(size_t work, unsigned threads) {
    size_t b = (work + threads - 1) / threads;
    return (unsigned)(b ? b : 1);
}

// ---------------------------------------------------------------------------------------------
// bf16 <-> fp32 on raw bits.

__device__ __forceinline__ float bf16_to_f(uint16_t b) { return __uint_as_float((uint32_t)b << 16); }
__device__ __forceinline__ uint16_t f_to_bf16(float f) { return __bfloat16_as_ushort(__float2bfloat16_rn(f)); }

// Packs of 8 elements: element i0..i0+7 of a bf16 array of n elements. When `vec` is set (the
// caller checked 16-byte alignment of the base and that every full pack starts on a multiple of
// 8) a full pack moves as one 16-byte access; a partial pack at the end (i0 + 8 > n) or an
// unaligned array goes element by element. Lanes past n read as 0 and are not stored.
__device__ __forceinline__ void load8(const uint16_t *p, size_t i0, size_t n, int vec, float v[8]) {
    if (vec && i0 + 8 <= n) {
        uint4 u = *reinterpret_cast<const uint4 *>(p + i0);
        uint32_t w[4] = {u.x, u.y, u.z, u.w};
#pragma unroll
        for (int k = 0; k < 4; k++) {
            v[2 * k] = __uint_as_float(w[k] << 16);  // low half: the lower address
            v[2 * k + 1] = __uint_as_float(w[k] & 0xffff0000u);
        }
    } else {
#pragma unroll
        for (int k = 0; k < 8; k++) v[k] = i0 + k < n ? bf16_to_f(p[i0 + k]) : 0.0f;
    }
}

__device__ __forceinline__ void store8(uint16_t *p, size_t i0, size_t n, int vec, const float v[8]) {
    if (vec && i0 + 8 <= n) {
        uint32_t w[4];
#pragma unroll
        for (int k = 0; k < 4; k++) w[k] = (uint32_t)f_to_bf16(v[2 * k]) | ((uint32_t)f_to_bf16(v[2 * k + 1]) << 16);
        *reinterpret_cast<uint4 *>(p + i0) = make_uint4(w[0], w[1], w[2], w[3]);
    } else {
#pragma unroll
        for (int k = 0; k < 8; k++)
            if (i0 + k < n) p[i0 + k] = f_to_bf16(v[k]);
    }
}

// ---------------------------------------------------------------------------------------------
// Deterministic reductions. The xor butterfly gives every lane the same bits (each step adds the
// same two numbers on both lanes of a pair, and fp addition is commutative); the block step sums
// the warps' results in warp order on every thread. blockDim.x must be a multiple of 32 (<= 1024).
// Every thread of the block must call these (they contain __syncthreads).

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

__device__ __forceinline__ double warp_sum_d(double v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

__device__ __forceinline__ float block_sum(float v) {
    __shared__ float buf[32];
    v = warp_sum(v);
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = blockDim.x >> 5;
    __syncthreads();  // a previous call's readers are done with buf
    if (lane == 0) buf[warp] = v;
    __syncthreads();
    float s = 0.0f;
    for (int i = 0; i < nwarps; i++) s += buf[i];
    return s;
}

__device__ __forceinline__ double block_sum_d(double v) {
    __shared__ double buf_d[32];
    v = warp_sum_d(v);
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = blockDim.x >> 5;
    __syncthreads();
    if (lane == 0) buf_d[warp] = v;
    __syncthreads();
    double s = 0.0;
    for (int i = 0; i < nwarps; i++) s += buf_d[i];
    return s;
}

#endif
