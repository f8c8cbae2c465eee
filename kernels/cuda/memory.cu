// Device memory and host transfers of a context (kernels/ops.h "memory"). ACT and PARAM buffers are
// bf16 on this backend, so their uploads round fp32 to bf16 (nearest even, the bits of
// common/dtype.c's f32_to_bf16) and their downloads widen exactly; GRAD, F32 and I32 buffers move
// as they are. Conversions run on the device through a staging buffer, in chunks, so a 7B-parameter
// upload needs no host-side loop and no second full-size allocation.
#include <string.h>

#include "common.cuh"

void cuda_fatal(const char *file, int line, const char *what, const char *why) {
    fprintf(stderr, "%s:%d: CUDA error: %s: %s\n", file, line, what, why);
    fflush(stderr);
    exit(1);
}

// ---------------------------------------------------------------------------------------------
// Scratch space shared by the context's ops (common.cuh). It only grows; before replacing it the
// stream is drained, since queued kernels may still read the old buffer. Its size settles within
// the first step (the largest column reduction, the attention backward's delta).
void *cuda_scratch(llava_backend *be, size_t bytes) {
    cuda_ctx *cx = cuda_cx(be);
    if (bytes <= cx->scratch_bytes) return cx->scratch;
    if (cx->scratch) {
        CUDA_CHECK(cudaStreamSynchronize(cx->stream));
        CUDA_CHECK(cudaFree(cx->scratch));
        cx->scratch = NULL;
    }
    size_t want = bytes < ((size_t)1 << 20) ? ((size_t)1 << 20) : bytes;  // at least 1 MiB: few regrowths
    CUDA_CHECK(cudaMalloc(&cx->scratch, want));
    cx->scratch_bytes = want;
    return cx->scratch;
}

// ---------------------------------------------------------------------------------------------

// A caching allocator, one per context. cudaMalloc and cudaFree each synchronise the device, so
// freed blocks are kept and handed out again. All work of a context runs on its one stream, so a
// block freed by the host after kernels that use it were enqueued can be reused by kernels
// enqueued later: stream order keeps them apart, as in PyTorch's allocator. A request takes the
// smallest free block that holds it and is at most twice its size; when cudaMalloc runs out of
// memory, the free blocks are released and it is tried once more. The model plans its activations
// into a few arenas (model/acts.c), so after the first step nothing here calls cudaMalloc.

static void push_block(cuda_block **arr, int *n, int *cap, cuda_block b) {
    if (*n == *cap) {
        *cap = *cap ? 2 * *cap : 256;
        *arr = (cuda_block *)realloc(*arr, sizeof(cuda_block) * (size_t)*cap);
        if (!*arr) {
            fprintf(stderr, "llava: out of host memory in the CUDA allocator\n");
            exit(1);
        }
    }
    (*arr)[(*n)++] = b;
}

static void release_pool(cuda_ctx *cx) {
    for (int i = 0; i < cx->n_pool; i++) CUDA_CHECK(cudaFree(cx->pool[i].p));
    cx->n_pool = 0;
}

extern "C" void *cuda_alloc(llava_backend *be, int kind, size_t n) {
    req_kind(be, "alloc", kind);
    cuda_ctx *cx = cuda_cx(be);
    // cudaMalloc(0) gives NULL, which callers would take for failure; a zero-length buffer gets a
    // minimal allocation instead. Sizes round up to 512 bytes, which keeps every buffer 16-byte
    // aligned and lets blocks of nearby sizes serve each other.
    size_t bytes = n * cuda_kind_bytes(kind);
    bytes = (bytes + 511) / 512 * 512;
    if (bytes == 0) bytes = 512;
    int best = -1;
    for (int i = 0; i < cx->n_pool; i++)
        if (cx->pool[i].bytes >= bytes && cx->pool[i].bytes <= 2 * bytes &&
            (best < 0 || cx->pool[i].bytes < cx->pool[best].bytes))
            best = i;
    cuda_block b;
    if (best >= 0) {
        b = cx->pool[best];
        cx->pool[best] = cx->pool[--cx->n_pool];
    } else {
        b.bytes = bytes;
        b.p = NULL;
        cudaError_t err = cudaMalloc(&b.p, bytes);
        if (err == cudaErrorMemoryAllocation) {
            cudaGetLastError();
            CUDA_CHECK(cudaStreamSynchronize(cx->stream));
            release_pool(cx);
            err = cudaMalloc(&b.p, bytes);
        }
        CUDA_CHECK(err);
    }
    push_block(&cx->live, &cx->n_live, &cx->cap_live, b);
    be->bytes_in_use += b.bytes;
    if (be->bytes_in_use > be->bytes_peak) be->bytes_peak = be->bytes_in_use;
    CUDA_CHECK(cudaMemsetAsync(b.p, 0, b.bytes, cx->stream));
    return b.p;
}

extern "C" void cuda_free(llava_backend *be, void *p) {
    if (!p) return;
    cuda_ctx *cx = cuda_cx(be);
    for (int i = cx->n_live - 1; i >= 0; i--)
        if (cx->live[i].p == p) {
            be->bytes_in_use -= cx->live[i].bytes;
            push_block(&cx->pool, &cx->n_pool, &cx->cap_pool, cx->live[i]);
            cx->live[i] = cx->live[--cx->n_live];
            return;
        }
    fprintf(stderr, "llava: cuda_free of a pointer this context's allocator did not give out (%p)\n", p);
    exit(1);
}

// Everything the context's memory functions hold: live blocks (a context closed with buffers still
// allocated frees them), the pool, the scratch and the staging buffer.
void cuda_memory_release(llava_backend *be) {
    cuda_ctx *cx = cuda_cx(be);
    cudaStreamSynchronize(cx->stream);
    for (int i = 0; i < cx->n_live; i++) cudaFree(cx->live[i].p);
    for (int i = 0; i < cx->n_pool; i++) cudaFree(cx->pool[i].p);
    free(cx->live);
    free(cx->pool);
    cx->live = cx->pool = NULL;
    cx->n_live = cx->n_pool = cx->cap_live = cx->cap_pool = 0;
    be->bytes_in_use = 0;
    if (cx->scratch) cudaFree(cx->scratch);
    if (cx->stage) cudaFree(cx->stage);
    if (cx->pinned) {
        cudaFreeHost(cx->pinned);
        cudaEventDestroy(cx->pin_done[0]);
        cudaEventDestroy(cx->pin_done[1]);
        cx->pinned = NULL;
    }
    cx->scratch = NULL;
    cx->stage = NULL;
    cx->scratch_bytes = 0;
}

extern "C" void cuda_zero(llava_backend *be, int kind, void *p, size_t n) {
    req_transfer(be, "zero", kind, p, p, n);
    if (n == 0) return;
    CUDA_CHECK(cudaMemsetAsync(p, 0, n * cuda_kind_bytes(kind), cuda_stream_of(be)));
}

extern "C" void cuda_copy(llava_backend *be, int kind, void *dst, const void *src, size_t n) {
    req_transfer(be, "copy", kind, dst, src, n);
    size_t bytes = n * cuda_kind_bytes(kind);
    if (bytes == 0 || dst == src) return;
    const char *d = (const char *)dst, *s = (const char *)src;
    if (d < s + bytes && s < d + bytes) {
        // Overlapping ranges (memmove semantics, as the CPU backend has): cudaMemcpy leaves them
        // undefined, so go through a temporary copy.
        void *tmp = cuda_scratch(be, bytes);
        CUDA_CHECK(cudaMemcpyAsync(tmp, src, bytes, cudaMemcpyDeviceToDevice, cuda_stream_of(be)));
        CUDA_CHECK(cudaMemcpyAsync(dst, tmp, bytes, cudaMemcpyDeviceToDevice, cuda_stream_of(be)));
        return;
    }
    CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, cuda_stream_of(be)));
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
static float *stage_buffer(llava_backend *be) {
    cuda_ctx *cx = cuda_cx(be);
    if (!cx->stage) CUDA_CHECK(cudaMalloc(&cx->stage, STAGE_ELEMS * sizeof(float)));
    return cx->stage;
}

// Transfers synchronise before returning: the host buffer is free for reuse at once (a pageable
// source must not change under a queued copy), and a download's values are there to read.
extern "C" void cuda_upload(llava_backend *be, int kind, void *dst, const float *src, size_t n) {
    req_transfer(be, "upload", kind, dst, src, n);
    if (n == 0) return;
    cudaStream_t st = cuda_stream_of(be);
    if (kind == BUF_ACT || kind == BUF_PARAM) {
        float *stage = stage_buffer(be);
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

extern "C" void cuda_download(llava_backend *be, int kind, float *dst, const void *src, size_t n) {
    req_transfer(be, "download", kind, dst, src, n);
    if (n == 0) return;
    cudaStream_t st = cuda_stream_of(be);
    if (kind == BUF_ACT || kind == BUF_PARAM) {
        float *stage = stage_buffer(be);
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

extern "C" void cuda_upload_i32(llava_backend *be, int32_t *dst, const int32_t *src, size_t n) {
    req_transfer(be, "upload_i32", BUF_I32, dst, src, n);
    if (n == 0) return;
    CUDA_CHECK(cudaMemcpyAsync(dst, src, n * sizeof(int32_t), cudaMemcpyHostToDevice, cuda_stream_of(be)));
    CUDA_CHECK(cudaStreamSynchronize(cuda_stream_of(be)));
}

// stage(): host bytes through pinned memory, so the copy runs asynchronously and the host buffer
// is free at once. The two halves of the pinned buffer are used in turn: a request goes after what
// the current half holds; when it does not fit, the other half becomes current once the copies out
// of it are done (its event, recorded after each of them: copies issued a half ago, finished long
// since in a training loop). A request larger than a half goes straight to cudaMemcpyAsync and
// waits (a 7B micro-batch's arrays and 16 images are about 22 MiB, inside a half).
extern "C" void cuda_stage(llava_backend *be, void *dst, const void *src, size_t bytes) {
    req_elementwise(be, "stage", bytes, "dst src", dst, src, NULL, NULL, NULL);
    if (bytes == 0) return;
    cuda_ctx *cx = cuda_cx(be);
    if (bytes > CUDA_PIN_HALF) {
        CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, cx->stream));
        CUDA_CHECK(cudaStreamSynchronize(cx->stream));
        return;
    }
    if (!cx->pinned) {
        CUDA_CHECK(cudaHostAlloc((void **)&cx->pinned, 2 * CUDA_PIN_HALF, cudaHostAllocDefault));
        CUDA_CHECK(cudaEventCreateWithFlags(&cx->pin_done[0], cudaEventDisableTiming));
        CUDA_CHECK(cudaEventCreateWithFlags(&cx->pin_done[1], cudaEventDisableTiming));
    }
    int h = cx->pin_cur;
    if (cx->pin_used[h] + bytes > CUDA_PIN_HALF) {
        h ^= 1;
        CUDA_CHECK(cudaEventSynchronize(cx->pin_done[h]));  // a never-recorded event is complete
        cx->pin_used[h] = 0;
        cx->pin_cur = h;
    }
    char *slot = cx->pinned + (size_t)h * CUDA_PIN_HALF + cx->pin_used[h];
    memcpy(slot, src, bytes);
    CUDA_CHECK(cudaMemcpyAsync(dst, slot, bytes, cudaMemcpyHostToDevice, cx->stream));
    CUDA_CHECK(cudaEventRecord(cx->pin_done[h], cx->stream));
    cx->pin_used[h] += (bytes + 255) / 256 * 256;
}

extern "C" void cuda_sync(llava_backend *be) {
    CUDA_CHECK(cudaStreamSynchronize(cuda_stream_of(be)));
    CUDA_CHECK(cudaGetLastError());
}

// ---------------------------------------------------------------------------------------------
// Page-locked host memory (the optimizer offload's state): uploads and downloads from it go by DMA
// straight from the pages, without the driver's bounce through its own pinned buffer.
extern "C" void *cuda_host_alloc(llava_backend *be, size_t bytes) {
    void *p = NULL;
    CUDA_CHECK(cudaHostAlloc(&p, bytes ? bytes : 1, cudaHostAllocDefault));
    memset(p, 0, bytes ? bytes : 1);
    return p;
}

extern "C" void cuda_host_free(llava_backend *be, void *p) {
    if (p) CUDA_CHECK(cudaFreeHost(p));
}
