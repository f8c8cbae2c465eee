// Residual adds, and LoRA's scaling with dropout. Index-for-index reads before writes, so out may alias a or b.
#include "cpu.h"
#include "kernels/op_require.h"

void cpu_add(llava_backend *be, void *out_, const void *a_, const void *b_, size_t n) {
    req_elementwise(be, "add", n, "out a b", out_, a_, b_, NULL, NULL);
    float *out = out_;    // (n)
    const float *a = a_;  // (n)
    const float *b = b_;  // (n)
    for (size_t i = 0; i < n; i++) out[i] = a[i] + b[i];
}

void cpu_dropout_scale(llava_backend *be, void *out_, const void *x_, size_t n, float scale, float p, uint64_t seed) {
    req_elementwise(be, "dropout_scale", n, "out x", out_, x_, NULL, NULL, NULL);
    float *out = out_;    // (n)
    const float *x = x_;  // (n)
    if (p <= 0.0f) {
        for (size_t i = 0; i < n; i++) out[i] = x[i] * scale;
        return;
    }
    const float f = scale / (1.0f - p);
    const uint32_t thr = lora_dropout_threshold(p);
    for (size_t i = 0; i < n; i++) out[i] = lora_dropout_keeps(seed, i, thr) ? x[i] * f : 0.0f;
}

void cpu_add_inplace(llava_backend *be, void *acc_, const void *x_, size_t n) {
    req_elementwise(be, "add_inplace", n, "acc x", acc_, x_, NULL, NULL, NULL);
    float *acc = acc_;    // (n)
    const float *x = x_;  // (n)
    for (size_t i = 0; i < n; i++) acc[i] += x[i];
}
