// Element types as safetensors names them, and the float conversions the loaders need.
#ifndef LLAVA_COMMON_DTYPE_H
#define LLAVA_COMMON_DTYPE_H

#include <stddef.h>
#include <stdint.h>

typedef enum {
    DT_INVALID = 0,
    DT_BOOL,
    DT_U8,
    DT_I8,
    DT_I16,
    DT_U16,
    DT_F16,
    DT_BF16,
    DT_I32,
    DT_U32,
    DT_F32,
    DT_F64,
    DT_I64,
    DT_U64,
    DT_C64,
    // fp8 and sub-byte types are recognised (so a file holding them is described, not rejected as
    // corrupt) but never converted.
    DT_F8_E5M2,
    DT_F8_E4M3,
    DT_F8_E8M0,
    DT_F8_E4M3FNUZ,
    DT_F8_E5M2FNUZ,
    DT_F4,
    DT_F6_E2M3,
    DT_F6_E3M2,
    DT_COUNT
} dtype_t;

const char *dtype_name(dtype_t t);
dtype_t dtype_from_name(const char *name);  // DT_INVALID when unknown
unsigned dtype_bits(dtype_t t);             // size of one element in bits
// Position in the safetensors library's Dtype enum; its writer orders tensors by this, descending.
int dtype_rank(dtype_t t);
// True for the types convert_to_f32 / convert_from_f32 handle.
int dtype_is_convertible(dtype_t t);

// IEEE binary16 and bfloat16 <-> binary32. Rounding is to nearest, ties to even, as PyTorch does;
// NaN stays NaN (bf16 quiet NaN 0x7FC0, like torch).
float f16_to_f32(uint16_t h);
uint16_t f32_to_f16(float f);
float bf16_to_f32(uint16_t b);
uint16_t f32_to_bf16(float f);

// The index of the first of x[0, n) that is NaN or infinite, or n when all are finite; *count (may
// be NULL) receives how many are not finite. One pass over the bits when all are (the usual case).
size_t f32_first_nonfinite(const float *x, size_t n, size_t *count);
// "NaN", "inf" or "-inf": how messages name a value that is not finite.
const char *f32_nonfinite_name(float v);

// Converts n elements of type `src_t` (little-endian bytes, any alignment) to fp32.
// Returns -1 for a type that has no float conversion.
int convert_to_f32(dtype_t src_t, const void *src, float *dst, size_t n);
// Converts n fp32 values to `dst_t` (F32, F16, BF16, F64).
int convert_from_f32(dtype_t dst_t, const float *src, void *dst, size_t n);

#endif
