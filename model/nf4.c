// NF4 with double quantisation as bitsandbytes' CUDA kernels compute it (see nf4.h for the rule and
// tools/reference/make_nf4_goldens.py for where its CPU path differs).
#include "nf4.h"

#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"

// QLoRA's NF4 levels (quantiles of N(0, 1) scaled to [-1, 1], with an exact 0), as bitsandbytes lists them.
const float nf4_code[16] = {-1.0f,
                            -0.6961928009986877f,
                            -0.5250730514526367f,
                            -0.39491748809814453f,
                            -0.28444138169288635f,
                            -0.18477343022823334f,
                            -0.09105003625154495f,
                            0.0f,
                            0.07958029955625534f,
                            0.16093020141124725f,
                            0.24611230194568634f,
                            0.33791524171829224f,
                            0.44070982933044434f,
                            0.5626170039176941f,
                            0.7229568362236023f,
                            1.0f};

// The kernel's decision thresholds (fp32 literals in its dQuantizeNF4 tree), ascending: THRESH[k] lies
// between levels k and k + 1. Each literal is the fp64 midpoint of the two levels, so the fp32 threshold is
// that midpoint rounded once (for 0|1, 8|9, 12|13 and 14|15 one ulp from the fp32 midpoint of the fp32
// levels). A value exactly on a threshold gets the lower code: the kernel asks x > T. bitsandbytes' CPU
// path (nearest level by fp32 distance) gives the upper code at four of them: see make_nf4_goldens.py.
static const float THRESH[15] = {
    -0.8480964004993439f,  -0.6106329262256622f,   -0.4599952697753906f, -0.33967943489551544f, -0.23460740596055984f,
    -0.13791173323988914f, -0.045525018125772476f, 0.03979014977812767f, 0.1202552504837513f,   0.2035212516784668f,
    0.2920137718319893f,   0.3893125355243683f,    0.5016634166240692f,  0.6427869200706482f,   0.8614784181118011f};

// create_dynamic_map(signed=True) as bitsandbytes builds it (torch fp32 linspace means over 7 decades, both
// signs, 0 and 1.0), sorted. Values are data from bitsandbytes 0.49.2 with torch 2.5.1; the test compares
// them with the golden's copy. Note the lowest entry is -0.99296875, not -1: the GPU uses the map as built.
const float nf4_dynamic_code[256] = {-0x1.fc6666p-1f,  -0x1.f53334p-1f,  -0x1.eep-1f,      -0x1.e6ccccp-1f,
                                     -0x1.df999ap-1f,  -0x1.d86666p-1f,  -0x1.d13334p-1f,  -0x1.cap-1f,
                                     -0x1.c2ccccp-1f,  -0x1.bb999ap-1f,  -0x1.b46666p-1f,  -0x1.ad3334p-1f,
                                     -0x1.a6p-1f,      -0x1.9eccccp-1f,  -0x1.97999ap-1f,  -0x1.906666p-1f,
                                     -0x1.893334p-1f,  -0x1.82p-1f,      -0x1.7accccp-1f,  -0x1.73999ap-1f,
                                     -0x1.6c6668p-1f,  -0x1.653334p-1f,  -0x1.5ep-1f,      -0x1.56ccccp-1f,
                                     -0x1.4f999ap-1f,  -0x1.486668p-1f,  -0x1.413334p-1f,  -0x1.3ap-1f,
                                     -0x1.32ccccp-1f,  -0x1.2b999ap-1f,  -0x1.246668p-1f,  -0x1.1d3334p-1f,
                                     -0x1.16p-1f,      -0x1.0eccccp-1f,  -0x1.079998p-1f,  -0x1.006666p-1f,
                                     -0x1.f26664p-2f,  -0x1.e4p-2f,      -0x1.d59998p-2f,  -0x1.c73334p-2f,
                                     -0x1.b8ccccp-2f,  -0x1.aa6666p-2f,  -0x1.9cp-2f,      -0x1.8d9998p-2f,
                                     -0x1.7f3334p-2f,  -0x1.70ccccp-2f,  -0x1.626666p-2f,  -0x1.54p-2f,
                                     -0x1.459998p-2f,  -0x1.373334p-2f,  -0x1.28ccccp-2f,  -0x1.1a6668p-2f,
                                     -0x1.0cp-2f,      -0x1.fb3332p-3f,  -0x1.de6666p-3f,  -0x1.c1999ap-3f,
                                     -0x1.a4ccccp-3f,  -0x1.88p-3f,      -0x1.6b3334p-3f,  -0x1.4e6666p-3f,
                                     -0x1.31999ap-3f,  -0x1.14ccccp-3f,  -0x1.fp-4f,       -0x1.b66668p-4f,
                                     -0x1.93d70ap-4f,  -0x1.8851eep-4f,  -0x1.7ccccep-4f,  -0x1.7147aep-4f,
                                     -0x1.65c29p-4f,   -0x1.5a3d7p-4f,   -0x1.4eb854p-4f,  -0x1.433334p-4f,
                                     -0x1.37ae14p-4f,  -0x1.2c28f6p-4f,  -0x1.20a3d6p-4f,  -0x1.151ebap-4f,
                                     -0x1.09999ap-4f,  -0x1.fc28f6p-5f,  -0x1.e51ebap-5f,  -0x1.ce147ap-5f,
                                     -0x1.b70a3ep-5f,  -0x1.ap-5f,       -0x1.88f5c2p-5f,  -0x1.71eb86p-5f,
                                     -0x1.5ae146p-5f,  -0x1.43d70ap-5f,  -0x1.2ccccep-5f,  -0x1.15c29p-5f,
                                     -0x1.fd70a4p-6f,  -0x1.cf5c2ap-6f,  -0x1.a147aep-6f,  -0x1.733334p-6f,
                                     -0x1.451ebap-6f,  -0x1.170a3ep-6f,  -0x1.d1eb86p-7f,  -0x1.75c29p-7f,
                                     -0x1.3e76c8p-7f,  -0x1.2c083p-7f,   -0x1.19999ap-7f,  -0x1.072b02p-7f,
                                     -0x1.e978d4p-8f,  -0x1.c49ba6p-8f,  -0x1.9fbe76p-8f,  -0x1.7ae148p-8f,
                                     -0x1.56041ap-8f,  -0x1.3126e8p-8f,  -0x1.0c49bap-8f,  -0x1.ced914p-9f,
                                     -0x1.851eb8p-9f,  -0x1.3b645ap-9f,  -0x1.e353f8p-10f, -0x1.4fdf3ap-10f,
                                     -0x1.eecbfep-11f, -0x1.b3d07cp-11f, -0x1.78d5p-11f,   -0x1.3dd982p-11f,
                                     -0x1.02de02p-11f, -0x1.8fc506p-12f, -0x1.19ce0ap-12f, -0x1.47ae16p-13f,
                                     -0x1.743e96p-14f, -0x1.15df66p-14f, -0x1.6f0068p-15f, -0x1.64840cp-16f,
                                     -0x1.040bfep-17f, -0x1.b43528p-19f, -0x1.27476ep-21f, 0.0f,
                                     0x1.27476ep-21f,  0x1.b43528p-19f,  0x1.040bfep-17f,  0x1.64840cp-16f,
                                     0x1.6f0068p-15f,  0x1.15df66p-14f,  0x1.743e96p-14f,  0x1.47ae16p-13f,
                                     0x1.19ce0ap-12f,  0x1.8fc506p-12f,  0x1.02de02p-11f,  0x1.3dd982p-11f,
                                     0x1.78d5p-11f,    0x1.b3d07cp-11f,  0x1.eecbfep-11f,  0x1.4fdf3ap-10f,
                                     0x1.e353f8p-10f,  0x1.3b645ap-9f,   0x1.851eb8p-9f,   0x1.ced914p-9f,
                                     0x1.0c49bap-8f,   0x1.3126e8p-8f,   0x1.56041ap-8f,   0x1.7ae148p-8f,
                                     0x1.9fbe76p-8f,   0x1.c49ba6p-8f,   0x1.e978d4p-8f,   0x1.072b02p-7f,
                                     0x1.19999ap-7f,   0x1.2c083p-7f,    0x1.3e76c8p-7f,   0x1.75c29p-7f,
                                     0x1.d1eb86p-7f,   0x1.170a3ep-6f,   0x1.451ebap-6f,   0x1.733334p-6f,
                                     0x1.a147aep-6f,   0x1.cf5c2ap-6f,   0x1.fd70a4p-6f,   0x1.15c29p-5f,
                                     0x1.2ccccep-5f,   0x1.43d70ap-5f,   0x1.5ae146p-5f,   0x1.71eb86p-5f,
                                     0x1.88f5c2p-5f,   0x1.ap-5f,        0x1.b70a3ep-5f,   0x1.ce147ap-5f,
                                     0x1.e51ebap-5f,   0x1.fc28f6p-5f,   0x1.09999ap-4f,   0x1.151ebap-4f,
                                     0x1.20a3d6p-4f,   0x1.2c28f6p-4f,   0x1.37ae14p-4f,   0x1.433334p-4f,
                                     0x1.4eb854p-4f,   0x1.5a3d7p-4f,    0x1.65c29p-4f,    0x1.7147aep-4f,
                                     0x1.7ccccep-4f,   0x1.8851eep-4f,   0x1.93d70ap-4f,   0x1.b66668p-4f,
                                     0x1.fp-4f,        0x1.14ccccp-3f,   0x1.31999ap-3f,   0x1.4e6666p-3f,
                                     0x1.6b3334p-3f,   0x1.88p-3f,       0x1.a4ccccp-3f,   0x1.c1999ap-3f,
                                     0x1.de6666p-3f,   0x1.fb3332p-3f,   0x1.0cp-2f,       0x1.1a6668p-2f,
                                     0x1.28ccccp-2f,   0x1.373334p-2f,   0x1.459998p-2f,   0x1.54p-2f,
                                     0x1.626666p-2f,   0x1.70ccccp-2f,   0x1.7f3334p-2f,   0x1.8d9998p-2f,
                                     0x1.9cp-2f,       0x1.aa6666p-2f,   0x1.b8ccccp-2f,   0x1.c73334p-2f,
                                     0x1.d59998p-2f,   0x1.e4p-2f,       0x1.f26664p-2f,   0x1.006666p-1f,
                                     0x1.079998p-1f,   0x1.0eccccp-1f,   0x1.16p-1f,       0x1.1d3334p-1f,
                                     0x1.246668p-1f,   0x1.2b999ap-1f,   0x1.32ccccp-1f,   0x1.3ap-1f,
                                     0x1.413334p-1f,   0x1.486668p-1f,   0x1.4f999ap-1f,   0x1.56ccccp-1f,
                                     0x1.5ep-1f,       0x1.653334p-1f,   0x1.6c6668p-1f,   0x1.73999ap-1f,
                                     0x1.7accccp-1f,   0x1.82p-1f,       0x1.893334p-1f,   0x1.906666p-1f,
                                     0x1.97999ap-1f,   0x1.9eccccp-1f,   0x1.a6p-1f,       0x1.ad3334p-1f,
                                     0x1.b46666p-1f,   0x1.bb999ap-1f,   0x1.c2ccccp-1f,   0x1.cap-1f,
                                     0x1.d13334p-1f,   0x1.d86666p-1f,   0x1.df999ap-1f,   0x1.e6ccccp-1f,
                                     0x1.eep-1f,       0x1.f53334p-1f,   0x1.fc6666p-1f,   0x1p+0f};

// The kernels are compiled with --use_fast_math, which flushes subnormal operands and results of their
// fp32 operations to zero (keeping the sign). Applied where it can change a result: absmax, 1/absmax,
// the statistics, and the dequantised products.
static inline float ftz(float x) { return fabsf(x) < FLT_MIN ? x * 0.0f : x; }

// 1/a as the kernel gets it: a subnormal reciprocal (a > 2^126) is 0, and 1/0 is inf.
static inline float reciprocal(float a) { return ftz(1.0f / a); }

// The number of thresholds x exceeds: the kernel's tree walks the same sorted thresholds. NaN (an
// all-zero block's 0 * inf) exceeds none and gets code 0.
static inline unsigned nf4_code_of(float x) {
    unsigned c = 0;
    for (int k = 0; k < 15; k++) c += x > THRESH[k];
    return c;
}

// The 8-bit kernel's choice in the sorted 256-entry map: a binary search from pivot 127 in steps of
// 64..1, then the fp32 midpoint test between the final pivot and the last pivot passed on x's side
// (x exactly on the midpoint keeps the final pivot). Where the search never passed a pivot on one side,
// that neighbour is the table's end: code[0] = -0.99296875 below, code[255] = 1 above.
static unsigned dynamic_code_of(const float *code, float x) {
    int pivot = 127, upper_pivot = 255, lower_pivot = 0;
    float lower = -1.0f, upper = 1.0f, val = code[pivot];
    for (int step = 64; step > 0; step >>= 1) {
        if (x > val) {
            lower_pivot = pivot;
            lower = val;
            pivot += step;
        } else {
            upper_pivot = pivot;
            upper = val;
            pivot -= step;
        }
        val = code[pivot];
    }
    if (upper_pivot == 255) upper = code[255];
    if (lower_pivot == 0) lower = code[0];
    if (x > val) {
        float mid = (upper + val) * 0.5f;
        return (unsigned)(x > mid ? upper_pivot : pivot);
    }
    float mid = (lower + val) * 0.5f;
    return (unsigned)(x < mid ? lower_pivot : pivot);
}

// torch.mean of the absmaxes on the GPU: its float sum times fp32(1 / count). The sum is taken here in
// fp64 with compensation (exact to far below an fp32 ulp) and rounded once; the GPU's tree of fp32
// additions agrees unless its own rounding moves the last bit.
static float mean_as_torch_cuda(const float *a, size_t count) {
    double s = 0.0, c = 0.0;
    for (size_t i = 0; i < count; i++) {
        double t = s + a[i];
        c += fabs(s) >= fabs((double)a[i]) ? (s - t) + a[i] : ((double)a[i] - t) + s;
        s = t;
    }
    float sum = (float)(s + c);
    float factor = 1.0f / (float)count;
    return sum * factor;
}

size_t nf4_bytes(size_t n) {
    size_t blocks = (n + NF4_BLOCK - 1) / NF4_BLOCK;
    size_t stats = (blocks + NF4_STAT_BLOCK - 1) / NF4_STAT_BLOCK;
    return (n + 1) / 2 + blocks + stats * sizeof(float) + sizeof(float);
}

void nf4_free(nf4_tensor *q) {
    if (!q) return;
    free(q->packed);
    free(q->absmax_q);
    free(q->absmax2);
    memset(q, 0, sizeof *q);
}

int nf4_quantize(const float *w, size_t n, nf4_tensor *q) {
    memset(q, 0, sizeof *q);
    if (n == 0) return llava_fail("nf4: nothing to quantise (0 values)");
    size_t bad_count;
    size_t bad = f32_first_nonfinite(w, n, &bad_count);
    if (bad < n)
        return llava_fail(
            "nf4: value %zu of %zu is %s (%zu not finite); bitsandbytes would spread it over the "
            "whole tensor's statistics",
            bad, n, f32_nonfinite_name(w[bad]), bad_count);
    q->n = n;
    q->ndim = 1;
    q->shape[0] = (int64_t)n;
    q->dtype = DT_F32;
    q->n_blocks = (n + NF4_BLOCK - 1) / NF4_BLOCK;
    q->n_stat_blocks = (q->n_blocks + NF4_STAT_BLOCK - 1) / NF4_STAT_BLOCK;
    q->code = nf4_code;
    q->code2 = nf4_dynamic_code;
    q->packed = xcalloc((n + 1) / 2, 1);                     // ((n + 1) / 2)
    q->absmax_q = xmalloc(q->n_blocks);                      // (n_blocks)
    q->absmax2 = xmalloc(q->n_stat_blocks * sizeof(float));  // (n_stat_blocks)
    float *absmax = xmalloc(q->n_blocks * sizeof(float));    // (n_blocks) first-level, before the 8 bits

    for (size_t b = 0; b < q->n_blocks; b++) {
        size_t lo = b * NF4_BLOCK, hi = lo + NF4_BLOCK < n ? lo + NF4_BLOCK : n;
        float m = 0.0f;
        for (size_t i = lo; i < hi; i++) m = fmaxf(m, fabsf(ftz(w[i])));
        absmax[b] = m;
        float scale = reciprocal(m);
        for (size_t i = lo; i < hi; i++) {
            unsigned c = nf4_code_of(ftz(w[i]) * scale);
            q->packed[i / 2] |= (uint8_t)((i % 2 == 0) ? c << 4 : c);
        }
        // The kernel codes the partial block's zero padding too and stores the nibble that shares the
        // last byte with an odd n's last value: 0 * scale is 0 (code 7), or NaN (code 0) when absmax is 0.
        if (hi == n && n % 2 == 1) q->packed[n / 2] |= (uint8_t)nf4_code_of(0.0f * scale);
    }

    // Double quantisation: the statistics less their mean, 8 bits each in blocks of 256.
    q->offset = mean_as_torch_cuda(absmax, q->n_blocks);
    for (size_t s = 0; s < q->n_stat_blocks; s++) {
        size_t lo = s * NF4_STAT_BLOCK, hi = lo + NF4_STAT_BLOCK < q->n_blocks ? lo + NF4_STAT_BLOCK : q->n_blocks;
        float m = 0.0f;
        for (size_t b = lo; b < hi; b++) {
            absmax[b] = ftz(absmax[b] - q->offset);
            m = fmaxf(m, fabsf(absmax[b]));
        }
        q->absmax2[s] = m;
        float scale = reciprocal(m);
        for (size_t b = lo; b < hi; b++)
            q->absmax_q[b] = (uint8_t)dynamic_code_of(nf4_dynamic_code, ftz(absmax[b] * scale));
    }
    free(absmax);
    return 0;
}

void nf4_dequantize(const nf4_tensor *q, float *out) {
    for (size_t b = 0; b < q->n_blocks; b++) {
        // dequantize_blockwise writes code2 * absmax2 as fp32, then torch adds the offset: two roundings,
        // kept in two statements so no compiler fuses them into one.
        float a = ftz(q->code2[q->absmax_q[b]] * q->absmax2[b / NF4_STAT_BLOCK]);
        a = a + q->offset;
        size_t lo = b * NF4_BLOCK, hi = lo + NF4_BLOCK < q->n ? lo + NF4_BLOCK : q->n;
        for (size_t i = lo; i < hi; i++) {
            uint8_t byte = q->packed[i / 2];
            unsigned c = (i % 2 == 0) ? byte >> 4 : byte & 15u;
            out[i] = ftz(q->code[c] * a);
        }
    }
}

int nf4_dequantize_as(const nf4_tensor *q, dtype_t dtype, float *out) {
    if (dtype != DT_F32 && dtype != DT_BF16 && dtype != DT_F16)
        return llava_fail("nf4: dequantisation to %s: bitsandbytes returns F32, BF16 or F16", dtype_name(dtype));
    nf4_dequantize(q, out);
    if (dtype == DT_BF16)
        for (size_t i = 0; i < q->n; i++) out[i] = bf16_to_f32(f32_to_bf16(out[i]));
    else if (dtype == DT_F16)
        for (size_t i = 0; i < q->n; i++) out[i] = f16_to_f32(f32_to_f16(out[i]));
    return 0;
}
