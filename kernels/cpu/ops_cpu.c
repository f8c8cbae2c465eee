// The CPU reference backend's op table (kernels/ops.h): fp32 buffers, fp64 where a reduction is
// long, OpenBLAS for GEMMs. Single-threaded apart from OpenBLAS's own threads.
#include "../ops.h"
#include "cpu.h"

static const llava_ops cpu_table = {
    .name = "cpu",
    .act_bytes = sizeof(float),
    .alloc = cpu_alloc,
    .free = cpu_free,
    .zero = cpu_zero,
    .copy = cpu_copy,
    .upload = cpu_upload,
    .download = cpu_download,
    .upload_i32 = cpu_upload_i32,
    .sync = cpu_sync,
    .linear_forward = cpu_linear_forward,
    .linear_backward_input = cpu_linear_backward_input,
    .linear_backward_weight = cpu_linear_backward_weight,
    .linear_backward_bias = cpu_linear_backward_bias,
    .patch_unfold = cpu_patch_unfold,
    .clip_embed = cpu_clip_embed,
    .layernorm_forward = cpu_layernorm_forward,
    .layernorm_backward = cpu_layernorm_backward,
    .rmsnorm_forward = cpu_rmsnorm_forward,
    .rmsnorm_backward = cpu_rmsnorm_backward,
    .quick_gelu_forward = cpu_quick_gelu_forward,
    .quick_gelu_backward = cpu_quick_gelu_backward,
    .gelu_forward = cpu_gelu_forward,
    .gelu_backward = cpu_gelu_backward,
    .silu_mul_forward = cpu_silu_mul_forward,
    .silu_mul_backward = cpu_silu_mul_backward,
    .rope_forward = cpu_rope_forward,
    .rope_backward = cpu_rope_backward,
    .attention_forward = cpu_attention_forward,
    .attention_backward = cpu_attention_backward,
    .embedding_forward = cpu_embedding_forward,
    .embedding_backward = cpu_embedding_backward,
    .scatter_rows = cpu_scatter_rows,
    .gather_rows = cpu_gather_rows,
    .cross_entropy = cpu_cross_entropy,
    .add = cpu_add,
    .add_inplace = cpu_add_inplace,
    .adamw = cpu_adamw,
    .grad_sq_sum = cpu_grad_sq_sum,
};

const llava_ops *ops_cpu(void) { return &cpu_table; }

void openblas_set_num_threads(int num_threads);  // OpenBLAS's own entry point (not in cblas.h)

void ops_cpu_set_threads(int n) { openblas_set_num_threads(n > 0 ? n : 1); }
