// Every op checks its preconditions on every build (kernels/op_require.h, LLAVA_REQUIRE): a call
// that breaks one stops the program (abort) with the op's name, the backend and what is wrong on
// stderr, before the op reads or writes anything. Each violation below runs in a forked child whose
// stderr goes to a pipe; the parent checks that the child died of SIGABRT and that the message names
// the op and the broken value. A valid call in a child (the control) exits normally, so the harness
// itself is checked. The CUDA backend calls the same checks; where a device is present one violation
// runs on it too (the child opens the device itself: a CUDA context does not survive a fork).
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"
#include "common/util.h"
#include "kernels/backend.h"

// Host buffers large enough for every call below (the CPU backend's buffers are host memory).
static float A[4096], B[4096], C[4096], D[4096];
static int32_t IDS[64];

typedef struct {
    const char *name;
    const char *backend;  // "cpu" or "cuda"
    void (*call)(llava_backend *be);
    const char *want[2];  // substrings the message must hold (the op and the value), NULL for the control
} violation;

static void v_control(llava_backend *be) { be->ops->linear_forward(be, A, B, C, NULL, 4, 8, 8); }
static void v_linear_negative(llava_backend *be) { be->ops->linear_forward(be, A, B, C, NULL, -1, 8, 8); }
static void v_linear_weight_null(llava_backend *be) { be->ops->linear_backward_weight(be, NULL, A, B, 4, 8, 8); }
static void v_patch_zero(llava_backend *be) { be->ops->patch_unfold(be, A, B, 1, 3, 14, 14, 0); }
static void v_clip_negative(llava_backend *be) { be->ops->clip_embed(be, A, B, C, D, -2, 4, 8); }
static void v_layernorm_no_features(llava_backend *be) {
    be->ops->layernorm_forward(be, A, B, C, D, A, B, 3, 0, 1e-5f);
}
static void v_rmsnorm_null(llava_backend *be) { be->ops->rmsnorm_backward(be, A, NULL, NULL, B, C, D, 3, 8); }
static void v_silu_null(llava_backend *be) { be->ops->silu_mul_forward(be, A, B, NULL, 16); }
static void v_rope_odd(llava_backend *be) { be->ops->rope_forward(be, A, IDS, 4, 2, 63, 10000.0f, NULL); }
static void v_attention_heads(llava_backend *be) {
    static const int32_t cu[2] = {0, 4};
    be->ops->attention_forward(be, A, B, C, D, A, cu, 1, 4, 3, 2, 8, 0.3f, 1, 0);
}
static void v_attention_cu(llava_backend *be) {
    static const int32_t cu[3] = {0, 6, 4};  // decreasing: sequence 1 would run backwards
    be->ops->attention_backward(be, A, B, C, D, A, B, C, D, A, cu, 2, 6, 2, 2, 8, 0.3f, 0, 0);
}
// attention_decode over a cache of 4 blocks of 16 rows, 2 sequences of up to 2 blocks, one query
// (T = 1, Hq = Hkv = 2, D = 8): the table's second entry of sequence 0 is `blk1`.
static void decode_call(llava_backend *be, int32_t sq, int32_t ps, int32_t blk1, int Hq) {
    int32_t table[4] = {2, blk1, 0, 1}, seq[1] = {sq}, pos[1] = {ps};
    be->ops->attention_decode(be, A, B, C, D, table, seq, pos, 1, 2, 2, 16, 4, Hq, 2, 8, 0.3f, 0);
}
static void v_decode_control(llava_backend *be) { decode_call(be, 0, 31, 3, 2); }
static void v_decode_seq(llava_backend *be) { decode_call(be, 2, 5, 3, 2); }
static void v_decode_pos(llava_backend *be) { decode_call(be, 1, 32, 3, 2); }
static void v_decode_block(llava_backend *be) { decode_call(be, 0, 16, 4, 2); }
static void v_decode_heads(llava_backend *be) { decode_call(be, 0, 3, 3, 3); }
static void v_embedding_negative(llava_backend *be) { be->ops->embedding_forward(be, A, IDS, B, -5, 8, 16); }
static void v_gather_negative_row(llava_backend *be) {
    static const int32_t idx[3] = {2, -1, 0};
    be->ops->gather_rows(be, A, B, idx, 3, 8);
}
static void v_cross_entropy_no_classes(llava_backend *be) { be->ops->cross_entropy(be, A, NULL, B, IDS, 2, 0, 1.0f); }
static void v_adamw_step0(llava_backend *be) {
    be->ops->adamw(be, A, NULL, B, C, D, 16, 1e-3, 0.9, 0.999, 1e-8, 0.0, 0, 1.0f);
}
static void v_upload_kind(llava_backend *be) { be->ops->upload(be, 9, A, B, 16); }
// grid_pool over 2 images of 5 x 5 x 8.
static void v_pool_control(llava_backend *be) { be->ops->grid_pool(be, A, B, 2, 5, 8, LLAVA_POOL_BILINEAR, 2); }
static void v_pool_mode(llava_backend *be) { be->ops->grid_pool(be, A, B, 2, 5, 8, 4, 2); }
static void v_pool_stride0(llava_backend *be) { be->ops->grid_pool(be, A, B, 2, 5, 8, LLAVA_POOL_AVERAGE, 0); }
static void v_pool_stride_past(llava_backend *be) { be->ops->grid_pool(be, A, B, 2, 5, 8, LLAVA_POOL_MAX, 6); }
static void v_pool_negative(llava_backend *be) { be->ops->grid_pool(be, A, B, 2, -5, 8, LLAVA_POOL_MAX, 2); }
// resize_bilinear over one 5 x 8 grid of 8 channels (an empty image to an empty one is fine).
static void v_resize_control(llava_backend *be) {
    be->ops->resize_bilinear(be, A, B, 5, 8, 3, 4, 8);
    be->ops->resize_bilinear_backward(be, A, B, 5, 8, 3, 4, 8);
    be->ops->resize_bilinear(be, A, B, 0, 8, 0, 0, 8);
}
static void v_resize_to_empty(llava_backend *be) { be->ops->resize_bilinear(be, A, B, 5, 8, 0, 3, 8); }
static void v_resize_bwd_negative(llava_backend *be) { be->ops->resize_bilinear_backward(be, A, B, 5, 8, 3, -1, 8); }
// grid_pool_backward over the same grids: `in` may be NULL except for max, which reads it.
static void v_pool_bwd_control(llava_backend *be) {
    be->ops->grid_pool_backward(be, A, B, NULL, 2, 5, 8, LLAVA_POOL_BILINEAR, 2);
    be->ops->grid_pool_backward(be, A, B, NULL, 2, 5, 8, LLAVA_POOL_AVERAGE, 2);
    be->ops->grid_pool_backward(be, A, B, C, 2, 5, 8, LLAVA_POOL_MAX, 2);
}
static void v_pool_bwd_max_no_in(llava_backend *be) {
    be->ops->grid_pool_backward(be, A, B, NULL, 2, 5, 8, LLAVA_POOL_MAX, 2);
}
static void v_pool_bwd_stride_past(llava_backend *be) {
    be->ops->grid_pool_backward(be, A, B, C, 2, 5, 8, LLAVA_POOL_AVERAGE, 6);
}

static const violation CASES[] = {
    {"control: a valid linear_forward", "cpu", v_control, {NULL, NULL}},
    {"linear_forward with N = -1", "cpu", v_linear_negative, {"linear_forward (cpu backend)", "N = -1 is negative"}},
    {"linear_backward_weight with dW NULL", "cpu", v_linear_weight_null, {"linear_backward_weight", "dW is NULL"}},
    {"patch_unfold with P = 0", "cpu", v_patch_zero, {"patch_unfold", "P = 0"}},
    {"clip_embed with B = -2", "cpu", v_clip_negative, {"clip_embed", "B = -2 is negative"}},
    {"layernorm_forward over 0 features", "cpu", v_layernorm_no_features, {"layernorm_forward", "C = 0"}},
    {"rmsnorm_backward with dout NULL", "cpu", v_rmsnorm_null, {"rmsnorm_backward", "dout is NULL"}},
    {"silu_mul_forward with up NULL", "cpu", v_silu_null, {"silu_mul_forward", "up is NULL"}},
    {"rope_forward with D = 63", "cpu", v_rope_odd, {"rope_forward", "D = 63"}},
    {"attention_forward with Hq = 3, Hkv = 2", "cpu", v_attention_heads, {"attention_forward", "Hkv = 2"}},
    {"attention_backward with decreasing cu_seqlens",
     "cpu",
     v_attention_cu,
     {"attention_backward", "cu_seqlens[2] = 4"}},
    {"control: a valid attention_decode", "cpu", v_decode_control, {NULL, NULL}},
    {"attention_decode with sequence 2 of 2", "cpu", v_decode_seq, {"attention_decode (cpu backend)", "sequence 2"}},
    {"attention_decode at position 32 of 2 x 16",
     "cpu",
     v_decode_pos,
     {"attention_decode", "position 32 outside the 2 blocks of 16"}},
    {"attention_decode with block 4 of 4", "cpu", v_decode_block, {"attention_decode", "block 1 of sequence 0 is 4"}},
    {"attention_decode with Hq = 3, Hkv = 2", "cpu", v_decode_heads, {"attention_decode", "Hkv = 2"}},
    {"embedding_forward with T = -5", "cpu", v_embedding_negative, {"embedding_forward", "T = -5"}},
    {"gather_rows with row -1", "cpu", v_gather_negative_row, {"gather_rows", "idx[1] = -1"}},
    {"cross_entropy over 0 classes", "cpu", v_cross_entropy_no_classes, {"cross_entropy", "V = 0"}},
    {"adamw at step 0", "cpu", v_adamw_step0, {"adamw", "step = 0"}},
    {"upload of kind 9", "cpu", v_upload_kind, {"upload", "kind 9"}},
    {"control: a valid grid_pool", "cpu", v_pool_control, {NULL, NULL}},
    {"control: valid resize_bilinear calls", "cpu", v_resize_control, {NULL, NULL}},
    {"resize_bilinear of a 5x8 grid to 0x3", "cpu", v_resize_to_empty, {"resize_bilinear (cpu backend)", "5x8 -> 0x3"}},
    {"resize_bilinear_backward with OW = -1",
     "cpu",
     v_resize_bwd_negative,
     {"resize_bilinear_backward", "OW = -1 is negative"}},
    {"grid_pool in mode 4", "cpu", v_pool_mode, {"grid_pool (cpu backend)", "mode 4 is not"}},
    {"grid_pool with stride 0", "cpu", v_pool_stride0, {"grid_pool", "stride 0 is outside 1..G (5)"}},
    {"grid_pool with stride 6 over G = 5", "cpu", v_pool_stride_past, {"grid_pool", "stride 6 is outside 1..G (5)"}},
    {"grid_pool with G = -5", "cpu", v_pool_negative, {"grid_pool", "G = -5 is negative"}},
    {"control: valid grid_pool_backward calls", "cpu", v_pool_bwd_control, {NULL, NULL}},
    {"grid_pool_backward max with in NULL",
     "cpu",
     v_pool_bwd_max_no_in,
     {"grid_pool_backward (cpu backend)", "in is NULL"}},
    {"grid_pool_backward with stride 6 over G = 5",
     "cpu",
     v_pool_bwd_stride_past,
     {"grid_pool_backward", "stride 6 is outside 1..G (5)"}},
    {"linear_forward with N = -1 on the GPU", "cuda", v_linear_negative, {"linear_forward (cuda backend)", "N = -1"}},
    {"attention_decode with Hq = 3, Hkv = 2 on the GPU",
     "cuda",
     v_decode_heads,
     {"attention_decode (cuda backend)", "Hkv = 2"}},
    {"grid_pool in mode 4 on the GPU", "cuda", v_pool_mode, {"grid_pool (cuda backend)", "mode 4 is not"}},
    {"grid_pool_backward max with in NULL on the GPU",
     "cuda",
     v_pool_bwd_max_no_in,
     {"grid_pool_backward (cuda backend)", "in is NULL"}},
};

// Runs v in a child; its stderr into err. Returns the wait status, or -1 when the child could not run.
static int run_child(const violation *v, char *err, size_t cap) {
    int fds[2];
    if (pipe(fds) != 0) return -1;
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid < 0) return -1;
    if (pid == 0) {
        struct rlimit none = {0, 0};
        setrlimit(RLIMIT_CORE, &none);  // an abort is the expected end here, not a crash to keep
        close(fds[0]);
        dup2(fds[1], 2);
        if (strcmp(v->backend, "cuda") == 0) {
            char why[256];
            if (!llava_backend_available("cuda", why, sizeof why)) _exit(77);
        }
        llava_backend *be = llava_backend_open(v->backend, NULL);
        if (!be) _exit(78);
        v->call(be);
        llava_backend_close(be);
        _exit(0);
    }
    close(fds[1]);
    size_t len = 0;
    ssize_t got;
    char rest[256];
    while (len < cap - 1 && (got = read(fds[0], err + len, cap - 1 - len)) > 0) len += (size_t)got;
    while (read(fds[0], rest, sizeof rest) > 0) continue;  // the child must never block on a full pipe
    err[len] = 0;
    close(fds[0]);
    int status = 0;
    if (waitpid(pid, &status, 0) != pid) return -1;
    return status;
}

// `test_op_preconditions` runs the CPU backend's cases (label cpu); `test_op_preconditions cuda` the
// CUDA backend's (registered as gpu_test_op_preconditions, label gpu: skipped, 77, without a device).
int main(int argc, char **argv) {
    const char *backend = argc > 1 ? argv[1] : "cpu";
    char why[256];
    if (strcmp(backend, "cuda") == 0 && !llava_backend_available("cuda", why, sizeof why)) {
        printf("skipped: %s\n", why);
        return 77;
    }
    int stopped = 0;
    for (size_t i = 0; i < sizeof CASES / sizeof CASES[0]; i++) {
        const violation *v = &CASES[i];
        if (strcmp(v->backend, backend) != 0) continue;
        char err[4096];
        int status = run_child(v, err, sizeof err);
        CHECK(status != -1, "%s: the child did not run", v->name);
        if (status == -1) continue;
        if (WIFEXITED(status) && WEXITSTATUS(status) == 77) {
            printf("  %-48s skipped (no CUDA device)\n", v->name);
            continue;
        }
        char *nl = strchr(err, '\n');
        if (nl) *nl = 0;
        if (!v->want[0]) {
            CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "%s: the child did not exit normally (status %d): %s",
                  v->name, status, err);
            CHECK(err[0] == 0, "%s: unexpected message \"%s\"", v->name, err);
            printf("  %-48s returned normally\n", v->name);
            continue;
        }
        int aborted = WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT;
        CHECK(aborted, "%s: the child was not stopped by abort (status %d)", v->name, status);
        for (int k = 0; k < 2; k++)
            CHECK(strstr(err, v->want[k]) != NULL, "%s: the message \"%s\" lacks \"%s\"", v->name, err, v->want[k]);
        printf("  %-48s %s\n", v->name, err);
        stopped += aborted;
    }
    printf("%d violations on %s, each stopped by abort naming the op and the value\n", stopped, backend);
    return check_done();
}
