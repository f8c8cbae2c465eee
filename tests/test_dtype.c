// Float conversions checked against the compiler's own _Float16 (IEEE binary16, round to nearest
// even) on every half value and on a sweep of floats, and bf16 against its definition.
#include <stdint.h>
#include <string.h>

#include "check.h"
#include "common/dtype.h"

static uint32_t bits(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

static float from_bits(uint32_t u) {
    float f;
    memcpy(&f, &u, 4);
    return f;
}

int main(void) {
    // Every binary16 value converts to the same fp32 as the compiler's conversion.
    int bad = 0;
    for (uint32_t h = 0; h < 65536; h++) {
        _Float16 ref;
        uint16_t hh = (uint16_t)h;
        memcpy(&ref, &hh, 2);
        float got = f16_to_f32(hh);
        float want = (float)ref;
        if (want != want ? got == got : bits(got) != bits(want)) bad++;
    }
    CHECK(bad == 0, "%d half values convert differently from _Float16", bad);

    // fp32 -> f16 rounding: every 97th float bit pattern (covers normals, subnormals, overflow, ties).
    bad = 0;
    long tested = 0;
    for (uint64_t u = 0; u <= 0xffffffffull; u += 97) {
        float f = from_bits((uint32_t)u);
        _Float16 ref = (_Float16)f;
        uint16_t want;
        memcpy(&want, &ref, 2);
        uint16_t got = f32_to_f16(f);
        int nan = f != f;
        if (nan ? ((got & 0x7c00) != 0x7c00 || (got & 0x3ff) == 0) : got != want) {
            if (bad < 5) fprintf(stderr, "f32 %08x -> f16 %04x, want %04x\n", (uint32_t)u, got, want);
            bad++;
        }
        tested++;
    }
    CHECK(bad == 0, "%d of %ld floats round differently from _Float16", bad, tested);
    // Exact ties: halfway between two halves rounds to the even one.
    CHECK_EQ_INT(f32_to_f16(1.0f + 1.0f / 2048), 0x3c00);      // tie, 1.0 is even
    CHECK_EQ_INT(f32_to_f16(1.0f + 3.0f / 2048), 0x3c02);      // tie, rounds up to even
    CHECK_EQ_INT(f32_to_f16(65504.0f), 0x7bff);                // largest half
    CHECK_EQ_INT(f32_to_f16(65520.0f), 0x7c00);                // rounds to inf
    CHECK_EQ_INT(f32_to_f16(5.9604644775390625e-8f), 0x0001);  // smallest subnormal

    // bf16: the upper half of the fp32 bits after round-to-nearest-even.
    CHECK_EQ_INT(f32_to_bf16(1.0f), 0x3f80);
    CHECK_EQ_INT(f32_to_bf16(from_bits(0x3f808000)), 0x3f80);  // tie to even (down)
    CHECK_EQ_INT(f32_to_bf16(from_bits(0x3f818000)), 0x3f82);  // tie to even (up)
    CHECK_EQ_INT(f32_to_bf16(from_bits(0x3f808001)), 0x3f81);  // above the tie
    CHECK_EQ_INT(f32_to_bf16(from_bits(0x7f7fffff)), 0x7f80);  // max float rounds to inf
    CHECK_EQ_INT(f32_to_bf16(from_bits(0x7fc00001)), 0x7fc0);  // NaN stays NaN
    CHECK(bf16_to_f32(0x4049) == 3.140625f, "bf16 0x4049 = %g", (double)bf16_to_f32(0x4049));
    bad = 0;
    for (uint32_t b = 0; b < 65536; b++) {
        float f = bf16_to_f32((uint16_t)b);
        if (f == f && f32_to_bf16(f) != b) bad++;  // exact values round-trip
    }
    CHECK(bad == 0, "%d bf16 values do not round-trip", bad);

    // Bulk conversion helpers agree with the scalar ones.
    float src[5] = {0.1f, -2.5f, 1e-7f, 70000.0f, 3.0f};
    uint16_t h[5];
    float back[5];
    CHECK(convert_from_f32(DT_F16, src, h, 5) == 0, "F16 bulk");
    CHECK(convert_to_f32(DT_F16, h, back, 5) == 0, "F16 bulk back");
    for (int i = 0; i < 5; i++) CHECK(back[i] == f16_to_f32(f32_to_f16(src[i])), "bulk f16 %d", i);
    CHECK(convert_to_f32(DT_F8_E4M3, h, back, 1) != 0, "fp8 is recognised but not converted");
    int64_t i64[3] = {-3, 0, 1 << 20};
    CHECK(convert_to_f32(DT_I64, i64, back, 3) == 0 && back[0] == -3.0f && back[2] == 1048576.0f, "I64");
    CHECK_EQ_INT(dtype_from_name("BF16"), DT_BF16);
    CHECK_EQ_INT(dtype_from_name("bf16"), DT_INVALID);
    CHECK_EQ_INT(dtype_bits(DT_F4), 4);
    return check_done();
}
