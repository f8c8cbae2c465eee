// Everything that moves rows into the token stream: token embeddings, CLIP's patch unfold and
// CLS/position embeddings, and the row gather/scatter of the image-feature splice. These are copies
// and sums of two numbers, so they are exact up to the one rounding of an fp32 add.
#include <string.h>

#include "cpu.h"
#include "kernels/op_require.h"

void cpu_patch_unfold(llava_backend *be, void *out_, const float *pix, int B, int Cin, int H, int W, int P) {
    req_patch_unfold(be, out_, pix, B, Cin, H, W, P);
    float *out = out_;  // (B * (H/P) * (W/P), Cin*P*P); pix (B, Cin, H, W)
    int gh = H / P, gw = W / P, K = Cin * P * P;
    for (int b = 0; b < B; b++)
        for (int r = 0; r < gh; r++)
            for (int c = 0; c < gw; c++) {
                float *row = out + ((size_t)b * gh * gw + (size_t)r * gw + c) * K;
                for (int ch = 0; ch < Cin; ch++)
                    for (int i = 0; i < P; i++) {
                        const float *src = pix + (((size_t)b * Cin + ch) * H + (size_t)r * P + i) * W + (size_t)c * P;
                        memcpy(row + ((size_t)ch * P + i) * P, src, (size_t)P * sizeof(float));
                    }
            }
}

void cpu_clip_embed(llava_backend *be, void *out_, const void *patches_, const void *cls_, const void *pos_, int B,
                    int N, int C) {
    req_clip_embed(be, out_, patches_, cls_, pos_, B, N, C);
    float *out = out_;                // (B*(N+1), C)
    const float *patches = patches_;  // (B*N, C)
    const float *cls = cls_;          // (C)
    const float *pos = pos_;          // (N+1, C)
    for (int b = 0; b < B; b++) {
        float *o = out + (size_t)b * (N + 1) * C;
        for (int c = 0; c < C; c++) o[c] = cls[c] + pos[c];
        for (int n = 0; n < N; n++) {
            const float *p = patches + ((size_t)b * N + n) * C;
            const float *e = pos + (size_t)(n + 1) * C;
            float *row = o + (size_t)(n + 1) * C;
            for (int c = 0; c < C; c++) row[c] = p[c] + e[c];
        }
    }
}

void cpu_embedding_forward(llava_backend *be, void *out_, const int32_t *ids, const void *table_, int T, int C, int V) {
    req_embedding_forward(be, out_, ids, table_, T, C, V);
    float *out = out_;            // (T, C)
    const float *table = table_;  // (V, C); ids (T)
    for (int t = 0; t < T; t++) {
        float *row = out + (size_t)t * C;
        if (ids[t] >= 0 && ids[t] < V) memcpy(row, table + (size_t)ids[t] * C, (size_t)C * sizeof(float));
        else memset(row, 0, (size_t)C * sizeof(float));
    }
}

void cpu_embedding_backward(llava_backend *be, float *dtable, const void *dout_, const int32_t *ids, int T, int C,
                            int V, int padding_idx) {
    req_embedding_backward(be, dtable, dout_, ids, T, C, V);
    const float *dout = dout_;  // (T, C); dtable (V, C) accumulated; ids (T)
    // Tokens in order: a row that appears many times sums its gradients in the same order every run.
    for (int t = 0; t < T; t++) {
        int id = ids[t];
        if (id < 0 || id >= V || id == padding_idx) continue;
        float *row = dtable + (size_t)id * C;
        const float *g = dout + (size_t)t * C;
        for (int c = 0; c < C; c++) row[c] += g[c];
    }
}

void cpu_scatter_rows(llava_backend *be, void *dst_, const void *src_, const int32_t *idx, int n, int C) {
    req_rows(be, "scatter_rows", dst_, src_, idx, n, C);
    req_row_indices(be, "scatter_rows", idx, n);
    float *dst = dst_;        // (>= max idx + 1, C)
    const float *src = src_;  // (n, C); idx (n)
    for (int i = 0; i < n; i++) memcpy(dst + (size_t)idx[i] * C, src + (size_t)i * C, (size_t)C * sizeof(float));
}

void cpu_gather_rows(llava_backend *be, void *dst_, const void *src_, const int32_t *idx, int n, int C) {
    req_rows(be, "gather_rows", dst_, src_, idx, n, C);
    req_row_indices(be, "gather_rows", idx, n);
    float *dst = dst_;        // (n, C); idx (n)
    const float *src = src_;  // (>= max idx + 1, C)
    for (int i = 0; i < n; i++) memcpy(dst + (size_t)i * C, src + (size_t)idx[i] * C, (size_t)C * sizeof(float));
}
