// TensorBoard event files: TFRecord framing around hand-encoded tf.Event protobufs (tblog.h).
#include "tblog.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <unistd.h>

#include "common/crc32c.h"
#include "common/util.h"

#define TB_PREFIX "events.out.tfevents."
#define TB_FILE_VERSION "brain.Event:2"

struct tblog {
    FILE *f;
    char *path;
};

// ---------------------------------------------------------------------------------------------
// The encoding: a growable byte buffer and the few protobuf wire forms an Event needs.

typedef struct {
    uint8_t *p;
    size_t n, cap;
} bytes;

static void put(bytes *b, const void *data, size_t n) {
    if (b->n + n > b->cap) {
        b->cap = (b->n + n) * 2 + 64;
        b->p = xrealloc(b->p, b->cap);
    }
    if (n) memcpy(b->p + b->n, data, n);
    b->n += n;
}

static void put_le(bytes *b, uint64_t v, int n) {
    uint8_t x[8];
    for (int i = 0; i < n; i++) x[i] = (uint8_t)(v >> (8 * i));
    put(b, x, (size_t)n);
}

static void put_varint(bytes *b, uint64_t v) {
    uint8_t x[10];
    int n = 0;
    do {
        x[n] = (uint8_t)(v & 0x7f);
        v >>= 7;
        if (v) x[n] |= 0x80;
        n++;
    } while (v);
    put(b, x, (size_t)n);
}

enum { WT_VARINT = 0, WT_I64 = 1, WT_LEN = 2, WT_I32 = 5 };

static void put_key(bytes *b, int field, int wire) { put_varint(b, (uint64_t)field << 3 | (uint64_t)wire); }

static void put_len(bytes *b, int field, const void *data, size_t n) {
    put_key(b, field, WT_LEN);
    put_varint(b, n);
    put(b, data, n);
}

uint32_t tblog_masked_crc(const void *data, size_t n) {
    uint32_t c = crc32c(0, data, n);
    return ((c >> 15) | (c << 17)) + 0xa282ead8u;
}

void tblog_frame(const void *data, size_t n, uint8_t *out) {
    for (int i = 0; i < 8; i++) out[i] = (uint8_t)((uint64_t)n >> (8 * i));
    uint32_t hc = tblog_masked_crc(out, 8), dc = tblog_masked_crc(data, n);
    for (int i = 0; i < 4; i++) out[8 + i] = (uint8_t)(hc >> (8 * i));
    if (n) memcpy(out + 12, data, n);
    for (int i = 0; i < 4; i++) out[12 + n + i] = (uint8_t)(dc >> (8 * i));
}

// An Event's wall_time and step: proto3 fields without presence, so a zero is left out (by its
// bits: -0.0 is written, as protobuf's serialisers do).
static void put_event_head(bytes *b, double wall_time, int64_t step) {
    uint64_t wbits;
    memcpy(&wbits, &wall_time, 8);
    if (wbits) put_key(b, 1, WT_I64), put_le(b, wbits, 8);
    if (step) put_key(b, 2, WT_VARINT), put_varint(b, (uint64_t)step);
}

static double wall_now(void) {
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return (double)tv.tv_sec + 1e-6 * (double)tv.tv_usec;
}

static int write_record(tblog *w, const bytes *ev) {
    uint8_t *rec = xmalloc(ev->n + 16);
    tblog_frame(ev->p, ev->n, rec);
    int ok = fwrite(rec, 1, ev->n + 16, w->f) == ev->n + 16 && fflush(w->f) == 0;
    free(rec);
    if (!ok) return llava_fail("%s: write failed: %s", w->path, strerror(errno));
    return 0;
}

// ---------------------------------------------------------------------------------------------
// The writer.

tblog *tblog_open(const char *dir, double wall_time, const char *host) {
    if (mkdir_p(dir) != 0) return NULL;
    if (wall_time < 0) wall_time = wall_now();
    char hostbuf[256] = "localhost";
    if (!host) {
        if (gethostname(hostbuf, sizeof hostbuf) != 0) snprintf(hostbuf, sizeof hostbuf, "localhost");
        hostbuf[sizeof hostbuf - 1] = 0;
        for (char *c = hostbuf; *c; c++)
            if (*c == '/') *c = '_';
        host = hostbuf;
    }
    // A new file for each launch; a name already there (two launches in one second) gets a suffix,
    // which sorts after it, as TensorBoard reads a folder's files in name order.
    char *path = NULL;
    int fd = -1;
    for (int k = 0; k < 1000 && fd < 0; k++) {
        free(path);
        path = k ? xasprintf("%s/" TB_PREFIX "%lld.%s.%d", dir, (long long)wall_time, host, k)
                 : xasprintf("%s/" TB_PREFIX "%lld.%s", dir, (long long)wall_time, host);
        fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_APPEND, 0644);
        if (fd < 0 && errno != EEXIST) break;
    }
    if (fd < 0) {
        llava_fail("%s: cannot create: %s", path, strerror(errno));
        free(path);
        return NULL;
    }
    tblog *w = xcalloc(1, sizeof *w);
    w->f = fdopen(fd, "ab");
    w->path = path;
    bytes ev = {0};
    put_event_head(&ev, wall_time, 0);
    put_len(&ev, 3, TB_FILE_VERSION, strlen(TB_FILE_VERSION));
    int rc = w->f ? write_record(w, &ev) : llava_fail("%s: %s", path, strerror(errno));
    free(ev.p);
    if (rc != 0) {
        if (w->f) fclose(w->f);
        else close(fd);
        unlink(path);
        free(path);
        free(w);
        return NULL;
    }
    return w;
}

const char *tblog_path(const tblog *w) { return w->path; }

int tblog_scalars(tblog *w, int64_t step, double wall_time, const char *const *tags, const double *values, int n) {
    if (wall_time < 0) wall_time = wall_now();
    bytes summary = {0}, value = {0}, ev = {0};
    for (int i = 0; i < n; i++) {
        value.n = 0;
        if (tags[i][0]) put_len(&value, 1, tags[i], strlen(tags[i]));
        // simple_value is a member of Value's oneof: written even when zero.
        float f = (float)values[i];
        uint32_t fbits;
        memcpy(&fbits, &f, 4);
        put_key(&value, 2, WT_I32), put_le(&value, fbits, 4);
        put_len(&summary, 1, value.p, value.n);
    }
    put_event_head(&ev, wall_time, step);
    put_len(&ev, 5, summary.p, summary.n);  // summary: a oneof member too, written even when empty
    int rc = write_record(w, &ev);
    free(summary.p), free(value.p), free(ev.p);
    return rc;
}

void tblog_tag(const char *key, char *tag, size_t cap) {
    if (strcmp(key, "lr") == 0) key = "learning_rate";
    if (strncmp(key, "eval_", 5) == 0) snprintf(tag, cap, "eval/%s", key + 5);
    else snprintf(tag, cap, "train/%s", key);
}

int tblog_metrics(tblog *w, int64_t step, double wall_time, const char *const *keys, const double *values, int n) {
    char(*tags)[96] = xmalloc(sizeof *tags * (size_t)(n ? n : 1));
    const char **tp = xmalloc(sizeof *tp * (size_t)(n ? n : 1));
    double *v = xmalloc(sizeof *v * (size_t)(n ? n : 1));
    int m = 0;
    for (int i = 0; i < n; i++) {
        if (!isfinite(values[i])) continue;
        tblog_tag(keys[i], tags[m], sizeof tags[m]);
        tp[m] = tags[m];
        v[m++] = values[i];
    }
    int rc = tblog_scalars(w, step, wall_time, tp, v, m);
    free(tags), free(tp), free(v);
    return rc;
}

int tblog_sync(tblog *w) {
    if (!w) return 0;
    if (fflush(w->f) != 0 || fsync(fileno(w->f)) != 0)
        return llava_fail("%s: fsync failed: %s", w->path, strerror(errno));
    return 0;
}

int tblog_close(tblog *w) {
    if (!w) return 0;
    int rc = fclose(w->f) == 0 ? 0 : llava_fail("%s: close failed: %s", w->path, strerror(errno));
    free(w->path);
    free(w);
    return rc;
}

// ---------------------------------------------------------------------------------------------
// Truncation on resume.

static int get_varint(const uint8_t *p, size_t n, size_t *at, uint64_t *v) {
    *v = 0;
    for (int s = 0; s < 64 && *at < n; s += 7) {
        uint8_t byte = p[(*at)++];
        *v |= (uint64_t)(byte & 0x7f) << s;
        if (!(byte & 0x80)) return 0;
    }
    return -1;
}

// An Event's step and whether it holds a summary; -1 when the bytes are not a protobuf message.
static int event_step(const uint8_t *p, size_t n, int64_t *step, int *has_summary) {
    *step = 0, *has_summary = 0;
    for (size_t at = 0; at < n;) {
        uint64_t key, v;
        if (get_varint(p, n, &at, &key) != 0) return -1;
        switch ((int)(key & 7)) {
        case WT_VARINT:
            if (get_varint(p, n, &at, &v) != 0) return -1;
            if (key >> 3 == 2) *step = (int64_t)v;
            break;
        case WT_I64:
            if (n - at < 8) return -1;
            at += 8;
            break;
        case WT_LEN:
            if (get_varint(p, n, &at, &v) != 0 || v > n - at) return -1;
            if (key >> 3 == 5) *has_summary = 1;
            at += v;
            break;
        case WT_I32:
            if (n - at < 4) return -1;
            at += 4;
            break;
        default: return -1;
        }
    }
    return 0;
}

static uint32_t get_u32(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static int truncate_file(const char *path, int64_t step) {
    size_t len;
    uint8_t *text = (uint8_t *)read_file(path, (size_t)1 << 34, &len);
    if (!text) return -1;
    bytes keep = {0};
    int scalars = 0;
    for (size_t at = 0; len - at >= 12;) {
        uint64_t n = 0;
        for (int i = 0; i < 8; i++) n |= (uint64_t)text[at + i] << (8 * i);
        if (tblog_masked_crc(text + at, 8) != get_u32(text + at + 8) || n > len - at - 12 || len - at - 12 - n < 4)
            break;  // a torn or corrupt record: it and all after it go
        const uint8_t *data = text + at + 12;
        int64_t s;
        int summary;
        if (tblog_masked_crc(data, n) != get_u32(data + n) || event_step(data, n, &s, &summary) != 0) break;
        if (s <= step) {
            put(&keep, text + at, n + 16);
            scalars |= summary;
        }
        at += n + 16;
    }
    int rc = 0;
    if (!scalars) {
        if (unlink(path) != 0) rc = llava_fail("%s: cannot remove: %s", path, strerror(errno));
    } else if (keep.n != len) {
        rc = write_file_atomic(path, keep.p, keep.n);
    }
    free(keep.p);
    free(text);
    return rc;
}

// A temporary file write_file_atomic left behind (NAME.tmp.PID) when killed.
static int is_leftover_tmp(const char *name) {
    const char *t = strstr(name, ".tmp.");
    if (!t || !t[5]) return 0;
    for (const char *c = t + 5; *c; c++)
        if (*c < '0' || *c > '9') return 0;
    return 1;
}

int tblog_truncate(const char *dir, int64_t step) {
    DIR *d = opendir(dir);
    if (!d) return errno == ENOENT ? 0 : llava_fail("%s: cannot list: %s", dir, strerror(errno));
    // The names first: the rewrites below add and rename entries of the folder being listed.
    char **names = NULL;
    int n = 0, cap = 0;
    for (struct dirent *e; (e = readdir(d));) {
        if (strncmp(e->d_name, TB_PREFIX, strlen(TB_PREFIX)) != 0) continue;
        if (n == cap) names = xrealloc(names, sizeof *names * (size_t)(cap = cap * 2 + 8));
        names[n++] = xstrdup(e->d_name);
    }
    closedir(d);
    int rc = 0;
    for (int i = 0; i < n; i++) {
        char *p = path_join(dir, names[i]);
        if (is_leftover_tmp(names[i])) unlink(p);
        else if (rc == 0) rc = truncate_file(p, step);
        free(p);
        free(names[i]);
    }
    free(names);
    return rc;
}
