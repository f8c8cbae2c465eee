// QLoRA's NF4 weights back to numbers (ops.h nf4_dequantize), in the order bitsandbytes computes them.
#include <float.h>
#include <math.h>

#include "common/dtype.h"
#include "cpu.h"
#include "kernels/op_require.h"

static inline float ftz(float x) { return fabsf(x) < FLT_MIN ? x * 0.0f : x; }

void cpu_nf4_dequantize(llava_backend *be, void *out_, const uint8_t *packed, const uint8_t *absmax_q,
                        const float *absmax2, const float *tables, float offset, size_t n, int round_bf16) {
    req_elementwise(be, "nf4_dequantize", n, "out packed absmax_q absmax2 tables", out_, packed, absmax_q, absmax2,
                    tables);
    float *out = out_;  // (n)
    for (size_t b = 0; b * 64 < n; b++) {
        float a = ftz(tables[16 + absmax_q[b]] * absmax2[b / 256]);
        a = a + offset;  // a second rounding, as torch adds the offset to dequantize_blockwise's output
        size_t hi = b * 64 + 64 < n ? b * 64 + 64 : n;
        for (size_t i = b * 64; i < hi; i++) {
            unsigned c = i % 2 == 0 ? packed[i / 2] >> 4 : packed[i / 2] & 15u;
            float w = ftz(tables[c] * a);
            out[i] = round_bf16 ? bf16_to_f32(f32_to_bf16(w)) : w;
        }
    }
}
