#include "safetensors.h"
#include "torchbin.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/crc32c.h"
#include "common/util.h"

// Largest integer a JSON number (a double in cJSON) holds exactly.
#define JSON_MAX_EXACT 9007199254740992.0

static int get_u64(const cJSON *item, uint64_t *out) {
    if (!cJSON_IsNumber(item)) return -1;
    double d = item->valuedouble;
    if (!(d >= 0) || d > JSON_MAX_EXACT || floor(d) != d) return -1;
    *out = (uint64_t)d;
    return 0;
}

static int cmp_tensor_name(const void *a, const void *b) {
    return strcmp(((const st_tensor *)a)->name, ((const st_tensor *)b)->name);
}

static int cmp_tensor_ptr_begin(const void *a, const void *b) {
    const st_tensor *x = *(const st_tensor *const *)a, *y = *(const st_tensor *const *)b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end) return x->end < y->end ? -1 : 1;
    return 0;
}

static void free_parsed(st_file *f) {
    for (int i = 0; i < f->n_tensors; i++) free(f->tensors[i].name);
    free(f->tensors);
    for (int i = 0; i < f->n_meta; i++) {
        free(f->meta_keys[i]);
        free(f->meta_vals[i]);
    }
    free(f->meta_keys);
    free(f->meta_vals);
    f->tensors = NULL;
    f->n_tensors = 0;
    f->meta_keys = f->meta_vals = NULL;
    f->n_meta = 0;
}

static int parse_tensor(const char *path, const cJSON *item, st_tensor *t) {
    const char *name = item->string;
    if (!cJSON_IsObject(item)) return llava_fail("safetensors: %s: tensor \"%s\": entry is not an object", path, name);
    const cJSON *jd = cJSON_GetObjectItemCaseSensitive(item, "dtype");
    const cJSON *js = cJSON_GetObjectItemCaseSensitive(item, "shape");
    const cJSON *jo = cJSON_GetObjectItemCaseSensitive(item, "data_offsets");
    if (!cJSON_IsString(jd))
        return llava_fail("safetensors: %s: tensor \"%s\": missing or non-string \"dtype\"", path, name);
    if (!cJSON_IsArray(js))
        return llava_fail("safetensors: %s: tensor \"%s\": missing or non-array \"shape\"", path, name);
    if (!cJSON_IsArray(jo))
        return llava_fail("safetensors: %s: tensor \"%s\": missing or non-array \"data_offsets\"", path, name);
    t->dtype = dtype_from_name(jd->valuestring);
    if (t->dtype == DT_INVALID)
        return llava_fail("safetensors: %s: tensor \"%s\": unknown dtype \"%.32s\"", path, name, jd->valuestring);
    int nd = cJSON_GetArraySize(js);
    if (nd > ST_MAX_DIMS)
        return llava_fail("safetensors: %s: tensor \"%s\": %d dimensions (at most %d supported)", path, name, nd,
                          ST_MAX_DIMS);
    t->ndim = nd;
    uint64_t numel = 1;
    int k = 0;
    for (const cJSON *d = js->child; d; d = d->next, k++) {
        uint64_t v;
        if (get_u64(d, &v) != 0)
            return llava_fail("safetensors: %s: tensor \"%s\": shape[%d] is not a non-negative integer", path, name, k);
        if (mul_overflow_u64(numel, v, &numel) != 0)
            return llava_fail("safetensors: %s: tensor \"%s\": shape overflows 64 bits", path, name);
        t->shape[k] = (int64_t)v;
    }
    t->numel = numel;
    if (cJSON_GetArraySize(jo) != 2)
        return llava_fail("safetensors: %s: tensor \"%s\": data_offsets must hold exactly 2 integers", path, name);
    if (get_u64(jo->child, &t->begin) != 0 || get_u64(jo->child->next, &t->end) != 0)
        return llava_fail("safetensors: %s: tensor \"%s\": data_offsets are not non-negative integers", path, name);
    if (t->end < t->begin)
        return llava_fail("safetensors: %s: tensor \"%s\": data_offsets [%llu, %llu) end before they begin", path, name,
                          (unsigned long long)t->begin, (unsigned long long)t->end);
    uint64_t bits;
    if (mul_overflow_u64(numel, dtype_bits(t->dtype), &bits) != 0)
        return llava_fail("safetensors: %s: tensor \"%s\": byte size overflows 64 bits", path, name);
    if (bits % 8 != 0)
        return llava_fail("safetensors: %s: tensor \"%s\": %llu elements of %s do not fill whole bytes", path, name,
                          (unsigned long long)numel, dtype_name(t->dtype));
    if (t->end - t->begin != bits / 8)
        return llava_fail(
            "safetensors: %s: tensor \"%s\": data_offsets [%llu, %llu) hold %llu bytes but %s with %llu "
            "elements needs %llu",
            path, name, (unsigned long long)t->begin, (unsigned long long)t->end,
            (unsigned long long)(t->end - t->begin), dtype_name(t->dtype), (unsigned long long)numel,
            (unsigned long long)(bits / 8));
    return 0;
}

static int parse_metadata(const char *path, const cJSON *item, st_file *out) {
    if (!cJSON_IsObject(item)) return llava_fail("safetensors: %s: \"__metadata__\" is not an object", path);
    int n = cJSON_GetArraySize(item);
    out->meta_keys = xcalloc((size_t)n, sizeof(char *));
    out->meta_vals = xcalloc((size_t)n, sizeof(char *));
    for (const cJSON *m = item->child; m; m = m->next) {
        if (!cJSON_IsString(m))
            return llava_fail("safetensors: %s: \"__metadata__\" value of \"%s\" is not a string", path, m->string);
        out->meta_keys[out->n_meta] = xstrdup(m->string);
        out->meta_vals[out->n_meta] = xstrdup(m->valuestring);
        out->n_meta++;
    }
    return 0;
}

int st_parse_header(const char *path, const uint8_t *header, size_t header_len, uint64_t data_len, st_file *out) {
    memset(out, 0, sizeof *out);
    if (header_len > ST_MAX_HEADER)
        return llava_fail("safetensors: %s: header of %zu bytes is over the %llu-byte cap", path, header_len,
                          (unsigned long long)ST_MAX_HEADER);
    if (!utf8_valid(header, header_len)) return llava_fail("safetensors: %s: header is not valid UTF-8", path);
    size_t start = 0;
    while (start < header_len &&
           (header[start] == ' ' || header[start] == '\t' || header[start] == '\n' || header[start] == '\r'))
        start++;
    if (start == header_len || header[start] != '{')
        return llava_fail("safetensors: %s: header does not start with a JSON object", path);
    // Embedded NULs would make cJSON stop early and hide the rest of the header.
    if (memchr(header, 0, header_len)) return llava_fail("safetensors: %s: header contains a NUL byte", path);
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts((const char *)header + start, header_len - start, &end, 0);
    if (!root)
        return llava_fail("safetensors: %s: header is not valid JSON (near byte %td)", path,
                          cJSON_GetErrorPtr() ? cJSON_GetErrorPtr() - (const char *)header : (ptrdiff_t)-1);
    for (const char *p = end; p < (const char *)header + header_len; p++) {
        if (*p != ' ' && *p != '\t' && *p != '\n' && *p != '\r') {
            cJSON_Delete(root);
            return llava_fail("safetensors: %s: bytes after the header's JSON object", path);
        }
    }
    if (!cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return llava_fail("safetensors: %s: header is not a JSON object", path);
    }
    int n = cJSON_GetArraySize(root);
    out->tensors = xcalloc((size_t)n, sizeof(st_tensor));
    int rc = 0;
    int seen_meta = 0;
    for (const cJSON *item = root->child; item; item = item->next) {
        if (!item->string || !item->string[0]) {
            rc = llava_fail("safetensors: %s: a tensor has an empty name", path);
            break;
        }
        if (strcmp(item->string, "__metadata__") == 0) {
            if (seen_meta++) {
                rc = llava_fail("safetensors: %s: \"__metadata__\" appears twice", path);
                break;
            }
            if ((rc = parse_metadata(path, item, out)) != 0) break;
            continue;
        }
        st_tensor *t = &out->tensors[out->n_tensors];
        if ((rc = parse_tensor(path, item, t)) != 0) break;
        t->name = xstrdup(item->string);
        out->n_tensors++;
    }
    cJSON_Delete(root);
    if (rc != 0) {
        free_parsed(out);
        return rc;
    }
    qsort(out->tensors, (size_t)out->n_tensors, sizeof(st_tensor), cmp_tensor_name);
    for (int i = 1; i < out->n_tensors; i++) {
        if (strcmp(out->tensors[i - 1].name, out->tensors[i].name) == 0) {
            llava_fail("safetensors: %s: tensor \"%s\" is defined twice", path, out->tensors[i].name);
            free_parsed(out);
            return -1;
        }
    }
    // Contiguity: sorted by offset, each tensor starts where the previous ended, the first at 0 and
    // the last at the end of the data section. This rules out holes, overlaps and trailing bytes.
    const st_tensor **by_off = xmalloc(sizeof(st_tensor *) * (size_t)(out->n_tensors ? out->n_tensors : 1));
    for (int i = 0; i < out->n_tensors; i++) by_off[i] = &out->tensors[i];
    qsort(by_off, (size_t)out->n_tensors, sizeof *by_off, cmp_tensor_ptr_begin);
    uint64_t pos = 0;
    for (int i = 0; i < out->n_tensors && rc == 0; i++) {
        const st_tensor *t = by_off[i];
        if (t->begin < pos)
            rc = llava_fail(
                "safetensors: %s: tensor \"%s\" at [%llu, %llu) overlaps the previous tensor (which ends at %llu)",
                path, t->name, (unsigned long long)t->begin, (unsigned long long)t->end, (unsigned long long)pos);
        else if (t->begin > pos)
            rc = llava_fail("safetensors: %s: tensor \"%s\" at [%llu, %llu) leaves a hole after offset %llu", path,
                            t->name, (unsigned long long)t->begin, (unsigned long long)t->end, (unsigned long long)pos);
        pos = t->end;
    }
    if (rc == 0 && pos != data_len) {
        if (pos > data_len) {
            const st_tensor *last = by_off[out->n_tensors - 1];
            rc = llava_fail(
                "safetensors: %s: tensor \"%s\" ends at data offset %llu, past the end of the file's %llu data bytes",
                path, last->name, (unsigned long long)pos, (unsigned long long)data_len);
        } else {
            rc = llava_fail("safetensors: %s: tensors end at data offset %llu but the file holds %llu data bytes", path,
                            (unsigned long long)pos, (unsigned long long)data_len);
        }
    }
    free(by_off);
    if (rc != 0) free_parsed(out);
    return rc;
}

int st_parse_buffer(const char *path, const uint8_t *buf, size_t len, st_file *out) {
    memset(out, 0, sizeof *out);
    if (len < 8) return llava_fail("safetensors: %s: %zu bytes is too short for a header length", path, len);
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--) n = (n << 8) | buf[i];
    if (n > ST_MAX_HEADER)
        return llava_fail("safetensors: %s: header length %llu is over the %llu-byte cap", path, (unsigned long long)n,
                          (unsigned long long)ST_MAX_HEADER);
    if (n > len - 8)
        return llava_fail("safetensors: %s: header length %llu runs past the end of the %zu-byte file", path,
                          (unsigned long long)n, len);
    if (st_parse_header(path, buf + 8, (size_t)n, len - 8 - n, out) != 0) return -1;
    out->header_len = n;
    for (int i = 0; i < out->n_tensors; i++) out->tensors[i].data = buf + 8 + n + out->tensors[i].begin;
    return 0;
}

int st_open(st_file *f, const char *path) {
    memset(f, 0, sizeof *f);
    int fd = open(path, O_RDONLY);
    if (fd < 0) return llava_fail("safetensors: %s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return llava_fail("safetensors: %s: not a regular file", path);
    }
    size_t len = (size_t)st.st_size;
    void *map = NULL;
    if (len > 0) {
        map = mmap(NULL, len, PROT_READ, MAP_PRIVATE, fd, 0);
        if (map == MAP_FAILED) {
            close(fd);
            return llava_fail("safetensors: %s: mmap failed: %s", path, strerror(errno));
        }
    }
    close(fd);
    static const uint8_t empty[1];
    // A PyTorch checkpoint (pytorch_model.bin, by its zip signature) or a safetensors file.
    int torch = map && tb_is_zip(map, len);
    if ((torch ? tb_parse_buffer(path, map, len, f) : st_parse_buffer(path, map ? map : empty, len, f)) != 0) {
        if (map) munmap(map, len);
        return -1;
    }
    f->map = map;
    f->map_len = len;
    f->path = xstrdup(path);
    return 0;
}

void st_close(st_file *f) {
    free_parsed(f);
    if (f->map) munmap(f->map, f->map_len);
    free(f->path);
    memset(f, 0, sizeof *f);
}

const st_tensor *st_find(const st_file *f, const char *name) {
    st_tensor key = {.name = (char *)name};
    return bsearch(&key, f->tensors, (size_t)f->n_tensors, sizeof(st_tensor), cmp_tensor_name);
}

const char *st_meta(const st_file *f, const char *key) {
    for (int i = 0; i < f->n_meta; i++)
        if (strcmp(f->meta_keys[i], key) == 0) return f->meta_vals[i];
    return NULL;
}

int st_tensor_to_f32(const st_file *f, const st_tensor *t, float *dst) {
    if (!t->data) return llava_fail("safetensors: %s: tensor \"%s\" has no data mapped", f->path, t->name);
    if (convert_to_f32(t->dtype, t->data, dst, (size_t)t->numel) != 0)
        return llava_fail("safetensors: %s: tensor \"%s\": dtype %s cannot be converted to F32", f->path, t->name,
                          dtype_name(t->dtype));
    return 0;
}

// ---------------------------------------------------------------------------------------------
// Sets of files

static int ends_with(const char *s, const char *suffix) {
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && strcmp(s + a - b, suffix) == 0;
}

typedef struct {
    const st_tensor *t;
    int file;
} set_entry;

static int cmp_set_entry(const void *a, const void *b) {
    return strcmp(((const set_entry *)a)->t->name, ((const set_entry *)b)->t->name);
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static int list_safetensors(const char *dir, char ***names_out) {
    DIR *d = opendir(dir);
    if (!d) return llava_fail("%s: cannot open directory: %s", dir, strerror(errno));
    char **names = NULL;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.' || !ends_with(e->d_name, ".safetensors")) continue;
        names = xrealloc(names, sizeof(char *) * (size_t)(n + 1));
        names[n++] = xstrdup(e->d_name);
    }
    closedir(d);
    if (n > 1) qsort(names, (size_t)n, sizeof(char *), cmp_str);
    *names_out = names;
    return n;
}

// PyTorch checkpoints of a folder that has no safetensors: the index, else the single file.
static char *torch_weights(const char *dir) {
    const char *names[] = {"pytorch_model.bin.index.json", "pytorch_model.bin"};
    for (int i = 0; i < 2; i++) {
        char *p = path_join(dir, names[i]);
        if (file_exists(p)) return p;
        free(p);
    }
    return NULL;
}

int st_dir_has_weights(const char *dir) {
    char *idx = path_join(dir, "model.safetensors.index.json");
    int has = file_exists(idx);
    free(idx);
    if (has) return 1;
    char *tw = torch_weights(dir);
    free(tw);
    if (tw) return 1;
    char **names = NULL;
    int n = list_safetensors(dir, &names);
    for (int i = 0; i < n; i++) free(names[i]);
    free(names);
    return n > 0;
}

static int build_entries(st_set *s) {
    int total = 0;
    for (int i = 0; i < s->n_files; i++) total += s->files[i].n_tensors;
    set_entry *es = xmalloc(sizeof(set_entry) * (size_t)(total ? total : 1));
    int k = 0;
    for (int i = 0; i < s->n_files; i++)
        for (int j = 0; j < s->files[i].n_tensors; j++) es[k++] = (set_entry){&s->files[i].tensors[j], i};
    qsort(es, (size_t)total, sizeof(set_entry), cmp_set_entry);
    for (int i = 1; i < total; i++) {
        if (strcmp(es[i - 1].t->name, es[i].t->name) == 0) {
            llava_fail("safetensors: %s: tensor \"%s\" is in both %s and %s", s->origin, es[i].t->name,
                       s->files[es[i - 1].file].path, s->files[es[i].file].path);
            free(es);
            return -1;
        }
    }
    s->entries = xmalloc(sizeof(st_tensor *) * (size_t)(total ? total : 1));
    s->file_of = xmalloc(sizeof(int) * (size_t)(total ? total : 1));
    for (int i = 0; i < total; i++) {
        s->entries[i] = es[i].t;
        s->file_of[i] = es[i].file;
    }
    s->n_entries = total;
    free(es);
    return 0;
}

static int open_files(st_set *s, const char *dir, char **names, int n) {
    s->files = xcalloc((size_t)(n ? n : 1), sizeof(st_file));
    for (int i = 0; i < n; i++) {
        char *p = dir ? path_join(dir, names[i]) : xstrdup(names[i]);
        int rc = st_open(&s->files[i], p);
        free(p);
        if (rc != 0) return -1;
        s->n_files++;
    }
    return 0;
}

// Shard names come from an untrusted index: plain file names only, nothing that leaves the folder.
static int shard_name_ok(const char *name) {
    return name[0] && name[0] != '.' && !strchr(name, '/') && !strchr(name, '\\') &&
           (ends_with(name, ".safetensors") || ends_with(name, ".bin"));
}

static int open_index(st_set *s, const char *index_path) {
    size_t len;
    char *text = read_file(index_path, 64u << 20, &len);
    if (!text) return -1;
    cJSON *root = cJSON_ParseWithLength(text, len);
    free(text);
    if (!root) return llava_fail("safetensors index: %s: not valid JSON", index_path);
    const cJSON *wm = cJSON_GetObjectItemCaseSensitive(root, "weight_map");
    if (!cJSON_IsObject(wm)) {
        cJSON_Delete(root);
        return llava_fail("safetensors index: %s: no \"weight_map\" object", index_path);
    }
    char **names = NULL;
    int n = 0, rc = 0;
    for (const cJSON *e = wm->child; e && rc == 0; e = e->next) {
        if (!cJSON_IsString(e)) {
            rc = llava_fail("safetensors index: %s: weight_map entry \"%s\" is not a string", index_path, e->string);
            break;
        }
        if (!shard_name_ok(e->valuestring)) {
            rc = llava_fail(
                "safetensors index: %s: tensor \"%s\" maps to \"%s\", which is not a .safetensors or .bin "
                "file name inside the folder",
                index_path, e->string, e->valuestring);
            break;
        }
        int found = 0;
        for (int i = 0; i < n; i++) found |= strcmp(names[i], e->valuestring) == 0;
        if (!found) {
            names = xrealloc(names, sizeof(char *) * (size_t)(n + 1));
            names[n++] = xstrdup(e->valuestring);
        }
    }
    if (rc == 0 && n == 0) rc = llava_fail("safetensors index: %s: weight_map is empty", index_path);
    if (n > 1) qsort(names, (size_t)n, sizeof(char *), cmp_str);
    char *dir = path_dirname(index_path);
    if (rc == 0) rc = open_files(s, dir, names, n);
    if (rc == 0) rc = build_entries(s);
    // Every tensor the index names must be in the shard it names.
    for (const cJSON *e = wm->child; e && rc == 0; e = e->next) {
        const st_file *f = NULL;
        const st_tensor *t = st_set_find(s, e->string, &f);
        if (!t) {
            rc = llava_fail("safetensors index: %s: tensor \"%s\" is listed in %s, which does not hold it", index_path,
                            e->string, e->valuestring);
        } else {
            const char *base = strrchr(f->path, '/');
            base = base ? base + 1 : f->path;
            if (strcmp(base, e->valuestring) != 0)
                rc = llava_fail("safetensors index: %s: tensor \"%s\" is listed in %s but found in %s", index_path,
                                e->string, e->valuestring, base);
        }
    }
    free(dir);
    for (int i = 0; i < n; i++) free(names[i]);
    free(names);
    cJSON_Delete(root);
    return rc;
}

int st_set_open(st_set *s, const char *path) {
    memset(s, 0, sizeof *s);
    s->origin = xstrdup(path);
    int rc;
    if (dir_exists(path)) {
        char *idx = path_join(path, "model.safetensors.index.json");
        if (file_exists(idx)) {
            rc = open_index(s, idx);
        } else {
            char **names = NULL;
            int n = list_safetensors(path, &names);
            char *tw = n == 0 ? torch_weights(path) : NULL;
            if (n < 0) rc = -1;
            else if (tw && ends_with(tw, ".index.json")) rc = open_index(s, tw);
            else if (tw) rc = open_files(s, NULL, &tw, 1) == 0 ? build_entries(s) : -1;
            else if (n == 0)
                rc = llava_fail("%s: no *.safetensors files, no model.safetensors.index.json and no pytorch_model.bin",
                                path);
            else rc = open_files(s, path, names, n) == 0 ? build_entries(s) : -1;
            free(tw);
            for (int i = 0; i < n; i++) free(names[i]);
            free(names);
        }
        free(idx);
    } else if (ends_with(path, ".index.json")) {
        rc = open_index(s, path);
    } else {
        char *names[1] = {(char *)path};
        rc = open_files(s, NULL, names, 1) == 0 ? build_entries(s) : -1;
    }
    if (rc != 0) st_set_close(s);
    return rc;
}

void st_set_close(st_set *s) {
    for (int i = 0; i < s->n_files; i++) st_close(&s->files[i]);
    free(s->files);
    free(s->entries);
    free(s->file_of);
    free(s->origin);
    memset(s, 0, sizeof *s);
}

const st_tensor *st_set_find(const st_set *s, const char *name, const st_file **file) {
    int lo = 0, hi = s->n_entries - 1;
    while (lo <= hi) {
        int mid = (lo + hi) / 2;
        int c = strcmp(s->entries[mid]->name, name);
        if (c == 0) {
            if (file) *file = &s->files[s->file_of[mid]];
            return s->entries[mid];
        }
        if (c < 0) lo = mid + 1;
        else hi = mid - 1;
    }
    return NULL;
}

// ---------------------------------------------------------------------------------------------
// Writer

void st_writer_init(st_writer *w) { memset(w, 0, sizeof *w); }

static int writer_add(st_writer *w, const char *name, dtype_t dtype, dtype_t src, int ndim, const int64_t *shape,
                      const void *data) {
    if (ndim < 0 || ndim > ST_MAX_DIMS)
        return llava_fail("safetensors writer: tensor \"%s\": %d dimensions", name, ndim);
    if (!name[0]) return llava_fail("safetensors writer: empty tensor name");
    for (int i = 0; i < w->n; i++)
        if (strcmp(w->entries[i].name, name) == 0)
            return llava_fail("safetensors writer: tensor \"%s\" added twice", name);
    if (w->n == w->cap) {
        w->cap = w->cap ? 2 * w->cap : 64;
        w->entries = xrealloc(w->entries, sizeof(st_wentry) * (size_t)w->cap);
    }
    st_wentry *e = &w->entries[w->n];
    memset(e, 0, sizeof *e);
    e->name = xstrdup(name);
    e->dtype = dtype;
    e->src_dtype = src;
    e->ndim = ndim;
    e->numel = 1;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 0) {
            free(e->name);
            return llava_fail("safetensors writer: tensor \"%s\": negative dimension", name);
        }
        e->shape[i] = shape[i];
        e->numel *= (uint64_t)shape[i];
    }
    e->data = data;
    w->n++;
    return 0;
}

int st_writer_add(st_writer *w, const char *name, dtype_t dtype, int ndim, const int64_t *shape, const void *data) {
    if (dtype_bits(dtype) % 8 != 0)
        return llava_fail("safetensors writer: tensor \"%s\": sub-byte dtypes not written", name);
    return writer_add(w, name, dtype, dtype, ndim, shape, data);
}

int st_writer_add_f32(st_writer *w, const char *name, dtype_t dtype, int ndim, const int64_t *shape,
                      const float *data) {
    if (dtype != DT_F32 && dtype != DT_F16 && dtype != DT_BF16 && dtype != DT_F64)
        return llava_fail("safetensors writer: tensor \"%s\": cannot store fp32 data as %s", name, dtype_name(dtype));
    return writer_add(w, name, dtype, DT_F32, ndim, shape, data);
}

void st_writer_meta(st_writer *w, const char *key, const char *value) {
    w->meta_keys = xrealloc(w->meta_keys, sizeof(char *) * (size_t)(w->n_meta + 1));
    w->meta_vals = xrealloc(w->meta_vals, sizeof(char *) * (size_t)(w->n_meta + 1));
    w->meta_keys[w->n_meta] = xstrdup(key);
    w->meta_vals[w->n_meta] = xstrdup(value);
    w->n_meta++;
}

void st_writer_free(st_writer *w) {
    for (int i = 0; i < w->n; i++) free(w->entries[i].name);
    free(w->entries);
    for (int i = 0; i < w->n_meta; i++) {
        free(w->meta_keys[i]);
        free(w->meta_vals[i]);
    }
    free(w->meta_keys);
    free(w->meta_vals);
    memset(w, 0, sizeof *w);
}

typedef struct {
    char *buf;
    size_t len, cap;
} sbuf;

static void sb_put(sbuf *b, const char *s, size_t n) {
    if (b->len + n + 1 > b->cap) {
        b->cap = (b->len + n + 1) * 2;
        b->buf = xrealloc(b->buf, b->cap);
    }
    memcpy(b->buf + b->len, s, n);
    b->len += n;
    b->buf[b->len] = 0;
}

static void sb_str(sbuf *b, const char *s) { sb_put(b, s, strlen(s)); }

static void sb_json_string(sbuf *b, const char *s) {
    sb_put(b, "\"", 1);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        char esc[8];
        if (*p == '"' || *p == '\\') {
            esc[0] = '\\';
            esc[1] = (char)*p;
            sb_put(b, esc, 2);
        } else if (*p < 0x20) {
            snprintf(esc, sizeof esc, "\\u%04x", *p);
            sb_put(b, esc, 6);
        } else {
            sb_put(b, (const char *)p, 1);
        }
    }
    sb_put(b, "\"", 1);
}

// The reference writer orders tensors by its Dtype enum, descending, then by name: wider types
// come first, so every tensor starts at a multiple of its own element size. We do the same, which
// makes our files byte-identical to the library's.
static int cmp_wentry(const void *a, const void *b) {
    const st_wentry *x = a, *y = b;
    int rx = dtype_rank(x->dtype), ry = dtype_rank(y->dtype);
    if (rx != ry) return rx > ry ? -1 : 1;
    return strcmp(x->name, y->name);
}

// Writes n bytes and extends the writer's running CRC over them.
static int write_all(st_writer *wr, int fd, const void *data, size_t n, const char *path) {
    wr->crc32c = crc32c(wr->crc32c, data, n);
    wr->bytes += n;
    const char *p = data;
    while (n > 0) {
        ssize_t w = write(fd, p, n > (1u << 30) ? (1u << 30) : n);
        if (w < 0) {
            if (errno == EINTR) continue;
            return llava_fail("safetensors writer: %s: write failed: %s", path, strerror(errno));
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

static int write_entry_data(st_writer *wr, int fd, const st_wentry *e, const char *path) {
    uint64_t nbytes = e->numel * dtype_bits(e->dtype) / 8;
    if (e->src_dtype == e->dtype) return write_all(wr, fd, e->data, (size_t)nbytes, path);
    // Convert in chunks so that a 7B model never needs a second full copy in memory.
    enum { CHUNK = 1 << 20 };
    size_t esz = dtype_bits(e->dtype) / 8;
    uint8_t *tmp = xmalloc(CHUNK * esz);
    const float *src = e->data;
    int rc = 0;
    for (uint64_t i = 0; i < e->numel && rc == 0; i += CHUNK) {
        size_t n = (size_t)(e->numel - i < CHUNK ? e->numel - i : CHUNK);
        convert_from_f32(e->dtype, src + i, tmp, n);
        rc = write_all(wr, fd, tmp, n * esz, path);
    }
    free(tmp);
    return rc;
}

int st_writer_save(st_writer *w, const char *path) {
    qsort(w->entries, (size_t)w->n, sizeof(st_wentry), cmp_wentry);
    sbuf h = {0};
    sb_str(&h, "{");
    int first = 1;
    if (w->n_meta > 0) {
        sb_str(&h, "\"__metadata__\":{");
        for (int i = 0; i < w->n_meta; i++) {
            if (i) sb_str(&h, ",");
            sb_json_string(&h, w->meta_keys[i]);
            sb_str(&h, ":");
            sb_json_string(&h, w->meta_vals[i]);
        }
        sb_str(&h, "}");
        first = 0;
    }
    uint64_t off = 0;
    for (int i = 0; i < w->n; i++) {
        const st_wentry *e = &w->entries[i];
        if (!first) sb_str(&h, ",");
        first = 0;
        sb_json_string(&h, e->name);
        char tmp[96];
        snprintf(tmp, sizeof tmp, ":{\"dtype\":\"%s\",\"shape\":[", dtype_name(e->dtype));
        sb_str(&h, tmp);
        for (int d = 0; d < e->ndim; d++) {
            snprintf(tmp, sizeof tmp, "%s%lld", d ? "," : "", (long long)e->shape[d]);
            sb_str(&h, tmp);
        }
        uint64_t nbytes = e->numel * dtype_bits(e->dtype) / 8;
        snprintf(tmp, sizeof tmp, "],\"data_offsets\":[%llu,%llu]}", (unsigned long long)off,
                 (unsigned long long)(off + nbytes));
        sb_str(&h, tmp);
        off += nbytes;
    }
    sb_str(&h, "}");
    while (h.len % 8 != 0) sb_str(&h, " ");  // the reference pads the header to 8 bytes with spaces

    char *tmp_path = xasprintf("%s.tmp.%d", path, (int)getpid());
    int fd = open(tmp_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    int rc = 0;
    if (fd < 0) {
        rc = llava_fail("safetensors writer: %s: cannot create: %s", tmp_path, strerror(errno));
    } else {
        uint8_t len8[8];
        for (int i = 0; i < 8; i++) len8[i] = (uint8_t)((uint64_t)h.len >> (8 * i));
        w->crc32c = 0;
        w->bytes = 0;
        rc = write_all(w, fd, len8, 8, tmp_path);
        if (rc == 0) rc = write_all(w, fd, h.buf, h.len, tmp_path);
        for (int i = 0; i < w->n && rc == 0; i++) rc = write_entry_data(w, fd, &w->entries[i], tmp_path);
        if (rc == 0 && fsync(fd) != 0)
            rc = llava_fail("safetensors writer: %s: fsync failed: %s", tmp_path, strerror(errno));
        if (close(fd) != 0 && rc == 0)
            rc = llava_fail("safetensors writer: %s: close failed: %s", tmp_path, strerror(errno));
        if (rc == 0 && rename(tmp_path, path) != 0)
            rc = llava_fail("safetensors writer: rename %s -> %s failed: %s", tmp_path, path, strerror(errno));
        if (rc != 0) unlink(tmp_path);
    }
    if (rc == 0) {
        char *dir = path_dirname(path);
        rc = fsync_dir(dir);
        free(dir);
    }
    free(tmp_path);
    free(h.buf);
    return rc;
}
