// The loader on an in-memory dataset: packing (the image placeholder expanded, labels shifted into
// targets inside each sequence, positions restarting), every sample dealt once per epoch, pixels as
// image_preprocess makes them, unreadable images dropped and counted, token-budget chunks, virtual
// ranks, worker threads changing nothing, and resume from any position giving the same batches.
#include <math.h>
#include <string.h>

#include "check.h"
#include "common/util.h"
#include "data/loader.h"
#include "data/prep_record.h"
#include "model/io/safetensors.h"

#define N 23
#define TPI 5  // image features per image
#define S 24   // image side

static llava_dataset ds;
static const char *IMAGES[] = {"astronaut_tiny40x30.png", "astronaut_p256.png", "geom_1x1.png"};

// Sample i: "1 <image>? w w w ..." with labels on the second half; every 4th sample is text-only,
// sample 6's image is missing.
static void build_dataset(void) {
    ds.n = N;
    ds.offsets = xmalloc(sizeof(int64_t) * (N + 1));
    ds.modality_len = xmalloc(sizeof(int32_t) * N);
    ds.sample_ids = xmalloc(sizeof(char *) * N);
    ds.image_paths = xmalloc(sizeof(char *) * N);
    int64_t total = 0;
    for (int i = 0; i < N; i++) total += 3 + i % 7;
    ds.input_ids = xmalloc(sizeof(int32_t) * (size_t)total);
    ds.labels = xmalloc(sizeof(int32_t) * (size_t)total);
    int64_t k = 0;
    for (int i = 0; i < N; i++) {
        int len = 3 + i % 7, text_only = i % 4 == 3;
        ds.offsets[i] = k;
        for (int t = 0; t < len; t++, k++) {
            ds.input_ids[k] = (t == 1 && !text_only) ? -200 : 10 + (i * 13 + t) % 50;
            ds.labels[k] = (t >= len / 2 && ds.input_ids[k] != -200) ? ds.input_ids[k] : -100;
        }
        ds.modality_len[i] = text_only ? -(1 + i) : 1 + i % 5;
        ds.sample_ids[i] = xasprintf("s%02d", i);
        ds.image_paths[i] = text_only ? NULL : xstrdup(i == 6 ? "missing.png" : IMAGES[i % 3]);
    }
    ds.offsets[N] = k;
    ds.image_folder = xstrdup("tests/data/images/src");
}

static loader_config base_config(void) {
    return (loader_config){.ds = &ds,
                           .batch = 3,
                           .world = 1,
                           .rank = 0,
                           .accum = 2,
                           .group_by_modality = 1,
                           .seed = TORCH_DEFAULT_SEED,
                           .inner_seed = 42,
                           .tokens_per_image = TPI,
                           .image_size = S,
                           .aspect = IMAGE_ASPECT_PAD,
                           .threads = 2,
                           .prefetch = 2};
}

// A fingerprint of a step: every array of every chunk.
static uint64_t fnv(uint64_t h, const void *p, size_t n) {
    const uint8_t *b = p;
    for (size_t i = 0; i < n; i++) h = (h ^ b[i]) * 1099511628211ull;
    return h;
}

static uint64_t step_hash(const loader_step *s) {
    uint64_t h = 1469598103934665603ull;
    for (int m = 0; m < s->accum; m++)
        for (int c = 0; c < s->micro[m].n_chunks; c++) {
            const llava_batch *b = &s->micro[m].chunks[c];
            h = fnv(h, b->ids, sizeof(int32_t) * (size_t)b->T);
            h = fnv(h, b->targets, sizeof(int32_t) * (size_t)b->T);
            h = fnv(h, b->cu_seqlens, sizeof(int32_t) * (size_t)(b->n_seq + 1));
            if (b->n_img) h = fnv(h, b->pixels, sizeof(float) * (size_t)b->n_img * 3 * S * S);
        }
    return h;
}

static void test_packing(void) {
    loader_config c = base_config();
    c.group_by_modality = 0;
    c.threads = 0;
    loader *l = loader_create(&c, (loader_pos){0, 0});
    CHECK(l != NULL, "%s", llava_errmsg());
    if (!l) return;
    int seen[N] = {0};
    int64_t steps = loader_steps_per_epoch(l);
    // 23 samples in batches of 3 on 2 virtual ranks (accumulation 2): 8 batches, so 4 steps that
    // each take one batch per virtual rank.
    CHECK_EQ_INT(steps, 4);
    for (int64_t st = 0; st < steps; st++) {
        loader_step s;
        CHECK(loader_next(l, &s) == 0, "%s", llava_errmsg());
        CHECK(s.pos.epoch == 0 && s.pos.step == st, "position %d/%lld", s.pos.epoch, (long long)s.pos.step);
        for (int m = 0; m < s.accum; m++) {
            const llava_batch *b = &s.micro[m].chunks[0];
            CHECK_EQ_INT(s.micro[m].n_chunks, 1);
            int img = 0, targets = 0;
            for (int q = 0; q < b->n_seq; q++) {
                int start = b->cu_seqlens[q], len = b->cu_seqlens[q + 1] - start;
                // Recover the sample from its first token and length (ids differ per sample).
                int found = -1;
                for (int i = 0; i < N && found < 0; i++) {
                    int raw = (int)(ds.offsets[i + 1] - ds.offsets[i]);
                    int has = ds.image_paths[i] != NULL;
                    if (ds.input_ids[ds.offsets[i]] == b->ids[start] && raw + has * (TPI - 1) == len) found = i;
                }
                CHECK(found >= 0, "sequence %d not matched to a sample", q);
                if (found < 0) continue;
                seen[found]++;
                int has = ds.image_paths[found] != NULL;
                for (int t = 0; t < len; t++) {
                    CHECK_EQ_INT(b->pos[start + t], t);
                    int raw_t = (has && t >= 1) ? (t < 1 + TPI ? -1 : t - TPI + 1) : t;  // index into the sample
                    int want_id = raw_t < 0 ? -1 : ds.input_ids[ds.offsets[found] + raw_t];
                    CHECK_EQ_INT(b->ids[start + t], want_id);
                    int next = t + 1;
                    int raw_n = (has && next >= 1) ? (next < 1 + TPI ? -1 : next - TPI + 1) : next;
                    int want_y = (next >= len || raw_n < 0) ? -100 : ds.labels[ds.offsets[found] + raw_n];
                    CHECK_EQ_INT(b->targets[start + t], want_y < 0 ? -100 : want_y);
                    targets += want_y >= 0;
                }
                if (has) {
                    for (int f = 0; f < TPI; f++) CHECK_EQ_INT(b->img_rows[img * TPI + f], start + 1 + f);
                    // Pixels as image_preprocess makes them.
                    char *path = path_join("tests/data/images/src", ds.image_paths[found]);
                    image_u8 im = {0};
                    float *want = xmalloc(sizeof(float) * 3 * S * S);
                    uint8_t *u8 = xmalloc(S * S * 3);
                    CHECK(image_load_file(path, &im) == 0 && image_preprocess(&im, S, IMAGE_ASPECT_PAD, u8, want) == 0,
                          "%s", llava_errmsg());
                    CHECK(memcmp(b->pixels + (size_t)img * 3 * S * S, want, sizeof(float) * 3 * S * S) == 0,
                          "pixels of %s", ds.sample_ids[found]);
                    image_free(&im);
                    free(want);
                    free(u8);
                    free(path);
                    img++;
                }
            }
            CHECK_EQ_INT(img, b->n_img);
            CHECK_EQ_INT(targets, b->n_targets);
            CHECK_EQ_INT(s.micro[m].n_targets, b->n_targets);
        }
        loader_step_free(&s);
    }
    // Every sample once, sample 6 dropped (its image is missing), one recycled: 24 slots, 23 samples.
    int total = 0, twice = 0;
    for (int i = 0; i < N; i++) {
        total += seen[i];
        twice += seen[i] == 2;
        if (i != 6) CHECK(seen[i] >= 1, "sample %d never seen", i);
    }
    CHECK_EQ_INT(seen[6], 0);
    const char *last = NULL;
    int64_t by[LOADER_N_DROP];
    CHECK_EQ_INT(loader_dropped(l, &last, by), 1);
    CHECK(by[LOADER_DROP_IMAGE_UNREADABLE] == 1, "the missing image counted as unreadable, not as %s",
          by[LOADER_DROP_IMAGE_NO_TOKEN] ? "no <image> token" : "something else");
    CHECK(last && strcmp(last, "s06") == 0, "dropped id %s", last ? last : "(none)");
    CHECK(total == 23 && twice == 1, "total %d, twice %d", total, twice);
    loader_free(l);
}

static void run(const loader_config *c, loader_pos start, int n_steps, uint64_t *hashes) {
    loader *l = loader_create(c, start);
    CHECK(l != NULL, "%s", llava_errmsg());
    if (!l) return;
    for (int i = 0; i < n_steps; i++) {
        loader_step s;
        CHECK(loader_next(l, &s) == 0, "%s", llava_errmsg());
        hashes[i] = step_hash(&s);
        loader_step_free(&s);
    }
    loader_free(l);
}

static void test_resume_and_threads(void) {
    loader_config c = base_config();
    enum { STEPS = 10 };  // two and a half epochs of the grouped sampler (4 steps each)
    uint64_t ref[STEPS], other[STEPS];
    run(&c, (loader_pos){0, 0}, STEPS, ref);
    // Workers and prefetch depth change nothing.
    loader_config c0 = c;
    c0.threads = 0;
    c0.prefetch = 0;
    run(&c0, (loader_pos){0, 0}, STEPS, other);
    CHECK(memcmp(ref, other, sizeof ref) == 0, "threads 0 vs 2 differ");
    // Resuming at any step (also across epochs) gives the same continuation.
    for (int k = 1; k < STEPS; k++) {
        run(&c, (loader_pos){k / 4, k % 4}, STEPS - k, other);
        CHECK(memcmp(ref + k, other, sizeof(uint64_t) * (size_t)(STEPS - k)) == 0, "resume at step %d differs", k);
    }
    // Epochs differ (the generators continue).
    CHECK(ref[0] != ref[4] || ref[1] != ref[5], "epoch 1 repeats epoch 0");
}

static void test_virtual_ranks_and_budget(void) {
    // world 2 x accumulation 2 deals the same 4 batches per step as world 1 x accumulation 4.
    loader_config a = base_config(), b0 = base_config(), b1 = base_config();
    a.accum = 4;
    b0.world = b1.world = 2;
    b1.rank = 1;
    a.threads = b0.threads = b1.threads = 0;
    loader *la = loader_create(&a, (loader_pos){0, 0}), *l0 = loader_create(&b0, (loader_pos){0, 0}),
           *l1 = loader_create(&b1, (loader_pos){0, 0});
    loader_step sa, s0, s1;
    CHECK(loader_next(la, &sa) == 0 && loader_next(l0, &s0) == 0 && loader_next(l1, &s1) == 0, "%s", llava_errmsg());
    // virtual rank v = micro * world + rank
    const llava_batch *want[4] = {&sa.micro[0].chunks[0], &sa.micro[1].chunks[0], &sa.micro[2].chunks[0],
                                  &sa.micro[3].chunks[0]};
    const llava_batch *got[4] = {&s0.micro[0].chunks[0], &s1.micro[0].chunks[0], &s0.micro[1].chunks[0],
                                 &s1.micro[1].chunks[0]};
    for (int v = 0; v < 4; v++)
        CHECK(want[v]->T == got[v]->T && memcmp(want[v]->ids, got[v]->ids, sizeof(int32_t) * (size_t)got[v]->T) == 0,
              "virtual rank %d", v);
    loader_step_free(&sa);
    loader_step_free(&s0);
    loader_step_free(&s1);
    loader_free(la);
    loader_free(l0);
    loader_free(l1);
    // A token budget splits micro-batches at sample boundaries without changing their content.
    loader_config c = base_config(), cb = base_config();
    cb.token_budget = 12;
    loader *l = loader_create(&c, (loader_pos){0, 0}), *lb = loader_create(&cb, (loader_pos){0, 0});
    int split = 0;
    for (int st = 0; st < 2; st++) {
        loader_step x, y;
        CHECK(loader_next(l, &x) == 0 && loader_next(lb, &y) == 0, "%s", llava_errmsg());
        for (int m = 0; m < x.accum; m++) {
            CHECK_EQ_INT(x.micro[m].n_targets, y.micro[m].n_targets);
            CHECK_EQ_INT(x.micro[m].n_tokens, y.micro[m].n_tokens);
            int64_t off = 0;
            for (int ch = 0; ch < y.micro[m].n_chunks; ch++) {
                const llava_batch *b = &y.micro[m].chunks[ch];
                CHECK(b->T <= 12 || b->n_seq == 1, "chunk of %d tokens over the budget", b->T);
                CHECK(memcmp(b->ids, x.micro[m].chunks[0].ids + off, sizeof(int32_t) * (size_t)b->T) == 0,
                      "chunk content");
                off += b->T;
            }
            split += y.micro[m].n_chunks > 1;
        }
        loader_step_free(&x);
        loader_step_free(&y);
    }
    CHECK(split > 0, "the budget split no micro-batch");
    loader_free(l);
    loader_free(lb);
    // Truncation after the splice (LLaVA HEAD): sequences capped, a cap inside an image drops the sample.
    loader_config ct = base_config();
    ct.max_len_after_splice = 9;
    ct.threads = 0;
    l = loader_create(&ct, (loader_pos){0, 0});
    loader_step x;
    CHECK(loader_next(l, &x) == 0, "%s", llava_errmsg());
    for (int m = 0; m < x.accum; m++)
        for (int q = 0; q < x.micro[m].chunks[0].n_seq; q++)
            CHECK(x.micro[m].chunks[0].cu_seqlens[q + 1] - x.micro[m].chunks[0].cu_seqlens[q] <= 9, "capped");
    loader_step_free(&x);
    loader_free(l);
    ct.max_len_after_splice = 4;  // the image spans positions 1..5
    l = loader_create(&ct, (loader_pos){0, 0});
    CHECK(loader_next(l, &x) == 0, "%s", llava_errmsg());
    for (int m = 0; m < x.accum; m++) CHECK_EQ_INT(x.micro[m].chunks ? x.micro[m].chunks[0].n_img : 0, 0);
    int64_t cut[LOADER_N_DROP];
    int64_t n_cut = loader_dropped(l, NULL, cut);
    CHECK(n_cut > 0 && cut[LOADER_DROP_IMAGE_CUT] == n_cut,
          "image samples dropped when the cap cuts the image, as such");
    loader_step_free(&x);
    loader_free(l);
}

// Several images per sample (LLaVA-NeXT's multi-image lists, paths joined by '\n'): each <image> takes the next
// image in order, the pixels follow each other in the batch, and a count that does not match (fewer or more
// tokens than images) or an unreadable image in the list drops the sample with its reason.
static void test_multi_image(void) {
    static const struct {
        const char *ids, *paths;  // 'I' an <image>, digits ordinary tokens
    } SAMPLES[] = {{"1I56I789", "astronaut_tiny40x30.png\ngeom_1x1.png"},
                   {"1II5I6789", "geom_1x1.png\nastronaut_p256.png\nastronaut_tiny40x30.png"},
                   {"1I5I6789", "geom_1x1.png\ngeom_1x1.png\ngeom_1x1.png"},
                   {"1I5I6I789", "geom_1x1.png\ngeom_1x1.png"},
                   {"1I5I6789", "geom_1x1.png\nmissing.png"},
                   {"1I56789", "astronaut_p256.png"},
                   {"1I567", "geom_1x1.png\nastronaut_tiny40x30.png\nastronaut_p256.png"}};  // a video: 3 frames
    enum { M = 7, VIDEO = 6 };
    llava_dataset d = {0};
    d.n = M;
    d.offsets = xmalloc(sizeof(int64_t) * (M + 1));
    d.modality_len = xmalloc(sizeof(int32_t) * M);
    d.sample_ids = xmalloc(sizeof(char *) * M);
    d.image_paths = xmalloc(sizeof(char *) * M);
    d.flags = xcalloc(M, 1);
    d.flags[VIDEO] = PREP_VIDEO;
    d.input_ids = xmalloc(sizeof(int32_t) * 64);
    d.labels = xmalloc(sizeof(int32_t) * 64);
    int64_t k = 0;
    for (int i = 0; i < M; i++) {
        d.offsets[i] = k;
        for (const char *ch = SAMPLES[i].ids; *ch; ch++, k++) {
            d.input_ids[k] = *ch == 'I' ? -200 : 10 + i * 10 + (*ch - '0');
            d.labels[k] = *ch == 'I' ? -100 : d.input_ids[k];
        }
        d.modality_len[i] = 5;
        d.sample_ids[i] = xasprintf("m%d", i);
        d.image_paths[i] = xstrdup(SAMPLES[i].paths);
    }
    d.offsets[M] = k;
    d.image_folder = xstrdup("tests/data/images/src");
    loader_config c = base_config();
    c.ds = &d;
    c.batch = M;
    c.accum = 1;
    c.group_by_modality = 0;
    loader *l = loader_create(&c, (loader_pos){0, 0});
    CHECK(l != NULL, "%s", llava_errmsg());
    if (!l) return;
    loader_step st;
    CHECK(loader_next(l, &st) == 0, "%s", llava_errmsg());
    const llava_batch *b = &st.micro[0].chunks[0];
    // Samples 0, 1, 5 and the video stay: 2 + 3 + 1 images and 3 frames.
    CHECK(b->n_seq == 4 && b->n_img == 9, "%d sequences, %d images", b->n_seq, b->n_img);
    int64_t by[LOADER_N_DROP];
    CHECK_EQ_INT(loader_dropped(l, NULL, by), 3);
    CHECK(by[LOADER_DROP_IMAGE_NO_TOKEN] == 1 && by[LOADER_DROP_TOO_MANY_IMAGES] == 1 &&
              by[LOADER_DROP_IMAGE_UNREADABLE] == 1,
          "dropped: %lld no-token, %lld too-many, %lld unreadable", (long long)by[LOADER_DROP_IMAGE_NO_TOKEN],
          (long long)by[LOADER_DROP_TOO_MANY_IMAGES], (long long)by[LOADER_DROP_IMAGE_UNREADABLE]);
    // Each sequence's image rows where its <image> tokens were, and the pixels in the list's order.
    int img = 0, row = 0;
    for (int q = 0; q < b->n_seq; q++) {
        int start = b->cu_seqlens[q], i = -1;
        for (int j = 0; j < M && i < 0; j++)
            if (b->ids[start] == 11 + j * 10) i = j;
        CHECK(i == 0 || i == 1 || i == 5 || i == VIDEO, "sequence %d is sample %d", q, i);
        if (i < 0) continue;
        int p = 0, n = prep_image_count(d.image_paths[i]);
        for (const char *ch = SAMPLES[i].ids; *ch; ch++) {
            if (*ch != 'I') {
                CHECK_EQ_INT(b->ids[start + p], 10 + i * 10 + (*ch - '0'));
                p++;
                continue;
            }
            int per = i == VIDEO ? 3 * TPI : TPI;  // the video's one <image>: every frame's features
            for (int f = 0; f < per; f++, p++) CHECK_EQ_INT(b->img_rows[row++], start + p);
        }
        CHECK_EQ_INT(b->cu_seqlens[q + 1] - start, p);
        for (int j = 0; j < n; j++, img++) {
            char *one = prep_image_path(d.image_paths[i], j), *path = path_join("tests/data/images/src", one);
            image_u8 im = {0};
            float *want = xmalloc(sizeof(float) * 3 * S * S);
            uint8_t *u8 = xmalloc(S * S * 3);
            CHECK(image_load_file(path, &im) == 0 && image_preprocess(&im, S, IMAGE_ASPECT_PAD, u8, want) == 0, "%s",
                  llava_errmsg());
            CHECK(memcmp(b->pixels + (size_t)img * 3 * S * S, want, sizeof(float) * 3 * S * S) == 0,
                  "sample %d's image %d", i, j);
            image_free(&im);
            free(want), free(u8), free(path), free(one);
        }
    }
    CHECK_EQ_INT(row, 9 * TPI);
    printf(
        "multi-image: 3 samples with 2, 3 and 1 images and a video of 3 frames packed in order; 3 dropped (fewer "
        "tokens, more tokens, an unreadable image)\n");
    loader_step_free(&st);
    loader_free(l);
    for (int i = 0; i < M; i++) free(d.sample_ids[i]), free(d.image_paths[i]);
    free(d.offsets), free(d.modality_len), free(d.sample_ids), free(d.image_paths), free(d.input_ids), free(d.labels);
    free(d.flags);
    free(d.image_folder);
}

// AnyRes (LLaVA-NeXT): the loader tiles each image as transformers' LlavaNextImageProcessor does and lays its
// features out in the merge's order: on the LlavaNext golden case's two images (tests/data/golden/model/next_tiny,
// 60x36 -> 5 tiles, 30x24 -> 3 tiles, 28-pixel tiles of 2x2 features), the batch's tiles equal the processor's
// pixel_values bit for bit and the image positions are the model's 16 + 10. A video sample beside them (its two frames
// behind one <image>) is dropped by name: AnyRes tiles images, not frames.
static void test_anyres(void) {
    llava_dataset d = {0};
    enum { M2 = 3 };
    d.n = M2;
    d.offsets = xmalloc(sizeof(int64_t) * (M2 + 1));
    d.modality_len = xmalloc(sizeof(int32_t) * M2);
    d.sample_ids = xmalloc(sizeof(char *) * M2);
    d.image_paths = xmalloc(sizeof(char *) * M2);
    d.input_ids = xmalloc(sizeof(int32_t) * 4 * M2);
    d.labels = xmalloc(sizeof(int32_t) * 4 * M2);
    d.flags = xcalloc(M2, 1);
    d.flags[2] = PREP_VIDEO;
    for (int i = 0; i < M2; i++) {
        d.offsets[i] = 4 * i;
        int32_t ids[4] = {1, -200, 20 + i, 30 + i};
        for (int t = 0; t < 4; t++) d.input_ids[4 * i + t] = ids[t], d.labels[4 * i + t] = t > 1 ? ids[t] : -100;
        d.modality_len[i] = 2;
        d.sample_ids[i] = xasprintf("a%d", i);
        d.image_paths[i] = xstrdup(i == 2 ? "a.png\nb.png" : i ? "b.png" : "a.png");
    }
    d.offsets[M2] = 4 * M2;
    d.image_folder = xstrdup("tests/data/golden/model/next_tiny/images");
    loader_config c = base_config();
    c.ds = &d;
    c.batch = M2;
    c.accum = 1;
    c.group_by_modality = 0;
    c.sequential = 1;
    c.tokens_per_image = 4;
    c.image_size = 28;
    c.anyres = 1;
    c.anyres_grid = 2;
    c.anyres_cfg.size = 28;
    c.anyres_cfg.flavor = IMAGE_ANYRES_HF;
    CHECK(image_parse_pinpoints("[[28,56],[56,28],[56,56]]", 0, &c.anyres_cfg.pinpoints) == 0, "pinpoints");
    loader *l = loader_create(&c, (loader_pos){0, 0});
    CHECK(l != NULL, "%s", llava_errmsg());
    if (!l) return;
    loader_step st;
    CHECK(loader_next(l, &st) == 0, "%s", llava_errmsg());
    const llava_batch *b = &st.micro[0].chunks[0];
    CHECK(b->n_seq == 2 && b->n_img == 8 && b->n_feat == 26 && b->feat_rows,
          "%d sequences, %d tiles, %d image positions", b->n_seq, b->n_img, b->n_feat);
    int64_t by[LOADER_N_DROP];
    CHECK(loader_dropped(l, NULL, by) == 1 && by[LOADER_DROP_VIDEO_ANYRES] == 1, "the video under AnyRes not dropped");
    st_file ref;
    CHECK(st_open(&ref, "tests/data/golden/model/next_tiny/inputs.safetensors") == 0, "%s", llava_errmsg());
    const st_tensor *pv = st_find(&ref, "pixel_values");
    float *want = xmalloc(sizeof(float) * pv->numel);
    st_tensor_to_f32(&ref, pv, want);
    size_t plane = 3 * 28 * 28;
    // The golden's image 0 holds 5 tiles, image 1 its 3 then 2 zero slots: ours are the 5 then the 3.
    CHECK(memcmp(b->pixels, want, sizeof(float) * 5 * plane) == 0 &&
              memcmp(b->pixels + 5 * plane, want + 5 * plane, sizeof(float) * 3 * plane) == 0,
          "AnyRes tiles differ from LlavaNextImageProcessor's");
    // The second image's features start at its first tile (5 tiles x 4 features in).
    int first_b = -1;
    for (int k = 16; k < 26 && first_b < 0; k++)
        if (b->feat_rows[k] >= 0) first_b = b->feat_rows[k];
    CHECK(b->feat_rows[0] == 0 && first_b == 20, "feature rows start at %d and %d", b->feat_rows[0], first_b);
    printf(
        "anyres loader: 60x36 and 30x24 -> 5 + 3 tiles equal to LlavaNextImageProcessor's, 16 + 10 positions; a video "
        "dropped\n");
    st_close(&ref);
    free(want);
    loader_step_free(&st);
    loader_free(l);
    for (int i = 0; i < M2; i++) free(d.sample_ids[i]), free(d.image_paths[i]);
    free(d.offsets), free(d.modality_len), free(d.sample_ids), free(d.image_paths), free(d.input_ids), free(d.labels);
    free(d.flags);
    free(d.image_folder);
}

int main(void) {
    build_dataset();
    test_packing();
    test_resume_and_threads();
    test_virtual_ranks_and_budget();
    test_multi_image();
    test_anyres();
    return check_done();
}
