// The device's fp32 <-> bf16 conversion agrees bit for bit with the CPU reference
// (round to nearest even) on random values of every magnitude and on the special values.
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../common/dtype.h"
#include "../../common/util.h"
#include "../../kernels/cuda/cuda.h"
#include "../check.h"

int main(void) {
    if (llava_cuda_device_count() == 0) {
        printf("skipped: %s\n", llava_cuda_describe());
        return 77;
    }
    printf("device: %s\n", llava_cuda_describe());
    const size_t n = 1000003;  // odd, not a multiple of any block size
    float *src = xmalloc(n * sizeof(float));
    uint16_t *dev = xmalloc(n * sizeof(uint16_t));
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
    CHECK(llava_cuda_f32_to_bf16(src, dev, n) == 0, "%s", llava_errmsg());
    size_t bad = 0;
    for (size_t i = 0; i < n; i++) bad += dev[i] != f32_to_bf16(src[i]);
    CHECK(bad == 0, "%zu of %zu values differ from the CPU rounding", bad, n);
    CHECK(llava_cuda_bf16_to_f32(dev, back, n) == 0, "%s", llava_errmsg());
    bad = 0;
    for (size_t i = 0; i < n; i++) bad += back[i] != bf16_to_f32(dev[i]);
    CHECK(bad == 0, "%zu widened values differ", bad);
    free(src);
    free(dev);
    free(back);
    return check_done();
}
