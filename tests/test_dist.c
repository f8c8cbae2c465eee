// train/dist.h, the optimizer's buckets and shards, and the memory plan, in one process:
//   - the sharding layout (contiguous slices, the leftover on the last rank, ranks with nothing);
//   - the one-process backend and launch detection from the environment;
//   - the TCP rendezvous of torchrun-style launches (forked ranks on localhost), and its deadline
//     when a rank never comes or rank 0 is not there;
//   - gradient buckets: trainable views only (frozen ones never reduced), one layer at most, and
//     every rank's slices partitioning each bucket;
//   - the sampler giving every rank a disjoint share of each global batch, with LLaVA's tail
//     (accelerate's even_batches) at the end of the epoch;
//   - ZeRO-3: buckets of a sharded group hold its frozen views too, segments cover every view of
//     the LM and the projector one layer each, and every rank's slices add up to the groups;
//   - ZeRO-2, ZeRO-3 (with recomputation) and the optimizer offload on a group of one rank train
//     exactly as one process does (bit for bit), through the real gathers and updates;
//   - ZeRO-3's gather schedule (the frozen tower's included) is the same for a pass with images, one
//     without, one without targets (whose backward is skipped), one with recomputation, and
//     llava_model_param_walk;
//   - the memory plan of the 7B and 13B presets against hand-computed numbers.
// The multi-rank runs themselves (mpirun) are tests/dist/test_dist_mpi.c.
#include <math.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "common/util.h"
#include "data/sampler.h"
#include "free_port.h"
#include "kernels/ops.h"
#include "model/batch_hf.h"
#include "model/llava.h"
#include "train/config.h"
#include "train/dist/dist.h"
#include "train/memplan.h"
#include "train/optim.h"
#include "train/trainer.h"

static void test_layout(void) {
    const size_t ns[] = {0, 1, 3, 7, 8, 9, 1000, 1001, 1007};
    for (size_t i = 0; i < sizeof ns / sizeof ns[0]; i++)
        for (int w = 1; w <= 8; w++) {
            size_t n = ns[i], next = 0;
            int ok = 1;
            for (int r = 0; r < w; r++) {
                ok &= dist_shard_begin(n, w, r) == next;  // contiguous, in rank order
                next += dist_shard_count(n, w, r);
                if (r < w - 1) ok &= dist_shard_count(n, w, r) == n / (size_t)w;
            }
            CHECK(ok && next == n, "n %zu on %d ranks: slices do not tile the buffer", n, w);
        }
    // The leftover goes to the last rank; with fewer elements than ranks it holds them all.
    CHECK_EQ_INT(dist_shard_count(1007, 8, 7), 125 + 7);
    CHECK_EQ_INT(dist_shard_count(3, 8, 0), 0);
    CHECK_EQ_INT(dist_shard_count(3, 8, 7), 3);
}

static void test_single(void) {
    dist *d = dist_single();
    CHECK(dist_rank(d) == 0 && dist_world(d) == 1 && dist_kind(d) == DIST_SINGLE, "one-process group");
    float x[5] = {1, 2, 3, 4, 5}, y[5] = {0};
    double h[2] = {1.5, -2};
    CHECK(dist_allreduce_f32(d, x, 5, "t") == 0 && x[4] == 5, "all-reduce over one rank is the identity");
    CHECK(dist_reduce_scatter_f32(d, x, 5, y, "t") == 0 && memcmp(x, y, sizeof x) == 0,
          "reduce-scatter: the whole buffer");
    CHECK(dist_allreduce_host_f64(d, h, 2, "t") == 0 && h[0] == 1.5 && h[1] == -2, "host all-reduce");
    memset(y, 0, sizeof y);
    CHECK(dist_gather_host_f32(d, x, 5, y, 0, "t") == 0 && memcmp(x, y, sizeof x) == 0, "gather");
    CHECK(dist_allgather(d, x, 5, 4, "t") == 0 && dist_barrier(d, "t") == 0, "all-gather, barrier");
    dist_finalize(d);

    // From the environment: nothing set means one process; torchrun-style variables on the CPU ask
    // for MPI, and say so.
    unsetenv("RANK");
    unsetenv("WORLD_SIZE");
    dist_options o = {.cuda = 0, .timeout_s = 5};
    d = dist_init(&o);
    CHECK(d && dist_world(d) == 1, "no launcher: one process");
    dist_finalize(d);
    setenv("RANK", "0", 1);
    setenv("WORLD_SIZE", "2", 1);
    d = dist_init(&o);
    CHECK(d == NULL, "WORLD_SIZE=2 on the CPU without MPI accepted");
    CHECK_ERR_HAS("mpirun");
    setenv("RANK", "2", 1);
    o.cuda = 1;
    d = dist_init(&o);
    CHECK(d == NULL, "RANK >= WORLD_SIZE accepted");
    CHECK_ERR_HAS("WORLD_SIZE");
    unsetenv("RANK");
    unsetenv("WORLD_SIZE");
}

// A port that was free a moment ago.
static void fill(unsigned char *b, size_t n, unsigned seed) {
    for (size_t i = 0; i < n; i++) b[i] = (unsigned char)(seed * 131 + i * 7);
}

// Ranks 1.. (forked) and rank 0 (this process) meet on localhost; the children exit 0 when they
// got rank 0's blob. Returns how many children failed; *rc0 is rank 0's result.
static int rendezvous(int world, int present, double timeout, int *rc0) {
    int port = free_port();
    pid_t kids[16];
    int n = 0;
    for (int r = 1; r < present; r++) {
        pid_t p = fork();
        if (p == 0) {
            unsigned char got[128] = {0}, want[128];
            fill(want, sizeof want, 77);
            int rc = dist_tcp_rendezvous("127.0.0.1", port, r, world, got, sizeof got, timeout);
            _exit(rc == 0 && memcmp(got, want, sizeof got) == 0 ? 0 : 1);
        }
        kids[n++] = p;
    }
    unsigned char blob[128];
    fill(blob, sizeof blob, 77);
    *rc0 = dist_tcp_rendezvous("127.0.0.1", port, 0, world, blob, sizeof blob, timeout);
    int failed = 0;
    for (int i = 0; i < n; i++) {
        int st;
        waitpid(kids[i], &st, 0);
        failed += !(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    }
    return failed;
}

static void test_rendezvous(void) {
    int rc0;
    int failed = rendezvous(4, 4, 20, &rc0);
    CHECK(rc0 == 0 && failed == 0, "4 ranks on localhost: rank 0 %d, %d others failed (%s)", rc0, failed,
          llava_errmsg());
    // Rank 3 never comes: rank 0 gives up at the deadline and names it; the others fail too.
    double t0 = (double)time(NULL);
    failed = rendezvous(4, 3, 1.5, &rc0);
    CHECK(rc0 != 0 && failed == 2, "a missing rank: rank 0 %d, %d of 2 others failed", rc0, failed);
    CHECK_ERR_HAS("missing: 3");
    CHECK((double)time(NULL) - t0 < 10, "the rendezvous deadline was not kept");
    // No rank 0 at all: a rank retries until its deadline, then says where it tried.
    unsigned char b[16];
    int rc = dist_tcp_rendezvous("127.0.0.1", free_port(), 1, 2, b, sizeof b, 1.0);
    CHECK(rc != 0, "no rank 0, yet the rendezvous succeeded");
    CHECK_ERR_HAS("could not reach rank 0");
}

// The tiny golden model with the LM trainable and its layer 0 frozen by name, on a pretend world of
// 3 ranks (layouts only: no collective runs in optim_init_dist on the CPU).
static void test_buckets(void) {
    llava_model m;
    CHECK(llava_model_load(&m, "tests/data/golden/model/tiny64/model", test_cpu()) == 0, "%s", llava_errmsg());
    llava_model_set_trainable(&m, TRAIN_PROJECTOR_LM);
    CHECK(llava_model_freeze(&m, "lm.model.layers.0.") > 0, "%s", llava_errmsg());
    size_t trainable = 0;
    for (int i = 0; i < m.pt.n_views; i++)
        if (m.pt.views[i].used && !llava_model_is_frozen(&m, &m.pt.views[i])) trainable += m.pt.views[i].numel;
    size_t state_sum[N_GROUPS] = {0};
    int n_buckets = 0;
    for (int r = 0; r < 3; r++) {
        dist *d = dist_layout_only(r, 3);  // a pretend rank r of 3 (its collectives would be the identity)
        optim_state s;
        optim_init_dist(&s, &m, d, 2);
        CHECK(s.zero == 2 && s.n_buckets > 2, "ZeRO-2 with %d buckets", s.n_buckets);
        size_t covered = 0;
        int bad = 0;
        for (int b = 0; b < s.n_buckets; b++) {
            const grad_bucket *k = &s.buckets[b];
            size_t n = 0;
            for (int i = k->view_first; i <= k->view_last; i++) {
                const param_view *v = &m.pt.views[i];
                bad += llava_model_is_frozen(&m, v) || v->group != k->group || v->layer != k->layer ||
                       v->offset != k->lo + n;
                n += v->numel;
            }
            bad += n != k->n;
            covered += k->n;
            // This rank's slice is the layout's.
            bad += k->own_lo != k->lo + dist_shard_begin(k->n, 3, r) || k->own_n != dist_shard_count(k->n, 3, r);
        }
        CHECK(bad == 0, "rank %d: %d bucket inconsistencies (frozen view, mixed layers, gaps, wrong slice)", r, bad);
        CHECK(covered == trainable, "buckets cover %zu of %zu trainable parameters", covered, trainable);
        for (int g = 0; g < N_GROUPS; g++) state_sum[g] += s.state_numel[g];
        CHECK(s.grad_shard[GROUP_LM] != NULL && s.grad_shard[GROUP_VISION] == NULL,
              "gradient shards for trainable groups only");
        n_buckets = s.n_buckets;
        optim_free(&s, &m);
        dist_finalize(d);
    }
    CHECK(state_sum[GROUP_PROJECTOR] + state_sum[GROUP_LM] == trainable && state_sum[GROUP_VISION] == 0,
          "the ranks' optimizer state adds up to the trainable parameters (%zu + %zu vs %zu)",
          state_sum[GROUP_PROJECTOR], state_sum[GROUP_LM], trainable);
    // One rank: ZeRO is off whatever the config says, and the state is the groups' full length.
    optim_state s;
    optim_init_dist(&s, &m, NULL, 2);
    CHECK(s.zero == 0 && s.n_buckets == n_buckets && s.state_numel[GROUP_LM] == m.pt.group_numel[GROUP_LM],
          "one rank: ZeRO-0 layout");
    optim_free(&s, &m);
    llava_model_free(&m);
}

// ZeRO-3's layout on a pretend rank of 3: the LM with layer 0 frozen by name is sharded whole.
static void test_zero3_layout(void) {
    llava_model m;
    CHECK(llava_model_load(&m, "tests/data/golden/model/tiny64/model", test_cpu()) == 0, "%s", llava_errmsg());
    llava_model_set_trainable(&m, TRAIN_PROJECTOR_LM);
    CHECK(llava_model_freeze(&m, "lm.model.layers.0.") > 0, "%s", llava_errmsg());
    size_t shard_sum[N_GROUPS] = {0};
    int L = m.cfg.text.num_hidden_layers;
    for (int r = 0; r < 3; r++) {
        llava_model mr;
        CHECK(llava_model_load(&mr, "tests/data/golden/model/tiny64/model", test_cpu()) == 0, "%s", llava_errmsg());
        llava_model_set_trainable(&mr, TRAIN_PROJECTOR_LM);
        llava_model_freeze(&mr, "lm.model.layers.0.");
        dist *d = dist_layout_only(r, 3);
        optim_state s;
        optim_init_dist(&s, &mr, d, 3);
        CHECK(s.zero == 3 && s.sharded[GROUP_LM] && s.sharded[GROUP_PROJECTOR] && !s.sharded[GROUP_VISION],
              "ZeRO-3 shards the LM and the projector, not the tower");
        CHECK(optim_shard_params(&s, &mr, 0) == 2, "two groups sharded");
        CHECK(mr.params[GROUP_LM] == NULL && mr.params[GROUP_PROJECTOR] == NULL && mr.params[GROUP_VISION] != NULL,
              "the sharded groups' whole PARAM buffers are freed, the tower's kept");
        // projector, embeddings, L layers, final norm with head
        CHECK(s.n_segs == L + 3, "%d segments, want %d", s.n_segs, L + 3);
        int bad = 0, frozen_in = 0;
        for (int i = 0; i < mr.pt.n_views; i++) {
            const param_view *v = &mr.pt.views[i];
            int sharded = v->group == GROUP_LM || v->group == GROUP_PROJECTOR;
            if (!v->used || !v->numel) continue;
            int q = s.view_seg[i];
            if (sharded != (q >= 0)) bad++;
            if (q >= 0) {
                const param_segment *sg = &s.segs[q];
                bad += sg->group != v->group || sg->layer != v->layer || v->offset < sg->lo ||
                       v->offset + v->numel > sg->lo + sg->n;
                frozen_in += llava_model_is_frozen(&mr, v);
            }
        }
        CHECK(bad == 0 && frozen_in > 0, "%d views outside their segment; %d frozen views in segments", bad, frozen_in);
        for (int g = 0; g < N_GROUPS; g++) shard_sum[g] += s.state_numel[g];
        optim_free(&s, &mr);
        dist_finalize(d);
        llava_model_free(&mr);
    }
    // The slices of the three ranks together: every used view of the two groups and the padding between.
    size_t want_lm = 0;
    for (int i = 0; i < m.pt.n_views; i++)
        if (m.pt.views[i].group == GROUP_LM && m.pt.views[i].used) want_lm += m.pt.views[i].numel;
    CHECK(shard_sum[GROUP_LM] >= want_lm && shard_sum[GROUP_LM] <= m.pt.group_numel[GROUP_LM],
          "the LM's slices add up to %zu (views %zu, group %zu)", shard_sum[GROUP_LM], want_lm,
          (size_t)m.pt.group_numel[GROUP_LM]);
    llava_model_free(&m);
}

// ZeRO-3's gathers follow the model's param_need calls; every rank must make the same ones. A
// recorder stands in for the optimizer: it keeps, per sharded group, the segment in use, and notes
// each change (what would gather). The sequence must not depend on the batch.
static int rec_seg[4096], rec_cur[N_GROUPS], rec_log[4096], rec_n;
static llava_model *rec_m;
static void rec_need(void *ctx, int view, int dir) {
    (void)ctx;
    (void)dir;
    int q = rec_seg[view], g = rec_m->pt.views[view].group;
    if (rec_cur[g] != q && rec_n < 4096) rec_log[rec_n++] = q;
    rec_cur[g] = q;
}
static void *rec_at(void *ctx, int view) {
    (void)ctx;
    const param_view *v = &rec_m->pt.views[view];
    CHECK(rec_cur[v->group] == rec_seg[view], "%s read while segment %d is in use (its own: %d)", v->name,
          rec_cur[v->group], rec_seg[view]);
    return (char *)rec_m->params[v->group] + v->offset * rec_m->ops->act_bytes;
}
static void rec_reset(void) {
    rec_n = 0;
    for (int g = 0; g < N_GROUPS; g++) rec_cur[g] = -1;
}

static void test_zero3_schedule(void) {
    llava_model m;
    CHECK(llava_model_load(&m, "tests/data/golden/model/tiny64/model", test_cpu()) == 0, "%s", llava_errmsg());
    llava_model_set_trainable(&m, TRAIN_PROJECTOR_LM);
    llava_batch b;
    CHECK(llava_batch_from_file(&b, &m, "tests/data/golden/model/tiny64/inputs.safetensors", NULL, NULL) == 0, "%s",
          llava_errmsg());
    CHECK(b.n_img > 0 && b.n_targets > 0, "the golden batch has images and targets");
    // Segments as the optimizer makes them: runs of one group and layer of the used views of the tower
    // (sharded under train.shard_frozen), the projector and the LM.
    int n_seg = 0, last_g = -1, last_l = -2, L = m.cfg.text.num_hidden_layers, Lv = m.vision_layers;
    CHECK(m.pt.n_views <= 4096, "%d views", m.pt.n_views);
    for (int i = 0; i < m.pt.n_views; i++) {
        const param_view *v = &m.pt.views[i];
        rec_seg[i] = -1;
        if (!v->used || !v->numel || v->group > GROUP_LM) {
            last_g = -1;
            continue;
        }
        if (v->group != last_g || v->layer != last_l) n_seg++;
        last_g = v->group, last_l = v->layer;
        rec_seg[i] = n_seg - 1;
    }
    CHECK(n_seg == Lv + 1 + L + 3, "%d segments", n_seg);
    // The tower's embeddings 0 and layers 1 .. Lv, the projector P = Lv + 1, the LM's embeddings P + 1,
    // layers P + 2 .. P + L + 1, final norm and head P + L + 2. The projector first, the tower, then the LM
    // up; backward down.
    int want[64], nw = 0, P = Lv + 1;
    want[nw++] = P;
    for (int q = 0; q <= Lv; q++) want[nw++] = q;
    for (int q = P + 1; q <= P + L + 2; q++) want[nw++] = q;
    for (int l = L - 1; l >= 0; l--) want[nw++] = P + 2 + l;
    rec_m = &m;
    m.param_sharded[GROUP_LM] = m.param_sharded[GROUP_PROJECTOR] = m.param_sharded[GROUP_VISION] = 1;
    m.param_need = rec_need;
    m.param_at = rec_at;
    // A text-only batch: the image positions become token 1, no images; a batch without targets.
    llava_batch text = b, none = b;
    text.ids = xmalloc(sizeof(int32_t) * (size_t)b.T);
    memcpy(text.ids, b.ids, sizeof(int32_t) * (size_t)b.T);
    for (int i = 0; i < b.T; i++)
        if (text.ids[i] < 0) text.ids[i] = 1;
    text.n_img = 0;
    text.img_rows = NULL;
    text.pixels = NULL;
    none.targets = xmalloc(sizeof(int32_t) * (size_t)b.T);
    for (int i = 0; i < b.T; i++) none.targets[i] = -100;
    none.n_targets = 0;
    const char *names[] = {"with images", "text only", "without targets", "recomputing layers", "param_walk"};
    for (int k = 0; k < 5; k++) {
        rec_reset();
        m.checkpoint_layers = k == 3;
        const llava_batch *pb = k == 1 ? &text : k == 2 ? &none : &b;
        if (k < 4) CHECK(llava_pass(&m, pb, 1, 1.0f, NULL) == 0, "%s: %s", names[k], llava_errmsg());
        else llava_model_param_walk(&m, 1);
        int same = rec_n == nw;
        for (int i = 0; same && i < nw; i++) same = rec_log[i] == want[i];
        CHECK(same, "%s: %d segment changes, want %d (first: %d)", names[k], rec_n, nw, rec_n ? rec_log[0] : -1);
    }
    // An inference-style pass (no backward asked) goes forward only.
    rec_reset();
    CHECK(llava_pass(&m, &b, 0, 1.0f, NULL) == 0, "%s", llava_errmsg());
    CHECK(rec_n == Lv + 1 + L + 3, "a forward-only pass: %d segment changes, want %d", rec_n, Lv + 1 + L + 3);
    m.param_sharded[GROUP_LM] = m.param_sharded[GROUP_PROJECTOR] = m.param_sharded[GROUP_VISION] = 0;
    free(text.ids);
    free(none.targets);
    llava_batch_free(&b);
    llava_model_free(&m);
}

// ZeRO-3 and offload in one process: a group of one rank that shards as a real one would
// (dist_layout_only(0, 1): its collectives over one rank are exact, as mpirun -np 1's are) trains
// the golden model 3 steps of 2 micro-batches with the step loop's calls, through the real gathers,
// slots and updates, and ends with the one-process ZeRO-0 run's parameters bit for bit: ZeRO-2,
// ZeRO-3, ZeRO-3 with recomputation, and each with the optimizer offloaded. A stale gathered buffer,
// a gather into the buffer in use or an update left on the host changes the result or stops the run.
static void zero3_train(const char *dir, int zero, int offload, int recompute, int shard_frozen, int steps, float *out,
                        size_t *n_out) {
    llava_model m;
    char *md = xasprintf("%s/model", dir), *in = xasprintf("%s/inputs.safetensors", dir);
    CHECK(llava_model_load(&m, md, test_cpu()) == 0, "%s", llava_errmsg());
    llava_model_set_trainable(&m, TRAIN_PROJECTOR_LM);
    m.checkpoint_layers = recompute;
    llava_batch b;
    CHECK(llava_batch_from_file(&b, &m, in, NULL, NULL) == 0, "%s", llava_errmsg());
    dist *d = zero ? dist_layout_only(0, 1) : NULL;
    optim_state s;
    optim_init_ex(&s, &m, d, zero, offload);
    CHECK(s.zero == zero && s.offload == offload, "ZeRO-%d offload %d: state says ZeRO-%d offload %d", zero, offload,
          s.zero, s.offload);
    if (offload) {  // the host update split over 3 threads, down to chunks of 64 elements
        s.host_threads = 3;
        s.host_chunk_min = 64;
    }
    if (zero == 3)
        CHECK(optim_shard_params(&s, &m, shard_frozen) == 2 + shard_frozen, "ZeRO-3 shards the LM, the projector%s",
              shard_frozen ? " and the frozen tower" : "");
    if (zero >= 2) CHECK(optim_use_grad_slots(&s, &m) == 1, "ZeRO-%d: gradient slots", zero);
    optim_config oc = {.lr = 1e-3,
                       .projector_lr = NAN,
                       .vision_lr = NAN,
                       .beta1 = 0.9,
                       .beta2 = 0.999,
                       .eps = 1e-8,
                       .weight_decay = 0.1,
                       .max_grad_norm = 1.0,
                       .schedule = SCHED_CONSTANT,
                       .total_steps = 3};
    for (int step = 0; step < steps; step++) {
        llava_model_zero_grads(&m);
        llava_model_losses_reset(&m);
        for (int mi = 0; mi < 2; mi++) {
            optim_micro_begin(&s, &m, mi);
            optim_arm(&s, &m, s.zero >= 2 || mi == 1);
            CHECK(llava_pass(&m, &b, 1, 0.5f, NULL) == 0, "%s", llava_errmsg());
            optim_micro_end(&s, &m);
        }
        optim_reduce(&s, &m);
        optim_step(&s, &m, &oc, 1.0f, step + 1);
    }
    if (zero == 3) {
        // The projector and the embeddings after each update; a tied head takes the embeddings' segment
        // back at the end of each forward (on demand, in the last layer's buffer), so the last layer is
        // gathered again on demand for its backward: 2 more per pass, 2 passes per step.
        int tied = m.pt.w.head == m.pt.w.embed;
        // A sharded frozen tower: its first segment once in the run (its gathers outlive the updates).
        long want = (long)steps * (2 + (tied ? 2 * 2 : 0)) + shard_frozen;
        CHECK(s.gathers_on_demand == want && s.gathers_ahead > 0,
              "%s ZeRO-3: %ld gathers on demand (want %ld), %ld ahead", dir, s.gathers_on_demand, want,
              s.gathers_ahead);
        optim_params_whole(&s, &m);
    }
    *n_out = 0;
    for (int g = GROUP_VISION; g <= GROUP_LM; g++) {  // the tower too: gathered whole again when sharded
        m.ops->download(m.be, BUF_PARAM, out + *n_out, m.params[g], m.pt.group_numel[g]);
        *n_out += m.pt.group_numel[g];
    }
    optim_free(&s, &m);
    dist_finalize(d);
    llava_batch_free(&b);
    llava_model_free(&m);
    free(md);
    free(in);
}

// tiny64 (untied head) and tinyqwen2 (the head is the embeddings: gathered with them).
static void test_zero3_one_rank(const char *dir) {
    llava_model m;
    char *md = xasprintf("%s/model", dir);
    CHECK(llava_model_load(&m, md, test_cpu()) == 0, "%s", llava_errmsg());
    free(md);
    size_t cap = m.pt.group_numel[GROUP_VISION] + m.pt.group_numel[GROUP_PROJECTOR] + m.pt.group_numel[GROUP_LM];
    llava_model_free(&m);
    float *ref = xmalloc(sizeof(float) * cap), *got = xmalloc(sizeof(float) * cap);
    size_t n_ref, n;
    zero3_train(dir, 0, 0, 0, 0, 0, got, &n);  // the initial parameters
    zero3_train(dir, 0, 0, 0, 0, 3, ref, &n_ref);
    size_t moved = 0;
    for (size_t i = 0; i < n; i++) moved += got[i] != ref[i];
    CHECK(moved > n / 4, "3 steps moved %zu of %zu parameters", moved, n);
    // ZeRO stage, offload, recomputation, the frozen tower sharded (train.shard_frozen)
    const int runs[][4] = {{0, 1, 0, 0}, {2, 0, 0, 0}, {2, 1, 0, 0}, {3, 0, 0, 0}, {3, 1, 0, 0},
                           {3, 0, 1, 0}, {3, 1, 1, 0}, {3, 0, 0, 1}, {3, 1, 1, 1}};
    for (size_t r = 0; r < sizeof runs / sizeof runs[0]; r++) {
        zero3_train(dir, runs[r][0], runs[r][1], runs[r][2], runs[r][3], 3, got, &n);
        size_t diff = 0;
        for (size_t i = 0; i < n; i++) diff += memcmp(&got[i], &ref[i], sizeof(float)) != 0;
        CHECK(n == n_ref && diff == 0, "%s: ZeRO-%d%s%s%s on one rank: %zu of %zu parameters differ from one process",
              dir, runs[r][0], runs[r][1] ? " offloaded" : "", runs[r][2] ? " recomputing" : "",
              runs[r][3] ? " tower sharded" : "", diff, n);
    }
    free(ref);
    free(got);
}

// accelerate's BatchSamplerShard over virtual ranks: rank r's micro-batch i is virtual rank
// i * world + r (data/loader.h). Every step's shares are disjoint and together make the same global
// batch as one rank with all the accumulation.
static void test_sampler_shares(void) {
    const int64_t N = 103;
    const int B = 3, V = 8;
    sampler_config sc = {.n = N, .batch = B, .virtual_ranks = V, .seed = TORCH_DEFAULT_SEED};
    int64_t *order = xmalloc(sizeof(int64_t) * (size_t)N);
    sampler_epoch_order(&sc, 0, order);
    int64_t steps = sampler_batches_per_rank(&sc);
    CHECK_EQ_INT(steps, 5);  // ceil(103 / 3) = 35 batches over 8 ranks: 5 rounds, the last padded
    int64_t *seen = xcalloc((size_t)N, sizeof(int64_t));
    int ok = 1;
    for (int world = 1; world <= 8; world *= 2) {
        int accum = V / world;
        memset(seen, 0, sizeof(int64_t) * (size_t)N);
        for (int64_t s = 0; s < steps; s++) {
            int64_t step_seen[103] = {0}, total = 0;
            for (int r = 0; r < world; r++)
                for (int i = 0; i < accum; i++) {
                    int64_t got[3];
                    int k = sampler_rank_batch(&sc, order, s, i * world + r, got);
                    for (int j = 0; j < k; j++) {
                        ok &= step_seen[got[j]]++ == 0;  // disjoint within the step
                        seen[got[j]]++;
                        total++;
                    }
                }
            ok &= total == (int64_t)B * V;  // the tail round is padded to a full global batch
        }
        int64_t dup = 0;
        for (int64_t i = 0; i < N; i++) {
            ok &= seen[i] >= 1;
            dup += seen[i] - 1;
        }
        // 5 x 24 = 120 samples seen: the 103 plus 17 taken again from the start of the epoch order.
        ok &= dup == 120 - N;
        for (int64_t i = 0; i < 120 - N; i++) ok &= seen[order[i]] == 2;
    }
    CHECK(ok,
          "every rank's share of each step is disjoint, the epoch covers every sample, the tail recycles the first");
    free(seen);
    free(order);

    // LLaVA stage 2 on 8 GPUs (spec §1.3): 665,298 samples in batches of 16 make 41,582 batches, the
    // last holding 2; the final step gives ranks 0-4 full batches, rank 5 those 2 plus 14 recycled
    // from the start of the epoch, ranks 6 and 7 recycled batches of 16.
    sampler_config big = {.n = 665298, .batch = 16, .virtual_ranks = 8, .seed = TORCH_DEFAULT_SEED};
    order = xmalloc(sizeof(int64_t) * 665298);
    sampler_epoch_order(&big, 0, order);
    int64_t last = sampler_batches_per_rank(&big) - 1;
    CHECK_EQ_INT(last + 1, 5198);
    int64_t got[16];
    int fresh[8] = {0}, tail_ok = 1;
    for (int v = 0; v < 8; v++) {
        int k = sampler_rank_batch(&big, order, last, v, got);
        tail_ok &= k == 16;
        for (int j = 0; j < k; j++) {
            int64_t pos = (int64_t)(last * 8 + v) * 16 + j;  // where it would sit in the epoch order
            if (pos < 665298) {
                tail_ok &= got[j] == order[pos];
                fresh[v]++;
            } else {
                tail_ok &= got[j] == order[pos - 665298];  // recycled from the start
            }
        }
    }
    CHECK(tail_ok && fresh[4] == 16 && fresh[5] == 2 && fresh[6] == 0 && fresh[7] == 0,
          "stage-2 tail: ranks 4..7 got %d, %d, %d, %d fresh samples", fresh[4], fresh[5], fresh[6], fresh[7]);
    free(order);
}

// Plans against hand-computed numbers. Parameter counts (config.json of vicuna and CLIP-L/336):
//   vision, 23 of 24 layers used: 1,193,984 + 2,048 + 23 x 12,596,224 = 290,909,184
//   7B:  LM 2 x 32000 x 4096 + 32 x (4 x 4096^2 + 3 x 4096 x 11008 + 2 x 4096) + 4096 = 6,738,415,616
//        projector 1024 x 4096 + 4096 + 4096^2 + 4096 = 20,979,712
//   13B: LM 13,015,864,320, projector 31,467,520
// Every bucket (embeddings, each layer or part of one, norm + head, the projector) has a multiple
// of 8 elements, so 8 ranks hold exactly 1/8 of the trainable parameters each.
static void test_plan(void) {
    struct {
        const char *preset, *llm;
        uint64_t params, grads, state, act, total;
    } want[] = {
        // 7B stage 2, ZeRO-2, 8 ranks, 16 x 2048 tokens: params 7,050,304,512 x 2 bf16; grads: the
        // projector's 20,979,712 and 3 slots of the largest LM bucket, a decoder layer of
        // 4 x 4096^2 + 3 x 4096 x 11008 + 2 x 4096 = 202,383,360, all x 4 = 2,512,519,168 (a whole
        // LM buffer would be 27,037,581,312); state 6,759,395,328 / 8 = 844,924,416 elements (x 4
        // bytes for each of grad shard, master, m, v); activations 19,771,820,032: the three arenas
        // of model/acts.c, each the most its kind holds in one phase, and the loss ledger:
        //   ACT, in the layers' backward (T = 32,768 tokens, M = 9,216 image features, bf16):
        //     features M x 1024 and projector a1, g1 M x 4096 each    169,869,312
        //     the 33 layer inputs T x 4096                          8,858,370,048
        //     one recomputed layer T x (3 x 4096 + 2 x 4096 + 2 x 4096 + 3 x 11008)  4,043,309,056
        //     scratch and the final norm's output T x 4096 x 2        536,870,912
        //     the logits T x 32000                                  2,097,152,000
        //     the backward's scratch (as one layer's)               4,043,309,056   = 19,748,880,384
        //   F32, in the vision tower: pixels 16 x 3 x 336^2, LayerNorm mean and rstd of 16 x 577
        //     rows (36,928 bytes each, 37,120 aligned to 256), the attention's lse 16 heads x 9,232
        //     rows: 21,676,032 + 2 x 37,120 + 590,848                                = 22,341,120
        //   I32, in the vision tower: ids, targets, positions (T each), sequence bounds (256
        //     aligned), image rows (M), the tower's bounds (256) and feature rows (M)   = 467,456
        //   the ledger: T fp32 losses                                                   = 131,072
        // (projector.out, M x 4096, is dead by the backward: its lifetime ends with the splice);
        // reserve 2 GiB: total 52,051,222,528 bytes = 48.48 GiB, which fits 80 GiB.
        {"configs/llava15-7b-stage2.json", "tests/data/hf/vicuna-7b-v1.5", 14100609024ull, 2512519168ull, 844924416ull,
         19771820032ull, 52051222528ull},
        // 7B stage 1 (projector only, 32 x 2048 tokens): 52.08 GiB.
        {"configs/llava15-7b-stage1.json", "tests/data/hf/vicuna-7b-v1.5", 14100609024ull, 83918848ull, 2622464ull,
         39543639040ull, 55917609984ull},
        // 13B stage 2 with ZeRO-2: a layer (4 x 5120^2 + 3 x 5120 x 13824 + 2 x 5120 = 317,204,480)
        // is over the 2^28 bucket limit, so its largest bucket ends before down_proj: 5120 + 4 x
        // 5120^2 + 5120 + 2 x 5120 x 13824 = 246,425,600. grads 31,467,520 (projector) + 3 x
        // 246,425,600, x 4 = 3,082,977,280; activations: ACT 207,618,048 + 41 x 335,544,320 +
        // 2 x 5,066,719,232 + 671,088,640 + 2,097,152,000 = 26,866,614,272, F32 22,341,120 and I32
        // 467,456 as for 7B, ledger 131,072: total 84,891,160,576 bytes = 79.06 GiB, inside 80 GiB
        // at the worst case of 2048 tokens per sample (with whole gradient buffers: 124.80 GiB).
        // LLaVA runs this stage under ZeRO-3.
        {"configs/llava15-13b-stage2.json", "tests/data/hf/vicuna-13b-v1.5", 26676482048ull, 3082977280ull,
         1630916480ull, 26889553920ull, 84891160576ull},
        // 13B stage 1: 77.11 GiB, fits (barely, at the worst case of 2048 tokens per sample).
        {"configs/llava15-13b-stage1.json", "tests/data/hf/vicuna-13b-v1.5", 26676482048ull, 125870080ull, 3933440ull,
         53779106816ull, 82791877632ull},
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        char *llm = xasprintf("model.llm=%s", want[i].llm);
        // ZeRO-2 here (the stage-2 presets run ZeRO-3: test_plan_zero3)
        const char *sets[] = {llm, "model.vision_tower=tests/data/hf/clip-vit-large-patch14-336", "train.zero_stage=2"};
        run_settings c;
        int rc = settings_load(want[i].preset, sets, 3, &c);
        model_config mc;
        mem_plan p;
        if (rc == 0) rc = train_model_config(&c, &mc);
        if (rc == 0) rc = mem_plan_make(&c, &mc, 8, &p);
        CHECK(rc == 0, "%s: %s", want[i].preset, llava_errmsg());
        if (rc == 0) {
            CHECK(p.params == want[i].params && p.grads == want[i].grads && p.state_per_rank == want[i].state &&
                      p.adam_m == 4 * want[i].state && p.grad_shard == 4 * want[i].state &&
                      p.master == 4 * want[i].state && p.activations == want[i].act && p.total == want[i].total,
                  "%s: params %llu grads %llu state %llu activations %llu total %llu", want[i].preset,
                  (unsigned long long)p.params, (unsigned long long)p.grads, (unsigned long long)p.state_per_rank,
                  (unsigned long long)p.activations, (unsigned long long)p.total);
            mem_plan_print(&p, MEM_PLAN_GPU_BYTES, stdout);
        }
        free(llm);
        if (rc == 0) settings_free(&c);
    }
    CHECK(52051222528ull <= MEM_PLAN_GPU_BYTES && 84891160576ull <= MEM_PLAN_GPU_BYTES,
          "7B and 13B stage 2 fit (ZeRO-2, slots)");
    // Without activation checkpointing the 7B stage-2 micro-batch keeps all 32 layers' activations:
    // 31 more sets of ACT 4,043,309,056, and the F32 arena is then the layers' statistics (32 x
    // (2 x T + 32 x T) x 4 + the final norm's T x 4 = 142,737,408) rather than the pixels.
    run_settings c;
    const char *sets[] = {"model.llm=tests/data/hf/vicuna-7b-v1.5",
                          "model.vision_tower=tests/data/hf/clip-vit-large-patch14-336", "train.zero_stage=2",
                          "data.token_budget=4096"};
    CHECK(settings_load("configs/llava15-7b-stage2.json", sets, 3, &c) == 0, "%s", llava_errmsg());
    model_config mc;
    CHECK(train_model_config(&c, &mc) == 0, "%s", llava_errmsg());
    act_shape keep_all = {16 * 2048, 16, 16, 1, 0, 0, 0, 0};
    CHECK_EQ_INT(mem_plan_activations(&mc, &keep_all, 2, 1),
                 19748880384ull + 31ull * 4043309056ull + 142737408ull + 467456ull + 131072ull);
    settings_free(&c);
    // With a token budget a micro-batch runs in several passes and the LM keeps its whole buffer.
    mem_plan p;
    CHECK(settings_load("configs/llava15-7b-stage2.json", sets, 4, &c) == 0 && train_model_config(&c, &mc) == 0 &&
              mem_plan_make(&c, &mc, 8, &p) == 0,
          "%s", llava_errmsg());
    CHECK(!p.grad_slots && p.grads == 27037581312ull && p.total == 76576284672ull,
          "7B stage 2 with a token budget: grads %llu, total %llu", (unsigned long long)p.grads,
          (unsigned long long)p.total);
    settings_free(&c);
}

// ZeRO-3 and offload plans (the stage-2 presets run ZeRO-3), by hand:
//   7B: the LM (6,738,415,616) and projector (20,979,712) sharded: this rank's 844,924,416 (as the
//   state), and two buffers of each group's largest segment: a decoder layer 202,383,360 and the
//   projector 20,979,712, so 446,726,144; the tower's 290,909,184 whole: params (290,909,184 +
//   844,924,416 + 446,726,144) x 2 = 3,165,119,488; total 52,051,222,528 - 14,100,609,024 +
//   3,165,119,488 = 41,115,732,992 (38.29 GiB). Collectives, 1 micro-batch per step: ZeRO-3 7/8 x 3 x
//   6,759,395,328 = 17,743,412,736 elements, ZeRO-2 7/8 x 2 x that = 11,828,941,824: 1.5.
//   13B: a layer (317,204,480) is one segment of two buckets; projector 31,467,520: gather
//   697,344,000; params (290,909,184 + 1,630,916,480 + 697,344,000) x 2 = 5,238,339,328; total
//   84,891,160,576 - 26,676,482,048 + 5,238,339,328 = 63,453,017,856 (59.10 GiB, 20.9 to spare);
//   collectives 7/8 x 3 x 13,047,331,840 = 34,249,246,080 elements, ZeRO-2 22,832,830,720.
//   7B on 24 GB (8 per device, offload): the masters, m and v (3 x 3,379,697,664) and one bucket's
//   slice (a layer's, 25,297,920 x 4) in host memory: 10,240,284,672 bytes; not in the device's total.
static void test_plan_zero3(void) {
    struct {
        const char *preset, *llm;
        uint64_t params, gather, total;
        double volume, volume2;
    } want[] = {
        {"configs/llava15-7b-stage2.json", "tests/data/hf/vicuna-7b-v1.5", 3165119488ull, 446726144ull, 41115732992ull,
         17743412736.0, 11828941824.0},
        {"configs/llava15-13b-stage2.json", "tests/data/hf/vicuna-13b-v1.5", 5238339328ull, 697344000ull,
         63453017856ull, 34249246080.0, 22832830720.0},
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        char *llm = xasprintf("model.llm=%s", want[i].llm);
        const char *sets[] = {llm, "model.vision_tower=tests/data/hf/clip-vit-large-patch14-336"};
        run_settings c;
        model_config mc;
        mem_plan p;
        int rc = settings_load(want[i].preset, sets, 2, &c);
        if (rc == 0) rc = train_model_config(&c, &mc);
        if (rc == 0) rc = mem_plan_make(&c, &mc, 8, &p);
        CHECK(rc == 0, "%s: %s", want[i].preset, llava_errmsg());
        if (rc == 0) {
            CHECK(p.zero_stage == 3 && p.params == want[i].params && p.gather_numel == want[i].gather &&
                      p.shard_per_rank == p.state_per_rank && p.total == want[i].total && !p.offload && p.host == 0,
                  "%s: ZeRO-%d params %llu gather %llu shard %llu total %llu", want[i].preset, p.zero_stage,
                  (unsigned long long)p.params, (unsigned long long)p.gather_numel,
                  (unsigned long long)p.shard_per_rank, (unsigned long long)p.total);
            CHECK(p.volume_elems == want[i].volume && p.volume_elems_zero2 == want[i].volume2,
                  "%s: collectives %.0f, ZeRO-2 %.0f elements", want[i].preset, p.volume_elems, p.volume_elems_zero2);
            settings_free(&c);
        }
        free(llm);
    }
    CHECK(63453017856ull + ((uint64_t)10 << 30) <= MEM_PLAN_GPU_BYTES, "13B stage 2 under ZeRO-3 keeps 10 GiB spare");
    // train.shard_frozen on 7B: the tower's 290,909,184 sharded in layer runs (the embeddings
    // 1,196,032 and 23 layers of 12,596,224, each / 8 exactly: 36,363,648 per rank) with two buffers
    // of a layer (25,192,448): params (844,924,416 + 36,363,648 + 446,726,144 + 25,192,448) x 2 =
    // 2,706,413,312; total 41,115,732,992 - 458,706,176 = 40,657,026,816; each forward gathers the
    // tower once more: 7/8 x 290,909,184 = 254,545,536 elements over ZeRO-3's.
    {
        const char *sf[] = {"model.llm=tests/data/hf/vicuna-7b-v1.5",
                            "model.vision_tower=tests/data/hf/clip-vit-large-patch14-336", "train.shard_frozen=true"};
        run_settings c;
        model_config mc;
        mem_plan p;
        CHECK(settings_load("configs/llava15-7b-stage2.json", sf, 3, &c) == 0 && train_model_config(&c, &mc) == 0 &&
                  mem_plan_make(&c, &mc, 8, &p) == 0,
              "%s", llava_errmsg());
        CHECK(p.shard_frozen && p.params == 2706413312ull && p.gather_numel == 471918592ull &&
                  p.shard_per_rank == 844924416ull + 36363648ull && p.total == 40657026816ull &&
                  p.volume_elems == 17743412736.0 + 254545536.0,
              "shard_frozen: params %llu gather %llu shard %llu total %llu volume %.0f", (unsigned long long)p.params,
              (unsigned long long)p.gather_numel, (unsigned long long)p.shard_per_rank, (unsigned long long)p.total,
              p.volume_elems);
        settings_free(&c);
    }
    // The 24 GB preset: ZeRO-3, offload, 8 per device with 2 accumulation steps.
    const char *sets[] = {"model.llm=tests/data/hf/vicuna-7b-v1.5",
                          "model.vision_tower=tests/data/hf/clip-vit-large-patch14-336"};
    run_settings c;
    model_config mc;
    mem_plan p;
    CHECK(settings_load("configs/llava15-7b-stage2-24gb.json", sets, 2, &c) == 0 && train_model_config(&c, &mc) == 0 &&
              mem_plan_make(&c, &mc, 8, &p) == 0,
          "%s", llava_errmsg());
    CHECK(p.zero_stage == 3 && p.offload && p.per_device_batch == 8 && mem_plan_accum(&c, 8) == 2 &&
              p.host == 10240284672ull && p.master == 3379697664ull &&
              p.total == p.params + p.grads + p.grad_shard + p.activations + p.reserve &&
              p.total <= ((uint64_t)24 << 30),
          "24 GB: ZeRO-%d offload %d batch %d host %llu total %llu", p.zero_stage, p.offload, p.per_device_batch,
          (unsigned long long)p.host, (unsigned long long)p.total);
    settings_free(&c);
}

static void test_timeout_keys(void) {
    train_config c;
    cfg_init_defaults(&c);
    CHECK(cfg_int(&c, "train.collective_timeout_s") == 1800 && cfg_int(&c, "train.nccl_timeout_s") == 0,
          "collective timeout 1800 s by default, the old key unset");
    CHECK(cfg_set(&c, "train.collective_timeout_s=0") == 0 && cfg_set(&c, "model.llm=x") == 0 &&
              cfg_set(&c, "model.vision_tower=y") == 0 && cfg_set(&c, "data.data_path=z") == 0 && cfg_validate(&c) != 0,
          "a zero collective timeout validated");
    CHECK_ERR_HAS("collective_timeout_s");
    cfg_free(&c);
}

int main(void) {
    signal(SIGPIPE, SIG_IGN);
    // OpenBLAS's own threads are invisible to ThreadSanitizer (the suite runs this test under it): one
    // GEMM thread; the offloaded AdamW's threads (pthreads) are still checked.
    llava_cpu_set_threads(1);
    test_layout();
    test_single();
    test_rendezvous();
    test_buckets();
    test_zero3_layout();
    test_zero3_schedule();
    test_zero3_one_rank("tests/data/golden/model/tiny64");
    test_zero3_one_rank("tests/data/golden/model/tinyqwen2");
    test_sampler_shares();
    test_plan();
    test_plan_zero3();
    test_timeout_keys();
    return check_done();
}
