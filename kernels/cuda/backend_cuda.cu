// The CUDA backend's op table and context (kernels/ops.h, kernels/backend.h): bf16 ACT/PARAM
// buffers, fp32 GRAD/F32, int32 I32; every op of a context enqueued on the context's stream.
// Opening fails with a reason on a machine without a usable device, so `--device cuda` can say so
// instead of failing at the first allocation.
#include <string.h>

#include "common.cuh"
#include "kernels/backend_impl.h"

static void fill_table(llava_ops *t) {
    t->name = "cuda";
    t->act_bytes = 2;  // bf16
    t->alloc = cuda_alloc;
    t->free = cuda_free;
    t->zero = cuda_zero;
    t->copy = cuda_copy;
    t->upload = cuda_upload;
    t->download = cuda_download;
    t->upload_i32 = cuda_upload_i32;
    t->stage = cuda_stage;
    t->host_alloc = cuda_host_alloc;
    t->host_free = cuda_host_free;
    t->sync = cuda_sync;
    t->linear_forward = cuda_linear_forward;
    t->linear_backward_input = cuda_linear_backward_input;
    t->linear_backward_weight = cuda_linear_backward_weight;
    t->linear_backward_bias = cuda_linear_backward_bias;
    t->patch_unfold = cuda_patch_unfold;
    t->clip_embed = cuda_clip_embed;
    t->layernorm_forward = cuda_layernorm_forward;
    t->layernorm_backward = cuda_layernorm_backward;
    t->rmsnorm_forward = cuda_rmsnorm_forward;
    t->rmsnorm_backward = cuda_rmsnorm_backward;
    t->quick_gelu_forward = cuda_quick_gelu_forward;
    t->quick_gelu_backward = cuda_quick_gelu_backward;
    t->gelu_forward = cuda_gelu_forward;
    t->gelu_tanh_forward = cuda_gelu_tanh_forward;
    t->gelu_tanh_backward = cuda_gelu_tanh_backward;
    t->gelu_backward = cuda_gelu_backward;
    t->silu_mul_forward = cuda_silu_mul_forward;
    t->silu_mul_backward = cuda_silu_mul_backward;
    t->rope_forward = cuda_rope_forward;
    t->rope_backward = cuda_rope_backward;
    t->attention_forward = cuda_attention_forward;    // attention.cu
    t->attention_backward = cuda_attention_backward;  // attention.cu
    t->attention_decode = cuda_attention_decode;      // attention_decode.cu
    t->attention_window = 1;                          // all three take Mistral's sliding window
    t->embedding_forward = cuda_embedding_forward;
    t->embedding_backward = cuda_embedding_backward;
    t->scatter_rows = cuda_scatter_rows;
    t->gather_rows = cuda_gather_rows;
    t->grid_pool = cuda_grid_pool;                    // pool.cu
    t->grid_pool_backward = cuda_grid_pool_backward;  // pool.cu
    t->resize_bilinear = cuda_resize_bilinear;        // pool.cu
    t->resize_bilinear_backward = cuda_resize_bilinear_backward;
    t->cross_entropy = cuda_cross_entropy;
    t->adamw = cuda_adamw;
    t->grad_sq_sum = cuda_grad_sq_sum;
    t->add = cuda_add;
    t->add_inplace = cuda_add_inplace;
    t->dropout_scale = cuda_dropout_scale;
    t->nf4_dequantize = cuda_nf4_dequantize;
}

// The op table is constant after it is filled once; only contexts hold state.
static const llava_ops *cuda_table(void) {
    static llava_ops table;
    static int ready;
    if (!ready) {
        fill_table(&table);
        ready = 1;
    }
    return &table;
}

// ---------------------------------------------------------------------------------------------
// The context (backend.h).

extern "C" int llava_backend_cuda_available(char *why, size_t cap) {
    int n = 0;
    cudaError_t err = cudaGetDeviceCount(&n);
    if (err != cudaSuccess) {
        snprintf(why, cap, "no CUDA device: %s", cudaGetErrorString(err));
        cudaGetLastError();  // clear the sticky "no device / no driver" error
        return 0;
    }
    if (n == 0) {
        snprintf(why, cap, "no CUDA device");
        return 0;
    }
    return 1;
}

// Nominal dense bf16 tensor-core peak and memory bandwidth of the cards this project measures on
// (vendor data sheets; the MFU figures in docs/gpu-results.md are against these).
static void nominal_peaks(const cudaDeviceProp *p, double *tflops, double *gbs) {
    *tflops = 0;
    *gbs = 0;
    if (p->major == 9 && p->minor == 0) {
        *tflops = 989.4;
        *gbs = strstr(p->name, "H200") ? 4800.0 : 3350.0;
    } else if (p->major == 8 && p->minor == 0) {
        *tflops = 312.0;
        *gbs = p->totalGlobalMem > ((size_t)48 << 30) ? 2039.0 : 1555.0;
    }
}

static void cuda_describe(const llava_backend *be, llava_backend_info *info) {
    const cuda_ctx *cx = (const cuda_ctx *)be->impl;
    memset(info, 0, sizeof *info);
    snprintf(info->name, sizeof info->name, "cuda");
    info->ordinal = cx->device;
    cudaDeviceProp p;
    if (cudaGetDeviceProperties(&p, cx->device) != cudaSuccess) {
        cudaGetLastError();
        snprintf(info->device, sizeof info->device, "CUDA device %d (properties unavailable)", cx->device);
        return;
    }
    snprintf(info->device, sizeof info->device, "%s, sm_%d%d, %d SMs", p.name, p.major, p.minor, p.multiProcessorCount);
    size_t free_b = 0, total_b = 0;
    if (cudaMemGetInfo(&free_b, &total_b) == cudaSuccess) {
        info->memory_total = total_b;
        info->memory_free = free_b;
    } else {
        cudaGetLastError();
        info->memory_total = p.totalGlobalMem;
    }
    nominal_peaks(&p, &info->peak_bf16_tflops, &info->peak_bandwidth_gbs);
}

// The limits of the kernels as written (each op also checks its own with CUDA_REQUIRE).
static int cuda_supports(const llava_backend *be, const llava_op_shape *s, char *why, size_t cap) {
    const int64_t *n = s->n;
    switch (s->op) {
    case LLAVA_OP_LINEAR:
        if (n[1] == 0 && n[0] > 0 && n[2] > 0) {
            snprintf(why, cap, "linear: zero input features");
            return 0;
        }
        if (n[0] > INT32_MAX || n[1] > INT32_MAX || n[2] > INT32_MAX) {
            snprintf(why, cap, "linear: a dimension above 2^31");
            return 0;
        }
        return 1;
    case LLAVA_OP_ATTENTION:  // T, Hq, Hkv, D, n_seq
        if (n[1] <= 0 || n[2] <= 0 || n[1] % n[2] != 0) {
            snprintf(why, cap, "attention: %lld query heads are not a multiple of %lld key/value heads",
                     (long long)n[1], (long long)n[2]);
            return 0;
        }
        if (n[1] > 65535) {
            snprintf(why, cap, "attention: more than 65535 heads");
            return 0;
        }
        if (n[3] <= 0 || n[3] > 256) {
            snprintf(why, cap, "attention: head dim %lld (1 to 256; the tiled kernels take 64 and 128)",
                     (long long)n[3]);
            return 0;
        }
        return 1;
    case LLAVA_OP_ATTENTION_DECODE:  // T, Hq, Hkv, D, context, block_size
        if (n[1] <= 0 || n[2] <= 0 || n[1] % n[2] != 0) {
            snprintf(why, cap, "attention_decode: %lld query heads are not a multiple of %lld key/value heads",
                     (long long)n[1], (long long)n[2]);
            return 0;
        }
        if (n[3] <= 0 || n[3] > 256) {
            snprintf(why, cap,
                     "attention_decode: head dim %lld (1 to 256; the split kernel takes 64 and 128, others run one "
                     "warp per row and head)",
                     (long long)n[3]);
            return 0;
        }
        // Any positive block size: multiples of 16 take the split kernel, others the per-row one.
        if (n[5] <= 0) {
            snprintf(why, cap, "attention_decode: block size %lld", (long long)n[5]);
            return 0;
        }
        {  // the split kernel's grid y: kv heads x CTAs per group (of 8, 4, 2 or 1 query heads)
            int64_t group = n[1] / n[2], per = group % 8 == 0 ? 8 : group % 4 == 0 ? 4 : group % 2 == 0 ? 2 : 1;
            if (n[2] * (group / per) > 65535) {
                snprintf(why, cap, "attention_decode: more than 65535 CTAs per query row");
                return 0;
            }
        }
        if (n[4] > INT32_MAX) {
            snprintf(why, cap, "attention_decode: a context above 2^31 keys");
            return 0;
        }
        return 1;
    case LLAVA_OP_ROPE:  // T, H, D
        if (n[2] % 2 != 0 || n[2] / 2 > 512) {
            snprintf(why, cap, "rope: head dim %lld must be even and at most 1024", (long long)n[2]);
            return 0;
        }
        return 1;
    case LLAVA_OP_EMBEDDING:  // T, C, V
        if ((n[1] + 255) / 256 > 65535) {
            snprintf(why, cap, "embedding: %lld columns (at most 65535 x 256)", (long long)n[1]);
            return 0;
        }
        return 1;
    case LLAVA_OP_ADAMW:  // n, has_master
        if (!n[1]) {
            snprintf(why, cap, "adamw: the CUDA backend keeps fp32 masters (bf16 parameters)");
            return 0;
        }
        return 1;
    default:
        if (s->op < 0 || s->op >= LLAVA_OP_COUNT) {
            snprintf(why, cap, "unknown op %d", s->op);
            return 0;
        }
        return 1;
    }
}

static void *cuda_iface_stream(llava_backend *be) { return (void *)cuda_stream_of(be); }

static void cuda_record(llava_backend *be, void *event) {
    CUDA_CHECK(cudaEventRecord((cudaEvent_t)event, cuda_stream_of(be)));
}

static void cuda_wait(llava_backend *be, void *event) {
    CUDA_CHECK(cudaStreamWaitEvent(cuda_stream_of(be), (cudaEvent_t)event, 0));
}

static void cuda_close(llava_backend *be) {
    cuda_ctx *cx = cuda_cx(be);
    cuda_gemm_release(be);
    cuda_memory_release(be);
    cudaStreamDestroy(cx->stream);
    free(cx);
    free(be);
}

static const llava_backend_iface cuda_iface = {
    cuda_close, cuda_describe, cuda_supports, cuda_iface_stream, cuda_record, cuda_wait,
};

extern "C" llava_backend *llava_backend_open_cuda(const llava_backend_options *o) {
    char why[160];
    if (!llava_backend_cuda_available(why, sizeof why)) {
        llava_fail("%s", why);
        return NULL;
    }
    int dev = o ? o->device : -1;
    if (dev >= 0) {
        if (cudaSetDevice(dev) != cudaSuccess) {
            cudaGetLastError();
            llava_fail("cudaSetDevice(%d) failed", dev);
            return NULL;
        }
    } else if (cudaGetDevice(&dev) != cudaSuccess) {
        cudaGetLastError();
        llava_fail("cudaGetDevice failed");
        return NULL;
    }
    cuda_ctx *cx = (cuda_ctx *)xcalloc(1, sizeof *cx);
    cx->device = dev;
    if (cudaDeviceGetAttribute(&cx->n_sms, cudaDevAttrMultiProcessorCount, dev) != cudaSuccess) {
        cudaGetLastError();
        cx->n_sms = 1;
    }
    // A blocking stream: it orders itself with the legacy default stream, so a stray synchronous
    // cudaMemcpy elsewhere cannot race the ops.
    cudaError_t err = cudaStreamCreate(&cx->stream);
    if (err != cudaSuccess) {
        free(cx);
        llava_fail("CUDA device %d: cudaStreamCreate: %s", dev, cudaGetErrorString(err));
        cudaGetLastError();
        return NULL;
    }
    llava_backend *be = (llava_backend *)xcalloc(1, sizeof *be);
    be->ops = cuda_table();
    be->iface = &cuda_iface;
    be->impl = cx;
    return be;
}
