#include "loader.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/util.h"
#include "prep_record.h"

#define IMAGE_TOKEN (-200)

// One prepared step: its samples and, for image samples, their normalised pixels.
typedef struct {
    loader_pos pos;
    int used;          // scheduled and not yet handed out
    int64_t *samples;  // (accum * batch) sample indices; -1 past a short batch
    int *count;        // (accum) samples in each micro-batch
    float **pixels;    // (accum * batch) (3, S, S) or NULL for text-only / dropped; with anyres each image's tiles
    int **info;        // (accum * batch) with anyres: images n, then per image tiles, features, height, width
    char **error;      // (accum * batch) why a sample was dropped, or NULL
    int pending;       // image jobs not done yet
} slot;

typedef struct {
    slot *s;
    int k;  // index into s->samples
} job;

struct loader {
    loader_config c;
    sampler_config sc;
    int64_t steps_per_epoch;
    int64_t *order[2];  // the sample order of epochs order_epoch[0..1]
    int order_epoch[2];
    loader_pos next;   // what loader_next returns next
    loader_pos sched;  // the next step to schedule
    slot *slots;       // (prefetch + 1) ring
    int n_slots;
    // worker pool
    pthread_t *threads;
    pthread_mutex_t mu;
    pthread_cond_t work, done;
    job *queue;
    int q_head, q_tail, q_cap;
    int stop;
    pthread_mutex_t h5;  // the HDF5 library is not thread-safe
    int64_t dropped;
    int64_t dropped_by[LOADER_N_DROP];
    char *last_dropped;
    double wait_s;  // time loader_next spent waiting for images
};

static const int64_t *order_for(loader *l, int epoch) {
    for (int i = 0; i < 2; i++)
        if (l->order[i] && l->order_epoch[i] == epoch) return l->order[i];
    // Replace the older of the two cached epochs.
    int victim = (!l->order[0] || (l->order[1] && l->order_epoch[0] < l->order_epoch[1])) ? 0 : 1;
    if (!l->order[victim]) l->order[victim] = xmalloc(sizeof(int64_t) * (size_t)l->sc.n);
    if (sampler_epoch_order(&l->sc, epoch, l->order[victim]) != 0) {
        fprintf(stderr, "loader: %s\n", llava_errmsg());
        abort();  // validated in loader_create: cannot happen for a dataset that opened
    }
    l->order_epoch[victim] = epoch;
    return l->order[victim];
}

// Decodes and preprocesses sample k of a slot: its image, or its images in order (n x 3 x S x S). Runs on a worker
// (or the caller without workers).
static void run_job(loader *l, slot *s, int k) {
    int64_t i = s->samples[k];
    const llava_dataset *ds = l->c.ds;
    int S = l->c.image_size, n = prep_image_count(ds->image_paths[i]);
    float *px = xmalloc(sizeof(float) * 3 * (size_t)S * S * (size_t)n);
    uint8_t *u8 = xmalloc((size_t)S * S * 3);
    char *err = NULL;
    int *info = NULL;
    if (l->c.anyres) {  // LLaVA-NeXT's tiles of each image, one after another
        const char *folder = l->c.image_folder ? l->c.image_folder : (ds->image_folder ? ds->image_folder : ".");
        size_t plane = 3 * (size_t)S * S, per = (size_t)image_anyres_max_tiles(&l->c.anyres_cfg) * plane, at = 0;
        free(px);
        px = xmalloc(sizeof(float) * per * (size_t)n);
        info = xmalloc(sizeof(int) * (size_t)(1 + 4 * n));
        info[0] = n;
        for (int j = 0; j < n && !err; j++) {
            char *one = prep_image_path(ds->image_paths[i], j), *path = path_join(folder, one);
            image_u8 im = {0};
            image_anyres_plan plan;
            int nf = -1;
            if (image_load_file(path, &im) != 0 ||
                image_anyres_preprocess(&im, &l->c.anyres_cfg, &plan, NULL, px + at) != 0 ||
                (nf = image_anyres_feature_rows(plan.orig_h, plan.orig_w, &l->c.anyres_cfg.pinpoints,
                                                l->c.anyres_cfg.flavor, l->c.anyres_cfg.size, l->c.anyres_grid, NULL)) <
                    0)
                err = xasprintf("image %d of %d: %s", j + 1, n, llava_errmsg());
            else {
                info[1 + 4 * j] = plan.n_tiles, info[2 + 4 * j] = nf;
                info[3 + 4 * j] = plan.orig_h, info[4 + 4 * j] = plan.orig_w;
                at += (size_t)plan.n_tiles * plane;
            }
            image_free(&im);
            free(path);
            free(one);
        }
    } else if (n > 1) {
        const char *folder = l->c.image_folder ? l->c.image_folder : (ds->image_folder ? ds->image_folder : ".");
        for (int j = 0; j < n && !err; j++) {
            char *one = prep_image_path(ds->image_paths[i], j), *path = path_join(folder, one);
            image_u8 im = {0};
            if (image_load_file(path, &im) != 0 ||
                image_preprocess_proc(&im, S, l->c.aspect, l->c.proc, u8, px + (size_t)j * 3 * S * S) != 0)
                err = xasprintf("image %d of %d: %s", j + 1, n, llava_errmsg());
            image_free(&im);
            free(path);
            free(one);
        }
    } else if (ds->pixel_index && ds->pixel_index[i] >= 0) {
        pthread_mutex_lock(&l->h5);
        int rc = dataset_read_pixels(ds, i, u8);
        if (rc != 0) err = xstrdup(llava_errmsg());
        pthread_mutex_unlock(&l->h5);
        if (!err) image_normalize(u8, S, S, px);  // prep stores CLIP's pixels (a SigLIP run is refused them)
    } else {
        const char *folder = l->c.image_folder ? l->c.image_folder : (ds->image_folder ? ds->image_folder : ".");
        char *path = path_join(folder, ds->image_paths[i]);
        image_u8 im = {0};
        if (image_load_file(path, &im) != 0 || image_preprocess_proc(&im, S, l->c.aspect, l->c.proc, u8, px) != 0)
            err = xstrdup(llava_errmsg());
        image_free(&im);
        free(path);
    }
    free(u8);
    if (err) {
        free(px);
        px = NULL;
        free(info);
        info = NULL;
    }
    pthread_mutex_lock(&l->mu);
    s->info[k] = info;
    s->pixels[k] = px;
    s->error[k] = err;
    s->pending--;
    pthread_cond_broadcast(&l->done);
    pthread_mutex_unlock(&l->mu);
}

static void *worker(void *arg) {
    loader *l = arg;
    pthread_mutex_lock(&l->mu);
    for (;;) {
        while (!l->stop && l->q_head == l->q_tail) pthread_cond_wait(&l->work, &l->mu);
        if (l->stop) break;
        job j = l->queue[l->q_head % l->q_cap];
        l->q_head++;
        pthread_mutex_unlock(&l->mu);
        run_job(l, j.s, j.k);
        pthread_mutex_lock(&l->mu);
    }
    pthread_mutex_unlock(&l->mu);
    return NULL;
}

static void push_job(loader *l, slot *s, int k) {
    // Called with l->mu held. The queue never holds more than the slots' image samples.
    l->queue[l->q_tail % l->q_cap] = (job){s, k};
    l->q_tail++;
    pthread_cond_signal(&l->work);
}

// Fills the next free slot with the step at l->sched and queues its images.
static void schedule(loader *l) {
    slot *s = NULL;
    for (int i = 0; i < l->n_slots; i++)
        if (!l->slots[i].used) {
            s = &l->slots[i];
            break;
        }
    if (!s) return;
    const int64_t *order = order_for(l, l->sched.epoch);
    int B = l->c.batch;
    s->pos = l->sched;
    s->used = 1;
    s->pending = 0;
    for (int m = 0; m < l->c.accum; m++) {
        int v = m * l->c.world + l->c.rank;
        int n = sampler_rank_batch(&l->sc, order, l->sched.step, v, s->samples + (size_t)m * B);
        s->count[m] = n;
        for (int k = n; k < B; k++) s->samples[(size_t)m * B + k] = -1;
    }
    pthread_mutex_lock(&l->mu);
    for (int k = 0; k < l->c.accum * B; k++) {
        s->pixels[k] = NULL;
        s->info[k] = NULL;
        s->error[k] = NULL;
        int64_t i = s->samples[k];
        if (i >= 0 && l->c.ds->image_paths[i]) {
            s->pending++;
            if (l->threads) push_job(l, s, k);
        }
    }
    pthread_mutex_unlock(&l->mu);
    if (!l->threads)
        for (int k = 0; k < l->c.accum * B; k++)
            if (s->samples[k] >= 0 && l->c.ds->image_paths[s->samples[k]]) run_job(l, s, k);
    if (++l->sched.step == l->steps_per_epoch) {
        l->sched.step = 0;
        l->sched.epoch++;
    }
}

loader *loader_create(const loader_config *c, loader_pos start) {
    if (!c->ds || c->ds->n <= 0) {
        llava_fail("loader: empty dataset");
        return NULL;
    }
    if (c->batch <= 0 || c->world <= 0 || c->accum <= 0 || c->rank < 0 || c->rank >= c->world ||
        c->tokens_per_image <= 0 || c->image_size <= 0) {
        llava_fail("loader: bad batch, world, rank, accumulation, tokens per image or image size");
        return NULL;
    }
    if (c->ds->pixel_index && c->proc != IMAGE_PROC_CLIP) {
        llava_fail(
            "loader: the dataset stores CLIPImageProcessor's pixels (llava prep --store-pixels); a SigLIP "
            "tower needs its own: prepare without --store-pixels, and the loader reads the images");
        return NULL;
    }
    if (c->ds->pixel_index && c->anyres) {
        llava_fail("loader: the dataset stores pixels; anyres tiles each image by its size: prepare without them");
        return NULL;
    }
    if (c->ds->pixel_index && c->ds->image_size != c->image_size) {
        llava_fail("loader: the dataset stores %dx%d pixels but the model takes %d", c->ds->image_size,
                   c->ds->image_size, c->image_size);
        return NULL;
    }
    loader *l = xcalloc(1, sizeof *l);
    l->c = *c;
    l->sc = (sampler_config){.n = c->ds->n,
                             .modality_len = c->group_by_modality ? c->ds->modality_len : NULL,
                             .batch = c->batch,
                             .virtual_ranks = c->world * c->accum,
                             .seed = c->seed,
                             .inner_seed = c->inner_seed,
                             .inner_skip = c->inner_skip,
                             .sequential = c->sequential,
                             .single_generator = c->single_generator};
    // Every step takes one batch from each virtual rank (accumulation included).
    l->steps_per_epoch = sampler_batches_per_rank(&l->sc);
    // Validate the sampler once (a zero modality length, say) so order_for cannot fail later.
    int64_t *probe = xmalloc(sizeof(int64_t) * (size_t)l->sc.n);
    if (sampler_epoch_order(&l->sc, 0, probe) != 0) {
        free(probe);
        free(l);
        return NULL;
    }
    l->order[0] = probe;
    l->order_epoch[0] = 0;
    l->next = l->sched = start;
    l->n_slots = (c->prefetch > 0 ? c->prefetch : 0) + 1;
    l->slots = xcalloc((size_t)l->n_slots, sizeof(slot));
    size_t per = (size_t)c->accum * c->batch;
    for (int i = 0; i < l->n_slots; i++) {
        l->slots[i].samples = xmalloc(sizeof(int64_t) * per);
        l->slots[i].count = xmalloc(sizeof(int) * (size_t)c->accum);
        l->slots[i].pixels = xcalloc(per, sizeof(float *));
        l->slots[i].info = xcalloc(per, sizeof(int *));
        l->slots[i].error = xcalloc(per, sizeof(char *));
    }
    pthread_mutex_init(&l->mu, NULL);
    pthread_mutex_init(&l->h5, NULL);
    pthread_cond_init(&l->work, NULL);
    pthread_cond_init(&l->done, NULL);
    l->q_cap = (int)(per * (size_t)l->n_slots) + 1;
    l->queue = xmalloc(sizeof(job) * (size_t)l->q_cap);
    if (c->threads > 0) {
        l->threads = xmalloc(sizeof(pthread_t) * (size_t)c->threads);
        for (int t = 0; t < c->threads; t++) pthread_create(&l->threads[t], NULL, worker, l);
    }
    for (int i = 0; i < l->n_slots; i++) schedule(l);
    return l;
}

static void slot_release(slot *s, int per) {
    for (int k = 0; k < per; k++) {
        free(s->pixels[k]);
        free(s->info[k]);
        s->info[k] = NULL;
        free(s->error[k]);
        s->pixels[k] = NULL;
        s->error[k] = NULL;
    }
    s->used = 0;
}

void loader_free(loader *l) {
    if (!l) return;
    pthread_mutex_lock(&l->mu);
    l->stop = 1;
    pthread_cond_broadcast(&l->work);
    pthread_mutex_unlock(&l->mu);
    for (int t = 0; l->threads && t < l->c.threads; t++) pthread_join(l->threads[t], NULL);
    int per = l->c.accum * l->c.batch;
    for (int i = 0; i < l->n_slots; i++) {
        slot_release(&l->slots[i], per);
        free(l->slots[i].samples);
        free(l->slots[i].count);
        free(l->slots[i].pixels);
        free(l->slots[i].info);
        free(l->slots[i].error);
    }
    free(l->slots);
    free(l->queue);
    free(l->threads);
    free(l->order[0]);
    free(l->order[1]);
    free(l->last_dropped);
    pthread_mutex_destroy(&l->mu);
    pthread_mutex_destroy(&l->h5);
    pthread_cond_destroy(&l->work);
    pthread_cond_destroy(&l->done);
    free(l);
}

int64_t loader_steps_per_epoch(const loader *l) { return l->steps_per_epoch; }
loader_pos loader_position(const loader *l) { return l->next; }

double loader_wait_seconds(const loader *l) { return l->wait_s; }

const char *const LOADER_DROP_NAMES[LOADER_N_DROP] = {"image unreadable",
                                                      "more than one <image>",
                                                      "an image but no <image> token",
                                                      "an <image> token but no image",
                                                      "truncation would cut the image",
                                                      "a video under AnyRes"};

int64_t loader_dropped(const loader *l, const char **last_id, int64_t *by_reason) {
    if (last_id) *last_id = l->last_dropped;
    if (by_reason) memcpy(by_reason, l->dropped_by, sizeof l->dropped_by);
    return l->dropped;
}

// A video sample (PREP_VIDEO): its one <image> stands for all its frames.
static int is_video(const llava_dataset *ds, int64_t i) { return ds->flags && (ds->flags[i] & PREP_VIDEO); }

// Positions one <image> of sample i becomes: tokens_per_image, or for a video tokens_per_video_frame (the model's
// video pooling) per frame.
static int per_placeholder(const loader *l, int64_t i) {
    if (!is_video(l->c.ds, i)) return l->c.tokens_per_image;
    int frames = prep_image_count(l->c.ds->image_paths[i]),
        per = l->c.tokens_per_video_frame > 0 ? l->c.tokens_per_video_frame : l->c.tokens_per_image;
    return per * (frames > 0 ? frames : 1);
}

// Positions the j-th <image> of a sample becomes: per_placeholder, or with anyres its image's merged features
// (info: the sample's decoded images, run_job's; NULL before decoding or without anyres).
static int placeholder_len(const loader *l, int64_t i, const int *info, int j) {
    if (l->c.anyres && info && j < info[0]) return info[2 + 4 * j];
    return per_placeholder(l, i);
}

// Expanded length of sample i: each image placeholder becomes placeholder_len positions. *n_img: its <image> tokens.
static int sample_shape(const loader *l, int64_t i, const int *info, int *n_img, int *len) {
    const llava_dataset *ds = l->c.ds;
    int n = (int)(ds->offsets[i + 1] - ds->offsets[i]), imgs = 0, extra = 0;
    for (int t = 0; t < n; t++)
        if (ds->input_ids[ds->offsets[i] + t] == IMAGE_TOKEN) extra += placeholder_len(l, i, info, imgs++) - 1;
    *n_img = imgs;
    *len = n + extra;
    return n;
}

// The images sample i brings into the tower: one per <image>, a video's frames, or with anyres every tile.
static int sample_images(const loader *l, int64_t i, const int *info, int placeholders) {
    if (l->c.anyres && info && placeholders) {
        int tiles = 0;
        for (int j = 0; j < info[0] && j < placeholders; j++) tiles += info[1 + 4 * j];
        return tiles;
    }
    return is_video(l->c.ds, i) && placeholders ? prep_image_count(l->c.ds->image_paths[i]) : placeholders;
}

static void drop(loader *l, int64_t i, loader_drop reason, const char *why) {
    l->dropped++;
    l->dropped_by[reason]++;
    free(l->last_dropped);
    l->last_dropped = xstrdup(l->c.ds->sample_ids[i]);
    fprintf(stderr, "loader: dropping sample %s (index %lld): %s\n", l->c.ds->sample_ids[i], (long long)i, why);
}

// Packs samples [from, to) of a list into one llava_batch.
static void pack(const loader *l, const int64_t *samples, float *const *pixels, int *const *infos, int n,
                 llava_batch *b) {
    const llava_dataset *ds = l->c.ds;
    int tpi = l->c.tokens_per_image, S = l->c.image_size, cap = l->c.max_len_after_splice;
    int T = 0, n_img = 0, n_pos = 0;
    for (int k = 0; k < n; k++) {
        int imgs, len;
        sample_shape(l, samples[k], infos[k], &imgs, &len);
        T += (cap > 0 && len > cap) ? cap : len;
        n_img += sample_images(l, samples[k], infos[k], imgs);
        for (int j = 0; j < imgs; j++) n_pos += placeholder_len(l, samples[k], infos[k], j);
    }
    memset(b, 0, sizeof *b);
    b->T = T;
    b->n_seq = n;
    b->cu_seqlens = xmalloc(sizeof(int32_t) * (size_t)(n + 1));
    b->ids = xmalloc(sizeof(int32_t) * (size_t)(T ? T : 1));
    b->targets = xmalloc(sizeof(int32_t) * (size_t)(T ? T : 1));
    b->pos = xmalloc(sizeof(int32_t) * (size_t)(T ? T : 1));
    b->img_rows = xmalloc(sizeof(int32_t) * (size_t)((n_img * tpi > n_pos ? n_img * tpi : n_pos) + 1));
    if (l->c.anyres) {  // LLaVA-NeXT's merge: every image position's tile feature, or a newline (-1)
        b->feat_rows = xmalloc(sizeof(int32_t) * (size_t)(n_pos + 1));
        b->n_feat = 0;
        if (l->c.anyres_cfg.pinpoints.max_num_patches > 0) {  // anyres_max_N: at most every tile feature, once
            b->resize_dims = xmalloc(sizeof(int32_t) * 4 * (size_t)(n_pos + 1));
            b->resize_rows = xmalloc(sizeof(int32_t) * ((size_t)n_img * tpi + 1));
        }
    }
    b->n_img = n_img;
    b->img_h = b->img_w = S;
    b->pixels = n_img ? xmalloc(sizeof(float) * (size_t)n_img * 3 * S * S) : NULL;
    int k_tok = 0, k_img = 0, k_row = 0, resize_at = 0;
    int32_t *labels = xmalloc(sizeof(int32_t) * (size_t)(T ? T : 1));
    b->cu_seqlens[0] = 0;
    for (int k = 0; k < n; k++) {
        int64_t i = samples[k];
        int imgs, len;
        int raw = sample_shape(l, i, infos[k], &imgs, &len);
        int keep = (cap > 0 && len > cap) ? cap : len;
        int start = k_tok, p = 0, j = 0, tile0 = k_img;
        for (int t = 0; t < raw && p < keep; t++) {
            int32_t id = ds->input_ids[ds->offsets[i] + t], y = ds->labels[ds->offsets[i] + t];
            if (id == IMAGE_TOKEN) {
                int per = placeholder_len(l, i, infos[k], j);
                if (b->feat_rows) {  // image j's features in LLaVA-NeXT's order, its tiles after the sample's earlier
                    const int *in = infos[k];
                    int32_t *rows = b->feat_rows + b->n_feat;
                    image_anyres_feature_rows(in[3 + 4 * j], in[4 + 4 * j], &l->c.anyres_cfg.pinpoints,
                                              l->c.anyres_cfg.flavor, l->c.anyres_cfg.size, l->c.anyres_grid, rows);
                    for (int f = 0; f < per; f++)
                        if (rows[f] >= 0) rows[f] += tile0 * tpi;
                    if (b->resize_dims) {  // anyres_max_N: the map the model resizes, if it does
                        int32_t *dims = b->resize_dims + 4 * b->n_resize, *from = b->resize_rows + resize_at;
                        int dd[4];
                        if (image_anyres_resize_plan(in[3 + 4 * j], in[4 + 4 * j], &l->c.anyres_cfg.pinpoints,
                                                     l->c.anyres_cfg.flavor, l->c.anyres_cfg.size, l->c.anyres_grid, dd,
                                                     from) == 1) {
                            for (int f = 0; f < dd[0] * dd[1]; f++) from[f] += tile0 * tpi;
                            for (int q = 0; q < 4; q++) dims[q] = dd[q];
                            resize_at += dd[0] * dd[1];
                            b->n_resize++;
                        }
                    }
                    tile0 += in[1 + 4 * j];
                    b->n_feat += per;
                }
                j++;
                for (int f = 0; f < per && p < keep; f++, p++) {
                    b->ids[start + p] = -1;
                    labels[start + p] = -100;
                    b->img_rows[k_row++] = start + p;
                }
            } else {
                b->ids[start + p] = id;
                labels[start + p] = y;
                p++;
            }
        }
        for (int t = 0; t < keep; t++) {
            b->pos[start + t] = t;
            int32_t y = t + 1 < keep ? labels[start + t + 1] : -100;  // position t predicts label t+1
            b->targets[start + t] = y < 0 ? -100 : y;
            b->n_targets += y >= 0;
        }
        int frames = sample_images(l, i, infos[k], imgs);
        if (frames)
            memcpy(b->pixels + (size_t)k_img * 3 * S * S, pixels[k], sizeof(float) * 3 * (size_t)S * S * frames);
        if (frames && is_video(ds, i) && !l->c.anyres) {  // its frames, for the model's video pooling
            if (!b->video_frame) b->video_frame = xcalloc((size_t)n_img, 1);
            memset(b->video_frame + k_img, 1, (size_t)frames);
        }
        k_img += frames;
        k_tok += keep;
        b->cu_seqlens[k + 1] = k_tok;
    }
    free(labels);
}

int loader_next(loader *l, loader_step *out) {
    slot *s = NULL;
    for (int i = 0; i < l->n_slots; i++)
        if (l->slots[i].used && l->slots[i].pos.epoch == l->next.epoch && l->slots[i].pos.step == l->next.step)
            s = &l->slots[i];
    if (!s) return llava_fail("loader: step %d/%lld was not scheduled", l->next.epoch, (long long)l->next.step);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    pthread_mutex_lock(&l->mu);
    while (s->pending > 0) pthread_cond_wait(&l->done, &l->mu);
    pthread_mutex_unlock(&l->mu);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    l->wait_s += (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);

    memset(out, 0, sizeof *out);
    out->accum = l->c.accum;
    out->pos = s->pos;
    out->micro = xcalloc((size_t)l->c.accum, sizeof(loader_micro));
    int B = l->c.batch;
    int64_t *keep = xmalloc(sizeof(int64_t) * (size_t)B);
    float **px = xmalloc(sizeof(float *) * (size_t)B);
    int **inf = xmalloc(sizeof(int *) * (size_t)B);
    for (int m = 0; m < l->c.accum; m++) {
        loader_micro *mb = &out->micro[m];
        int n = 0;
        for (int k = 0; k < s->count[m]; k++) {
            int idx = m * B + k;
            int64_t i = s->samples[idx];
            int imgs, len;
            sample_shape(l, i, s->info[idx], &imgs, &len);
            int n_paths = prep_image_count(l->c.ds->image_paths[i]);
            if (is_video(l->c.ds, i) && n_paths) n_paths = 1;  // a video: one <image> for its frames
            const char *why = NULL;
            char msg[96];
            loader_drop reason = LOADER_DROP_IMAGE_UNREADABLE;
            if (s->error[idx]) why = s->error[idx];
            else if (l->c.anyres && is_video(l->c.ds, i) && imgs)
                why = "a video sample under AnyRes (LLaVA-NeXT tiles images, not video frames: not supported)",
                reason = LOADER_DROP_VIDEO_ANYRES;
            else if (imgs > n_paths && n_paths) {
                snprintf(msg, sizeof msg, "%d <image> tokens for %d images", imgs, n_paths);
                why = n_paths == 1 ? "more than one <image> in the sample" : msg, reason = LOADER_DROP_TOO_MANY_IMAGES;
            } else if (imgs && !n_paths)
                why = "an <image> token but no image file", reason = LOADER_DROP_TOKEN_NO_IMAGE;
            else if (imgs < n_paths) {
                snprintf(msg, sizeof msg, "%d <image> token%s for %d images", imgs, imgs == 1 ? "" : "s", n_paths);
                why = imgs ? msg : "an image but no <image> token", reason = LOADER_DROP_IMAGE_NO_TOKEN;
            } else if (imgs && l->c.max_len_after_splice > 0) {
                // the end of the last image in the expanded sequence
                int at = 0, seen = 0, end = 0;
                for (int t = 0; seen < imgs; t++) {
                    int img = l->c.ds->input_ids[l->c.ds->offsets[i] + t] == IMAGE_TOKEN;
                    at += img ? placeholder_len(l, i, s->info[idx], seen) : 1;
                    if (img) seen++, end = at;
                }
                if (end > l->c.max_len_after_splice)
                    why = "truncation would cut an image", reason = LOADER_DROP_IMAGE_CUT;
            }
            if (why) {
                drop(l, i, reason, why);
                mb->n_dropped++;
                continue;
            }
            keep[n] = i;
            px[n] = s->pixels[idx];
            inf[n] = s->info[idx];
            n++;
        }
        mb->n_samples = n;
        mb->samples = xmalloc(sizeof(int64_t) * (size_t)(n ? n : 1));
        memcpy(mb->samples, keep, sizeof(int64_t) * (size_t)n);
        // Chunks of at most token_budget tokens, split at sample boundaries.
        int from = 0;
        while (from < n) {
            int to = from, tokens = 0;
            while (to < n) {
                int imgs, len;
                sample_shape(l, keep[to], inf[to], &imgs, &len);
                if (l->c.max_len_after_splice > 0 && len > l->c.max_len_after_splice) len = l->c.max_len_after_splice;
                if (l->c.token_budget > 0 && to > from && tokens + len > l->c.token_budget) break;
                tokens += len;
                to++;
            }
            mb->chunks = xrealloc(mb->chunks, sizeof(llava_batch) * (size_t)(mb->n_chunks + 1));
            pack(l, keep + from, px + from, inf + from, to - from, &mb->chunks[mb->n_chunks]);
            mb->n_tokens += mb->chunks[mb->n_chunks].T;
            mb->n_targets += mb->chunks[mb->n_chunks].n_targets;
            mb->n_chunks++;
            from = to;
        }
    }
    free(keep);
    free(px);
    free(inf);
    slot_release(s, l->c.accum * B);
    if (++l->next.step == l->steps_per_epoch) {
        l->next.step = 0;
        l->next.epoch++;
    }
    schedule(l);
    return 0;
}

void loader_step_free(loader_step *s) {
    for (int m = 0; s->micro && m < s->accum; m++) {
        for (int c = 0; c < s->micro[m].n_chunks; c++) llava_batch_free(&s->micro[m].chunks[c]);
        free(s->micro[m].chunks);
        free(s->micro[m].samples);
    }
    free(s->micro);
    memset(s, 0, sizeof *s);
}
