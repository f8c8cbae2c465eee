// Two CUDA contexts on one device (kernels/backend.h): each with its own stream, allocator, GEMM
// plans and byte count; the same GEMM on both gives the same bits (and the CPU's within bf16); one
// closed, the other still works. Also describe (name, memory, the nominal peak of an H100/H200 or
// A100) and supports (the kernels' limits).
#include <math.h>
#include <string.h>

#include "../check.h"
#include "common/util.h"
#include "kernels/backend.h"
#include "kernels/device.h"

static float *linear_on(llava_backend *be, const float *x, const float *w, int N, int I, int O) {
    const llava_ops *ops = be->ops;
    void *dx = ops->alloc(be, BUF_ACT, (size_t)N * I), *dw = ops->alloc(be, BUF_PARAM, (size_t)O * I);
    void *dy = ops->alloc(be, BUF_ACT, (size_t)N * O);
    ops->upload(be, BUF_ACT, dx, x, (size_t)N * I);
    ops->upload(be, BUF_PARAM, dw, w, (size_t)O * I);
    ops->linear_forward(be, dy, dx, dw, NULL, N, I, O);
    float *y = xmalloc(sizeof(float) * (size_t)N * O);
    ops->download(be, BUF_ACT, y, dy, (size_t)N * O);
    ops->free(be, dx), ops->free(be, dw), ops->free(be, dy);
    return y;
}

int main(void) {
    llava_backend *a = test_cuda();
    llava_backend *b = llava_backend_open("cuda", NULL);
    CHECK(b != NULL && b != a, "a second CUDA context: %s", llava_errmsg());
    if (!b) return check_done();
    CHECK(llava_device_stream(a) != NULL && llava_device_stream(a) != llava_device_stream(b),
          "each context its own stream");
    const int N = 64, I = 96, O = 80;
    float *x = xmalloc(sizeof(float) * N * I), *w = xmalloc(sizeof(float) * O * I);
    for (int i = 0; i < N * I; i++) x[i] = (float)((i * 37) % 23) / 23.0f - 0.5f;
    for (int i = 0; i < O * I; i++) w[i] = (float)((i * 17) % 19) / 19.0f - 0.5f;
    void *held = a->ops->alloc(a, BUF_F32, 1 << 20);
    CHECK(a->bytes_in_use >= 4u << 20 && b->bytes_in_use == 0, "byte counts: a %llu, b %llu",
          (unsigned long long)a->bytes_in_use, (unsigned long long)b->bytes_in_use);
    float *ya = linear_on(a, x, w, N, I, O), *yb = linear_on(b, x, w, N, I, O);
    CHECK(memcmp(ya, yb, sizeof(float) * N * O) == 0, "the same GEMM on two contexts differs");
    float *yc = linear_on(test_cpu(), x, w, N, I, O);
    double num = 0, den = 0;
    for (int i = 0; i < N * O; i++) num += (ya[i] - yc[i]) * (ya[i] - yc[i]), den += yc[i] * yc[i];
    CHECK(sqrt(num / den) <= 1e-2, "GPU vs CPU %.3g (bf16 inputs and output)", sqrt(num / den));
    a->ops->free(a, held);
    llava_backend_close(b);
    float *ya2 = linear_on(a, x, w, N, I, O);
    CHECK(memcmp(ya, ya2, sizeof(float) * N * O) == 0, "the first context changed after the second closed");

    llava_backend_info info;
    llava_backend_describe(a, &info);
    CHECK_EQ_STR(info.name, "cuda");
    CHECK(info.ordinal >= 0 && info.memory_total > ((uint64_t)1 << 30) && info.memory_free <= info.memory_total,
          "memory %llu of %llu", (unsigned long long)info.memory_free, (unsigned long long)info.memory_total);
    if (strstr(info.device, "sm_90")) CHECK(info.peak_bf16_tflops == 989.4, "H100/H200 peak %g", info.peak_bf16_tflops);
    if (strstr(info.device, "sm_80")) CHECK(info.peak_bf16_tflops == 312.0, "A100 peak %g", info.peak_bf16_tflops);
    printf("device %s: %.1f of %.1f GiB free, peak %.1f TFLOP/s bf16, %.0f GB/s\n", info.device,
           (double)info.memory_free / (1 << 30), (double)info.memory_total / (1 << 30), info.peak_bf16_tflops,
           info.peak_bandwidth_gbs);
    char why[128];
    llava_op_shape ok = {LLAVA_OP_ATTENTION, {2048, 32, 32, 128, 1, 0}},
                   big = {LLAVA_OP_ATTENTION, {16, 4, 4, 320, 1, 0}};
    llava_op_shape gqa = {LLAVA_OP_ATTENTION, {16, 6, 4, 64, 1, 0}}, adam = {LLAVA_OP_ADAMW, {100, 0}};
    CHECK(llava_backend_supports(a, &ok, why, sizeof why) == 1, "LLaVA-7B attention: %s", why);
    CHECK(llava_backend_supports(a, &big, why, sizeof why) == 0 && strstr(why, "head dim"), "head dim 320: \"%s\"",
          why);
    CHECK(llava_backend_supports(a, &gqa, why, sizeof why) == 0, "6 query heads over 4 key/value heads");
    CHECK(llava_backend_supports(a, &adam, why, sizeof why) == 0 && strstr(why, "master"), "AdamW without masters");
    // attention_decode: T, Hq, Hkv, D, context, block_size. Any block size and head dims to 256 run
    // (the split kernel or the per-row one).
    llava_op_shape dec = {LLAVA_OP_ATTENTION_DECODE, {64, 32, 32, 128, 4096, 16}},
                   dec_odd = {LLAVA_OP_ATTENTION_DECODE, {3, 4, 2, 80, 100, 8}},
                   dec_big = {LLAVA_OP_ATTENTION_DECODE, {1, 4, 4, 320, 100, 16}},
                   dec_gqa = {LLAVA_OP_ATTENTION_DECODE, {1, 6, 4, 64, 100, 16}};
    CHECK(llava_backend_supports(a, &dec, why, sizeof why) == 1, "LLaVA-7B decode: %s", why);
    CHECK(llava_backend_supports(a, &dec_odd, why, sizeof why) == 1, "decode, head dim 80, blocks of 8: %s", why);
    CHECK(llava_backend_supports(a, &dec_big, why, sizeof why) == 0 && strstr(why, "head dim"),
          "decode, head dim 320: \"%s\"", why);
    CHECK(llava_backend_supports(a, &dec_gqa, why, sizeof why) == 0, "decode, 6 query heads over 4 key/value heads");
    free(x), free(w), free(ya), free(yb), free(yc), free(ya2);
    return check_done();
}
