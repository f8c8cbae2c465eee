// Every numerical op the model needs, one signature each, backend-neutral (ARCHITECTURE.md
// decision 1). model/ calls these through a `llava_ops` table and never touches the memory behind
// the pointers: on the CPU backend it is host fp32, on the CUDA backend device memory. Every op takes
// the backend context it runs in first (kernels/backend.h: device, stream, handles, allocator).
//
// Buffer kinds, which fix each pointer's element type per backend:
//   ACT    activations and activation gradients   CPU: float   CUDA: bf16
//   PARAM  weights as the ops read them          CPU: float   CUDA: bf16 (working copy of fp32 masters)
//   GRAD   parameter gradients                    CPU: float   CUDA: float
//   F32    statistics and losses (mean, rstd, lse, per-token loss): float on every backend
//   I32    token ids, targets, positions, sequence boundaries, row indices: int32 on every backend
// Shapes are written (rows, cols), row-major; T = tokens in the packed batch, C = channels.
//
// Conventions: outputs come first. Forward ops overwrite their outputs. Backward ops overwrite
// activation gradients (d<in>) and ACCUMULATE (+=) into parameter gradients (GRAD), so gradient
// accumulation over micro-batches needs no extra pass; the caller zeroes GRAD buffers per step.
// Deterministic: the same inputs give the same bits on a given backend and thread count.
#ifndef LLAVA_KERNELS_OPS_H
#define LLAVA_KERNELS_OPS_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

// RoPE frequency scaling, a config.json's rope_scaling. Only Llama-3.1's "llama3" rule is known:
// frequencies whose wavelength exceeds original_max_position_embeddings / low_freq_factor are divided
// by factor, those below original / high_freq_factor kept, and the band between blended.
enum { LLAVA_ROPE_DEFAULT = 0, LLAVA_ROPE_LLAMA3 = 1 };
typedef struct {
    int type;
    float factor, low_freq_factor, high_freq_factor;
    int original_max_position_embeddings;
} llava_rope_scaling;
// The (D/2) inverse frequencies, every step in fp32 as transformers 4.46.3 computes them
// (_compute_default_rope_parameters, _compute_llama3_parameters). Host code; both backends use it.
void llava_rope_inv_freq(int D, float theta, const llava_rope_scaling *scaling, float *inv_freq);

typedef struct llava_ops llava_ops;

// grid_pool's modes (the values of model/config.h's spatial_pool_mode).
enum { LLAVA_POOL_AVERAGE = 1, LLAVA_POOL_MAX = 2, LLAVA_POOL_BILINEAR = 3 };
typedef struct llava_backend llava_backend;  // the context every op runs in (kernels/backend.h)

// Op families, for llava_backend_supports() and the op-case registry (kernels/opcheck.h): forward and
// backward of a family share their size limits. The sizes in llava_op_shape.n, per family:
typedef enum {
    LLAVA_OP_LINEAR = 0,        // N, I, O
    LLAVA_OP_PATCH_UNFOLD,      // B, Cin, H, W, P
    LLAVA_OP_CLIP_EMBED,        // B, N, C
    LLAVA_OP_LAYERNORM,         // N, C
    LLAVA_OP_RMSNORM,           // N, C
    LLAVA_OP_ELEMENTWISE,       // n (activations, the SwiGLU product, adds)
    LLAVA_OP_ROPE,              // T, H, D
    LLAVA_OP_ATTENTION,         // T, Hq, Hkv, D, n_seq
    LLAVA_OP_EMBEDDING,         // T, C, V
    LLAVA_OP_ROWS,              // n, C (gather / scatter)
    LLAVA_OP_CROSS_ENTROPY,     // T, V
    LLAVA_OP_ADAMW,             // n, has_master (1 when an fp32 master copy is given)
    LLAVA_OP_ATTENTION_DECODE,  // T, Hq, Hkv, D, context (the longest pos + 1), block_size
    LLAVA_OP_GRID_POOL,         // B, G, C, mode, stride
    LLAVA_OP_RESIZE,            // H, W, OH, OW, C (resize_bilinear)
    LLAVA_OP_COUNT
} llava_op_family;

typedef struct {
    int op;        // llava_op_family
    int64_t n[6];  // sizes, in the order listed above
} llava_op_shape;

extern const char *const LLAVA_OP_NAMES[LLAVA_OP_COUNT];

struct llava_ops {
    const char *name;  // "cpu" or "cuda"
    size_t act_bytes;  // bytes per ACT / PARAM element (4 on the CPU, 2 for bf16 on CUDA)

    // ---- memory. `kind` is one of the buffer kinds above; sizes are element counts.
    void *(*alloc)(llava_backend *be, int kind, size_t n);  // zero-filled
    void (*free)(llava_backend *be, void *p);
    void (*zero)(llava_backend *be, int kind, void *p, size_t n);
    void (*copy)(llava_backend *be, int kind, void *dst, const void *src, size_t n);
    // Host fp32 <-> buffer of `kind` (converting to/from bf16 where the kind is bf16).
    void (*upload)(llava_backend *be, int kind, void *dst, const float *src, size_t n);
    void (*download)(llava_backend *be, int kind, float *dst, const void *src, size_t n);
    void (*upload_i32)(llava_backend *be, int32_t *dst, const int32_t *src, size_t n);
    // `bytes` of host memory into a buffer of any kind, as they are (no conversion), without the
    // host waiting for the copy: src may be reused as soon as this returns (the CUDA backend copies
    // it into pinned staging first). How a pass sends its batch.
    void (*stage)(llava_backend *be, void *dst, const void *src, size_t bytes);
    void (*sync)(llava_backend *be);
    // `bytes` of zeroed host memory that upload and download move fastest (page-locked on CUDA, so
    // the copies go by DMA without a bounce; plain memory on the CPU): where the optimizer offload
    // keeps its state. Freed with host_free.
    void *(*host_alloc)(llava_backend *be, size_t bytes);
    void (*host_free)(llava_backend *be, void *p);

    // ---- linear layers: y = x W^T + b, W (O, I) as nn.Linear stores it.
    // out (N, O) ACT; x (N, I) ACT; W (O, I) PARAM; bias (O) PARAM or NULL.
    void (*linear_forward)(llava_backend *be, void *out, const void *x, const void *W, const void *bias, int N, int I,
                           int O);
    // dx (N, I) = dout (N, O) W. Separate entry points so a frozen weight skips its GEMM.
    void (*linear_backward_input)(llava_backend *be, void *dx, const void *dout, const void *W, int N, int I, int O);
    // dW (O, I) += dout^T x
    void (*linear_backward_weight)(llava_backend *be, float *dW, const void *dout, const void *x, int N, int I, int O);
    // db (O) += sum over rows of dout
    void (*linear_backward_bias)(llava_backend *be, float *db, const void *dout, int N, int O);

    // ---- patch embedding as a GEMM: unfold non-overlapping P x P patches of `pix`
    // (B, Cin, H, W) F32 into rows (B * (H/P) * (W/P), Cin*P*P) ACT, row index = b*G*G + r*G + c,
    // column index = (ch*P + i)*P + j, which is Conv2d's weight layout flattened.
    void (*patch_unfold)(llava_backend *be, void *out, const float *pix, int B, int Cin, int H, int W, int P);

    // ---- CLIP embeddings: out (B*(N+1), C): row b*(N+1) = cls + pos[0], row b*(N+1)+1+n =
    // patches[b*N+n] + pos[1+n]. cls (C) and pos (N+1, C) PARAM.
    void (*clip_embed)(llava_backend *be, void *out, const void *patches, const void *cls, const void *pos, int B,
                       int N, int C);

    // ---- LayerNorm over C: out = (x - mean) * rstd * w + b. mean, rstd (N) F32 saved for backward.
    void (*layernorm_forward)(llava_backend *be, void *out, float *mean, float *rstd, const void *x, const void *w,
                              const void *b, int N, int C, float eps);
    // dx (N, C) overwritten; dw, db (C) accumulated; either may be NULL (frozen).
    void (*layernorm_backward)(llava_backend *be, void *dx, float *dw, float *db, const void *dout, const void *x,
                               const void *w, const float *mean, const float *rstd, int N, int C);

    // ---- RMSNorm, Hugging Face semantics: out = w * (x * rstd), rstd = 1/sqrt(mean(x^2) + eps).
    void (*rmsnorm_forward)(llava_backend *be, void *out, float *rstd, const void *x, const void *w, int N, int C,
                            float eps);
    void (*rmsnorm_backward)(llava_backend *be, void *dx, float *dw, const void *dout, const void *x, const void *w,
                             const float *rstd, int N, int C);

    // ---- elementwise activations over n elements.
    void (*quick_gelu_forward)(llava_backend *be, void *out, const void *x, size_t n);  // x * sigmoid(1.702 x)
    void (*quick_gelu_backward)(llava_backend *be, void *dx, const void *dout, const void *x, size_t n);
    void (*gelu_forward)(llava_backend *be, void *out, const void *x, size_t n);  // exact: 0.5 x (1 + erf(x / sqrt 2))
    void (*gelu_backward)(llava_backend *be, void *dx, const void *dout, const void *x, size_t n);
    // tanh approximation (SigLIP's gelu_pytorch_tanh): 0.5 x (1 + tanh(sqrt(2 / pi) (x + 0.044715 x^3))), and its
    // backward (a trainable SigLIP tower): dx = dout * d/dx of the same formula. NULL on a backend without them.
    void (*gelu_tanh_forward)(llava_backend *be, void *out, const void *x, size_t n);
    void (*gelu_tanh_backward)(llava_backend *be, void *dx, const void *dout, const void *x, size_t n);
    // SwiGLU product: out = silu(gate) * up.
    void (*silu_mul_forward)(llava_backend *be, void *out, const void *gate, const void *up, size_t n);
    void (*silu_mul_backward)(llava_backend *be, void *dgate, void *dup, const void *dout, const void *gate,
                              const void *up, size_t n);

    // ---- rotary embedding (HF half-split: pairs (i, i + D/2)), in place on x (T, H*D) ACT.
    // pos (T) I32 gives each token's position (restarting at 0 for each packed sequence).
    // inv_freq = llava_rope_inv_freq(D, theta, scaling) (NULL scaling: 1 / theta^(2i/D)) in fp32;
    // angles and cos/sin are fp32. scaling is read on the host during the call.
    void (*rope_forward)(llava_backend *be, void *x, const int32_t *pos, int T, int H, int D, float theta,
                         const llava_rope_scaling *scaling);
    // The transpose: dx = g*cos - rotate_half(g*sin), in place on the gradient.
    void (*rope_backward)(llava_backend *be, void *dx, const int32_t *pos, int T, int H, int D, float theta,
                          const llava_rope_scaling *scaling);

    // ---- attention over packed sequences. q (T, Hq*D), k and v (T, Hkv*D) ACT, head-major
    // features (head h owns columns [h*D, (h+1)*D)); Hq a multiple of Hkv (grouped queries).
    // cu_seqlens (n_seq + 1) I32: sequence s spans rows [cu[s], cu[s+1]); attention never crosses
    // sequences. causal: key j <= query i only. window > 0 (causal only; backends with
    // attention_window): Mistral's sliding window, key j seen by query i iff i - window < j <= i
    // (positions within the sequence). out (T, Hq*D) ACT; lse (Hq, T) F32 saved for backward
    // (log-sum-exp of the scaled scores of each query row).
    void (*attention_forward)(llava_backend *be, void *out, float *lse, const void *q, const void *k, const void *v,
                              const int32_t *cu_seqlens, int n_seq, int T, int Hq, int Hkv, int D, float scale,
                              int causal, int window);
    // dq, dk, dv overwritten (same shapes as q, k, v); probabilities recomputed from lse.
    void (*attention_backward)(llava_backend *be, void *dq, void *dk, void *dv, const void *dout, const void *q,
                               const void *k, const void *v, const void *out, const float *lse,
                               const int32_t *cu_seqlens, int n_seq, int T, int Hq, int Hkv, int D, float scale,
                               int causal, int window);

    // ---- attention of query rows against a paged KV cache (generation: each sequence's new token,
    // or a few). k_cache and v_cache (n_blocks * block_size, Hkv*D) ACT hold the keys and values of
    // every sequence in blocks of block_size rows; block_table (n_seq, max_blocks) I32 lists each
    // sequence's blocks in order, so position j of sequence s is cache row
    //     block_table[s * max_blocks + j / block_size] * block_size + j % block_size.
    // Query row t of q (T, Hq*D) ACT belongs to sequence seq[t] and sits at position pos[t] (both
    // (T) I32): it attends to positions 0..pos[t] of its sequence (causal; its own key is already in
    // the cache), or with window > 0 (backends with attention_window) to the last `window` of them. out (T, Hq*D) ACT. Each query row is computed on its own: the result for a row does
    // not depend on the other rows of the call (a batch's composition changes no answer).
    void (*attention_decode)(llava_backend *be, void *out, const void *q, const void *k_cache, const void *v_cache,
                             const int32_t *block_table, const int32_t *seq, const int32_t *pos, int T, int n_seq,
                             int max_blocks, int block_size, int n_blocks, int Hq, int Hkv, int D, float scale,
                             int window);

    // ---- embeddings. out (T, C) = table[ids[t]]; ids outside [0, V) give a zero row (the image
    // positions, which the splice overwrites).
    void (*embedding_forward)(llava_backend *be, void *out, const int32_t *ids, const void *table, int T, int C, int V);
    // dtable[ids[t]] += dout[t] for ids in [0, V) except `padding_idx` (pass -1 for none), whose row
    // nn.Embedding never updates. Deterministic (no atomics whose order varies).
    void (*embedding_backward)(llava_backend *be, float *dtable, const void *dout, const int32_t *ids, int T, int C,
                               int V, int padding_idx);

    // ---- row gather/scatter: dst[idx[i]] = src[i] (scatter) and dst[i] = src[idx[i]] (gather), rows of C.
    // The splice of image features into the token stream, and its backward.
    void (*scatter_rows)(llava_backend *be, void *dst, const void *src, const int32_t *idx, int n, int C);
    void (*gather_rows)(llava_backend *be, void *dst, const void *src, const int32_t *idx, int n, int C);

    // ---- visual-token reduction (model.mm_spatial_pool_*): in (B, G*G, C) ACT, each image's G x G feature
    // grid row-major, to out (B, Go*Go, C) ACT. mode LLAVA_POOL_AVERAGE / LLAVA_POOL_MAX: the mean / max of
    // each s x s window, Go = G / s (floor: a last partial row and column are dropped), as torch's
    // avg_pool2d / max_pool2d(kernel s, stride s); LLAVA_POOL_BILINEAR: Go = ceil(G / s), each output the
    // bilinear interpolation at source (o + 0.5) * G / Go - 0.5 (clamped at 0; align_corners false), as
    // torch's F.interpolate(mode="bilinear"). NULL on a backend without it (the model refuses pooling there).
    void (*grid_pool)(llava_backend *be, void *out, const void *in, int B, int G, int C, int mode, int s);
    // Its transpose (a trainable tower below the pooling), torch's backward of the same three: din (B, G*G, C)
    // ACT overwritten, every element (0 where no output reads the input: the rows and columns average and max
    // drop); dout (B, Go*Go, C) ACT. average: each input of a window gets dout / (s * s); max: the whole dout
    // goes to the input the forward picks (the first maximum in window order, the last NaN met in a window
    // holding NaN, the window's first input when every value is -inf, as max_pool2d's saved index), which
    // is read from `in` (B, G*G, C) ACT, the forward's input (read by max only: NULL is fine for the others);
    // bilinear: each input gets the sum over the outputs and their four taps that land on it of the tap's
    // weight times dout (taps on the same input, as at the last row, each add). NULL on a backend without it.
    void (*grid_pool_backward)(llava_backend *be, void *din, const void *dout, const void *in, int B, int G, int C,
                               int mode, int s);
    // ---- one image's bilinear resize (LLaVA-NeXT's anyres_max_N cap on an image's unpadded features): in
    // (H*W, C) ACT, an H x W grid of C-channel rows, row-major, to out (OH*OW, C) ACT, as torch's
    // F.interpolate(size=(OH, OW), mode="bilinear", align_corners=False) on the (C, H, W) map: per side the
    // fp32 scale in / out, the source scale * (o + 0.5) - 0.5 clamped at 0, its integer part (at most in - 1)
    // and the next index (the same one at the last), weights 1 - l and l; ly0 (lx0 p00 + lx1 p01) +
    // ly1 (lx0 p10 + lx1 p11). Sizes all positive, or the image empty (H * W == 0 and OH * OW == 0).
    // grid_pool's bilinear mode is this op on a square grid. NULL on a backend without it.
    void (*resize_bilinear)(llava_backend *be, void *out, const void *in, int H, int W, int OH, int OW, int C);
    // Its transpose: din (H*W, C) ACT overwritten, each input the sum over the outputs' taps that land on it of
    // weight_y * weight_x * dout (0 where none does: a weight-0 tap still lands); dout (OH*OW, C) ACT.
    void (*resize_bilinear_backward)(llava_backend *be, void *din, const void *dout, int H, int W, int OH, int OW,
                                     int C);

    // ---- cross-entropy over V classes with ignore index (targets < 0 are ignored).
    // losses (T) F32: -log softmax(logits[t])[targets[t]], 0 where ignored.
    // With dlogits != NULL also writes dlogits (T, V) ACT = (softmax - onehot) * grad_scale (0 on
    // ignored rows); dlogits may alias logits. Works through the vocabulary in chunks: no buffer of
    // probabilities larger than one chunk per row is ever made.
    void (*cross_entropy)(llava_backend *be, float *losses, void *dlogits, const void *logits, const int32_t *targets,
                          int T, int V, float grad_scale);

    // ---- optimizer. One AdamW step with torch.optim.AdamW's arithmetic over n parameters:
    //   p *= 1 - lr*wd;  m = lerp(m, g, 1-b1);  v = b2*v + (1-b2)*g*g;
    //   p -= (lr / (1-b1^step)) * m / (sqrt(v) / sqrt(1-b2^step) + eps)
    // with g = grad * grad_scale. master (n) F32 holds the fp32 weights where `param` is a lower-
    // precision copy (CUDA), and is NULL where `param` itself is fp32 (CPU); param is rewritten from
    // master after the update. m, v (n) F32. step counts from 1.
    // Hyperparameters are doubles, as torch holds them (Python floats); each scalar reaches the fp32
    // arithmetic rounded once, as torch's tensor-scalar ops round it.
    void (*adamw)(llava_backend *be, void *param, float *master, const float *grad, float *m, float *v, size_t n,
                  double lr, double beta1, double beta2, double eps, double weight_decay, int step, float grad_scale);
    // Sum of squares of a GRAD buffer, accumulated in fp64, returned to the host (for the global
    // gradient norm and the non-finite check: a NaN or inf anywhere makes the result non-finite).
    double (*grad_sq_sum)(llava_backend *be, const float *grad, size_t n);

    // ---- elementwise arithmetic over n elements of ACT.
    void (*add)(llava_backend *be, void *out, const void *a, const void *b, size_t n);  // out may alias a or b
    void (*add_inplace)(llava_backend *be, void *acc, const void *x, size_t n);         // acc += x
    // out = x * scale, with dropout at rate p (LoRA's adapters): element i is kept when
    // lora_dropout_keeps(seed, i, p) and then scaled by scale / (1 - p) (computed once in fp32), else 0.
    // The mask is a function of (seed, i), the same on every backend, so the backward draws it again
    // instead of storing it. p = 0 keeps every element. out may alias x.
    void (*dropout_scale)(llava_backend *be, void *out, const void *x, size_t n, float scale, float p, uint64_t seed);
    // 1 when attention_forward/backward take a sliding window (window > 0); the model refuses a
    // window that binds on a backend without it.
    int attention_window;

    // ---- QLoRA's frozen weights: n weights out of NF4 with double quantisation (bitsandbytes'
    // dequantize_4bit, model/nf4.h) into out (ACT). For block b = i / 64:
    //   a = ftz(tables[16 + absmax_q[b]] * absmax2[b / 256]) + offset          (two fp32 roundings)
    //   out[i] = ftz(tables[c_i] * a), c_i the high nibble of packed[i / 2] for even i, the low for odd
    // with ftz flushing subnormals to zero (the kernels bitsandbytes ships are built with fast math);
    // then rounded to bf16 when round_bf16 (what a bf16 ACT does anyway). tables (272) F32: the 16 NF4
    // levels, then the 256 codes of the statistics. packed and absmax_q are bytes in I32 buffers.
    void (*nf4_dequantize)(llava_backend *be, void *out, const uint8_t *packed, const uint8_t *absmax_q,
                           const float *absmax2, const float *tables, float offset, size_t n, int round_bf16);
};

// The dropout mask of dropout_scale: element i survives unless the top 24 bits of a 64-bit mix of
// seed + i fall below p * 2^24 (an exact threshold: the keep rate is 1 - p to within 2^-24). Host and
// device code both call these.
#ifdef __CUDACC__
#define LLAVA_HOST_DEVICE __host__ __device__
#else
#define LLAVA_HOST_DEVICE
#endif
static inline LLAVA_HOST_DEVICE uint64_t lora_mix64(uint64_t x) {
    x += 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}
static inline LLAVA_HOST_DEVICE uint32_t lora_dropout_threshold(float p) { return (uint32_t)(p * 16777216.0f + 0.5f); }
static inline LLAVA_HOST_DEVICE int lora_dropout_keeps(uint64_t seed, uint64_t i, uint32_t threshold) {
    return (uint32_t)(lora_mix64(seed + i) >> 40) >= threshold;
}

enum { BUF_ACT = 0, BUF_PARAM = 1, BUF_GRAD = 2, BUF_F32 = 3, BUF_I32 = 4 };

#ifdef __cplusplus
}
#endif

#endif
