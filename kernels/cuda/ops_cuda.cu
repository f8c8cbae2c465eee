// The CUDA op table (kernels/ops.h): bf16 ACT/PARAM buffers, fp32 GRAD/F32, int32 I32; every op
// enqueued on one stream (cuda_stream()). Returns NULL on a machine without a usable device, so
// `--device cuda` can say so instead of failing at the first allocation.
#include "common.cuh"

extern "C" {
#include "cuda.h"
}

static llava_ops g_cuda_table;
static int g_cuda_table_ready;

// Filled field by field (C++ has no designated initializers before C++20); every entry of
// llava_ops is set, which tests/gpu/test_cuda_ops.c checks.
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
    t->gelu_backward = cuda_gelu_backward;
    t->silu_mul_forward = cuda_silu_mul_forward;
    t->silu_mul_backward = cuda_silu_mul_backward;
    t->rope_forward = cuda_rope_forward;
    t->rope_backward = cuda_rope_backward;
    t->attention_forward = cuda_attention_forward;    // attention.cu
    t->attention_backward = cuda_attention_backward;  // attention.cu
    t->embedding_forward = cuda_embedding_forward;
    t->embedding_backward = cuda_embedding_backward;
    t->scatter_rows = cuda_scatter_rows;
    t->gather_rows = cuda_gather_rows;
    t->cross_entropy = cuda_cross_entropy;
    t->adamw = cuda_adamw;
    t->grad_sq_sum = cuda_grad_sq_sum;
    t->add = cuda_add;
    t->add_inplace = cuda_add_inplace;
}

extern "C" const llava_ops *ops_cuda(void) {
    if (llava_cuda_device_count() == 0) return NULL;
    if (!g_cuda_table_ready) {
        fill_table(&g_cuda_table);
        g_cuda_table_ready = 1;
    }
    return &g_cuda_table;
}
