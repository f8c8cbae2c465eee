// RoPE's inverse frequencies (ops.h llava_rope_inv_freq), shared by the backends' rope ops.
//
// transformers computes them with fp32 tensors and Python-float scalars; each scalar enters the fp32
// arithmetic rounded to fp32, and `scalar / tensor` is tensor.reciprocal() * scalar (torch's
// __rtruediv__). The steps below are those, in that order, so the frequencies are its bits.
#include <math.h>

#include "kernels/ops.h"

void llava_rope_inv_freq(int D, float theta, const llava_rope_scaling *s, float *f) {
    int half = D / 2;
    for (int i = 0; i < half; i++) f[i] = 1.0f / powf(theta, (float)(2 * i) / (float)D);
    if (!s || s->type != LLAVA_ROPE_LLAMA3) return;
    const float two_pi = (float)(2.0 * M_PI), factor = s->factor, low = s->low_freq_factor, high = s->high_freq_factor;
    const double old = s->original_max_position_embeddings;
    const float low_wavelen = (float)(old / (double)low), high_wavelen = (float)(old / (double)high);
    const float old_f = (float)old, band = (float)((double)high - (double)low);
    for (int i = 0; i < half; i++) {
        float wavelen = (1.0f / f[i]) * two_pi;
        float scaled = wavelen > low_wavelen ? f[i] / factor : f[i];
        float smooth = ((1.0f / wavelen) * old_f - low) / band;
        float smoothed = (1.0f - smooth) * scaled / factor + smooth * scaled;
        int medium = !(wavelen < high_wavelen) && !(wavelen > low_wavelen);
        f[i] = medium ? smoothed : scaled;
    }
}
