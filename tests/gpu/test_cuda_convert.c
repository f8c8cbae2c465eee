// The device's fp32 -> bf16 rounding (every PARAM and ACT upload) agrees bit for bit with the CPU
// reference (round to nearest even, common/dtype.c) on random values of every magnitude and on the
// special values, and the way back widens exactly: download(upload(x)) is bf16_to_f32(f32_to_bf16(x)).
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../check.h"
#include "common/dtype.h"
#include "common/util.h"
#include "kernels/backend.h"

int main(void) {
    llava_backend *be = test_cuda();
    const llava_ops *ops = be->ops;
    const size_t n = 1000003;  // odd, not a multiple of any block size
    float *src = xmalloc(n * sizeof(float));
    float *back = xmalloc(n * sizeof(float));
    uint64_t s = 0x9e3779b97f4a7c15ull;
    for (size_t i = 0; i < n; i++) {
        s ^= s << 13, s ^= s >> 7, s ^= s << 17;
        uint32_t u = (uint32_t)(s >> 32);
        if ((u & 0x7f800000u) == 0x7f800000u) u &= 0xbfffffffu;  // keep NaN/inf for the fixed cases below
        memcpy(&src[i], &u, 4);
    }
    float specials[] = {0.0f, -0.0f, 1.0f, -1.0f, 1e-45f, 3.4028235e38f, INFINITY, -INFINITY};
    memcpy(src, specials, sizeof specials);
    int kinds[2] = {BUF_PARAM, BUF_ACT};
    for (int k = 0; k < 2; k++) {
        void *dev = ops->alloc(be, kinds[k], n);
        ops->upload(be, kinds[k], dev, src, n);
        ops->download(be, kinds[k], back, dev, n);
        size_t bad = 0;
        for (size_t i = 0; i < n; i++) {
            float want = bf16_to_f32(f32_to_bf16(src[i]));
            bad += memcmp(&back[i], &want, 4) != 0;
        }
        CHECK(bad == 0, "%s: %zu of %zu values differ from the CPU's rounding", k ? "ACT" : "PARAM", bad, n);
        ops->free(be, dev);
    }
    free(src);
    free(back);
    llava_backend_close(be);
    return check_done();
}
