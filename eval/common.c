// What the scorers share: JSON Lines, benchmark files, answers by question_id (eval/eval.h), and the
// string map (eval/strmap.h).
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"
#include "eval.h"
#include "strmap.h"

int eval_read_lines(const char *path, eval_lines *out) {
    memset(out, 0, sizeof *out);
    size_t len;
    char *text = read_file(path, (size_t)1 << 34, &len);
    if (!text) return -1;
    out->arr = cJSON_CreateArray();
    int cap = 0, lineno = 0;
    for (char *p = text; p < text + len;) {
        char *nl = memchr(p, '\n', (size_t)(text + len - p));
        size_t L = nl ? (size_t)(nl - p) : (size_t)(text + len - p);
        char *line = p;
        p += L + (nl ? 1 : 0);
        lineno++;
        size_t k = 0;
        while (k < L && (line[k] == ' ' || line[k] == '\t' || line[k] == '\r')) k++;
        if (k == L) continue;
        cJSON *o = cJSON_ParseWithLength(line, L);
        if (!cJSON_IsObject(o)) {
            cJSON_Delete(o);
            free(text);
            eval_lines_free(out);
            return llava_fail("%s line %d: not a JSON object", path, lineno);
        }
        cJSON_AddItemToArray(out->arr, o);
        if (out->n == cap) {
            cap = cap ? 2 * cap : 1024;
            out->obj = xrealloc(out->obj, (size_t)cap * sizeof *out->obj);
            out->line = xrealloc(out->line, (size_t)cap * sizeof *out->line);
        }
        out->obj[out->n] = o;
        out->line[out->n++] = lineno;
    }
    free(text);
    return 0;
}

void eval_lines_free(eval_lines *l) {
    if (!l) return;
    cJSON_Delete(l->arr);
    free(l->obj);
    free(l->line);
    memset(l, 0, sizeof *l);
}

cJSON *eval_read_jsonl(const char *path) {
    eval_lines l;
    if (eval_read_lines(path, &l) != 0) return NULL;
    cJSON *arr = l.arr;
    l.arr = NULL;
    eval_lines_free(&l);
    return arr;
}

cJSON *eval_read_json(const char *path) {
    size_t len;
    char *text = read_file(path, (size_t)1 << 34, &len);
    if (!text) return NULL;
    const char *end = NULL;
    cJSON *j = cJSON_ParseWithLengthOpts(text, len, &end, 0);
    if (!j) llava_fail("%s: not JSON (near byte %zu)", path, end ? (size_t)(end - text) : (size_t)0);
    free(text);
    return j;
}

static uint64_t fnv1a(const char *s) {
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

static size_t slot_of(const strmap *m, const char *key) {
    size_t i = (size_t)(fnv1a(key) & (m->cap - 1));
    while (m->keys[i] && strcmp(m->keys[i], key) != 0) i = (i + 1) & (m->cap - 1);
    return i;
}

void strmap_put(strmap *m, const char *key, void *val) {
    if (2 * (m->n + 1) > m->cap) {
        strmap big = {.cap = m->cap ? 2 * m->cap : 64};
        big.keys = xcalloc(big.cap, sizeof *big.keys);
        big.vals = xcalloc(big.cap, sizeof *big.vals);
        for (size_t i = 0; i < m->cap; i++) {
            if (!m->keys[i]) continue;
            size_t j = slot_of(&big, m->keys[i]);
            big.keys[j] = m->keys[i];
            big.vals[j] = m->vals[i];
            big.n++;
        }
        free(m->keys);
        free(m->vals);
        *m = big;
    }
    size_t i = slot_of(m, key);
    if (!m->keys[i]) {
        m->keys[i] = xstrdup(key);
        m->n++;
    }
    m->vals[i] = val;
}

void *strmap_get(const strmap *m, const char *key) {
    if (!m->cap) return NULL;
    size_t i = slot_of(m, key);
    return m->keys[i] ? m->vals[i] : NULL;
}

void strmap_free(strmap *m) {
    for (size_t i = 0; i < m->cap; i++) free(m->keys[i]);
    free(m->keys);
    free(m->vals);
    memset(m, 0, sizeof *m);
}

// Stored as val + 1, so that a missing key (NULL) reads as -1.
void strmap_set_int(strmap *m, const char *key, int val) { strmap_put(m, key, (void *)(intptr_t)(val + 1)); }

int strmap_get_int(const strmap *m, const char *key) { return (int)((intptr_t)strmap_get(m, key) - 1); }

char *eval_data_file(const eval_bench *b, const eval_inputs *in, const char *name) {
    char *p = path_join(in->data, name);
    if (!file_exists(p) && !dir_exists(p)) {
        llava_fail("%s: %s is missing; LLaVA's docs/Evaluation.md: %s", b->name, p, b->download);
        free(p);
        return NULL;
    }
    return p;
}

char *eval_qid_key(const cJSON *qid) { return cJSON_PrintUnformatted(qid); }

cJSON *eval_answers_by_id(const char *path) {
    cJSON *arr = eval_read_jsonl(path);
    if (!arr) return NULL;
    cJSON *by = cJSON_CreateObject();
    int i = 0;
    for (cJSON *o = arr->child; o; o = o->next, i++) {
        const cJSON *qid = cJSON_GetObjectItemCaseSensitive(o, "question_id");
        const cJSON *tx = cJSON_GetObjectItemCaseSensitive(o, "text");
        if (!(cJSON_IsNumber(qid) || cJSON_IsString(qid)) || !cJSON_IsString(tx)) {
            llava_fail("%s: answer %d: %s", path, i + 1,
                       !qid                  ? "no question_id"
                       : !cJSON_IsString(tx) ? "\"text\" is not a string"
                                             : "bad question_id");
            cJSON_Delete(by);
            cJSON_Delete(arr);
            return NULL;
        }
        char *key = eval_qid_key(qid);
        if (!cJSON_GetObjectItemCaseSensitive(by, key))  // a repeated id: the first answer counts
            cJSON_AddItemToObject(by, key, cJSON_Duplicate(o, 1));
        free(key);
    }
    cJSON_Delete(arr);
    return by;
}
