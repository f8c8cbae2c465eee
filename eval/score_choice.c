// Helpers of the POPE, ScienceQA, MME, SEED-Bench and MMBench scorers (eval/score_choice.h).
#include "score_choice.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"

void sc_lines_free(sc_lines *l) {
    if (!l) return;
    cJSON_Delete(l->arr);
    free(l->obj);
    free(l->line);
    free(l->path);
    memset(l, 0, sizeof *l);
}

int sc_read_lines(const char *path, sc_lines *out) {
    memset(out, 0, sizeof *out);
    size_t len;
    char *text = read_file(path, (size_t)1 << 34, &len);
    if (!text) return -1;
    out->arr = cJSON_CreateArray();
    out->path = xstrdup(path);
    int lineno = 0, cap = 0;
    for (char *p = text; p < text + len;) {
        char *nl = memchr(p, '\n', (size_t)(text + len - p));
        size_t L = nl ? (size_t)(nl - p) : (size_t)(text + len - p);
        lineno++;
        char *line = p;
        p += L + (nl ? 1 : 0);
        size_t k = 0;
        while (k < L && (line[k] == ' ' || line[k] == '\t' || line[k] == '\r')) k++;
        if (k == L) continue;
        cJSON *o = cJSON_ParseWithLength(line, L);
        if (!cJSON_IsObject(o)) {
            cJSON_Delete(o);
            free(text);
            llava_fail("%s line %d: not a JSON object", path, lineno);
            sc_lines_free(out);
            return -1;
        }
        cJSON_AddItemToArray(out->arr, o);
        if (out->n == cap) {
            cap = cap ? cap * 2 : 256;
            out->obj = xrealloc(out->obj, sizeof(cJSON *) * (size_t)cap);
            out->line = xrealloc(out->line, sizeof(int) * (size_t)cap);
        }
        out->obj[out->n] = o;
        out->line[out->n++] = lineno;
    }
    free(text);
    return 0;
}

int sc_read_answers(const char *path, sc_lines *out) {
    if (sc_read_lines(path, out) != 0) return -1;
    for (int i = 0; i < out->n; i++) {
        const cJSON *qid = cJSON_GetObjectItemCaseSensitive(out->obj[i], "question_id");
        const cJSON *tx = cJSON_GetObjectItemCaseSensitive(out->obj[i], "text");
        const char *why = !qid ? "no question_id"
                          : !(cJSON_IsNumber(qid) || cJSON_IsString(qid))
                              ? "question_id is neither a number nor a string"
                          : !tx                 ? "no \"text\""
                          : !cJSON_IsString(tx) ? "\"text\" is not a string"
                                                : NULL;
        if (why) {
            llava_fail("%s line %d: %s", path, out->line[i], why);
            sc_lines_free(out);
            return -1;
        }
    }
    return 0;
}

char *sc_key_str(const char *s) { return xasprintf("s:%s", s); }
char *sc_key_int(long long v) { return xasprintf("n:%lld", v); }

char *sc_key(const cJSON *qid) {
    if (cJSON_IsString(qid)) return sc_key_str(qid->valuestring);
    if (!cJSON_IsNumber(qid)) return NULL;
    double v = qid->valuedouble;
    if (v == (double)(long long)v) return sc_key_int((long long)v);
    return xasprintf("n:%.17g", v);
}

static uint64_t sc_hash(const char *s) {
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

void sc_map_free(sc_map *m) {
    for (size_t i = 0; i < m->cap; i++) free(m->k[i]);
    free(m->k);
    free(m->v);
    memset(m, 0, sizeof *m);
}

static size_t sc_map_slot(const sc_map *m, const char *k) {
    size_t i = (size_t)(sc_hash(k) & (m->cap - 1));
    while (m->k[i] && strcmp(m->k[i], k) != 0) i = (i + 1) & (m->cap - 1);
    return i;
}

void sc_map_set(sc_map *m, const char *k, int v) {
    if (2 * (m->n + 1) > m->cap) {
        sc_map old = *m;
        m->cap = old.cap ? old.cap * 2 : 64;
        m->k = xcalloc(m->cap, sizeof(char *));
        m->v = xcalloc(m->cap, sizeof(int));
        m->n = 0;
        for (size_t i = 0; i < old.cap; i++)
            if (old.k[i]) {
                size_t s = sc_map_slot(m, old.k[i]);
                m->k[s] = old.k[i];
                m->v[s] = old.v[i];
                m->n++;
            }
        free(old.k);
        free(old.v);
    }
    size_t s = sc_map_slot(m, k);
    if (!m->k[s]) {
        m->k[s] = xstrdup(k);
        m->n++;
    }
    m->v[s] = v;
}

int sc_map_get(const sc_map *m, const char *k) {
    if (!m->cap) return -1;
    size_t s = sc_map_slot(m, k);
    return m->k[s] ? m->v[s] : -1;
}

char *sc_question_path(const eval_bench *b, const eval_inputs *in, const char *name) {
    if (in->questions) {
        if (!file_exists(in->questions)) {
            llava_fail("%s: the question file %s is missing", b->name, in->questions);
            return NULL;
        }
        return xstrdup(in->questions);
    }
    return eval_data_file(b, in, name);
}

uint32_t sc_utf8(const char *s, int *len) {
    const unsigned char *p = (const unsigned char *)s;
    uint32_t c = p[0];
    int n = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
    if (n == 1) {
        *len = 1;
        return c;
    }
    if (n == 0) {
        *len = 1;
        return 0xFFFD;
    }
    uint32_t v = c & (0x7Fu >> n);
    for (int i = 1; i < n; i++) {
        if ((p[i] & 0xC0) != 0x80) {
            *len = 1;
            return 0xFFFD;
        }
        v = (v << 6) | (p[i] & 0x3F);
    }
    static const uint32_t minv[5] = {0, 0, 0x80, 0x800, 0x10000};
    if (v < minv[n] || v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF)) {
        *len = 1;
        return 0xFFFD;
    }
    *len = n;
    return v;
}

int sc_py_space(uint32_t c) {
    // Python 3: the characters with bidirectional type WS, B or S, or category Zs.
    return (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x20) || c == 0x85 || c == 0xA0 || c == 0x1680 ||
           (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000;
}

void sc_py_json_str(strbuf *b, const char *s) {
    sb_puts(b, "\"");
    char tmp[16];
    for (const char *p = s; *p;) {
        int n;
        uint32_t c = sc_utf8(p, &n);
        p += n;
        switch (c) {
        case '"': sb_puts(b, "\\\""); continue;
        case '\\': sb_puts(b, "\\\\"); continue;
        case '\n': sb_puts(b, "\\n"); continue;
        case '\r': sb_puts(b, "\\r"); continue;
        case '\t': sb_puts(b, "\\t"); continue;
        case '\b': sb_puts(b, "\\b"); continue;
        case '\f': sb_puts(b, "\\f"); continue;
        default: break;
        }
        if (c >= 0x20 && c < 0x7F) {
            char ch = (char)c;
            sb_put(b, &ch, 1);
        } else if (c < 0x10000) {
            snprintf(tmp, sizeof tmp, "\\u%04x", c);
            sb_puts(b, tmp);
        } else {
            uint32_t v = c - 0x10000;
            snprintf(tmp, sizeof tmp, "\\u%04x\\u%04x", 0xD800 + (v >> 10), 0xDC00 + (v & 0x3FF));
            sb_puts(b, tmp);
        }
    }
    sb_puts(b, "\"");
}

int sc_write_out(const eval_inputs *in, const char *name, const char *data, size_t len) {
    if (!in->out) return 0;
    char *p = path_join(in->out, name);
    char *dir = path_dirname(p);
    int rc = mkdir_p(dir);
    if (rc == 0) rc = write_file_atomic(p, data, len);
    if (rc != 0) llava_fail_ctx("writing %s", p);
    free(dir);
    free(p);
    return rc;
}

double sc_pct(long num, long den) { return den ? (double)num / (double)den * 100.0 : 0.0; }
