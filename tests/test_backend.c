// Backend contexts (kernels/backend.h, device.h) on the CPU: two contexts live side by side with
// their own byte counts and give the same bits; closing one leaves the other working; describe and
// supports answer; the device verbs are no-ops without a stream. tests/gpu/test_cuda_backend.c
// checks the same of two CUDA contexts on one device.
#include <stdint.h>
#include <string.h>

#include "check.h"
#include "common/util.h"
#include "kernels/backend.h"
#include "kernels/device.h"

// y = x W^T + b on a context, returned on the host (N x O).
static float *linear_on(llava_backend *be, const float *x, const float *w, const float *b, int N, int I, int O) {
    const llava_ops *ops = be->ops;
    void *dx = ops->alloc(be, BUF_ACT, (size_t)N * I), *dw = ops->alloc(be, BUF_PARAM, (size_t)O * I);
    void *db = ops->alloc(be, BUF_PARAM, (size_t)O), *dy = ops->alloc(be, BUF_ACT, (size_t)N * O);
    ops->upload(be, BUF_ACT, dx, x, (size_t)N * I);
    ops->upload(be, BUF_PARAM, dw, w, (size_t)O * I);
    ops->upload(be, BUF_PARAM, db, b, (size_t)O);
    ops->linear_forward(be, dy, dx, dw, db, N, I, O);
    float *y = xmalloc(sizeof(float) * (size_t)N * O);
    ops->download(be, BUF_ACT, y, dy, (size_t)N * O);
    ops->free(be, dx), ops->free(be, dw), ops->free(be, db), ops->free(be, dy);
    return y;
}

static void test_two_contexts(void) {
    llava_backend *a = llava_backend_open("cpu", NULL), *b = llava_backend_open("cpu", NULL);
    CHECK(a && b && a != b, "two CPU contexts");
    const int N = 7, I = 13, O = 5;
    float x[7 * 13], w[5 * 13], bias[5];
    for (int i = 0; i < N * I; i++) x[i] = (float)((i * 37) % 11) * 0.125f - 0.5f;
    for (int i = 0; i < O * I; i++) w[i] = (float)((i * 17) % 7) * 0.25f - 0.75f;
    for (int i = 0; i < O; i++) bias[i] = 0.5f * (float)i;
    // A buffer held by a: b's count does not see it.
    void *held = a->ops->alloc(a, BUF_F32, 1000);
    CHECK_EQ_INT(a->bytes_in_use, 4000);
    CHECK_EQ_INT(b->bytes_in_use, 0);
    float *ya = linear_on(a, x, w, bias, N, I, O), *yb = linear_on(b, x, w, bias, N, I, O);
    CHECK(memcmp(ya, yb, sizeof(float) * (size_t)N * O) == 0, "two contexts give different bits");
    // Peaks: a held 4000 bytes and then the four buffers of linear_on; b only the four.
    uint64_t four = 4u * (uint64_t)(N * I + O * I + O + N * O);
    CHECK_EQ_INT(a->bytes_peak, 4000 + four);
    CHECK_EQ_INT(b->bytes_peak, four);
    CHECK_EQ_INT(b->bytes_in_use, 0);
    llava_backend_reset_peak(b);
    CHECK_EQ_INT(b->bytes_peak, 0);
    a->ops->free(a, held);
    CHECK_EQ_INT(a->bytes_in_use, 0);
    // Closing one leaves the other working.
    llava_backend_close(a);
    float *yb2 = linear_on(b, x, w, bias, N, I, O);
    CHECK(memcmp(yb, yb2, sizeof(float) * (size_t)N * O) == 0, "the second context changed after the first closed");
    free(ya), free(yb), free(yb2);
    llava_backend_close(b);
}

static void test_describe_supports(void) {
    llava_backend *be = test_cpu();
    llava_backend_info info;
    llava_backend_describe(be, &info);
    CHECK_EQ_STR(info.name, "cpu");
    CHECK(strstr(info.device, "OpenBLAS") != NULL, "device \"%s\"", info.device);
    CHECK(info.ordinal == -1 && info.memory_total > 0 && info.memory_free <= info.memory_total, "memory %llu of %llu",
          (unsigned long long)info.memory_free, (unsigned long long)info.memory_total);
    char why[128];
    llava_op_shape attn = {LLAVA_OP_ATTENTION, {100, 8, 2, 80, 3, 0}};
    CHECK(llava_backend_supports(be, &attn, why, sizeof why) == 1, "CPU attention with head dim 80: %s", why);
    llava_op_shape neg = {LLAVA_OP_LINEAR, {-1, 4, 4, 0, 0, 0}};
    CHECK(llava_backend_supports(be, &neg, why, sizeof why) == 0 && strstr(why, "linear"), "negative size: \"%s\"",
          why);
    llava_op_shape bad = {LLAVA_OP_COUNT, {0}};
    CHECK(llava_backend_supports(be, &bad, why, sizeof why) == 0, "an unknown op is not supported");
    CHECK(llava_device_stream(be) == NULL, "the CPU has no stream");
    llava_device_record(be, NULL);  // no-ops
    llava_device_wait(be, NULL);
    CHECK(llava_backend_available("cpu", why, sizeof why) == 1, "cpu is always available");
    CHECK(llava_backend_available("tpu", why, sizeof why) == 0 && strstr(why, "tpu"), "unknown backend: \"%s\"", why);
    CHECK(llava_backend_open("tpu", NULL) == NULL, "opening an unknown backend fails");
    CHECK_ERR_HAS("unknown backend");
#ifndef LLAVA_HAVE_CUDA
    CHECK(llava_backend_open("cuda", NULL) == NULL, "no CUDA backend in this build");
    CHECK_ERR_HAS("no CUDA backend");
#endif
}

int main(void) {
    test_two_contexts();
    test_describe_supports();
    return check_done();
}
