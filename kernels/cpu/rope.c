// Rotary position embedding, HF half-split convention: feature i pairs with i + D/2 (spec §2.4).
// The angles follow HF's fp32 steps exactly, because in fp32 they decide the result at large
// positions: pos * inv_freq at pos 4000 has an absolute error of ~1e-4 rad either way, and only
// doing the same roundings as HF gives the same cos/sin.
#include <math.h>
#include <stdlib.h>

#include "common/util.h"
#include "cpu.h"
#include "kernels/op_require.h"

// Applies the rotation by +angle (forward) or -angle (backward: the transpose of a rotation is the
// rotation back, which is spec §2.4's dx = g*cos - rotate_half(g*sin)).
static void rope_rotate(float *x, const int32_t *pos, int T, int H, int D, float theta,
                        const llava_rope_scaling *scaling, float sign) {
    int half = D / 2;
    float *inv_freq = xmalloc((size_t)half * sizeof(float));  // (D/2)
    llava_rope_inv_freq(D, theta, scaling, inv_freq);
    float *cs = xmalloc((size_t)D * sizeof(float));  // (D): cos in [0, half), sin in [half, D)
    for (int t = 0; t < T; t++) {
        for (int i = 0; i < half; i++) {
            float angle = (float)pos[t] * inv_freq[i];
            cs[i] = cosf(angle);
            cs[half + i] = sign * sinf(angle);
        }
        for (int h = 0; h < H; h++) {
            float *v = x + ((size_t)t * H + h) * D;  // one head's (D) features
            for (int i = 0; i < half; i++) {
                float a = v[i], b = v[i + half], c = cs[i], s = cs[half + i];
                // q'[i] = q[i] c - q[i+half] s, q'[i+half] = q[i+half] c + q[i] s; HF's fp32 order
                // (each product rounded, then the sum).
                v[i] = a * c - b * s;
                v[i + half] = b * c + a * s;
            }
        }
    }
    free(cs);
    free(inv_freq);
}

void cpu_rope_forward(llava_backend *be, void *x, const int32_t *pos, int T, int H, int D, float theta,
                      const llava_rope_scaling *scaling) {
    req_rope(be, "rope_forward", x, pos, T, H, D);
    rope_rotate(x, pos, T, H, D, theta, scaling, 1.0f);  // x (T, H*D); pos (T)
}

void cpu_rope_backward(llava_backend *be, void *dx, const int32_t *pos, int T, int H, int D, float theta,
                       const llava_rope_scaling *scaling) {
    req_rope(be, "rope_backward", dx, pos, T, H, D);
    rope_rotate(dx, pos, T, H, D, theta, scaling, -1.0f);  // dx (T, H*D); pos (T)
}
