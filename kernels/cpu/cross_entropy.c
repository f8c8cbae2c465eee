// Softmax cross-entropy with ignore index, fused with its gradient (spec §2.6). The vocabulary is
// 32000+ columns per row, so a row's log-sum-exp is one streaming pass with an online max: chunk by
// chunk, the running sum is rescaled whenever a chunk raises the max. No probabilities are stored;
// the gradient pass recomputes exp(z - lse) column by column, reading z just before writing dz,
// which is why dlogits may alias logits.
#include <math.h>
#include <string.h>

#include "cpu.h"
#include "kernels/op_require.h"

enum { CE_CHUNK = 2048 };  // columns per chunk: the max of a chunk is taken before its exps

void cpu_cross_entropy(llava_backend *be, float *losses, void *dlogits_, const void *logits_, const int32_t *targets,
                       int T, int V, float grad_scale) {
    req_cross_entropy(be, losses, logits_, targets, T, V);
    float *dlogits = dlogits_;      // (T, V) or NULL; may equal logits
    const float *logits = logits_;  // (T, V); losses (T); targets (T)
    for (int t = 0; t < T; t++) {
        const float *z = logits + (size_t)t * V;
        float *dz = dlogits ? dlogits + (size_t)t * V : NULL;
        int y = targets[t];
        if (y < 0) {
            losses[t] = 0.0f;
            if (dz) memset(dz, 0, (size_t)V * sizeof(float));
            continue;
        }
        if (y >= V) {
            // A target past the vocabulary is a bug upstream (a tokenizer and model that disagree).
            // NaN makes the step's loss non-finite, so the training loop reports it, instead of
            // this op reading past the row.
            losses[t] = NAN;
            for (int j = 0; dz && j < V; j++) dz[j] = NAN;
            continue;
        }
        double m = -INFINITY, sum = 0.0;  // running max and sum of exp(z - m), fp64 over V terms
        for (int c0 = 0; c0 < V; c0 += CE_CHUNK) {
            int c1 = c0 + CE_CHUNK < V ? c0 + CE_CHUNK : V;
            float cm = z[c0];
            for (int j = c0 + 1; j < c1; j++) cm = z[j] > cm ? z[j] : cm;
            if (cm > m) {
                sum *= exp(m - cm);
                m = cm;
            }
            for (int j = c0; j < c1; j++) sum += exp((double)z[j] - m);
        }
        double lse = m + log(sum);
        losses[t] = (float)(lse - z[y]);  // z[y] is read before the gradient pass may overwrite it
        if (!dz) continue;
        for (int j = 0; j < V; j++) {
            double p = exp((double)z[j] - lse);
            dz[j] = (float)((j == y ? p - 1.0 : p) * grad_scale);
        }
    }
}
