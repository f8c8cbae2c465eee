// The CUDA backend's implementations of the llava_ops entry points (kernels/ops.h), one .cu file
// per op family. Buffer kinds on this backend: ACT and PARAM are bf16 (__nv_bfloat16), GRAD and
// F32 are float, I32 is int32. Every op runs on its context's stream (common.cuh's cuda_ctx); the
// host functions return after enqueueing except those that return values to the host (download,
// grad_sq_sum) or read host memory the caller may reuse at once (upload), which synchronise.
// Private to kernels/cuda/: the rest of the program reaches these through llava_backend_open("cuda").
#ifndef LLAVA_KERNELS_CUDA_OPS_H
#define LLAVA_KERNELS_CUDA_OPS_H

#include <stddef.h>
#include <stdint.h>

#include "kernels/ops.h"

#ifdef __cplusplus
extern "C" {
#endif

// memory.cu: device memory, host transfers (fp32 <-> bf16 where the kind is bf16), and fatal-error
// reporting (a failed CUDA call prints file, line and error and exits: the training loop cannot
// continue after a device fault).
void *cuda_alloc(llava_backend *be, int kind, size_t n);
void cuda_free(llava_backend *be, void *p);
void cuda_zero(llava_backend *be, int kind, void *p, size_t n);
void cuda_copy(llava_backend *be, int kind, void *dst, const void *src, size_t n);
void cuda_upload(llava_backend *be, int kind, void *dst, const float *src, size_t n);
void cuda_download(llava_backend *be, int kind, float *dst, const void *src, size_t n);
void cuda_upload_i32(llava_backend *be, int32_t *dst, const int32_t *src, size_t n);
void cuda_stage(llava_backend *be, void *dst, const void *src, size_t bytes);
void *cuda_host_alloc(llava_backend *be, size_t bytes);
void cuda_host_free(llava_backend *be, void *p);
void cuda_sync(llava_backend *be);

// linear.cu: cuBLASLt GEMMs (bf16 inputs, fp32 accumulation; descriptors and algorithms cached).
void cuda_linear_forward(llava_backend *be, void *out, const void *x, const void *W, const void *bias, int N, int I,
                         int O);
void cuda_linear_backward_input(llava_backend *be, void *dx, const void *dout, const void *W, int N, int I, int O);
void cuda_linear_backward_weight(llava_backend *be, float *dW, const void *dout, const void *x, int N, int I, int O);
void cuda_linear_backward_bias(llava_backend *be, float *db, const void *dout, int N, int O);

// embedding.cu: patch unfold, CLIP embeddings, token embeddings (deterministic backward), row
// gather/scatter.
void cuda_patch_unfold(llava_backend *be, void *out, const float *pix, int B, int Cin, int H, int W, int P);
void cuda_clip_embed(llava_backend *be, void *out, const void *patches, const void *cls, const void *pos, int B, int N,
                     int C);
void cuda_embedding_forward(llava_backend *be, void *out, const int32_t *ids, const void *table, int T, int C, int V);
void cuda_embedding_backward(llava_backend *be, float *dtable, const void *dout, const int32_t *ids, int T, int C,
                             int V, int padding_idx);
void cuda_scatter_rows(llava_backend *be, void *dst, const void *src, const int32_t *idx, int n, int C);
void cuda_gather_rows(llava_backend *be, void *dst, const void *src, const int32_t *idx, int n, int C);

// pool.cu: grid_pool, the visual-token reduction (average, max, bilinear) of each image's feature grid, and
// its transpose.
void cuda_grid_pool(llava_backend *be, void *out, const void *in, int B, int G, int C, int mode, int s);
void cuda_grid_pool_backward(llava_backend *be, void *din, const void *dout, const void *in, int B, int G, int C,
                             int mode, int s);
// and resize_bilinear (anyres_max_N), one image H x W -> OH x OW, and its transpose.
void cuda_resize_bilinear(llava_backend *be, void *out, const void *in, int H, int W, int OH, int OW, int C);
void cuda_resize_bilinear_backward(llava_backend *be, void *din, const void *dout, int H, int W, int OH, int OW, int C);

// norm.cu
void cuda_layernorm_forward(llava_backend *be, void *out, float *mean, float *rstd, const void *x, const void *w,
                            const void *b, int N, int C, float eps);
void cuda_layernorm_backward(llava_backend *be, void *dx, float *dw, float *db, const void *dout, const void *x,
                             const void *w, const float *mean, const float *rstd, int N, int C);
void cuda_rmsnorm_forward(llava_backend *be, void *out, float *rstd, const void *x, const void *w, int N, int C,
                          float eps);
void cuda_rmsnorm_backward(llava_backend *be, void *dx, float *dw, const void *dout, const void *x, const void *w,
                           const float *rstd, int N, int C);

// activation.cu: elementwise activations, the SwiGLU product, adds.
void cuda_quick_gelu_forward(llava_backend *be, void *out, const void *x, size_t n);
void cuda_quick_gelu_backward(llava_backend *be, void *dx, const void *dout, const void *x, size_t n);
void cuda_gelu_forward(llava_backend *be, void *out, const void *x, size_t n);
void cuda_gelu_tanh_forward(llava_backend *be, void *out, const void *x, size_t n);
void cuda_gelu_tanh_backward(llava_backend *be, void *dx, const void *dout, const void *x, size_t n);
void cuda_gelu_backward(llava_backend *be, void *dx, const void *dout, const void *x, size_t n);
void cuda_silu_mul_forward(llava_backend *be, void *out, const void *gate, const void *up, size_t n);
void cuda_silu_mul_backward(llava_backend *be, void *dgate, void *dup, const void *dout, const void *gate,
                            const void *up, size_t n);
void cuda_add(llava_backend *be, void *out, const void *a, const void *b, size_t n);
void cuda_add_inplace(llava_backend *be, void *acc, const void *x, size_t n);
void cuda_dropout_scale(llava_backend *be, void *out, const void *x, size_t n, float scale, float p, uint64_t seed);
void cuda_nf4_dequantize(llava_backend *be, void *out, const uint8_t *packed, const uint8_t *absmax_q,
                         const float *absmax2, const float *tables, float offset, size_t n, int round_bf16);

// rope.cu
void cuda_rope_forward(llava_backend *be, void *x, const int32_t *pos, int T, int H, int D, float theta,
                       const llava_rope_scaling *scaling);
void cuda_rope_backward(llava_backend *be, void *dx, const int32_t *pos, int T, int H, int D, float theta,
                        const llava_rope_scaling *scaling);

// attention.cu: flash-attention style (tiled, online softmax, mma.sync bf16 on sm_80+), packed
// variable-length sequences, causal and bidirectional, grouped queries, head dims 64 and 128.
void cuda_attention_forward(llava_backend *be, void *out, float *lse, const void *q, const void *k, const void *v,
                            const int32_t *cu_seqlens, int n_seq, int T, int Hq, int Hkv, int D, float scale,
                            int causal, int window);
void cuda_attention_backward(llava_backend *be, void *dq, void *dk, void *dv, const void *dout, const void *q,
                             const void *k, const void *v, const void *out, const float *lse, const int32_t *cu_seqlens,
                             int n_seq, int T, int Hq, int Hkv, int D, float scale, int causal, int window);

// attention_decode.cu: query rows against a paged KV cache, flash-decoding style (the keys split
// over CTAs by the row's own context, so batch composition changes no bits), head dims 64 and 128
// with block sizes that are multiples of 16; a one-warp-per-row kernel for every other shape.
void cuda_attention_decode(llava_backend *be, void *out, const void *q, const void *k_cache, const void *v_cache,
                           const int32_t *block_table, const int32_t *seq, const int32_t *pos, int T, int n_seq,
                           int max_blocks, int block_size, int n_blocks, int Hq, int Hkv, int D, float scale,
                           int window);

// cross_entropy.cu: fused with the softmax over the vocabulary in chunks.
void cuda_cross_entropy(llava_backend *be, float *losses, void *dlogits, const void *logits, const int32_t *targets,
                        int T, int V, float grad_scale);

// optim.cu: AdamW over flat buffers (fp32 master, bf16 working copy) and the gradient norm.
void cuda_adamw(llava_backend *be, void *param, float *master, const float *grad, float *m, float *v, size_t n,
                double lr, double beta1, double beta2, double eps, double weight_decay, int step, float grad_scale);
double cuda_grad_sq_sum(llava_backend *be, const float *grad, size_t n);

#ifdef __cplusplus
}
#endif

#endif
