#include "checkpoint.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/crc32c.h"
#include "common/dtype.h"
#include "common/json.h"
#include "common/util.h"
#include "fault.h"
#include "model/io/safetensors.h"

// The manifest, written last: its presence makes a checkpoint complete.
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
        if (o->master[g]) optim_state_read(o, m, o->master[g], h->w, n);
        else ops->download(be, BUF_PARAM, h->w, m->params[g], n);
        optim_state_read(o, m, o->m[g], h->m, n);
        optim_state_read(o, m, o->v[g], h->v, n);
        return;
    }
    int sharded = o->sharded[g] && m->param_sharded[g];
    if (root) {
        // Every rank holds all parameters after the all-gather (ZeRO-3: its slices of them, gathered
        // here like the state); the masters (GPU) and the moments are sharded. Frozen views keep zero
        // moments, as on one rank.
        h->w = xcalloc(n, sizeof(float));
        h->m = xcalloc(n, sizeof(float));
        h->v = xcalloc(n, sizeof(float));
        if (!sharded) ops->download(be, BUF_PARAM, h->w, m->params[g], n);
    }
    for (int b = 0; b < o->n_buckets; b++) {
        const grad_bucket *k = &o->buckets[b];
        if (k->group != g) continue;
        float *slice = xmalloc(sizeof(float) * (k->own_n ? k->own_n : 1));
        float *srcs[3] = {o->m[g], o->v[g], o->master[g]};
        float *dsts[3] = {root ? h->m + k->lo : NULL, root ? h->v + k->lo : NULL, root ? h->w + k->lo : NULL};
        for (int j = 0; j < 3; j++) {
            if (j == 2 && !srcs[j] && sharded) {  // ZeRO-3 on the CPU: the parameter slices are the masters
                optim_pshard_download(o, m, g, b, slice);
                dist_gather_host_f32(o->d, slice, k->n, dsts[j], 0, "checkpoint: gather parameters");
                continue;
            }
            if (!srcs[j]) continue;
            if (k->own_n) optim_state_read(o, m, srcs[j] + k->state_off, slice, k->own_n);
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
    if (st->n_loss_window > 0) {
        cJSON *w = cJSON_CreateArray();
        for (int i = 0; i < st->n_loss_window; i++) cJSON_AddItemToArray(w, cJSON_CreateNumber(st->loss_window[i]));
        cJSON_AddItemToObject(j, "loss_window", w);
    }
    if (st->dataset_json) {
        cJSON *ds = cJSON_Parse(st->dataset_json);
        if (ds) cJSON_AddItemToObject(j, "dataset", ds);
    }
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

// ---------------------------------------------------------------------------------------------
// The manifest: COMPLETE, written last, lists every file of the checkpoint with its length and its
// CRC-32C as computed from memory while the file was written. Format 1 checkpoints (before
// checksums) hold "ok" there and can only be taken on trust.

typedef struct {
    const char *name;
    uint64_t bytes;
    uint32_t crc;
} manifest_file;

static char *manifest_json(int step, const manifest_file *f, int n) {
    cJSON *j = cJSON_CreateObject();
    cJSON_AddNumberToObject(j, "format", 2);
    cJSON_AddNumberToObject(j, "step", step);
    cJSON *arr = cJSON_AddArrayToObject(j, "files");
    for (int i = 0; i < n; i++) {
        cJSON *e = cJSON_CreateObject();
        char crc[16];
        snprintf(crc, sizeof crc, "%08x", f[i].crc);
        cJSON_AddStringToObject(e, "name", f[i].name);
        cJSON_AddNumberToObject(e, "bytes", (double)f[i].bytes);
        cJSON_AddStringToObject(e, "crc32c", crc);
        cJSON_AddItemToArray(arr, e);
    }
    char *out = cJSON_Print(j);
    cJSON_Delete(j);
    size_t n_out = strlen(out);
    out = xrealloc(out, n_out + 2);
    strcpy(out + n_out, "\n");
    return out;
}

int ckpt_verify(const char *dir, char *why, size_t cap) {
    char *mpath = path_join(dir, MARKER);
    size_t len = 0;
    char *text = read_file(mpath, 1 << 20, &len);
    free(mpath);
    if (!text) {
        snprintf(why, cap, "%s has no %s manifest: it was never finished", dir, MARKER);
        return 0;
    }
    if (len <= 3 && strncmp(text, "ok", 2) == 0) {  // format 1: no checksums to compare
        free(text);
        return 2;
    }
    cJSON *j = cJSON_ParseWithLength(text, len);
    free(text);
    const cJSON *files = j ? cJSON_GetObjectItemCaseSensitive(j, "files") : NULL;
    if (!cJSON_IsArray(files) || cJSON_GetArraySize(files) == 0) {
        snprintf(why, cap, "%s: its %s manifest is damaged", dir, MARKER);
        cJSON_Delete(j);
        return 0;
    }
    int good = 1;
    for (const cJSON *e = files->child; e && good; e = e->next) {
        const cJSON *name = cJSON_GetObjectItemCaseSensitive(e, "name"),
                    *bytes = cJSON_GetObjectItemCaseSensitive(e, "bytes");
        const cJSON *crc = cJSON_GetObjectItemCaseSensitive(e, "crc32c");
        if (!cJSON_IsString(name) || !cJSON_IsNumber(bytes) || !cJSON_IsString(crc) || strchr(name->valuestring, '/')) {
            snprintf(why, cap, "%s: its %s manifest is damaged", dir, MARKER);
            good = 0;
            break;
        }
        char *path = path_join(dir, name->valuestring);
        uint32_t got = 0;
        uint64_t got_bytes = 0;
        if (crc32c_file(path, &got, &got_bytes) != 0) {
            snprintf(why, cap, "%s: %s", dir, llava_errmsg());
            good = 0;
        } else if (got_bytes != (uint64_t)bytes->valuedouble) {
            snprintf(why, cap, "%s: %s has %llu bytes, its manifest says %llu", dir, name->valuestring,
                     (unsigned long long)got_bytes, (unsigned long long)bytes->valuedouble);
            good = 0;
        } else {
            char hex[16];
            snprintf(hex, sizeof hex, "%08x", got);
            if (strcmp(hex, crc->valuestring) != 0) {
                snprintf(why, cap, "%s: %s is damaged (crc32c %s, its manifest says %s)", dir, name->valuestring, hex,
                         crc->valuestring);
                good = 0;
            }
        }
        free(path);
    }
    cJSON_Delete(j);
    return good;
}

void ckpt_verified_free(ckpt_verified *v) {
    free(v->steps);
    memset(v, 0, sizeof *v);
}

static int verified_has(const ckpt_verified *v, int step) {
    for (int i = 0; v && i < v->n; i++)
        if (v->steps[i] == step) return 1;
    return 0;
}

static void verified_add(ckpt_verified *v, int step) {
    if (!v || verified_has(v, step)) return;
    v->steps = xrealloc(v->steps, sizeof(int) * (size_t)(v->n + 1));
    v->steps[v->n++] = step;
}

// A damaged checkpoint is set aside (renamed damaged-checkpoint-<step>), never deleted: a person may
// want to look at it, and it no longer counts as complete.
static void set_aside(const char *out_dir, int step, const char *why) {
    char name[64], aside[80];
    snprintf(name, sizeof name, "checkpoint-%d", step);
    snprintf(aside, sizeof aside, "damaged-checkpoint-%d", step);
    char *from = path_join(out_dir, name), *to = path_join(out_dir, aside);
    remove_tree(to);
    if (rename(from, to) == 0) fprintf(stderr, "checkpoint: %s: set aside as %s\n", why, to);
    else fprintf(stderr, "checkpoint: %s (it could not be set aside: %s)\n", why, strerror(errno));
    free(from);
    free(to);
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

char *ckpt_latest_good(const char *out_dir, ckpt_verified *v) {
    int *steps;
    int n = list_complete(out_dir, &steps);
    char *r = NULL;
    for (int i = n - 1; i >= 0 && !r; i--) {
        char name[64], why[512];
        snprintf(name, sizeof name, "checkpoint-%d", steps[i]);
        char *dir = path_join(out_dir, name);
        int ok = ckpt_verify(dir, why, sizeof why);
        if (ok == 0) {
            set_aside(out_dir, steps[i], why);
            free(dir);
            continue;
        }
        if (ok == 2)
            fprintf(stderr, "checkpoint: %s was written before checkpoints had checksums: taken as it is\n", dir);
        verified_add(v, steps[i]);
        r = dir;
    }
    free(steps);
    return r;
}

// Rank 0 writes the files; the others only contribute their shards. The result is rank 0's.
static int save_files(const char *out_dir, const llava_model *m, group_host *h, const ckpt_state *st, int keep,
                      ckpt_verified *verified) {
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
    manifest_file files[3] = {{"weights.safetensors", 0, 0}, {"optimizer.safetensors", 0, 0}, {"state.json", 0, 0}};
    if (rc == 0) rc = st_writer_save(&ww, wpath);  // each file is fsynced before it is renamed into place
    files[0].bytes = ww.bytes, files[0].crc = ww.crc32c;
    if (rc == 0) debug_fault_pause("ckpt-tmp", 0, st->step);  // a test's kill: a torn temporary folder
    if (rc == 0) rc = st_writer_save(&wo, opath);
    files[1].bytes = wo.bytes, files[1].crc = wo.crc32c;
    if (rc == 0) {
        char *js = state_json(st);
        files[2].bytes = strlen(js), files[2].crc = crc32c(0, js, strlen(js));
        rc = write_file_atomic(spath, js, strlen(js));
        free(js);
    }
    if (rc == 0) rc = fsync_dir(tmp);
    // What reached the disk must be what was computed: read every file back before the checkpoint
    // can count as complete (and before rotation deletes an older one because of it).
    const char *paths[3] = {wpath, opath, spath};
    for (int i = 0; i < 3 && rc == 0; i++) {
        uint32_t crc = 0;
        uint64_t bytes = 0;
        rc = crc32c_file(paths[i], &crc, &bytes);
        if (rc == 0 && (crc != files[i].crc || bytes != files[i].bytes))
            rc = llava_fail(
                "checkpoint-%d: %s reads back as %llu bytes with crc32c %08x, written as %llu bytes with "
                "%08x: the storage changed it",
                st->step, files[i].name, (unsigned long long)bytes, crc, (unsigned long long)files[i].bytes,
                files[i].crc);
    }
    // A folder of this name can only be a leftover without its marker (a run killed between the
    // rename and the marker): it is replaced.
    if (rc == 0 && dir_exists(final)) remove_tree(final);
    if (rc == 0 && rename(tmp, final) != 0)
        rc = llava_fail("checkpoint: rename %s -> %s: %s", tmp, final, strerror(errno));
    if (rc == 0) rc = fsync_dir(out_dir);
    if (rc == 0) debug_fault_pause("ckpt-nomarker", 0, st->step);  // a test's kill: no manifest yet
    if (rc == 0) {
        char *marker = path_join(final, MARKER), *man = manifest_json(st->step, files, 3);
        rc = write_file_atomic(marker, man, strlen(man));  // fsyncs the manifest and the folder
        free(marker);
        free(man);
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
    verified_add(verified, st->step);
    // Prune, newest first: the newest `keep` checkpoints known to be good stay. One not verified in
    // this process yet is verified before it is counted; a damaged one is set aside and counts for
    // nothing, so a good checkpoint is never deleted because of a damaged one.
    int *steps;
    int n = list_complete(out_dir, &steps), kept = 0;
    for (int i = n - 1; i >= 0; i--) {
        snprintf(name, sizeof name, "checkpoint-%d", steps[i]);
        char *p = path_join(out_dir, name);
        if (kept < keep) {
            char why[512];
            int ok = verified_has(verified, steps[i]) ? 1 : ckpt_verify(p, why, sizeof why);
            if (ok == 0) {
                set_aside(out_dir, steps[i], why);
            } else {
                if (ok == 1) verified_add(verified, steps[i]);
                kept++;
            }
        } else {
            remove_tree(p);
        }
        free(p);
    }
    free(steps);
    return 0;
}

int ckpt_save(const char *out_dir, const llava_model *m, const optim_state *o, const ckpt_state *st, int keep,
              ckpt_verified *verified) {
    group_host h[N_GROUPS] = {0};
    for (int g = 0; g < N_GROUPS; g++)
        if (llava_model_trains(m, g)) gather_group(m, o, g, &h[g]);
    int rc = dist_rank(o->d) == 0 ? save_files(out_dir, m, h, st, keep, verified) : 0;
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
    // Steps with a non-finite gradient are skipped, so a good run never saves one: a NaN here
    // is damage the manifest could not see (or a checkpoint from elsewhere). Refuse it by name.
    size_t bad = 0, at = f32_first_nonfinite(dst, v->numel, &bad);
    if (bad)
        return llava_fail(
            "checkpoint %s: tensor \"%s\" holds %zu values that are not finite (the first at element %zu)", f->path,
            key, bad, at);
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
    const cJSON *lw = cJSON_GetObjectItemCaseSensitive(j, "loss_window");
    if (rc == 0 && cJSON_IsArray(lw)) {
        int n = cJSON_GetArraySize(lw);
        st->loss_window = xcalloc((size_t)(n ? n : 1), sizeof(double));
        for (const cJSON *e = lw->child; e; e = e->next)
            if (cJSON_IsNumber(e)) st->loss_window[st->n_loss_window++] = e->valuedouble;
    }
    const cJSON *cfg = cJSON_GetObjectItemCaseSensitive(j, "config");
    if (cfg) st->config_json = cJSON_PrintUnformatted(cfg);
    cJSON_Delete(j);
    if (rc != 0) {
        ckpt_state_free(st);
        return rc;
    }

    char *wpath = path_join(dir, "weights.safetensors"), *opath = path_join(dir, "optimizer.safetensors");
    st_file fw, fo;
    rc = st_open(&fw, wpath);
    if (rc == 0 && st_open(&fo, opath) != 0) {
        st_close(&fw);
        rc = -1;
    }
    free(wpath);
    free(opath);
    if (rc != 0) {
        ckpt_state_free(st);
        return rc;
    }
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
            if (o->sharded[g] && m->param_sharded[g]) optim_pshard_upload(o, m, g, w);  // ZeRO-3: its slices
            else m->ops->upload(m->be, BUF_PARAM, m->params[g], w, n);
            if (o->zero == 0) {
                if (o->master[g]) optim_state_write(o, m, o->master[g], w, n);
                optim_state_write(o, m, o->m[g], mm, n);
                optim_state_write(o, m, o->v[g], vv, n);
            } else {
                for (int b = 0; b < o->n_buckets; b++) {
                    const grad_bucket *k = &o->buckets[b];
                    if (k->group != g || !k->own_n) continue;
                    if (o->master[g]) optim_state_write(o, m, o->master[g] + k->state_off, w + k->own_lo, k->own_n);
                    optim_state_write(o, m, o->m[g] + k->state_off, mm + k->own_lo, k->own_n);
                    optim_state_write(o, m, o->v[g] + k->state_off, vv + k->own_lo, k->own_n);
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
        // AdamW's own count of applied updates (its bias correction): the steps that were not skipped.
        o->step = st->step - (int)st->n_skipped;
        o->n_skipped = st->n_skipped;
    } else {
        ckpt_state_free(st);  // a refused checkpoint leaves nothing behind
    }
    return rc;
}

void ckpt_state_free(ckpt_state *st) {
    free(st->config_json);
    free(st->loss_window);
    st->config_json = NULL;
    st->loss_window = NULL;
    st->n_loss_window = 0;
}
