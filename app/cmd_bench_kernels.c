// `llava bench-kernels`: times every CUDA op at LLaVA-1.5-7B shapes (LLaMA-7B: hidden 4096, MLP 11008,
// vocabulary 32000, 32 heads of 128, 2048 tokens; CLIP-L/336: width 1024, MLP 4096, 577 tokens, 16
// heads of 64, 16 images per batch) and prints what each achieves against the device's own peaks,
// measured at start: a large bf16 GEMM for TFLOP/s and a large device-to-device copy for GB/s.
//
// Timing: CUDA events around each call on the backend's stream, after warm-up calls (module load,
// cuBLASLt plans), median of the repetitions. Inputs are random, never zeros (a GEMM on zeros runs
// faster than on real data). Achieved GB/s count the fewest bytes the op must move (each input read
// once, each output written once); GEMM and attention TFLOP/s count 2 flops per multiply-add (causal
// attention half the square; its backward 2.5 times the forward, FlashAttention's convention).
// Rows are printed as they finish, so a failing op leaves the rows before it on the screen.
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"
#include "kernels/backend.h"
#include "kernels/device.h"
#include "commands.h"

#ifdef LLAVA_HAVE_CUDA
#include <cuda_runtime_api.h>

// LLaVA-1.5-7B shapes
enum {
    LM_T = 2048, LM_C = 4096, LM_F = 11008, LM_V = 32000, LM_H = 32, LM_D = 128,
    VIS_B = 16, VIS_N = 576, VIS_T = VIS_B * (VIS_N + 1), VIS_C = 1024, VIS_F = 4096, VIS_H = 16, VIS_D = 64,
    ADAM_N = 1 << 27,
    PACKED_T = 16384,  // a packed micro-batch (16 samples of ~1000 tokens)
};

typedef enum {
    K_LINEAR_FWD, K_LINEAR_BWD_IN, K_LINEAR_BWD_W, K_LINEAR_BWD_B,
    K_RMS_FWD, K_RMS_BWD, K_LN_FWD, K_LN_BWD,
    K_QGELU_FWD, K_QGELU_BWD, K_GELU_FWD, K_GELU_BWD, K_SILU_FWD, K_SILU_BWD, K_ADD,
    K_ROPE_FWD, K_ROPE_BWD,
    K_EMB_FWD, K_EMB_BWD, K_PATCH, K_CLIP_EMBED, K_GATHER, K_SCATTER,
    K_CE, K_ADAMW, K_GSS,
    K_ATTN_FWD, K_ATTN_BWD,
} kernel_id;

typedef struct {
    kernel_id id;
    const char *name;
    int a, b, c;     // shape: GEMMs (N, I, O); rows/cols; elements in a; attention (seqs, len, causal)
    int h, d;        // attention heads and head dim
} bench_case;

// Device buffers, shared by the cases (sized for the largest).
typedef struct {
    llava_backend *be;
    const llava_ops *o;
    void *act[4];      // ACT, ACT_ELEMS each
    void *w;           // PARAM (LM_V * LM_C)
    void *bias;        // PARAM (LM_V)
    float *grad;       // GRAD (LM_V * LM_C): weight gradients, embedding table gradient
    float *f32[2];     // F32 (ADAM_N): stats, losses, master, m
    float *f32b[2];    // F32 / GRAD (ADAM_N): v, gradient
    void *param_n;     // PARAM (ADAM_N)
    float *pix;        // F32 (VIS_B, 3, 336, 336)
    int32_t *ids, *targets, *pos, *idx, *cu_lm, *cu_vis;
    float *lse;        // F32 (heads * T) for attention
} bench_bufs;

// Each ACT buffer holds the largest operand: the peak GEMM's 8192 x 8192 (the logits, 2048 x 32000,
// are a little smaller).
static const size_t ACT_ELEMS = (size_t)8192 * 8192;

static size_t ce_bytes(const bench_case *k) { return (size_t)k->a * k->b * 4; }

// Fills a device buffer with random values: a host pattern of 1M values repeated (fast to make,
// and not the zeros that flatter a kernel).
static void fill_random(llava_backend *be, int kind, void *dst, size_t n, float lo, float hi) {
    const size_t chunk = (size_t)1 << 20;
    static float *pattern;
    static uint64_t s = 0x9e3779b97f4a7c15ull;
    const llava_ops *o = be->ops;
    if (!pattern) pattern = xmalloc(chunk * sizeof(float));
    for (size_t i = 0; i < chunk; i++) {
        s ^= s << 13, s ^= s >> 7, s ^= s << 17;
        float u = (float)((double)(s >> 11) * 0x1.0p-53);
        pattern[i] = lo + (hi - lo) * u;
        if (pattern[i] == 0.0f) pattern[i] = 1e-3f;
    }
    size_t esz = (kind == BUF_ACT || kind == BUF_PARAM) ? 2 : 4;
    for (size_t off = 0; off < n; off += chunk) {
        size_t len = n - off < chunk ? n - off : chunk;
        o->upload(be, kind, (char *)dst + off * esz, pattern, len);
    }
}

static int32_t *upload_ids(llava_backend *be, const int32_t *h, size_t n) {
    const llava_ops *o = be->ops;
    int32_t *d = o->alloc(be, BUF_I32, n);
    o->upload_i32(be, d, h, n);
    return d;
}

static void bufs_init(bench_bufs *B, llava_backend *be) {
    const llava_ops *o = be->ops;
    memset(B, 0, sizeof *B);
    B->be = be;
    B->o = o;
    for (int i = 0; i < 4; i++) {
        B->act[i] = o->alloc(be, BUF_ACT, ACT_ELEMS);
        fill_random(be, BUF_ACT, B->act[i], ACT_ELEMS, -2.0f, 2.0f);
    }
    B->w = o->alloc(be, BUF_PARAM, (size_t)LM_V * LM_C);
    fill_random(be, BUF_PARAM, B->w, (size_t)LM_V * LM_C, -0.05f, 0.05f);
    B->bias = o->alloc(be, BUF_PARAM, LM_V);
    fill_random(be, BUF_PARAM, B->bias, LM_V, -0.5f, 0.5f);
    B->grad = o->alloc(be, BUF_GRAD, (size_t)LM_V * LM_C);
    for (int i = 0; i < 2; i++) {
        B->f32[i] = o->alloc(be, BUF_F32, ADAM_N);
        B->f32b[i] = o->alloc(be, BUF_F32, ADAM_N);
        fill_random(be, BUF_F32, B->f32[i], ADAM_N, 0.5f, 1.5f);  // also serves as mean/rstd (positive)
        fill_random(be, BUF_F32, B->f32b[i], ADAM_N, 1e-4f, 1e-2f);
    }
    B->param_n = o->alloc(be, BUF_PARAM, ADAM_N);
    size_t npix = (size_t)VIS_B * 3 * 336 * 336;
    B->pix = o->alloc(be, BUF_F32, npix);
    fill_random(be, BUF_F32, B->pix, npix, -2.0f, 2.0f);

    int32_t *h = xmalloc((size_t)PACKED_T * sizeof(int32_t));
    uint64_t s = 12345;
    for (int t = 0; t < PACKED_T; t++) {
        s ^= s << 13, s ^= s >> 7, s ^= s << 17;
        // a third of the tokens from 64 common ids (repeats, as in text), the rest anywhere
        h[t] = (int32_t)(s % 3 == 0 ? (s >> 8) % 64 : (s >> 8) % LM_V);
    }
    B->ids = upload_ids(be, h, PACKED_T);
    B->targets = upload_ids(be, h, LM_T);
    for (int t = 0; t < LM_T; t++) h[t] = t;
    B->pos = upload_ids(be, h, LM_T);
    for (int i = 0; i < 2 * VIS_N; i++) h[i] = 35 + i;  // two images spliced after a 35-token prompt
    B->idx = upload_ids(be, h, 2 * VIS_N);
    int32_t cu[VIS_B + 1];
    cu[0] = 0, cu[1] = LM_T;
    B->cu_lm = upload_ids(be, cu, 2);
    for (int b = 0; b <= VIS_B; b++) cu[b] = b * (VIS_N + 1);
    B->cu_vis = upload_ids(be, cu, VIS_B + 1);
    free(h);
    size_t nlse = (size_t)LM_H * LM_T > (size_t)VIS_H * VIS_T ? (size_t)LM_H * LM_T : (size_t)VIS_H * VIS_T;
    B->lse = o->alloc(be, BUF_F32, nlse);
    o->sync(be);
}

static void bufs_free(bench_bufs *B) {
    llava_backend *be = B->be;
    const llava_ops *o = B->o;
    for (int i = 0; i < 4; i++) o->free(be, B->act[i]);
    o->free(be, B->w), o->free(be, B->bias), o->free(be, B->grad);
    for (int i = 0; i < 2; i++) o->free(be, B->f32[i]), o->free(be, B->f32b[i]);
    o->free(be, B->param_n), o->free(be, B->pix);
    o->free(be, B->ids), o->free(be, B->targets), o->free(be, B->pos), o->free(be, B->idx), o->free(be, B->cu_lm), o->free(be, B->cu_vis);
    o->free(be, B->lse);
}

// Element `i` of a bf16 buffer (sub-buffers of the big ACT buffers, so no output aliases an input).
static void *at(void *p, size_t i) { return (char *)p + 2 * i; }

static void run_case(const bench_case *k, bench_bufs *B) {
    llava_backend *be = B->be;
    const llava_ops *o = B->o;
    void **A = B->act;
    switch (k->id) {
    case K_LINEAR_FWD: o->linear_forward(be, A[0], A[1], B->w, k->h ? B->bias : NULL, k->a, k->b, k->c); break;
    case K_LINEAR_BWD_IN: o->linear_backward_input(be, A[0], A[1], B->w, k->a, k->b, k->c); break;
    case K_LINEAR_BWD_W: o->linear_backward_weight(be, B->grad, A[0], A[1], k->a, k->b, k->c); break;
    case K_LINEAR_BWD_B: o->linear_backward_bias(be, B->grad, A[0], k->a, k->b); break;
    case K_RMS_FWD: o->rmsnorm_forward(be, A[0], B->f32[0], A[1], B->w, k->a, k->b, 1e-5f); break;
    case K_RMS_BWD: o->rmsnorm_backward(be, A[0], B->grad, A[1], A[2], B->w, B->f32[0], k->a, k->b); break;
    case K_LN_FWD: o->layernorm_forward(be, A[0], B->f32[0], B->f32[1], A[1], B->w, B->bias, k->a, k->b, 1e-5f); break;
    case K_LN_BWD:
        o->layernorm_backward(be, A[0], B->grad, B->grad + k->b, A[1], A[2], B->w, B->f32[0], B->f32[1], k->a, k->b);
        break;
    case K_QGELU_FWD: o->quick_gelu_forward(be, A[0], A[1], (size_t)k->a * k->b); break;
    case K_QGELU_BWD: o->quick_gelu_backward(be, A[0], A[1], A[2], (size_t)k->a * k->b); break;
    case K_GELU_FWD: o->gelu_forward(be, A[0], A[1], (size_t)k->a * k->b); break;
    case K_GELU_BWD: o->gelu_backward(be, A[0], A[1], A[2], (size_t)k->a * k->b); break;
    case K_SILU_FWD: o->silu_mul_forward(be, A[0], A[1], A[2], (size_t)k->a * k->b); break;
    case K_SILU_BWD: {
        size_t n = (size_t)k->a * k->b;
        o->silu_mul_backward(be, A[0], at(A[0], n), A[1], A[2], A[3], n);
        break;
    }
    case K_ADD: o->add(be, A[0], A[1], A[2], (size_t)k->a * k->b); break;
    case K_ROPE_FWD: o->rope_forward(be, A[0], B->pos, k->a, k->b / k->d, k->d, 10000.0f); break;
    case K_ROPE_BWD: o->rope_backward(be, A[0], B->pos, k->a, k->b / k->d, k->d, 10000.0f); break;
    case K_EMB_FWD: o->embedding_forward(be, A[0], B->ids, B->w, k->a, k->b, k->c); break;
    case K_EMB_BWD: o->embedding_backward(be, B->grad, A[0], B->ids, k->a, k->b, k->c, 0); break;
    case K_PATCH: o->patch_unfold(be, A[0], B->pix, k->a, 3, 336, 336, 14); break;
    case K_CLIP_EMBED: o->clip_embed(be, A[0], A[1], B->w, at(B->w, (size_t)k->c), k->a, k->b, k->c); break;
    case K_GATHER: o->gather_rows(be, A[0], A[1], B->idx, k->a, k->b); break;
    case K_SCATTER: o->scatter_rows(be, A[0], A[1], B->idx, k->a, k->b); break;
    case K_CE: o->cross_entropy(be, B->f32[0], A[0], A[0], B->targets, k->a, k->b, 1.0f / 2048.0f); break;
    case K_ADAMW:
        o->adamw(be, B->param_n, B->f32[0], B->f32b[1], B->f32[1], B->f32b[0], (size_t)k->a, 1e-5, 0.9, 0.999, 1e-8, 0.0,
                 10, 1.0f);
        break;
    case K_GSS: (void)o->grad_sq_sum(be, B->f32b[1], (size_t)k->a); break;
    case K_ATTN_FWD:
    case K_ATTN_BWD: {
        int n_seq = k->a, len = k->b, T = n_seq * len;
        const int32_t *cu = n_seq == 1 ? B->cu_lm : B->cu_vis;
        float scale = 1.0f / sqrtf((float)k->d);
        size_t n = (size_t)T * k->h * k->d;
        void *q = A[1], *kk = at(A[1], n), *v = at(A[1], 2 * n), *out = A[2], *dout = at(A[2], n);
        if (k->id == K_ATTN_FWD)
            o->attention_forward(be, out, B->lse, q, kk, v, cu, n_seq, T, k->h, k->h, k->d, scale, k->c);
        else
            o->attention_backward(be, A[3], at(A[3], n), at(A[3], 2 * n), dout, q, kk, v, out, B->lse, cu, n_seq, T, k->h,
                                  k->h, k->d, scale, k->c);
        break;
    }
    }
}

// (flops, bytes) the case must at least do and move.
static void case_cost(const bench_case *k, double *flops, double *bytes) {
    double a = k->a, b = k->b, c = k->c, n = a * b;
    *flops = 0.0;
    *bytes = 0.0;
    switch (k->id) {
    case K_LINEAR_FWD:
    case K_LINEAR_BWD_IN: *flops = 2.0 * a * b * c; break;
    case K_LINEAR_BWD_W: *flops = 2.0 * a * b * c; break;
    case K_LINEAR_BWD_B: *bytes = 2.0 * n + 8.0 * b; break;
    case K_RMS_FWD: case K_LN_FWD: *bytes = 4.0 * n; break;
    case K_RMS_BWD: case K_LN_BWD: *bytes = 6.0 * n; break;
    case K_QGELU_FWD: case K_GELU_FWD: *bytes = 4.0 * n; break;
    case K_QGELU_BWD: case K_GELU_BWD: *bytes = 6.0 * n; break;
    case K_SILU_FWD: case K_ADD: *bytes = 6.0 * n; break;
    case K_SILU_BWD: *bytes = 10.0 * n; break;
    case K_ROPE_FWD: case K_ROPE_BWD: *bytes = 4.0 * n; break;
    case K_EMB_FWD: *bytes = 4.0 * n; break;
    case K_EMB_BWD: *bytes = 2.0 * n + 8.0 * n; break;  // dout once; each distinct row read and written (<= T rows)
    case K_PATCH: *bytes = a * 3 * 336 * 336 * (4.0 + 2.0); break;
    case K_CLIP_EMBED: *bytes = 2.0 * a * b * c + 2.0 * a * (b + 1) * c; break;
    case K_GATHER: case K_SCATTER: *bytes = 4.0 * n; break;
    case K_CE: *bytes = (double)ce_bytes(k); break;
    case K_ADAMW: *bytes = 30.0 * a; break;
    case K_GSS: *bytes = 4.0 * a; break;
    case K_ATTN_FWD:
    case K_ATTN_BWD: {
        double len = b, pairs = k->c ? len * (len + 1) / 2 : len * len;
        *flops = 4.0 * a * pairs * k->h * k->d * (k->id == K_ATTN_BWD ? 2.5 : 1.0);
        break;
    }
    }
}

static int cmp_float(const void *x, const void *y) {
    float a = *(const float *)x, b = *(const float *)y;
    return a < b ? -1 : a > b;
}

enum { MAX_REPS = 200 };

// Median milliseconds of `reps` calls after `warmup` calls.
static double time_case(const bench_case *k, bench_bufs *B, int warmup, int reps) {
    cudaEvent_t e0, e1;
    if (cudaEventCreate(&e0) != cudaSuccess || cudaEventCreate(&e1) != cudaSuccess) {
        fprintf(stderr, "bench-kernels: cudaEventCreate failed\n");
        exit(1);
    }
    for (int i = 0; i < warmup; i++) run_case(k, B);
    B->o->sync(B->be);
    float ms[MAX_REPS];
    for (int r = 0; r < reps; r++) {
        llava_device_record(B->be, e0);
        run_case(k, B);
        llava_device_record(B->be, e1);
        cudaError_t err = cudaEventSynchronize(e1);
        if (err == cudaSuccess) err = cudaEventElapsedTime(&ms[r], e0, e1);
        if (err != cudaSuccess) {
            fprintf(stderr, "bench-kernels: %s: %s\n", k->name, cudaGetErrorString(err));
            exit(1);
        }
    }
    cudaEventDestroy(e0);
    cudaEventDestroy(e1);
    qsort(ms, (size_t)reps, sizeof(float), cmp_float);
    return reps % 2 ? ms[reps / 2] : 0.5 * (ms[reps / 2 - 1] + ms[reps / 2]);
}

static const bench_case CASES[] = {
    // GEMMs: (N, I, O); h = 1 adds the bias
    {K_LINEAR_FWD, "linear_forward q/k/v/o", LM_T, LM_C, LM_C, 0, 0},
    {K_LINEAR_FWD, "linear_forward gate/up", LM_T, LM_C, LM_F, 0, 0},
    {K_LINEAR_FWD, "linear_forward down", LM_T, LM_F, LM_C, 0, 0},
    {K_LINEAR_FWD, "linear_forward lm_head", LM_T, LM_C, LM_V, 0, 0},
    {K_LINEAR_FWD, "linear_forward clip fc1 +bias", VIS_T, VIS_C, VIS_F, 1, 0},
    {K_LINEAR_FWD, "linear_forward projector +bias", 2 * VIS_N, VIS_C, LM_C, 1, 0},
    {K_LINEAR_BWD_IN, "linear_backward_input gate/up", LM_T, LM_C, LM_F, 0, 0},
    {K_LINEAR_BWD_IN, "linear_backward_input down", LM_T, LM_F, LM_C, 0, 0},
    {K_LINEAR_BWD_IN, "linear_backward_input lm_head", LM_T, LM_C, LM_V, 0, 0},
    {K_LINEAR_BWD_W, "linear_backward_weight gate/up", LM_T, LM_C, LM_F, 0, 0},
    {K_LINEAR_BWD_W, "linear_backward_weight down", LM_T, LM_F, LM_C, 0, 0},
    {K_LINEAR_BWD_W, "linear_backward_weight lm_head", LM_T, LM_C, LM_V, 0, 0},
    {K_LINEAR_BWD_B, "linear_backward_bias projector", 2 * VIS_N, LM_C, 0, 0, 0},
    // rows x cols
    {K_RMS_FWD, "rmsnorm_forward", LM_T, LM_C, 0, 0, 0},
    {K_RMS_BWD, "rmsnorm_backward (+dw)", LM_T, LM_C, 0, 0, 0},
    {K_LN_FWD, "layernorm_forward clip", VIS_T, VIS_C, 0, 0, 0},
    {K_LN_BWD, "layernorm_backward (+dw,db)", VIS_T, VIS_C, 0, 0, 0},
    {K_QGELU_FWD, "quick_gelu_forward clip mlp", VIS_T, VIS_F, 0, 0, 0},
    {K_QGELU_BWD, "quick_gelu_backward", VIS_T, VIS_F, 0, 0, 0},
    {K_GELU_FWD, "gelu_forward projector", 2 * VIS_N, LM_C, 0, 0, 0},
    {K_GELU_BWD, "gelu_backward projector", 2 * VIS_N, LM_C, 0, 0, 0},
    {K_SILU_FWD, "silu_mul_forward", LM_T, LM_F, 0, 0, 0},
    {K_SILU_BWD, "silu_mul_backward", LM_T, LM_F, 0, 0, 0},
    {K_ADD, "add (residual)", LM_T, LM_C, 0, 0, 0},
    {K_ROPE_FWD, "rope_forward q", LM_T, LM_C, 0, 0, LM_D},
    {K_ROPE_BWD, "rope_backward q", LM_T, LM_C, 0, 0, LM_D},
    {K_EMB_FWD, "embedding_forward", LM_T, LM_C, LM_V, 0, 0},
    {K_EMB_BWD, "embedding_backward", LM_T, LM_C, LM_V, 0, 0},
    {K_EMB_BWD, "embedding_backward packed", PACKED_T, LM_C, LM_V, 0, 0},
    {K_PATCH, "patch_unfold 336px P14", VIS_B, 0, 0, 0, 0},
    {K_CLIP_EMBED, "clip_embed", VIS_B, VIS_N, VIS_C, 0, 0},
    {K_GATHER, "gather_rows (2 images)", 2 * VIS_N, LM_C, 0, 0, 0},
    {K_SCATTER, "scatter_rows (2 images)", 2 * VIS_N, LM_C, 0, 0, 0},
    {K_CE, "cross_entropy (dlogits=logits)", LM_T, LM_V, 0, 0, 0},
    {K_ADAMW, "adamw", ADAM_N, 1, 0, 0, 0},
    {K_GSS, "grad_sq_sum", ADAM_N, 1, 0, 0, 0},
    // attention: (sequences, length, causal)
    {K_ATTN_FWD, "attention_forward lm causal", 1, LM_T, 1, LM_H, LM_D},
    {K_ATTN_BWD, "attention_backward lm causal", 1, LM_T, 1, LM_H, LM_D},
    {K_ATTN_FWD, "attention_forward clip", VIS_B, VIS_N + 1, 0, VIS_H, VIS_D},
    {K_ATTN_BWD, "attention_backward clip", VIS_B, VIS_N + 1, 0, VIS_H, VIS_D},
};

static void shape_str(const bench_case *k, char *buf, size_t size) {
    switch (k->id) {
    case K_LINEAR_FWD: case K_LINEAR_BWD_IN: case K_LINEAR_BWD_W:
        snprintf(buf, size, "N=%d I=%d O=%d", k->a, k->b, k->c);
        break;
    case K_ADAMW: case K_GSS: snprintf(buf, size, "n=%d", k->a); break;
    case K_PATCH: snprintf(buf, size, "B=%d 3x336x336", k->a); break;
    case K_CLIP_EMBED: snprintf(buf, size, "B=%d N=%d C=%d", k->a, k->b, k->c); break;
    case K_EMB_FWD: case K_EMB_BWD: snprintf(buf, size, "T=%d C=%d V=%d", k->a, k->b, k->c); break;
    case K_ROPE_FWD: case K_ROPE_BWD: snprintf(buf, size, "T=%d H=%d D=%d", k->a, k->b / k->d, k->d); break;
    case K_ATTN_FWD: case K_ATTN_BWD:
        snprintf(buf, size, "%dx%d tok H=%d D=%d", k->a, k->b, k->h, k->d);
        break;
    default: snprintf(buf, size, "%dx%d", k->a, k->b); break;
    }
}

static void usage(void) {
    fprintf(stderr, "usage: llava bench-kernels [--reps N] [--only SUBSTRING] [--no-attention]\n");
}

int cmd_bench_kernels(int argc, char **argv) {
    int reps = 20, no_attention = 0;
    const char *only = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--reps") == 0 && i + 1 < argc) {
            reps = atoi(argv[++i]);
            if (reps < 1 || reps > MAX_REPS) {
                fprintf(stderr, "bench-kernels: --reps must be 1..%d\n", MAX_REPS);
                return 2;
            }
        } else if (strcmp(argv[i], "--only") == 0 && i + 1 < argc) {
            only = argv[++i];
        } else if (strcmp(argv[i], "--no-attention") == 0) {
            no_attention = 1;
        } else {
            usage();
            return 2;
        }
    }
    llava_backend *be = llava_backend_open("cuda", NULL);
    if (!be) {
        printf("no CUDA device (%s)\n", llava_errmsg());
        return 0;
    }
    const llava_ops *o = be->ops;
    llava_backend_info info;
    llava_backend_describe(be, &info);
    printf("device: %s\n", info.device);
    bench_bufs B;
    bufs_init(&B, be);

    // Peaks: a square bf16 GEMM of 8192 (1.1 TFLOP) and a 1 GiB device-to-device copy.
    bench_case peak_gemm = {K_LINEAR_FWD, "peak gemm", 8192, 8192, 8192, 0, 0};
    double gemm_ms = time_case(&peak_gemm, &B, 3, 10);
    double peak_tflops = 2.0 * 8192.0 * 8192.0 * 8192.0 / (gemm_ms * 1e-3) / 1e12;
    cudaEvent_t e0, e1;
    cudaEventCreate(&e0);
    cudaEventCreate(&e1);
    float best = 1e30f;
    for (int r = 0; r < 8; r++) {
        llava_device_record(be, e0);
        o->copy(be, BUF_F32, B.f32[1], B.f32[0], ADAM_N);  // 512 MiB read + 512 MiB written
        llava_device_record(be, e1);
        cudaEventSynchronize(e1);
        float ms = 0.0f;
        cudaEventElapsedTime(&ms, e0, e1);
        if (r >= 2 && ms < best) best = ms;
    }
    cudaEventDestroy(e0);
    cudaEventDestroy(e1);
    double peak_gbs = 2.0 * (double)ADAM_N * 4.0 / (best * 1e-3) / 1e9;
    printf("peaks measured: bf16 GEMM 8192^3 %.3f ms = %.1f TFLOP/s; device copy 512 MiB %.3f ms = %.0f GB/s\n\n",
           gemm_ms, peak_tflops, (double)best, peak_gbs);

    printf("%-34s %-24s %10s %10s %8s %7s\n", "kernel", "shape", "ms", "TFLOP/s", "GB/s", "%peak");
    for (size_t i = 0; i < sizeof CASES / sizeof CASES[0]; i++) {
        const bench_case *k = &CASES[i];
        if (only && !strstr(k->name, only)) continue;
        if (no_attention && (k->id == K_ATTN_FWD || k->id == K_ATTN_BWD)) continue;
        int warm = 3, n = reps;
        if (k->id == K_ADAMW) {
            // adamw rewrites its inputs: fine for timing (the values stay finite and nonzero).
            warm = 1;
        }
        double ms = time_case(k, &B, warm, n);
        double flops, bytes;
        case_cost(k, &flops, &bytes);
        char shape[64];
        shape_str(k, shape, sizeof shape);
        if (flops > 0) {
            double tf = flops / (ms * 1e-3) / 1e12;
            printf("%-34s %-24s %10.4f %10.1f %8s %6.0f%%\n", k->name, shape, ms, tf, "", 100.0 * tf / peak_tflops);
        } else {
            double gbs = bytes / (ms * 1e-3) / 1e9;
            printf("%-34s %-24s %10.4f %10s %8.0f %6.0f%%\n", k->name, shape, ms, "", gbs, 100.0 * gbs / peak_gbs);
        }
        fflush(stdout);
    }
    bufs_free(&B);
    llava_backend_close(be);
    return 0;
}

#else  // a build without CUDA

int cmd_bench_kernels(int argc, char **argv) {
    (void)argc, (void)argv;
    char why[256];
    llava_backend_available("cuda", why, sizeof why);
    printf("no CUDA device (%s)\n", why);
    return 0;
}

#endif
