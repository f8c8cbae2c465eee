// The CPU backend's op implementations, one declaration per entry of `llava_ops` (kernels/ops.h
// documents shapes, buffer kinds and the overwrite/accumulate conventions). Every buffer kind is a
// host array of 4-byte elements here: float for ACT, PARAM, GRAD and F32, int32 for I32.
// Only kernels/cpu/ includes this; the rest of the program reaches these through a context opened
// with llava_backend_open("cpu", ...).
#ifndef LLAVA_KERNELS_CPU_H
#define LLAVA_KERNELS_CPU_H

#include <stddef.h>
#include <stdint.h>

#include "kernels/backend.h"

// memory.c
void *cpu_alloc(llava_backend *be, int kind, size_t n);
void cpu_free(llava_backend *be, void *p);
void cpu_zero(llava_backend *be, int kind, void *p, size_t n);
void cpu_copy(llava_backend *be, int kind, void *dst, const void *src, size_t n);
void cpu_upload(llava_backend *be, int kind, void *dst, const float *src, size_t n);
void cpu_download(llava_backend *be, int kind, float *dst, const void *src, size_t n);
void cpu_upload_i32(llava_backend *be, int32_t *dst, const int32_t *src, size_t n);
void cpu_stage(llava_backend *be, void *dst, const void *src, size_t bytes);
void *cpu_host_alloc(llava_backend *be, size_t bytes);
void cpu_host_free(llava_backend *be, void *p);
void cpu_sync(llava_backend *be);

// linear.c (ops.h's I, the input features, is K here: <complex.h>, which cblas.h includes, defines I)
void cpu_linear_forward(llava_backend *be, void *out, const void *x, const void *W, const void *bias, int N, int K,
                        int O);
void cpu_linear_backward_input(llava_backend *be, void *dx, const void *dout, const void *W, int N, int K, int O);
void cpu_linear_backward_weight(llava_backend *be, float *dW, const void *dout, const void *x, int N, int K, int O);
void cpu_linear_backward_bias(llava_backend *be, float *db, const void *dout, int N, int O);

// embedding.c (token embeddings, CLIP patches and embeddings, row gather/scatter)
void cpu_patch_unfold(llava_backend *be, void *out, const float *pix, int B, int Cin, int H, int W, int P);
void cpu_clip_embed(llava_backend *be, void *out, const void *patches, const void *cls, const void *pos, int B, int N,
                    int C);
void cpu_embedding_forward(llava_backend *be, void *out, const int32_t *ids, const void *table, int T, int C, int V);
void cpu_embedding_backward(llava_backend *be, float *dtable, const void *dout, const int32_t *ids, int T, int C, int V,
                            int padding_idx);
void cpu_scatter_rows(llava_backend *be, void *dst, const void *src, const int32_t *idx, int n, int C);
void cpu_gather_rows(llava_backend *be, void *dst, const void *src, const int32_t *idx, int n, int C);
void cpu_grid_pool(llava_backend *be, void *out, const void *in, int B, int G, int C, int mode, int s);
void cpu_grid_pool_backward(llava_backend *be, void *din, const void *dout, const void *in, int B, int G, int C,
                            int mode, int s);
void cpu_resize_bilinear(llava_backend *be, void *out, const void *in, int H, int W, int OH, int OW, int C);
void cpu_resize_bilinear_backward(llava_backend *be, void *din, const void *dout, int H, int W, int OH, int OW, int C);

// norm.c
void cpu_layernorm_forward(llava_backend *be, void *out, float *mean, float *rstd, const void *x, const void *w,
                           const void *b, int N, int C, float eps);
void cpu_layernorm_backward(llava_backend *be, void *dx, float *dw, float *db, const void *dout, const void *x,
                            const void *w, const float *mean, const float *rstd, int N, int C);
void cpu_rmsnorm_forward(llava_backend *be, void *out, float *rstd, const void *x, const void *w, int N, int C,
                         float eps);
void cpu_rmsnorm_backward(llava_backend *be, void *dx, float *dw, const void *dout, const void *x, const void *w,
                          const float *rstd, int N, int C);

// activation.c
void cpu_quick_gelu_forward(llava_backend *be, void *out, const void *x, size_t n);
void cpu_quick_gelu_backward(llava_backend *be, void *dx, const void *dout, const void *x, size_t n);
void cpu_gelu_forward(llava_backend *be, void *out, const void *x, size_t n);
void cpu_gelu_tanh_forward(llava_backend *be, void *out, const void *x, size_t n);
void cpu_gelu_tanh_backward(llava_backend *be, void *dx, const void *dout, const void *x, size_t n);
void cpu_gelu_backward(llava_backend *be, void *dx, const void *dout, const void *x, size_t n);
void cpu_silu_mul_forward(llava_backend *be, void *out, const void *gate, const void *up, size_t n);
void cpu_silu_mul_backward(llava_backend *be, void *dgate, void *dup, const void *dout, const void *gate,
                           const void *up, size_t n);

// rope.c
void cpu_rope_forward(llava_backend *be, void *x, const int32_t *pos, int T, int H, int D, float theta,
                      const llava_rope_scaling *scaling);
void cpu_rope_backward(llava_backend *be, void *dx, const int32_t *pos, int T, int H, int D, float theta,
                       const llava_rope_scaling *scaling);

// attention.c
void cpu_attention_forward(llava_backend *be, void *out, float *lse, const void *q, const void *k, const void *v,
                           const int32_t *cu_seqlens, int n_seq, int T, int Hq, int Hkv, int D, float scale, int causal,
                           int window);
void cpu_attention_backward(llava_backend *be, void *dq, void *dk, void *dv, const void *dout, const void *q,
                            const void *k, const void *v, const void *out, const float *lse, const int32_t *cu_seqlens,
                            int n_seq, int T, int Hq, int Hkv, int D, float scale, int causal, int window);
void cpu_attention_decode(llava_backend *be, void *out, const void *q, const void *k_cache, const void *v_cache,
                          const int32_t *block_table, const int32_t *seq, const int32_t *pos, int T, int n_seq,
                          int max_blocks, int block_size, int n_blocks, int Hq, int Hkv, int D, float scale,
                          int window);

// cross_entropy.c
void cpu_cross_entropy(llava_backend *be, float *losses, void *dlogits, const void *logits, const int32_t *targets,
                       int T, int V, float grad_scale);

// elementwise.c
void cpu_add(llava_backend *be, void *out, const void *a, const void *b, size_t n);
void cpu_add_inplace(llava_backend *be, void *acc, const void *x, size_t n);
void cpu_dropout_scale(llava_backend *be, void *out, const void *x, size_t n, float scale, float p, uint64_t seed);
void cpu_nf4_dequantize(llava_backend *be, void *out, const uint8_t *packed, const uint8_t *absmax_q,
                        const float *absmax2, const float *tables, float offset, size_t n, int round_bf16);

// optim.c
void cpu_adamw(llava_backend *be, void *param, float *master, const float *grad, float *m, float *v, size_t n,
               double lr, double beta1, double beta2, double eps, double weight_decay, int step, float grad_scale);
double cpu_grad_sq_sum(llava_backend *be, const float *grad, size_t n);

#endif
