#include "dtype.h"

#include <math.h>
#include <string.h>

static const struct {
    const char *name;
    unsigned bits;
} DTYPES[DT_COUNT] = {
    [DT_INVALID] = {"INVALID", 0},
    [DT_BOOL] = {"BOOL", 8},
    [DT_U8] = {"U8", 8},
    [DT_I8] = {"I8", 8},
    [DT_I16] = {"I16", 16},
    [DT_U16] = {"U16", 16},
    [DT_F16] = {"F16", 16},
    [DT_BF16] = {"BF16", 16},
    [DT_I32] = {"I32", 32},
    [DT_U32] = {"U32", 32},
    [DT_F32] = {"F32", 32},
    [DT_F64] = {"F64", 64},
    [DT_I64] = {"I64", 64},
    [DT_U64] = {"U64", 64},
    [DT_C64] = {"C64", 64},
    [DT_F8_E5M2] = {"F8_E5M2", 8},
    [DT_F8_E4M3] = {"F8_E4M3", 8},
    [DT_F8_E8M0] = {"F8_E8M0", 8},
    [DT_F8_E4M3FNUZ] = {"F8_E4M3FNUZ", 8},
    [DT_F8_E5M2FNUZ] = {"F8_E5M2FNUZ", 8},
    [DT_F4] = {"F4", 4},
    [DT_F6_E2M3] = {"F6_E2M3", 6},
    [DT_F6_E3M2] = {"F6_E3M2", 6},
};

const char *dtype_name(dtype_t t) { return (t > DT_INVALID && t < DT_COUNT) ? DTYPES[t].name : "INVALID"; }

dtype_t dtype_from_name(const char *name) {
    for (int t = 1; t < DT_COUNT; t++)
        if (strcmp(DTYPES[t].name, name) == 0) return (dtype_t)t;
    return DT_INVALID;
}

unsigned dtype_bits(dtype_t t) { return (t > DT_INVALID && t < DT_COUNT) ? DTYPES[t].bits : 0; }

int dtype_rank(dtype_t t) {
    static const dtype_t order[] = {DT_BOOL,    DT_F4,      DT_F6_E2M3, DT_F6_E3M2,     DT_U8,          DT_I8,
                                    DT_F8_E5M2, DT_F8_E4M3, DT_F8_E8M0, DT_F8_E4M3FNUZ, DT_F8_E5M2FNUZ, DT_I16,
                                    DT_U16,     DT_F16,     DT_BF16,    DT_I32,         DT_U32,         DT_F32,
                                    DT_C64,     DT_F64,     DT_I64,     DT_U64};
    for (int i = 0; i < (int)(sizeof order / sizeof order[0]); i++)
        if (order[i] == t) return i;
    return -1;
}

int dtype_is_convertible(dtype_t t) {
    switch (t) {
    case DT_F32:
    case DT_F16:
    case DT_BF16:
    case DT_F64:
    case DT_U8:
    case DT_I8:
    case DT_I16:
    case DT_U16:
    case DT_I32:
    case DT_U32:
    case DT_I64:
    case DT_U64:
    case DT_BOOL: return 1;
    default: return 0;
    }
}

static uint32_t f32_bits(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

static float bits_f32(uint32_t u) {
    float f;
    memcpy(&f, &u, 4);
    return f;
}

float bf16_to_f32(uint16_t b) { return bits_f32((uint32_t)b << 16); }

uint16_t f32_to_bf16(float f) {
    uint32_t u = f32_bits(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return 0x7fc0;  // NaN
    u += 0x7fffu + ((u >> 16) & 1u);                     // round to nearest even
    return (uint16_t)(u >> 16);
}

float f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1fu;
    uint32_t man = h & 0x3ffu;
    if (exp == 0) {
        if (man == 0) return bits_f32(sign);
        // subnormal: value = man * 2^-24
        float v = (float)man * 5.9604644775390625e-8f;
        return sign ? -v : v;
    }
    if (exp == 31) return bits_f32(sign | 0x7f800000u | (man << 13));
    return bits_f32(sign | ((exp + 112u) << 23) | (man << 13));
}

uint16_t f32_to_f16(float f) {
    uint32_t u = f32_bits(f);
    uint16_t sign = (uint16_t)((u >> 16) & 0x8000u);
    uint32_t a = u & 0x7fffffffu;
    if (a > 0x7f800000u) return sign | 0x7e00u;   // NaN
    if (a >= 0x477ff000u) return sign | 0x7c00u;  // rounds to >= 65520: inf
    if (a < 0x38800000u) {
        // Result is subnormal or zero: value / 2^-24, rounded to nearest even.
        if (a < 0x33000000u) return sign;  // below half the smallest subnormal (ties handled below)
        uint32_t man = (a & 0x7fffffu) | 0x800000u;
        int shift = 126 - (int)(a >> 23);  // exponent e: value = man * 2^(e-150); want man >> (150-e-24+... )
        // value in units of 2^-24 = man * 2^(e - 127 - 23 + 24) = man >> (126 - e)
        uint32_t q = man >> shift;
        uint32_t rem = man & ((1u << shift) - 1u);
        uint32_t half = 1u << (shift - 1);
        if (rem > half || (rem == half && (q & 1u))) q++;
        return sign | (uint16_t)q;
    }
    uint32_t e = (a >> 23) - 112u;
    uint32_t m = a & 0x7fffffu;
    uint32_t h = (e << 10) | (m >> 13);
    uint32_t rem = m & 0x1fffu;
    if (rem > 0x1000u || (rem == 0x1000u && (h & 1u))) h++;  // carry may bump the exponent: correct
    return sign | (uint16_t)h;
}

size_t f32_first_nonfinite(const float *x, size_t n, size_t *count) {
    // An exponent of all ones is NaN or infinity. The OR over the bits vectorises; the second pass
    // runs only when something was found.
    uint32_t any = 0;
    for (size_t i = 0; i < n; i++) {
        uint32_t u;
        memcpy(&u, &x[i], 4);
        any |= (u & 0x7f800000u) == 0x7f800000u;
    }
    size_t first = n, k = 0;
    if (any)
        for (size_t i = 0; i < n; i++)
            if (!isfinite(x[i])) {
                if (first == n) first = i;
                k++;
            }
    if (count) *count = k;
    return first;
}

const char *f32_nonfinite_name(float v) { return isnan(v) ? "NaN" : v > 0 ? "inf" : "-inf"; }

int convert_to_f32(dtype_t t, const void *src, float *dst, size_t n) {
    const uint8_t *s = src;
    switch (t) {
    case DT_F32: memcpy(dst, s, n * 4); return 0;
    case DT_F16:
        for (size_t i = 0; i < n; i++) dst[i] = f16_to_f32((uint16_t)(s[2 * i] | (s[2 * i + 1] << 8)));
        return 0;
    case DT_BF16:
        for (size_t i = 0; i < n; i++) dst[i] = bf16_to_f32((uint16_t)(s[2 * i] | (s[2 * i + 1] << 8)));
        return 0;
    case DT_F64:
        for (size_t i = 0; i < n; i++) {
            double d;
            memcpy(&d, s + 8 * i, 8);
            dst[i] = (float)d;
        }
        return 0;
#define INT_CASE(T, CT)                                                                                                \
    case T:                                                                                                            \
        for (size_t i = 0; i < n; i++) {                                                                               \
            CT v;                                                                                                      \
            memcpy(&v, s + sizeof(CT) * i, sizeof(CT));                                                                \
            dst[i] = (float)v;                                                                                         \
        }                                                                                                              \
        return 0;
        INT_CASE(DT_U8, uint8_t)
        INT_CASE(DT_BOOL, uint8_t)
        INT_CASE(DT_I8, int8_t)
        INT_CASE(DT_I16, int16_t)
        INT_CASE(DT_U16, uint16_t)
        INT_CASE(DT_I32, int32_t)
        INT_CASE(DT_U32, uint32_t)
        INT_CASE(DT_I64, int64_t)
        INT_CASE(DT_U64, uint64_t)
#undef INT_CASE
    default: return -1;
    }
}

int convert_from_f32(dtype_t t, const float *src, void *dst, size_t n) {
    uint8_t *d = dst;
    switch (t) {
    case DT_F32: memcpy(d, src, n * 4); return 0;
    case DT_F16:
        for (size_t i = 0; i < n; i++) {
            uint16_t h = f32_to_f16(src[i]);
            d[2 * i] = (uint8_t)h;
            d[2 * i + 1] = (uint8_t)(h >> 8);
        }
        return 0;
    case DT_BF16:
        for (size_t i = 0; i < n; i++) {
            uint16_t h = f32_to_bf16(src[i]);
            d[2 * i] = (uint8_t)h;
            d[2 * i + 1] = (uint8_t)(h >> 8);
        }
        return 0;
    case DT_F64:
        for (size_t i = 0; i < n; i++) {
            double v = src[i];
            memcpy(d + 8 * i, &v, 8);
        }
        return 0;
    default: return -1;
    }
}
