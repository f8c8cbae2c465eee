// Device memory, host transfers and the stream (kernels/ops.h "memory"). ACT and PARAM buffers are
// bf16 on this backend, so their uploads round fp32 to bf16 (nearest even, the bits of
// common/dtype.c's f32_to_bf16) and their downloads widen exactly; GRAD, F32 and I32 buffers move
// as they are. Conversions run on the device through a staging buffer, in chunks, so a 7B-parameter
// upload needs no host-side loop and no second full-size allocation.
#include "common.cuh"

void cuda_fatal(const char *file, int line, const char *what, const char *why) {
    fprintf(stderr, "%s:%d: CUDA error: %s: %s\n", file, line, what, why);
    fflush(stderr);
    exit(1);
}

// One blocking stream (it orders itself with the legacy default stream, so a stray synchronous
// cudaMemcpy elsewhere cannot race our kernels). Created on first use, on the current device: a
// multi-GPU run selects its device before the first op.
static cudaStream_t g_stream;
static int g_stream_ready;

extern "C" void *cuda_stream(void) {
    if (!g_stream_ready) {
        CUDA_CHECK(cudaStreamCreate(&g_stream));
        g_stream_ready = 1;
    }
    return (void *)g_stream;
}

// ---------------------------------------------------------------------------------------------
// Scratch space shared by the ops (common.cuh). It only grows; before replacing it the stream is
// drained, since queued kernels may still read the old buffer.
static void *g_scratch;
static size_t g_scratch_bytes;

void *cuda_scratch(size_t bytes) {
    if (bytes <= g_scratch_bytes) return g_scratch;
    if (g_scratch) {
        CUDA_CHECK(cudaStreamSynchronize(llava_stream()));
        CUDA_CHECK(cudaFree(g_scratch));
        g_scratch = NULL;
    }
    size_t want = bytes < ((size_t)1 << 20) ? ((size_t)1 << 20) : bytes;  // at least 1 MiB: few regrowths
    CUDA_CHECK(cudaMalloc(&g_scratch, want));
    g_scratch_bytes = want;
    return g_scratch;
}

// ---------------------------------------------------------------------------------------------

// A caching allocator. The model allocates each step's activations afresh and frees them at the
// end of the step; cudaMalloc and cudaFree each synchronise the device, so freed blocks are kept
// and handed out again. All work runs on one stream, so a block freed by the host after kernels
// that use it were enqueued can be reused by kernels enqueued later: stream order keeps them
// apart, as in PyTorch's allocator. A request takes the smallest free block that holds it and is
// at most twice its size; when cudaMalloc runs out of memory, the free blocks are released and it
// is tried once more.
typedef struct {
    void *p;
    size_t bytes;
} mem_block;

static mem_block *live_blocks, *free_blocks;
static int n_live, cap_live, n_free, cap_free;

static void push_block(mem_block **arr, int *n, int *cap, mem_block b) {
    if (*n == *cap) {
        *cap = *cap ? 2 * *cap : 256;
        *arr = (mem_block *)realloc(*arr, sizeof(mem_block) * (size_t)*cap);
        if (!*arr) {
            fprintf(stderr, "llava: out of host memory in the CUDA allocator\n");
            exit(1);
        }
    }
    (*arr)[(*n)++] = b;
}

static void release_free_blocks(void) {
    for (int i = 0; i < n_free; i++) CUDA_CHECK(cudaFree(free_blocks[i].p));
    n_free = 0;
}

extern "C" void *cuda_alloc(int kind, size_t n) {
    // cudaMalloc(0) gives NULL, which callers would take for failure; a zero-length buffer gets a
    // minimal allocation instead. Sizes round up to 512 bytes, which keeps every buffer 16-byte
    // aligned and lets blocks of nearby sizes serve each other.
    size_t bytes = n * cuda_kind_bytes(kind);
    bytes = (bytes + 511) / 512 * 512;
    if (bytes == 0) bytes = 512;
    int best = -1;
    for (int i = 0; i < n_free; i++)
        if (free_blocks[i].bytes >= bytes && free_blocks[i].bytes <= 2 * bytes &&
            (best < 0 || free_blocks[i].bytes < free_blocks[best].bytes))
            best = i;
    mem_block b;
    if (best >= 0) {
        b = free_blocks[best];
        free_blocks[best] = free_blocks[--n_free];
    } else {
        b.bytes = bytes;
        b.p = NULL;
        cudaError_t err = cudaMalloc(&b.p, bytes);
        if (err == cudaErrorMemoryAllocation) {
            cudaGetLastError();
            CUDA_CHECK(cudaStreamSynchronize(llava_stream()));
            release_free_blocks();
            err = cudaMalloc(&b.p, bytes);
        }
        CUDA_CHECK(err);
    }
    push_block(&live_blocks, &n_live, &cap_live, b);
    CUDA_CHECK(cudaMemsetAsync(b.p, 0, b.bytes, llava_stream()));
    return b.p;
}

extern "C" void cuda_free(void *p) {
    if (!p) return;
    for (int i = n_live - 1; i >= 0; i--)
        if (live_blocks[i].p == p) {
            push_block(&free_blocks, &n_free, &cap_free, live_blocks[i]);
            live_blocks[i] = live_blocks[--n_live];
            return;
        }
    fprintf(stderr, "llava: cuda_free of a pointer the allocator did not give out (%p)\n", p);
    exit(1);
}

extern "C" void cuda_zero(int kind, void *p, size_t n) {
    if (n == 0) return;
    CUDA_CHECK(cudaMemsetAsync(p, 0, n * cuda_kind_bytes(kind), llava_stream()));
}

extern "C" void cuda_copy(int kind, void *dst, const void *src, size_t n) {
    size_t bytes = n * cuda_kind_bytes(kind);
    if (bytes == 0 || dst == src) return;
    const char *d = (const char *)dst, *s = (const char *)src;
    if (d < s + bytes && s < d + bytes) {
        // Overlapping ranges (memmove semantics, as the CPU backend has): cudaMemcpy leaves them
        // undefined, so go through a temporary copy.
        void *tmp = cuda_scratch(bytes);
        CUDA_CHECK(cudaMemcpyAsync(tmp, src, bytes, cudaMemcpyDeviceToDevice, llava_stream()));
        CUDA_CHECK(cudaMemcpyAsync(dst, tmp, bytes, cudaMemcpyDeviceToDevice, llava_stream()));
        return;
    }
    CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, llava_stream()));
}

__global__ void upload_f32_to_bf16_kernel(uint16_t *dst, const float *src, size_t n) {
    size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
    if (i < n) dst[i] = f_to_bf16(src[i]);
}

__global__ void download_bf16_to_f32_kernel(float *dst, const uint16_t *src, size_t n) {
    size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
    if (i < n) dst[i] = bf16_to_f(src[i]);
}

// Staging for the converting transfers: 16M floats (64 MiB) per chunk.
static const size_t STAGE_ELEMS = (size_t)1 << 24;
static float *g_stage;

static float *stage_buffer(void) {
    if (!g_stage) CUDA_CHECK(cudaMalloc(&g_stage, STAGE_ELEMS * sizeof(float)));
    return g_stage;
}

// Transfers synchronise before returning: the host buffer is free for reuse at once (a pageable
// source must not change under a queued copy), and a download's values are there to read.
extern "C" void cuda_upload(int kind, void *dst, const float *src, size_t n) {
    if (n == 0) return;
    cudaStream_t st = llava_stream();
    if (kind == BUF_ACT || kind == BUF_PARAM) {
        float *stage = stage_buffer();
        for (size_t off = 0; off < n; off += STAGE_ELEMS) {
            size_t len = n - off < STAGE_ELEMS ? n - off : STAGE_ELEMS;
            // The stream orders this chunk's copy after the previous chunk's kernel has read stage.
            CUDA_CHECK(cudaMemcpyAsync(stage, src + off, len * sizeof(float), cudaMemcpyHostToDevice, st));
            upload_f32_to_bf16_kernel<<<grid_for(len, 256), 256, 0, st>>>((uint16_t *)dst + off, stage, len);
            CUDA_CHECK_LAUNCH();
        }
    } else {
        CUDA_CHECK(cudaMemcpyAsync(dst, src, n * 4, cudaMemcpyHostToDevice, st));
    }
    CUDA_CHECK(cudaStreamSynchronize(st));
}

extern "C" void cuda_download(int kind, float *dst, const void *src, size_t n) {
    if (n == 0) return;
    cudaStream_t st = llava_stream();
    if (kind == BUF_ACT || kind == BUF_PARAM) {
        float *stage = stage_buffer();
        for (size_t off = 0; off < n; off += STAGE_ELEMS) {
            size_t len = n - off < STAGE_ELEMS ? n - off : STAGE_ELEMS;
            download_bf16_to_f32_kernel<<<grid_for(len, 256), 256, 0, st>>>(stage, (const uint16_t *)src + off, len);
            CUDA_CHECK_LAUNCH();
            // The stream orders the next chunk's kernel after this copy out of stage.
            CUDA_CHECK(cudaMemcpyAsync(dst + off, stage, len * sizeof(float), cudaMemcpyDeviceToHost, st));
        }
    } else {
        CUDA_CHECK(cudaMemcpyAsync(dst, src, n * 4, cudaMemcpyDeviceToHost, st));
    }
    CUDA_CHECK(cudaStreamSynchronize(st));
}

extern "C" void cuda_upload_i32(int32_t *dst, const int32_t *src, size_t n) {
    if (n == 0) return;
    CUDA_CHECK(cudaMemcpyAsync(dst, src, n * sizeof(int32_t), cudaMemcpyHostToDevice, llava_stream()));
    CUDA_CHECK(cudaStreamSynchronize(llava_stream()));
}

extern "C" void cuda_sync(void) {
    CUDA_CHECK(cudaStreamSynchronize(llava_stream()));
    CUDA_CHECK(cudaGetLastError());
}
