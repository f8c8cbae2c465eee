// The CPU reference backend's context and op table (kernels/ops.h, kernels/backend.h): fp32
// buffers, fp64 where a reduction is long, OpenBLAS for GEMMs. Single-threaded apart from
// OpenBLAS's own threads. Its only state is the byte count every context keeps (no impl).
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/util.h"
#include "cpu.h"
#include "kernels/backend_impl.h"

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
    .stage = cpu_stage,
    .sync = cpu_sync,
    .host_alloc = cpu_host_alloc,
    .host_free = cpu_host_free,
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
    .gelu_tanh_forward = cpu_gelu_tanh_forward,
    .gelu_tanh_backward = cpu_gelu_tanh_backward,
    .gelu_backward = cpu_gelu_backward,
    .silu_mul_forward = cpu_silu_mul_forward,
    .silu_mul_backward = cpu_silu_mul_backward,
    .rope_forward = cpu_rope_forward,
    .rope_backward = cpu_rope_backward,
    .attention_forward = cpu_attention_forward,
    .attention_backward = cpu_attention_backward,
    .attention_decode = cpu_attention_decode,
    .embedding_forward = cpu_embedding_forward,
    .embedding_backward = cpu_embedding_backward,
    .scatter_rows = cpu_scatter_rows,
    .gather_rows = cpu_gather_rows,
    .grid_pool = cpu_grid_pool,
    .grid_pool_backward = cpu_grid_pool_backward,
    .resize_bilinear = cpu_resize_bilinear,
    .resize_bilinear_backward = cpu_resize_bilinear_backward,
    .cross_entropy = cpu_cross_entropy,
    .add = cpu_add,
    .add_inplace = cpu_add_inplace,
    .dropout_scale = cpu_dropout_scale,
    .nf4_dequantize = cpu_nf4_dequantize,
    .attention_window = 1,
    .adamw = cpu_adamw,
    .grad_sq_sum = cpu_grad_sq_sum,
};

void openblas_set_num_threads(int num_threads);  // OpenBLAS's own entry points (not in cblas.h)
int openblas_get_num_threads(void);

void llava_cpu_set_threads(int n) { openblas_set_num_threads(n > 0 ? n : 1); }

static void cpu_close(llava_backend *be) { free(be); }

// A value of /proc/meminfo in bytes ("MemTotal:  32768 kB"), 0 when unreadable.
static uint64_t meminfo(const char *key) {
    FILE *f = fopen("/proc/meminfo", "r");
    if (!f) return 0;
    char line[256];
    uint64_t kb = 0;
    size_t n = strlen(key);
    while (fgets(line, sizeof line, f))
        if (strncmp(line, key, n) == 0 && line[n] == ':') {
            kb = strtoull(line + n + 1, NULL, 10);
            break;
        }
    fclose(f);
    return kb * 1024;
}

static void cpu_describe(const llava_backend *be, llava_backend_info *info) {
    memset(info, 0, sizeof *info);
    snprintf(info->name, sizeof info->name, "cpu");
    snprintf(info->device, sizeof info->device, "CPU, fp32, OpenBLAS with %d thread%s (%ld cores online)",
             openblas_get_num_threads(), openblas_get_num_threads() == 1 ? "" : "s", sysconf(_SC_NPROCESSORS_ONLN));
    info->ordinal = -1;
    info->memory_total = meminfo("MemTotal");
    info->memory_free = meminfo("MemAvailable");
}

// The CPU backend computes every size the ops take (its loops are plain); only counts that do not
// fit the ops' int arguments are refused, and those are refused by the caller's types already.
static int cpu_supports(const llava_backend *be, const llava_op_shape *s, char *why, size_t cap) {
    if (s->op < 0 || s->op >= LLAVA_OP_COUNT) {
        snprintf(why, cap, "unknown op %d", s->op);
        return 0;
    }
    return 1;
}

static const llava_backend_iface cpu_iface = {
    .close = cpu_close,
    .describe = cpu_describe,
    .supports = cpu_supports,
};

llava_backend *llava_backend_open_cpu(const llava_backend_options *o) {
    (void)o;
    llava_backend *be = xcalloc(1, sizeof *be);
    be->ops = &cpu_table;
    be->iface = &cpu_iface;
    return be;
}
