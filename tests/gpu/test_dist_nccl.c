// The NCCL backend of train/dist.h on one GPU, bootstrapped the torchrun way (RANK=0,
// WORLD_SIZE=1, MASTER_ADDR/MASTER_PORT): every collective on device buffers gives what one rank
// must (the sums over one rank are the inputs), and three training steps of the tiny golden model
// through the NCCL group with ZeRO-0, 1 and 2 (gradients through ncclAllReduce or ncclReduceScatter
// issued from inside the backward on the NCCL stream, parameters through ncclAllGather) end with the
// same parameters, bit for bit, as the one-process path; ZeRO-2 with the LM's gradients in
// per-layer slots reused after their reduce-scatter (ordered by events on the compute stream);
// ZeRO-3 with the LM's and projector's parameters gathered a segment at a time on the NCCL stream;
// and the optimizer offloaded to the host (one process, ZeRO-2 and ZeRO-3).
// Skipped (77) without a GPU or without NCCL in the build.
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "../check.h"
#include "../free_port.h"
#include "common/util.h"
#include "kernels/ops.h"
#include "model/batch_hf.h"
#include "model/llava.h"
#include "train/dist/dist.h"
#include "train/optim.h"

#ifdef LLAVA_HAVE_NCCL
static void test_collectives(dist *d, llava_backend *be) {
    const llava_ops *ops = be->ops;
    const size_t n = 1001;
    float *x = xmalloc(sizeof(float) * n), *y = xmalloc(sizeof(float) * n);
    for (size_t i = 0; i < n; i++) x[i] = 0.5f * (float)i - 7.0f;
    float *g = ops->alloc(be, BUF_GRAD, n), *o = ops->alloc(be, BUF_GRAD, n);
    ops->upload(be, BUF_GRAD, g, x, n);
    dist_allreduce_f32(d, g, n, "test all-reduce");
    ops->download(be, BUF_GRAD, y, g, n);
    CHECK(memcmp(x, y, sizeof(float) * n) == 0, "all-reduce over one GPU changed the data");
    dist_reduce_scatter_f32(d, g, n, o, "test reduce-scatter");
    ops->download(be, BUF_GRAD, y, o, n);
    CHECK(memcmp(x, y, sizeof(float) * n) == 0, "reduce-scatter over one GPU: not the whole buffer");
    dist_allgather(d, g, n, sizeof(float), "test all-gather");
    ops->download(be, BUF_GRAD, y, g, n);
    CHECK(memcmp(x, y, sizeof(float) * n) == 0, "all-gather over one GPU changed the data");
    double h[3] = {1.25, -2, 3e10};
    dist_allreduce_host_f64(d, h, 3, "test host all-reduce");
    CHECK(h[0] == 1.25 && h[1] == -2 && h[2] == 3e10, "host all-reduce: %g %g %g", h[0], h[1], h[2]);
    memset(y, 0, sizeof(float) * n);
    dist_gather_host_f32(d, x, n, y, 0, "test gather");
    CHECK(memcmp(x, y, sizeof(float) * n) == 0, "gather over one GPU");
    int v = 42;
    dist_broadcast_host(d, &v, sizeof v, 0, "test broadcast");
    CHECK(v == 42 && dist_barrier(d, "test barrier") == 0, "broadcast, barrier");
    ops->free(be, g);
    ops->free(be, o);
    free(x);
    free(y);
}

// Three AdamW steps on the golden tiny model (head dim 64, which the CUDA attention takes), each of
// two micro-batches, called as the trainer calls the reduction: armed before the backward that
// ends the gradients it sends, so the buckets go out on the NCCL stream while the backward runs.
// Returns the LM group's parameters (host, malloc'd) and their count; `issued` gets the number of
// bucket reductions issued inside backward passes and in all.
static float *three_steps(llava_backend *be, dist *d, int zero, int offload, size_t *n_out, long issued[2],
                          int *n_buckets) {
    const llava_ops *ops = be->ops;
    llava_model m;
    if (llava_model_load(&m, "tests/data/golden/model/tiny64/model", be) != 0) return NULL;
    dist_bind_backend(d, be);  // the collectives follow the ops on the backend's stream
    llava_model_set_trainable(&m, TRAIN_PROJECTOR_LM);
    llava_batch b;
    if (llava_batch_from_file(&b, &m, "tests/data/golden/model/tiny64/inputs.safetensors", NULL, NULL) != 0) {
        llava_model_free(&m);
        return NULL;
    }
    optim_state os;
    optim_init_ex(&os, &m, d, zero, offload);
    // ZeRO-3: the LM's and projector's parameters sharded, gathered on the NCCL stream ahead of use.
    if (d && zero == 3) CHECK(optim_shard_params(&os, &m, 0) == 2, "ZeRO-3 did not shard the LM and the projector");
    if (d && zero >= 2) {  // ZeRO-2 as the trainer runs it: no full LM gradient buffer, per-layer slots
        int on = optim_use_grad_slots(&os, &m);
        CHECK(on == 1 && m.grads[GROUP_LM] == NULL, "ZeRO-2 gradient slots not in use");
    }
    optim_config oc = {.lr = 1e-3,
                       .projector_lr = NAN,
                       .beta1 = 0.9,
                       .beta2 = 0.999,
                       .eps = 1e-8,
                       .schedule = SCHED_CONSTANT,
                       .total_steps = 3};
    for (int s = 1; s <= 3; s++) {
        llava_model_zero_grads(&m);
        for (int mi = 0; mi < 2; mi++) {
            optim_micro_begin(&os, &m, mi);
            optim_arm(&os, &m, os.zero >= 2 || mi == 1);
            llava_forward_backward(&m, &b, 1, 0.5f, NULL);
            optim_micro_end(&os, &m);
        }
        optim_reduce(&os, &m);
        optim_step(&os, &m, &oc, 1.0f, s);
    }
    issued[0] = os.issued_in_backward;
    issued[1] = os.issued_total;
    *n_buckets = os.n_buckets;
    if (os.n_segs) optim_params_whole(&os, &m);  // ZeRO-3: the whole LM back for the comparison
    size_t n = m.pt.group_numel[GROUP_LM];
    float *w = xmalloc(sizeof(float) * n);
    ops->download(be, BUF_PARAM, w, m.params[GROUP_LM], n);
    *n_out = n;
    optim_free(&os, &m);
    llava_batch_free(&b);
    llava_model_free(&m);
    return w;
}
#endif

int main(void) {
#ifndef LLAVA_HAVE_NCCL
    printf("this build has no NCCL: skipped\n");
    return 77;
#else
    char why[256];
    if (!llava_backend_available("cuda", why, sizeof why)) {
        printf("skipped: %s\n", why);
        return 77;
    }
    char port[16];
    snprintf(port, sizeof port, "%d", free_port());
    setenv("RANK", "0", 1);
    setenv("WORLD_SIZE", "1", 1);
    setenv("LOCAL_RANK", "0", 1);
    setenv("MASTER_ADDR", "127.0.0.1", 1);
    setenv("MASTER_PORT", port, 1);
    dist_options o = {.cuda = 1, .timeout_s = 60};
    dist *d = dist_init(&o);
    CHECK(d && dist_kind(d) == DIST_NCCL && dist_world(d) == 1, "NCCL group of one: %s",
          d ? "wrong kind" : llava_errmsg());
    if (!d) return check_done();
    llava_backend *be = test_cuda();  // opened on the device the NCCL group chose
    dist_bind_backend(d, be);
    test_collectives(d, be);
    size_t n1 = 0;
    long issued[2];
    int nb = 0;
    float *a = three_steps(be, NULL, 0, 0, &n1, issued, &nb);
    CHECK(a != NULL, "one-process training steps: %s", llava_errmsg());
    // ZeRO-0 (gradients through ncclAllReduce), ZeRO-1 and 2 (ncclReduceScatter, then the
    // parameters through ncclAllGather), ZeRO-3 (each segment ncclAllGather'ed ahead on the NCCL
    // stream), then the optimizer offloaded to the host (one process, ZeRO-2 and ZeRO-3): on one GPU
    // every collective is a copy, and the host AdamW is the GPU kernel's arithmetic.
    const int runs[][3] = {{1, 0, 0}, {1, 1, 0}, {1, 2, 0}, {1, 3, 0}, {0, 0, 1}, {1, 2, 1}, {1, 3, 1}};
    for (size_t r = 0; r < sizeof runs / sizeof runs[0] && a; r++) {
        int zero = runs[r][1], offload = runs[r][2];
        dist *dr = runs[r][0] ? d : NULL;
        size_t n2 = 0;
        float *b = three_steps(be, dr, zero, offload, &n2, issued, &nb);
        CHECK(b && n1 == n2, "NCCL training steps: %s", llava_errmsg());
        // Every bucket's reduction went out from inside the backward (the batch has images, so the
        // projector's too): ZeRO-2 after each micro-batch, ZeRO-0/1 after the last one.
        long want = dr ? 3L * (zero >= 2 ? 2 : 1) * nb : 0;
        CHECK(issued[1] == want && issued[0] == want,
              "ZeRO-%d: %ld of %ld reductions issued in the backward, %ld in all", zero, issued[0], want, issued[1]);
        printf("1-GPU %s, ZeRO-%d%s: %ld bucket reductions, %ld of them issued during the backward\n",
               dr ? "NCCL run" : "one process", zero, offload ? " offloaded" : "", issued[1], issued[0]);
        if (b && n1 == n2) {
            size_t differ = 0;
            for (size_t i = 0; i < n1; i++) differ += memcmp(&a[i], &b[i], sizeof(float)) != 0;
            CHECK(differ == 0, "1-GPU %s ZeRO-%d%s vs one process: %zu of %zu LM parameters differ after 3 steps",
                  dr ? "NCCL" : "one-process", zero, offload ? " offloaded" : "", differ, n1);
            printf("1-GPU %s, ZeRO-%d%s, vs one process, 3 steps: %zu of %zu LM parameters differ\n",
                   dr ? "NCCL run" : "one process", zero, offload ? " offloaded" : "", differ, n1);
        }
        free(b);
    }
    free(a);
    dist_bind_backend(d, NULL);
    dist_finalize(d);
    return check_done();
#endif
}
