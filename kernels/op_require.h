// Private to kernels/: the preconditions of every op of kernels/ops.h, written once and called first
// thing by each backend's implementation of the op (kernels/cpu/, kernels/cuda/). They hold on every
// build (LLAVA_REQUIRE, common/util.h): a call that breaks one is a bug in the caller, so the program
// stops with the op's name, the backend and the broken condition, before anything is read or written.
//
// What is checked: sizes are not negative; a pointer the op reads or writes is not NULL when there
// is something to read or write through it (a batch without images passes empty, possibly NULL,
// buffers with zero rows; optional pointers, ops.h's "or NULL", are never checked); the constraints
// ops.h documents (Hq a positive multiple of Hkv, an even head dimension for RoPE, a patch size,
// step counting from 1, ...). Host-visible I32 inputs (sequence boundaries, row indices) are checked
// by the backends that hold them on the host (the CPU); a backend's own limits (the CUDA kernels'
// head dims, a master copy) stay with that backend.
#ifndef LLAVA_KERNELS_OP_REQUIRE_H
#define LLAVA_KERNELS_OP_REQUIRE_H

#include <stddef.h>
#include <stdint.h>

#include "kernels/backend.h"

#ifdef __cplusplus
extern "C" {
#endif

// Memory: a valid kind; src and dst when n > 0.
void req_kind(llava_backend *be, const char *op, int kind);
void req_transfer(llava_backend *be, const char *op, int kind, const void *dst, const void *src, size_t n);

void req_linear_forward(llava_backend *be, const void *out, const void *x, const void *W, int N, int K, int O);
void req_linear_backward_input(llava_backend *be, const void *dx, const void *dout, const void *W, int N, int K, int O);
void req_linear_backward_weight(llava_backend *be, const void *dW, const void *dout, const void *x, int N, int K,
                                int O);
void req_linear_backward_bias(llava_backend *be, const void *db, const void *dout, int N, int O);
void req_patch_unfold(llava_backend *be, const void *out, const void *pix, int B, int Cin, int H, int W, int P);
void req_clip_embed(llava_backend *be, const void *out, const void *patches, const void *cls, const void *pos, int B,
                    int N, int C);
void req_layernorm_forward(llava_backend *be, const void *out, const void *mean, const void *rstd, const void *x,
                           const void *w, const void *b, int N, int C);
void req_layernorm_backward(llava_backend *be, const void *dx, const void *dout, const void *x, const void *w,
                            const void *mean, const void *rstd, int N, int C);
void req_rmsnorm_forward(llava_backend *be, const void *out, const void *rstd, const void *x, const void *w, int N,
                         int C);
void req_rmsnorm_backward(llava_backend *be, const void *dx, const void *dout, const void *x, const void *w,
                          const void *rstd, int N, int C);
// Elementwise ops over n elements: each pointer named in `names` ("out x": the first two) is not NULL
// when n > 0.
void req_elementwise(llava_backend *be, const char *op, size_t n, const char *names, const void *p0, const void *p1,
                     const void *p2, const void *p3, const void *p4);
void req_rope(llava_backend *be, const char *op, const void *x, const int32_t *pos, int T, int H, int D);
void req_attention_forward(llava_backend *be, const void *out, const void *lse, const void *q, const void *k,
                           const void *v, const int32_t *cu_seqlens, int n_seq, int T, int Hq, int Hkv, int D);
void req_attention_backward(llava_backend *be, const void *dq, const void *dk, const void *dv, const void *dout,
                            const void *q, const void *k, const void *v, const void *out, const void *lse,
                            const int32_t *cu_seqlens, int n_seq, int T, int Hq, int Hkv, int D);
void req_attention_decode(llava_backend *be, const void *out, const void *q, const void *k_cache, const void *v_cache,
                          const int32_t *block_table, const int32_t *seq, const int32_t *pos, int T, int n_seq,
                          int max_blocks, int block_size, int n_blocks, int Hq, int Hkv, int D);
// The CPU's: every query's sequence in [0, n_seq), position in [0, max_blocks * block_size), and every
// block its position reaches in [0, n_blocks).
void req_decode_tables(llava_backend *be, const int32_t *block_table, const int32_t *seq, const int32_t *pos, int T,
                       int n_seq, int max_blocks, int block_size, int n_blocks);
// The CPU's: 0 <= cu[0] <= ... <= cu[n_seq] <= T (a sequence outside [0, T) would be read out of bounds).
void req_cu_seqlens(llava_backend *be, const char *op, const int32_t *cu_seqlens, int n_seq, int T);
void req_embedding_forward(llava_backend *be, const void *out, const int32_t *ids, const void *table, int T, int C,
                           int V);
void req_embedding_backward(llava_backend *be, const void *dtable, const void *dout, const int32_t *ids, int T, int C,
                            int V);
void req_rows(llava_backend *be, const char *op, const void *dst, const void *src, const int32_t *idx, int n, int C);
// mode one of LLAVA_POOL_*, 1 <= s <= G.
void req_grid_pool(llava_backend *be, const void *out, const void *in, int B, int G, int C, int mode, int s);
// The same, and `in` given for max (the other modes do not read it).
void req_grid_pool_backward(llava_backend *be, const void *din, const void *dout, const void *in, int B, int G, int C,
                            int mode, int s);
// Sizes non-negative, all positive or an empty image (H * W == 0 and OH * OW == 0); the two pointers given
// when there is work. op: resize_bilinear or resize_bilinear_backward (a: out or din, b: in or dout).
void req_resize_bilinear(llava_backend *be, const char *op, const void *a, const void *b, int H, int W, int OH, int OW,
                         int C);
// The CPU's: every row index >= 0.
void req_row_indices(llava_backend *be, const char *op, const int32_t *idx, int n);
void req_cross_entropy(llava_backend *be, const void *losses, const void *logits, const int32_t *targets, int T, int V);
void req_adamw(llava_backend *be, const void *param, const void *grad, const void *m, const void *v, size_t n,
               int step);

#ifdef __cplusplus
}
#endif

#endif
