// The ops' preconditions (op_require.h). Each message starts with the op and the backend, then what
// is wrong with the values the caller passed; llava_require_failed adds the file, the line and the
// condition, and aborts.
#include "kernels/op_require.h"

#include <string.h>

#include "common/util.h"

// In every function below: `be` and `op` name the call.
#define REQ(cond, fmt, ...) LLAVA_REQUIRE(cond, "%s (%s backend): " fmt, op, be->ops->name, __VA_ARGS__)

static void sizes(llava_backend *be, const char *op, int n, const char *const *names, const int *values) {
    for (int i = 0; i < n; i++) REQ(values[i] >= 0, "%s = %d is negative", names[i], values[i]);
}

// A pointer the op reads or writes when there is work (`work`): not NULL.
static void given(llava_backend *be, const char *op, int work, const char *name, const void *p) {
    REQ(!work || p != NULL, "%s is NULL", name);
}

#define SIZES(...)                                                                                                     \
    do {                                                                                                               \
        const int v_[] = {__VA_ARGS__};                                                                                \
        sizes(be, op, (int)(sizeof v_ / sizeof v_[0]), names_, v_);                                                    \
    } while (0)

void req_kind(llava_backend *be, const char *op, int kind) {
    REQ(kind >= BUF_ACT && kind <= BUF_I32, "unknown buffer kind %d", kind);
}

void req_transfer(llava_backend *be, const char *op, int kind, const void *dst, const void *src, size_t n) {
    req_kind(be, op, kind);
    given(be, op, n > 0, "dst", dst);
    given(be, op, n > 0, "src", src);
}

void req_linear_forward(llava_backend *be, const void *out, const void *x, const void *W, int N, int K, int O) {
    const char *op = "linear_forward", *names_[] = {"N", "I", "O"};
    SIZES(N, K, O);
    given(be, op, N > 0 && O > 0, "out", out);
    given(be, op, N > 0 && O > 0 && K > 0, "x", x);
    given(be, op, N > 0 && O > 0 && K > 0, "W", W);
}

void req_linear_backward_input(llava_backend *be, const void *dx, const void *dout, const void *W, int N, int K,
                               int O) {
    const char *op = "linear_backward_input", *names_[] = {"N", "I", "O"};
    SIZES(N, K, O);
    given(be, op, N > 0 && K > 0, "dx", dx);
    given(be, op, N > 0 && K > 0 && O > 0, "dout", dout);
    given(be, op, N > 0 && K > 0 && O > 0, "W", W);
}

void req_linear_backward_weight(llava_backend *be, const void *dW, const void *dout, const void *x, int N, int K,
                                int O) {
    const char *op = "linear_backward_weight", *names_[] = {"N", "I", "O"};
    SIZES(N, K, O);
    int work = N > 0 && K > 0 && O > 0;
    given(be, op, work, "dW", dW);
    given(be, op, work, "dout", dout);
    given(be, op, work, "x", x);
}

void req_linear_backward_bias(llava_backend *be, const void *db, const void *dout, int N, int O) {
    const char *op = "linear_backward_bias", *names_[] = {"N", "O"};
    SIZES(N, O);
    given(be, op, N > 0 && O > 0, "db", db);
    given(be, op, N > 0 && O > 0, "dout", dout);
}

void req_patch_unfold(llava_backend *be, const void *out, const void *pix, int B, int Cin, int H, int W, int P) {
    const char *op = "patch_unfold", *names_[] = {"B", "Cin", "H", "W"};
    SIZES(B, Cin, H, W);
    REQ(P > 0, "patch size P = %d must be positive", P);
    int work = B > 0 && Cin > 0 && H >= P && W >= P;
    given(be, op, work, "out", out);
    given(be, op, work, "pix", pix);
}

void req_clip_embed(llava_backend *be, const void *out, const void *patches, const void *cls, const void *pos, int B,
                    int N, int C) {
    const char *op = "clip_embed", *names_[] = {"B", "N", "C"};
    SIZES(B, N, C);
    int work = B > 0 && C > 0;
    given(be, op, work, "out", out);
    given(be, op, work && N > 0, "patches", patches);
    given(be, op, work, "cls", cls);
    given(be, op, work, "pos", pos);
}

// A norm over zero features divides by zero: C > 0 whenever there are rows.
static void norm_sizes(llava_backend *be, const char *op, int N, int C) {
    const char *names_[] = {"N", "C"};
    SIZES(N, C);
    REQ(N == 0 || C > 0, "C = %d: a norm needs at least one feature", C);
}

void req_layernorm_forward(llava_backend *be, const void *out, const void *mean, const void *rstd, const void *x,
                           const void *w, const void *b, int N, int C) {
    const char *op = "layernorm_forward";
    norm_sizes(be, op, N, C);
    int work = N > 0;
    given(be, op, work, "out", out);
    given(be, op, work, "mean", mean);
    given(be, op, work, "rstd", rstd);
    given(be, op, work, "x", x);
    given(be, op, work, "w", w);
    given(be, op, work, "b", b);
}

void req_layernorm_backward(llava_backend *be, const void *dx, const void *dout, const void *x, const void *w,
                            const void *mean, const void *rstd, int N, int C) {
    const char *op = "layernorm_backward";
    norm_sizes(be, op, N, C);
    int work = N > 0;
    given(be, op, work, "dx", dx);
    given(be, op, work, "dout", dout);
    given(be, op, work, "x", x);
    given(be, op, work, "w", w);
    given(be, op, work, "mean", mean);
    given(be, op, work, "rstd", rstd);
}

void req_rmsnorm_forward(llava_backend *be, const void *out, const void *rstd, const void *x, const void *w, int N,
                         int C) {
    const char *op = "rmsnorm_forward";
    norm_sizes(be, op, N, C);
    int work = N > 0;
    given(be, op, work, "out", out);
    given(be, op, work, "rstd", rstd);
    given(be, op, work, "x", x);
    given(be, op, work, "w", w);
}

void req_rmsnorm_backward(llava_backend *be, const void *dx, const void *dout, const void *x, const void *w,
                          const void *rstd, int N, int C) {
    const char *op = "rmsnorm_backward";
    norm_sizes(be, op, N, C);
    int work = N > 0;
    given(be, op, work, "dx", dx);
    given(be, op, work, "dout", dout);
    given(be, op, work, "x", x);
    given(be, op, work, "w", w);
    given(be, op, work, "rstd", rstd);
}

void req_elementwise(llava_backend *be, const char *op, size_t n, const char *names, const void *p0, const void *p1,
                     const void *p2, const void *p3, const void *p4) {
    const void *p[5] = {p0, p1, p2, p3, p4};
    const char *name = names;
    for (int i = 0; i < 5 && *name; i++) {
        int len = 0;
        while (name[len] && name[len] != ' ') len++;
        REQ(n == 0 || p[i] != NULL, "%.*s is NULL", len, name);
        name += len;
        while (*name == ' ') name++;
    }
}

void req_rope(llava_backend *be, const char *op, const void *x, const int32_t *pos, int T, int H, int D) {
    const char *names_[] = {"T", "H"};
    SIZES(T, H);
    // Pairs (i, i + D/2): the head dimension splits in two halves.
    REQ(D > 0 && D % 2 == 0, "head dim D = %d must be positive and even", D);
    given(be, op, T > 0 && H > 0, "x", x);
    given(be, op, T > 0 && H > 0, "pos", pos);
}

// Grouped queries: Hq a positive multiple of Hkv.
static void attention_shape(llava_backend *be, const char *op, const int32_t *cu_seqlens, int n_seq, int T, int Hq,
                            int Hkv, int D) {
    const char *names_[] = {"n_seq", "T"};
    SIZES(n_seq, T);
    REQ(Hq > 0 && Hkv > 0 && Hq % Hkv == 0, "Hq = %d query heads must be a positive multiple of Hkv = %d", Hq, Hkv);
    REQ(D > 0, "head dim D = %d must be positive", D);
    given(be, op, n_seq > 0, "cu_seqlens", cu_seqlens);
}

void req_attention_forward(llava_backend *be, const void *out, const void *lse, const void *q, const void *k,
                           const void *v, const int32_t *cu_seqlens, int n_seq, int T, int Hq, int Hkv, int D) {
    const char *op = "attention_forward";
    attention_shape(be, op, cu_seqlens, n_seq, T, Hq, Hkv, D);
    int work = T > 0 && n_seq > 0;
    given(be, op, work, "out", out);
    given(be, op, work, "lse", lse);
    given(be, op, work, "q", q);
    given(be, op, work, "k", k);
    given(be, op, work, "v", v);
}

void req_attention_decode(llava_backend *be, const void *out, const void *q, const void *k_cache, const void *v_cache,
                          const int32_t *block_table, const int32_t *seq, const int32_t *pos, int T, int n_seq,
                          int max_blocks, int block_size, int n_blocks, int Hq, int Hkv, int D) {
    const char *op = "attention_decode", *names_[] = {"T", "n_seq", "max_blocks", "n_blocks"};
    SIZES(T, n_seq, max_blocks, n_blocks);
    REQ(Hq > 0 && Hkv > 0 && Hq % Hkv == 0, "Hq = %d query heads must be a positive multiple of Hkv = %d", Hq, Hkv);
    REQ(D > 0, "head dim D = %d must be positive", D);
    REQ(block_size > 0, "block_size = %d must be positive", block_size);
    REQ(T == 0 || (n_seq > 0 && max_blocks > 0 && n_blocks > 0),
        "%d query rows need sequences and blocks (n_seq = %d, "
        "max_blocks = %d, n_blocks = %d)",
        T, n_seq, max_blocks, n_blocks);
    int work = T > 0;
    given(be, op, work, "out", out);
    given(be, op, work, "q", q);
    given(be, op, work, "k_cache", k_cache);
    given(be, op, work, "v_cache", v_cache);
    given(be, op, work, "block_table", block_table);
    given(be, op, work, "seq", seq);
    given(be, op, work, "pos", pos);
}

void req_decode_tables(llava_backend *be, const int32_t *block_table, const int32_t *seq, const int32_t *pos, int T,
                       int n_seq, int max_blocks, int block_size, int n_blocks) {
    const char *op = "attention_decode";
    for (int t = 0; t < T; t++) {
        REQ(seq[t] >= 0 && seq[t] < n_seq, "query %d: sequence %d outside [0, %d)", t, seq[t], n_seq);
        REQ(pos[t] >= 0 && (int64_t)pos[t] < (int64_t)max_blocks * block_size,
            "query %d: position %d outside the %d blocks of %d a sequence may hold", t, pos[t], max_blocks, block_size);
        const int32_t *bt = block_table + (size_t)seq[t] * max_blocks;
        for (int b = 0; b <= pos[t] / block_size; b++)
            REQ(bt[b] >= 0 && bt[b] < n_blocks, "query %d: block %d of sequence %d is %d, outside [0, %d)", t, b,
                seq[t], bt[b], n_blocks);
    }
}

void req_attention_backward(llava_backend *be, const void *dq, const void *dk, const void *dv, const void *dout,
                            const void *q, const void *k, const void *v, const void *out, const void *lse,
                            const int32_t *cu_seqlens, int n_seq, int T, int Hq, int Hkv, int D) {
    const char *op = "attention_backward";
    attention_shape(be, op, cu_seqlens, n_seq, T, Hq, Hkv, D);
    int work = T > 0 && n_seq > 0;
    given(be, op, work, "dq", dq);
    given(be, op, work, "dk", dk);
    given(be, op, work, "dv", dv);
    given(be, op, work, "dout", dout);
    given(be, op, work, "q", q);
    given(be, op, work, "k", k);
    given(be, op, work, "v", v);
    given(be, op, work, "out", out);
    given(be, op, work, "lse", lse);
}

void req_cu_seqlens(llava_backend *be, const char *op, const int32_t *cu, int n_seq, int T) {
    if (n_seq <= 0) return;
    REQ(cu[0] >= 0, "cu_seqlens[0] = %d is negative", cu[0]);
    for (int s = 0; s < n_seq; s++)
        REQ(cu[s + 1] >= cu[s], "cu_seqlens[%d] = %d is below cu_seqlens[%d] = %d", s + 1, cu[s + 1], s, cu[s]);
    REQ(cu[n_seq] <= T, "cu_seqlens[%d] = %d is past the %d rows", n_seq, cu[n_seq], T);
}

void req_embedding_forward(llava_backend *be, const void *out, const int32_t *ids, const void *table, int T, int C,
                           int V) {
    const char *op = "embedding_forward", *names_[] = {"T", "C", "V"};
    SIZES(T, C, V);
    int work = T > 0 && C > 0;
    given(be, op, work, "out", out);
    given(be, op, work, "ids", ids);
    given(be, op, work && V > 0, "table", table);
}

void req_embedding_backward(llava_backend *be, const void *dtable, const void *dout, const int32_t *ids, int T, int C,
                            int V) {
    const char *op = "embedding_backward", *names_[] = {"T", "C", "V"};
    SIZES(T, C, V);
    int work = T > 0 && C > 0 && V > 0;
    given(be, op, work, "dtable", dtable);
    given(be, op, work, "dout", dout);
    given(be, op, work, "ids", ids);
}

void req_rows(llava_backend *be, const char *op, const void *dst, const void *src, const int32_t *idx, int n, int C) {
    const char *names_[] = {"n", "C"};
    SIZES(n, C);
    int work = n > 0 && C > 0;
    given(be, op, work, "dst", dst);
    given(be, op, work, "src", src);
    given(be, op, work, "idx", idx);
}

void req_grid_pool(llava_backend *be, const void *out, const void *in, int B, int G, int C, int mode, int s) {
    const char *op = "grid_pool", *names_[] = {"B", "G", "C"};
    SIZES(B, G, C);
    REQ(mode == LLAVA_POOL_AVERAGE || mode == LLAVA_POOL_MAX || mode == LLAVA_POOL_BILINEAR,
        "mode %d is not average (1), max (2) or bilinear (3)", mode);
    REQ(s >= 1 && (G == 0 || s <= G), "stride %d is outside 1..G (%d)", s, G);
    int work = B > 0 && G > 0 && C > 0;
    given(be, op, work, "out", out);
    given(be, op, work, "in", in);
}

void req_grid_pool_backward(llava_backend *be, const void *din, const void *dout, const void *in, int B, int G, int C,
                            int mode, int s) {
    const char *op = "grid_pool_backward", *names_[] = {"B", "G", "C"};
    SIZES(B, G, C);
    REQ(mode == LLAVA_POOL_AVERAGE || mode == LLAVA_POOL_MAX || mode == LLAVA_POOL_BILINEAR,
        "mode %d is not average (1), max (2) or bilinear (3)", mode);
    REQ(s >= 1 && (G == 0 || s <= G), "stride %d is outside 1..G (%d)", s, G);
    int work = B > 0 && G > 0 && C > 0;
    given(be, op, work, "din", din);
    given(be, op, work, "dout", dout);
    given(be, op, work && mode == LLAVA_POOL_MAX, "in", in);
}

void req_resize_bilinear(llava_backend *be, const char *op, const void *a, const void *b, int H, int W, int OH, int OW,
                         int C) {
    const char *names_[] = {"H", "W", "OH", "OW", "C"};
    SIZES(H, W, OH, OW, C);
    REQ((H > 0 && W > 0) == (OH > 0 && OW > 0), "%dx%d -> %dx%d: an empty image resizes to an empty one only", H, W, OH,
        OW);
    int work = H > 0 && W > 0 && OH > 0 && OW > 0 && C > 0, fwd = strcmp(op, "resize_bilinear") == 0;
    given(be, op, work, fwd ? "out" : "din", a);
    given(be, op, work, fwd ? "in" : "dout", b);
}

void req_row_indices(llava_backend *be, const char *op, const int32_t *idx, int n) {
    for (int i = 0; i < n; i++) REQ(idx[i] >= 0, "row index idx[%d] = %d is negative", i, idx[i]);
}

void req_cross_entropy(llava_backend *be, const void *losses, const void *logits, const int32_t *targets, int T,
                       int V) {
    const char *op = "cross_entropy", *names_[] = {"T", "V"};
    SIZES(T, V);
    REQ(T == 0 || V > 0, "V = %d: a softmax needs at least one class", V);
    given(be, op, T > 0, "losses", losses);
    given(be, op, T > 0, "logits", logits);
    given(be, op, T > 0, "targets", targets);
}

void req_adamw(llava_backend *be, const void *param, const void *grad, const void *m, const void *v, size_t n,
               int step) {
    const char *op = "adamw";
    REQ(step >= 1, "step = %d: steps count from 1 (the bias corrections divide by 1 - beta^step)", step);
    given(be, op, n > 0, "param", param);
    given(be, op, n > 0, "grad", grad);
    given(be, op, n > 0, "m", m);
    given(be, op, n > 0, "v", v);
}
