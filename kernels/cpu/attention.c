// Attention over packed sequences, one (sequence, query head) block at a time: the full (L, L)
// score matrix through sgemm, an exact softmax with fp64 sums, and sgemm again for P V. This is the
// reference the tiled CUDA kernel is checked against, so it materialises what FlashAttention avoids.
// Expects 0 = cu_seqlens[0] <= ... <= cu_seqlens[n_seq] = T; rows outside every sequence are not written.
// cpu.h (and through it ops.h, whose prototypes name a parameter I) before cblas.h, whose
// <complex.h> defines I as a macro.
#include "cpu.h"

#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"
#include "kernels/op_require.h"

static int longest_sequence(const int32_t *cu_seqlens, int n_seq) {
    int longest = 0;
    for (int s = 0; s < n_seq; s++)
        if (cu_seqlens[s + 1] - cu_seqlens[s] > longest) longest = cu_seqlens[s + 1] - cu_seqlens[s];
    return longest;
}

// Keys a query row may see: all L of its sequence, or the first i+1 under the causal mask, of which
// a sliding window keeps the last `window`: [first, n). HF's eager mask adds finfo.min, whose exp
// underflows to exactly the 0 that skipping the keys gives.
static int visible_keys(int i, int L, int causal) { return causal ? i + 1 : L; }
static int first_key(int i, int causal, int window) {
    return causal && window > 0 && i - window + 1 > 0 ? i - window + 1 : 0;
}

void cpu_attention_forward(llava_backend *be, void *out_, float *lse, const void *q_, const void *k_, const void *v_,
                           const int32_t *cu_seqlens, int n_seq, int T, int Hq, int Hkv, int D, float scale, int causal,
                           int window) {
    req_attention_forward(be, out_, lse, q_, k_, v_, cu_seqlens, n_seq, T, Hq, Hkv, D);
    req_cu_seqlens(be, "attention_forward", cu_seqlens, n_seq, T);
    float *out = out_;                                // (T, Hq*D); lse (Hq, T)
    const float *q = q_;                              // (T, Hq*D)
    const float *k = k_;                              // (T, Hkv*D)
    const float *v = v_;                              // (T, Hkv*D); cu_seqlens (n_seq + 1)
    int group = Hq / Hkv, qs = Hq * D, ks = Hkv * D;  // query heads per kv head; row strides
    int longest = longest_sequence(cu_seqlens, n_seq);
    float *P = xmalloc((size_t)longest * longest * sizeof(float));  // (L, L) scores, then probabilities
    for (int s = 0; s < n_seq; s++) {
        int start = cu_seqlens[s], L = cu_seqlens[s + 1] - start;
        if (L <= 0) continue;
        for (int h = 0; h < Hq; h++) {
            // This block's rows of q and out are (L, D) at qoff with row stride qs; of k and v, at koff
            // with stride ks.
            size_t qoff = (size_t)start * qs + (size_t)h * D, koff = (size_t)start * ks + (size_t)(h / group) * D;
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, L, L, D, scale, q + qoff, qs, k + koff, ks, 0.0f, P,
                        L);
            for (int i = 0; i < L; i++) {
                float *row = P + (size_t)i * L;
                int n = visible_keys(i, L, causal), j0 = first_key(i, causal, window);
                float m = row[j0];
                for (int j = j0 + 1; j < n; j++) m = row[j] > m ? row[j] : m;
                double sum = 0.0;
                for (int j = j0; j < n; j++) sum += exp((double)row[j] - m);
                double row_lse = m + log(sum);
                for (int j = 0; j < j0; j++) row[j] = 0.0f;
                for (int j = j0; j < n; j++) row[j] = (float)exp((double)row[j] - row_lse);
                for (int j = n; j < L; j++) row[j] = 0.0f;
                lse[(size_t)h * T + start + i] = (float)row_lse;
            }
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, L, D, L, 1.0f, P, L, v + koff, ks, 0.0f, out + qoff,
                        qs);
        }
    }
    free(P);
}

// Per block, with P recomputed from the saved lse (spec §2.4):
//   dV += P^T dO,  dP = dO V^T,  dS = P * (dP - delta),  dQ = scale dS K,  dK += scale dS^T Q,
// where delta_i = rowsum(dP * P)_i = rowsum(dO * O)_i, the cheaper (D instead of L terms) form.
// dK and dV sum over the query heads that share a kv head, in head order.
void cpu_attention_backward(llava_backend *be, void *dq_, void *dk_, void *dv_, const void *dout_, const void *q_,
                            const void *k_, const void *v_, const void *out_, const float *lse,
                            const int32_t *cu_seqlens, int n_seq, int T, int Hq, int Hkv, int D, float scale,
                            int causal, int window) {
    req_attention_backward(be, dq_, dk_, dv_, dout_, q_, k_, v_, out_, lse, cu_seqlens, n_seq, T, Hq, Hkv, D);
    req_cu_seqlens(be, "attention_backward", cu_seqlens, n_seq, T);
    float *dq = dq_;            // (T, Hq*D)
    float *dk = dk_;            // (T, Hkv*D)
    float *dv = dv_;            // (T, Hkv*D)
    const float *dout = dout_;  // (T, Hq*D)
    const float *q = q_;        // (T, Hq*D)
    const float *k = k_;        // (T, Hkv*D)
    const float *v = v_;        // (T, Hkv*D)
    const float *out = out_;    // (T, Hq*D); lse (Hq, T); cu_seqlens (n_seq + 1)
    int group = Hq / Hkv, qs = Hq * D, ks = Hkv * D;
    int longest = longest_sequence(cu_seqlens, n_seq);
    size_t block = (size_t)longest * longest;
    float *P = xmalloc(block * sizeof(float));                  // (L, L)
    float *dS = xmalloc(block * sizeof(float));                 // (L, L): dP, then dS in place
    double *delta = xmalloc((size_t)longest * sizeof(double));  // (L)
    memset(dk, 0, (size_t)T * ks * sizeof(float));
    memset(dv, 0, (size_t)T * ks * sizeof(float));
    for (int s = 0; s < n_seq; s++) {
        int start = cu_seqlens[s], L = cu_seqlens[s + 1] - start;
        if (L <= 0) continue;
        for (int h = 0; h < Hq; h++) {
            size_t qoff = (size_t)start * qs + (size_t)h * D, koff = (size_t)start * ks + (size_t)(h / group) * D;
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, L, L, D, scale, q + qoff, qs, k + koff, ks, 0.0f, P,
                        L);
            for (int i = 0; i < L; i++) {
                float *row = P + (size_t)i * L;
                int n = visible_keys(i, L, causal), j0 = first_key(i, causal, window);
                double row_lse = lse[(size_t)h * T + start + i];
                for (int j = 0; j < j0; j++) row[j] = 0.0f;
                for (int j = j0; j < n; j++) row[j] = (float)exp((double)row[j] - row_lse);
                for (int j = n; j < L; j++) row[j] = 0.0f;
                const float *o = out + qoff + (size_t)i * qs, *g = dout + qoff + (size_t)i * qs;
                double d = 0.0;
                for (int c = 0; c < D; c++) d += (double)o[c] * g[c];
                delta[i] = d;
            }
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, L, D, L, 1.0f, P, L, dout + qoff, qs, 1.0f, dv + koff,
                        ks);
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, L, L, D, 1.0f, dout + qoff, qs, v + koff, ks, 0.0f, dS,
                        L);
            for (int i = 0; i < L; i++) {
                float *ds = dS + (size_t)i * L;
                const float *p = P + (size_t)i * L;
                for (int j = 0; j < L; j++) ds[j] = (float)(p[j] * (ds[j] - delta[i]));
            }
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, L, D, L, scale, dS, L, k + koff, ks, 0.0f, dq + qoff,
                        qs);
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, L, D, L, scale, dS, L, q + qoff, qs, 1.0f, dk + koff,
                        ks);
        }
    }
    free(delta);
    free(dS);
    free(P);
}

// One query row at a time against its sequence's cached keys: scores in fp32 dot products (scaled
// as the forward's sgemm scales them), an exact softmax with fp64 sums, probabilities rounded to
// fp32 and P V summed in fp32, so a decoded token's attention differs from the same row of
// attention_forward over the whole sequence by summation order only (spec: within 1e-6 relative).
// Rows are independent: what a row gets never depends on the other rows of the call.
void cpu_attention_decode(llava_backend *be, void *out_, const void *q_, const void *k_cache_, const void *v_cache_,
                          const int32_t *block_table, const int32_t *seq, const int32_t *pos, int T, int n_seq,
                          int max_blocks, int block_size, int n_blocks, int Hq, int Hkv, int D, float scale,
                          int window) {
    req_attention_decode(be, out_, q_, k_cache_, v_cache_, block_table, seq, pos, T, n_seq, max_blocks, block_size,
                         n_blocks, Hq, Hkv, D);
    req_decode_tables(be, block_table, seq, pos, T, n_seq, max_blocks, block_size, n_blocks);
    float *out = out_;           // (T, Hq*D)
    const float *q = q_;         // (T, Hq*D)
    const float *kc = k_cache_;  // (n_blocks * block_size, Hkv*D)
    const float *vc = v_cache_;  // (n_blocks * block_size, Hkv*D)
    int group = Hq / Hkv, qs = Hq * D, ks = Hkv * D;
    int longest = 0;
    for (int t = 0; t < T; t++) longest = pos[t] + 1 > longest ? pos[t] + 1 : longest;
    float *p = xmalloc(sizeof(float) * (size_t)(longest ? longest : 1));       // one row's scores
    size_t *rows = xmalloc(sizeof(size_t) * (size_t)(longest ? longest : 1));  // its keys' cache rows
    for (int t = 0; t < T; t++) {
        // keys j0..pos[t]: all of them, or the last `window`
        int n = pos[t] + 1, j0 = window > 0 && n > window ? n - window : 0;
        const int32_t *bt = block_table + (size_t)seq[t] * max_blocks;
        for (int j = j0; j < n; j++) rows[j] = (size_t)bt[j / block_size] * block_size + (size_t)(j % block_size);
        for (int h = 0; h < Hq; h++) {
            const float *qr = q + (size_t)t * qs + (size_t)h * D;
            size_t koff = (size_t)(h / group) * D;
            float m = -INFINITY;
            for (int j = j0; j < n; j++) {
                const float *kr = kc + rows[j] * ks + koff;
                float dot = 0.0f;
                for (int c = 0; c < D; c++) dot += qr[c] * kr[c];
                p[j] = dot * scale;
                m = p[j] > m ? p[j] : m;
            }
            double sum = 0.0;
            for (int j = j0; j < n; j++) sum += exp((double)p[j] - m);
            double row_lse = m + log(sum);
            for (int j = j0; j < n; j++) p[j] = (float)exp((double)p[j] - row_lse);
            float *o = out + (size_t)t * qs + (size_t)h * D;
            for (int c = 0; c < D; c++) o[c] = 0.0f;
            for (int j = j0; j < n; j++) {
                const float *vr = vc + rows[j] * ks + koff;
                for (int c = 0; c < D; c++) o[c] += p[j] * vr[c];
            }
        }
    }
    free(rows);
    free(p);
}
