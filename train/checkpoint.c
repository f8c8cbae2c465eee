#include "checkpoint.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/json.h"
#include "common/util.h"
#include "model/io/safetensors.h"

#define MARKER "COMPLETE"

// Host fp32 copies of a trainable group's weights and moments, whole (on the writing rank).
typedef struct {
    float *w, *m, *v;
} group_host;

// Assembles group g's weights and moments on rank 0 (h filled there only). Every rank takes part:
// with ZeRO-1/2 each bucket's slices are gathered from their owners.
static void gather_group(const llava_model *m, const optim_state *o, int g, group_host *h) {
    int root = dist_rank(o->d) == 0;
    size_t n = m->pt.group_numel[g];
    llava_backend *be = m->be;
    const llava_ops *ops = be->ops;
    if (o->zero == 0) {
        if (!root) return;  // every rank holds the same state: rank 0 writes its own
        h->w = xmalloc(sizeof(float) * n);
        h->m = xmalloc(sizeof(float) * n);
        h->v = xmalloc(sizeof(float) * n);
        // The fp32 masters where the working copy is narrower; otherwise the parameters themselves.
        if (o->master[g]) ops->download(be, BUF_F32, h->w, o->master[g], n);
        else ops->download(be, BUF_PARAM, h->w, m->params[g], n);
        ops->download(be, BUF_F32, h->m, o->m[g], n);
        ops->download(be, BUF_F32, h->v, o->v[g], n);
        return;
    }
    if (root) {
        // Every rank holds all parameters after the all-gather; the masters (GPU) and the moments
        // are sharded. Frozen views keep zero moments, as on one rank.
        h->w = xmalloc(sizeof(float) * n);
        h->m = xcalloc(n, sizeof(float));
        h->v = xcalloc(n, sizeof(float));
        ops->download(be, BUF_PARAM, h->w, m->params[g], n);
    }
    for (int b = 0; b < o->n_buckets; b++) {
        const grad_bucket *k = &o->buckets[b];
        if (k->group != g) continue;
        float *slice = xmalloc(sizeof(float) * (k->own_n ? k->own_n : 1));
        float *srcs[3] = {o->m[g], o->v[g], o->master[g]};
        float *dsts[3] = {root ? h->m + k->lo : NULL, root ? h->v + k->lo : NULL, root ? h->w + k->lo : NULL};
        for (int j = 0; j < 3; j++) {
            if (!srcs[j]) continue;
            if (k->own_n) ops->download(be, BUF_F32, slice, srcs[j] + k->state_off, k->own_n);
            dist_gather_host_f32(o->d, slice, k->n, dsts[j], 0, "checkpoint: gather optimizer state");
        }
        free(slice);
    }
}

static char *state_json(const ckpt_state *st) {
    cJSON *j = cJSON_CreateObject();
    cJSON_AddNumberToObject(j, "format", 1);
    cJSON_AddNumberToObject(j, "step", st->step);
    cJSON_AddNumberToObject(j, "epoch", st->epoch);
    cJSON_AddNumberToObject(j, "loader_step", (double)st->loader_step);
    cJSON_AddNumberToObject(j, "n_skipped", (double)st->n_skipped);
    cJSON_AddNumberToObject(j, "consecutive_skipped", st->consecutive_skipped);
    cJSON_AddNumberToObject(j, "tokens_seen", (double)st->tokens_seen);
    cJSON_AddNumberToObject(j, "world", st->world);
    if (st->config_json) {
        cJSON *cfg = cJSON_Parse(st->config_json);
        if (cfg) cJSON_AddItemToObject(j, "config", cfg);
    }
    char *s = cJSON_Print(j);
    cJSON_Delete(j);
    return s;
}

static int is_checkpoint_name(const char *name, int *step) {
    if (strncmp(name, "checkpoint-", 11) != 0) return 0;
    char *end;
    long v = strtol(name + 11, &end, 10);
    if (*end || end == name + 11 || v < 0) return 0;
    *step = (int)v;
    return 1;
}

static int has_marker(const char *dir) {
    char *p = path_join(dir, MARKER);
    int ok = file_exists(p);
    free(p);
    return ok;
}

void ckpt_clean_partial(const char *out_dir) {
    DIR *d = opendir(out_dir);
    if (!d) return;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (strncmp(e->d_name, ".tmp-checkpoint-", 16) != 0) continue;
        char *p = path_join(out_dir, e->d_name);
        remove_tree(p);
        free(p);
    }
    closedir(d);
}

// Complete checkpoints under out_dir, sorted by step (ascending). Returns the count.
static int list_complete(const char *out_dir, int **steps_out) {
    DIR *d = opendir(out_dir);
    int *steps = NULL, n = 0;
    if (d) {
        struct dirent *e;
        while ((e = readdir(d))) {
            int s;
            if (!is_checkpoint_name(e->d_name, &s)) continue;
            char *p = path_join(out_dir, e->d_name);
            if (has_marker(p)) {
                steps = xrealloc(steps, sizeof(int) * (size_t)(n + 1));
                steps[n++] = s;
            }
            free(p);
        }
        closedir(d);
    }
    for (int i = 1; i < n; i++)
        for (int j = i; j > 0 && steps[j - 1] > steps[j]; j--) {
            int t = steps[j];
            steps[j] = steps[j - 1];
            steps[j - 1] = t;
        }
    *steps_out = steps;
    return n;
}

char *ckpt_latest(const char *out_dir) {
    int *steps;
    int n = list_complete(out_dir, &steps);
    char *r = NULL;
    if (n > 0) {
        char name[64];
        snprintf(name, sizeof name, "checkpoint-%d", steps[n - 1]);
        r = path_join(out_dir, name);
    }
    free(steps);
    return r;
}

// Rank 0 writes the files; the others only contribute their shards. The result is rank 0's.
static int save_files(const char *out_dir, const llava_model *m, group_host *h, const ckpt_state *st, int keep) {
    if (mkdir_p(out_dir) != 0) return -1;
    char name[64];
    snprintf(name, sizeof name, ".tmp-checkpoint-%d-%d", st->step, (int)getpid());
    char *tmp = path_join(out_dir, name);
    snprintf(name, sizeof name, "checkpoint-%d", st->step);
    char *final = path_join(out_dir, name);
    remove_tree(tmp);
    int rc = mkdir_p(tmp);
    st_writer ww, wo;
    st_writer_init(&ww);
    st_writer_init(&wo);
    for (int g = 0; g < N_GROUPS && rc == 0; g++) {
        if (!llava_model_trains(m, g)) continue;
        for (int i = 0; i < m->pt.n_views && rc == 0; i++) {
            const param_view *v = &m->pt.views[i];
            if (v->group != g || !v->used) continue;
            rc = st_writer_add(&ww, v->name, DT_F32, v->ndim, v->shape, h[g].w + v->offset);
            char *km = xasprintf("m.%s", v->name), *kv = xasprintf("v.%s", v->name);
            if (rc == 0) rc = st_writer_add(&wo, km, DT_F32, v->ndim, v->shape, h[g].m + v->offset);
            if (rc == 0) rc = st_writer_add(&wo, kv, DT_F32, v->ndim, v->shape, h[g].v + v->offset);
            free(km);  // the writer keeps its own copies of names
            free(kv);
        }
    }
    char *wpath = path_join(tmp, "weights.safetensors"), *opath = path_join(tmp, "optimizer.safetensors");
    char *spath = path_join(tmp, "state.json");
    if (rc == 0) rc = st_writer_save(&ww, wpath);  // each file is fsynced before it is renamed into place
    if (rc == 0) rc = st_writer_save(&wo, opath);
    if (rc == 0) {
        char *js = state_json(st);
        rc = write_file_atomic(spath, js, strlen(js));
        free(js);
    }
    if (rc == 0) rc = fsync_dir(tmp);
    // A folder of this name can only be a leftover without its marker (a run killed between the
    // rename and the marker): it is replaced.
    if (rc == 0 && dir_exists(final)) remove_tree(final);
    if (rc == 0 && rename(tmp, final) != 0)
        rc = llava_fail("checkpoint: rename %s -> %s: %s", tmp, final, strerror(errno));
    if (rc == 0) rc = fsync_dir(out_dir);
    if (rc == 0) {
        char *marker = path_join(final, MARKER);
        rc = write_file_atomic(marker, "ok\n", 3);  // fsyncs the marker and the folder
        free(marker);
    }
    if (rc != 0) remove_tree(tmp);
    st_writer_free(&ww);
    st_writer_free(&wo);
    free(wpath);
    free(opath);
    free(spath);
    free(tmp);
    free(final);
    if (rc != 0) return rc;
    // Prune: only complete checkpoints count, and only after this one is complete.
    int *steps;
    int n = list_complete(out_dir, &steps);
    for (int i = 0; i < n - keep; i++) {
        snprintf(name, sizeof name, "checkpoint-%d", steps[i]);
        char *p = path_join(out_dir, name);
        remove_tree(p);
        free(p);
    }
    free(steps);
    return 0;
}

int ckpt_save(const char *out_dir, const llava_model *m, const optim_state *o, const ckpt_state *st, int keep) {
    group_host h[N_GROUPS] = {0};
    for (int g = 0; g < N_GROUPS; g++)
        if (llava_model_trains(m, g)) gather_group(m, o, g, &h[g]);
    int rc = dist_rank(o->d) == 0 ? save_files(out_dir, m, h, st, keep) : 0;
    for (int g = 0; g < N_GROUPS; g++) {
        free(h[g].w);
        free(h[g].m);
        free(h[g].v);
    }
    // Every rank learns whether the checkpoint was written (and fails with rank 0 if not).
    double ok = rc == 0 ? 1.0 : 0.0;
    if (dist_rank(o->d) != 0) ok = 0.0;
    dist_allreduce_host_f64(o->d, &ok, 1, "checkpoint: result");
    if (ok != 1.0 && rc == 0) rc = llava_fail("checkpoint-%d: rank 0 could not write it", st->step);
    return rc;
}

static int restore_tensor(const st_file *f, const char *key, const param_view *v, float *dst) {
    const st_tensor *t = st_find(f, key);
    if (!t) return llava_fail("checkpoint %s: no tensor \"%s\" (was the run's trainable set different?)", f->path, key);
    if (t->dtype != DT_F32 || t->numel != v->numel)
        return llava_fail("checkpoint %s: tensor \"%s\" has %llu elements, the model %zu", f->path, key,
                          (unsigned long long)t->numel, v->numel);
    memcpy(dst, t->data, sizeof(float) * v->numel);
    return 0;
}

int ckpt_load(const char *dir, llava_model *m, optim_state *o, ckpt_state *st) {
    memset(st, 0, sizeof *st);
    if (!has_marker(dir)) return llava_fail("checkpoint %s: no %s marker: it was never finished", dir, MARKER);
    char *spath = path_join(dir, "state.json");
    size_t len;
    char *text = read_file(spath, 64u << 20, &len);
    free(spath);
    if (!text) return -1;
    cJSON *j = cJSON_ParseWithLength(text, len);
    free(text);
    if (!j) return llava_fail("checkpoint %s: state.json is not valid JSON", dir);
    double d;
    int rc = 0;
    if (json_int(j, "step", &st->step, dir) != 1 || json_int(j, "epoch", &st->epoch, dir) != 1)
        rc = llava_fail("checkpoint %s: state.json lacks step or epoch", dir);
    if (rc == 0 && json_double(j, "loader_step", &d, dir) == 1) st->loader_step = (int64_t)d;
    if (rc == 0 && json_double(j, "n_skipped", &d, dir) == 1) st->n_skipped = (long)d;
    if (rc == 0 && json_double(j, "tokens_seen", &d, dir) == 1) st->tokens_seen = (int64_t)d;
    if (rc == 0) json_int(j, "consecutive_skipped", &st->consecutive_skipped, dir);
    if (rc == 0) json_int(j, "world", &st->world, dir);
    const cJSON *cfg = cJSON_GetObjectItemCaseSensitive(j, "config");
    if (cfg) st->config_json = cJSON_PrintUnformatted(cfg);
    cJSON_Delete(j);
    if (rc != 0) return rc;

    char *wpath = path_join(dir, "weights.safetensors"), *opath = path_join(dir, "optimizer.safetensors");
    st_file fw, fo;
    rc = st_open(&fw, wpath);
    if (rc == 0 && st_open(&fo, opath) != 0) {
        st_close(&fw);
        rc = -1;
    }
    free(wpath);
    free(opath);
    if (rc != 0) return rc;
    for (int g = 0; g < N_GROUPS && rc == 0; g++) {
        if (!llava_model_trains(m, g)) continue;
        size_t n = m->pt.group_numel[g];
        float *w = xmalloc(sizeof(float) * n), *mm = xmalloc(sizeof(float) * n), *vv = xmalloc(sizeof(float) * n);
        for (int i = 0; i < m->pt.n_views && rc == 0; i++) {
            const param_view *v = &m->pt.views[i];
            if (v->group != g || !v->used) continue;
            char km[256], kv[256];
            snprintf(km, sizeof km, "m.%s", v->name);
            snprintf(kv, sizeof kv, "v.%s", v->name);
            rc = restore_tensor(&fw, v->name, v, w + v->offset);
            if (rc == 0) rc = restore_tensor(&fo, km, v, mm + v->offset);
            if (rc == 0) rc = restore_tensor(&fo, kv, v, vv + v->offset);
        }
        if (rc == 0) {
            // Rank-agnostic: every rank reads the whole file and keeps its own slices.
            m->ops->upload(m->be, BUF_PARAM, m->params[g], w, n);
            if (o->zero == 0) {
                if (o->master[g]) m->ops->upload(m->be, BUF_F32, o->master[g], w, n);
                m->ops->upload(m->be, BUF_F32, o->m[g], mm, n);
                m->ops->upload(m->be, BUF_F32, o->v[g], vv, n);
            } else {
                for (int b = 0; b < o->n_buckets; b++) {
                    const grad_bucket *k = &o->buckets[b];
                    if (k->group != g || !k->own_n) continue;
                    if (o->master[g])
                        m->ops->upload(m->be, BUF_F32, o->master[g] + k->state_off, w + k->own_lo, k->own_n);
                    m->ops->upload(m->be, BUF_F32, o->m[g] + k->state_off, mm + k->own_lo, k->own_n);
                    m->ops->upload(m->be, BUF_F32, o->v[g] + k->state_off, vv + k->own_lo, k->own_n);
                }
            }
        }
        free(w);
        free(mm);
        free(vv);
    }
    st_close(&fw);
    st_close(&fo);
    if (rc == 0) {
        o->step = st->step;
        o->n_skipped = st->n_skipped;
    }
    return rc;
}

void ckpt_state_free(ckpt_state *st) {
    free(st->config_json);
    st->config_json = NULL;
}
